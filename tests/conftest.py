"""Shared fixtures: one small toy benchmark per test session, copied where a test mutates it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pixda_core.data import toy

SPEC = toy.ToySpec(seed=3, size=(96, 48), num_gta5=8, num_synthia=8, train_per_city=3,
                   val_per_city=2)  # fmt: skip


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
