"""Shared fixtures: one small toy benchmark per test session, copied where a test mutates it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pixda_core.data import toy

from .helpers import SPEC

LAYERS = ("unit", "data", "training", "notebooks")


if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers (pytest-xdist) on a 2-core machine: one thread each, for
    # the worker and the processes its tests start (run.py, torchrun, notebook kernels)
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Every test belongs to exactly one layer of the suite (pyproject.toml's markers). (``make
    test`` runs ``-n 2 --dist loadfile``: a test file on one worker, its module fixtures
    built once.)"""
    for item in items:
        layers = {m.name for m in item.iter_markers() if m.name in LAYERS}
        if len(layers) != 1:
            raise pytest.UsageError(
                f"{item.nodeid} has layers {sorted(layers) or 'none'}; give it one of {LAYERS}"
            )


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory) -> Path:
    """A read-only (by convention) toy benchmark in the three real layouts."""
    return toy.generate(tmp_path_factory.mktemp("toy") / "toy", SPEC, progress=False)


@pytest.fixture
def toy_copy(toy_root, tmp_path) -> Path:
    """A private copy of the toy benchmark that a test may break."""
    dst = tmp_path / "toy"
    shutil.copytree(toy_root, dst)
    return dst


# ----------------------------------------------------------------- command-line error tests


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> Path:
    """A source-only model for the toy preset (random init, ResNet-18, one head) in the
    kit's checkpoint format, so that error tests need not train one."""
    import torch

    from pixda_core.models import deeplabv2

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "so.pth"
    torch.save({"model": deeplabv2(19, "resnet18", multi_level=False).state_dict()}, path)
    return path


@pytest.fixture(scope="session")
def sweep(toy_root, tmp_path_factory):
    """A finished toy sweep (source-only, FT and PixDA at 1 and 2 shots), shared by the
    notebook tests and the notebook error tests."""
    from pixda_core.sweep import run_sweep

    from .helpers import TINY

    out = tmp_path_factory.mktemp("sweep") / "toy_sweep"
    result = run_sweep(
        out,
        shots=(1, 2),
        methods=("source_only", "finetune", "pixda"),
        seeds=(0,),
        data_root=str(toy_root),
        iterations=4,
        pretrain_iterations=6,
        overrides=TINY,
    )
    return out, result


@pytest.fixture(scope="session")
def source_only(toy_root, tmp_path_factory) -> Path:
    """A source-only model trained by the kit on the toy (:func:`helpers.tiny`, 8 steps)."""
    from pixda_core.train import train_source_only

    from .helpers import tiny

    out = tmp_path_factory.mktemp("so")
    cfg = tiny(toy_root, out, run={"name": "so"})
    train_source_only(cfg)
    return out / "so" / "checkpoints" / "latest.pt"
