"""Shared fixtures: built once for the whole run (whichever worker asks first) and read-only;
a test that changes one works on a copy (``toy_copy``, ``sweep_copy``)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shutil
from pathlib import Path

import pytest

from pixda_core.data import toy
from pixda_core.sweep_collect import SweepResult

from .helpers import SPEC, take_source_only
from .shared import copy_tree, shared

LAYERS = ("unit", "tools", "data", "training", "notebooks")

#: the files that take longest (wall time on the 2-core machine, `--durations` and per-file sums
#: of a full run), started first in this order so that none of them starts last while the other
#: workers are idle; every other file follows, heaviest layer first. (`make test` passes
#: --no-loadscope-reorder: pytest-xdist would otherwise hand out files by their number of tests.)
SLOWEST = (
    "tests/e2e/test_slurm.py",  # ~170 s, mostly waiting on its cluster's jobs
    "tests/train/test_loop.py",  # ~210 s over 23 tests
    "tests/e2e/test_demo.py",  # ~40 s after the session demo (which it may build)
    "tests/sweep/test_sweep.py",  # ~120 s, builds the session sweep
    "tests/notebooks/test_notebooks.py",  # ~150 s, waits for the session sweep first
    "tests/sweep/test_gap_sweep.py",  # ~110 s
    "tests/e2e/test_install.py",  # ~100 s
    "tests/e2e/test_torchrun.py",  # ~70 s
    "tests/methods/test_plugin.py",  # ~80 s, waits for the session sweep first
)


if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs three workers (pytest-xdist) on a 2-core machine: one thread each, for
    # the worker and the processes its tests start (run.py, torchrun, notebook kernels)
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Every test belongs to exactly one layer of the suite (pyproject.toml's markers). (``make
    test`` runs ``-n 3 --dist loadfile``: a test file on one worker, its module fixtures
    built once; the session's fixtures are built once for all, see :func:`shared`.)"""
    heaviest: dict[str, int] = {}
    for item in items:
        layers = {m.name for m in item.iter_markers() if m.name in LAYERS}
        if len(layers) != 1:
            raise pytest.UsageError(
                f"{item.nodeid} has layers {sorted(layers) or 'none'}; give it one of {LAYERS}"
            )
        slow = item.get_closest_marker("slow") is not None
        weight = LAYERS.index(layers.pop()) + 4 * slow
        file = item.nodeid.partition("::")[0]
        heaviest[file] = max(heaviest.get(file, 0), weight)

    # the longest files first, so that no worker starts one at the end while the others wait
    # (pytest-xdist hands out files in this order; a stable sort)
    def order(item):
        file = item.nodeid.partition("::")[0]
        return (SLOWEST.index(file) if file in SLOWEST else len(SLOWEST), -heaviest[file])

    items.sort(key=order)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    """With PIXDA_NO_SKIPS=1 (CI sets it), a skipped test fails the run: every test runs in CI,
    none is skipped in silence. PIXDA_EXPECTED_SKIPS names, comma-separated, the node ids
    (or their start) of skips that are expected on a machine."""
    if os.environ.get("PIXDA_NO_SKIPS") != "1" or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    expected = [s for s in os.environ.get("PIXDA_EXPECTED_SKIPS", "").split(",") if s]
    skipped = [r for r in (reporter.stats.get("skipped", []) if reporter else [])
               if not any(r.nodeid.startswith(e) for e in expected)]  # fmt: skip
    if skipped:
        reporter.ensure_newline()
        for r in skipped:
            reason = r.longrepr[2] if isinstance(r.longrepr, tuple) else r.longrepr
            reporter.write_line(f"error: skipped, and not expected: {r.nodeid}: {reason}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory) -> Path:
    """A read-only (by convention) toy benchmark in the three real layouts."""
    folder, _ = shared(
        tmp_path_factory, "toy", lambda f: str(toy.generate(f / "toy", SPEC, progress=False))
    )
    return folder / "toy"


@pytest.fixture
def toy_copy(toy_root, tmp_path) -> Path:
    """A private copy of the toy benchmark that a test may break."""
    dst = tmp_path / "toy"
    return copy_tree(toy_root, dst)


# ----------------------------------------------------------------- command-line error tests


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> Path:
    """A source-only model for the toy preset (random init, ResNet-18, one head) in the
    kit's checkpoint format, so that error tests need not train one."""
    import torch

    from pixda_core.models import deeplabv2

    def build(folder: Path) -> None:
        torch.manual_seed(0)
        model = deeplabv2(19, "resnet18", multi_level=False)
        torch.save({"model": model.state_dict()}, folder / "so.pth")

    return shared(tmp_path_factory, "weights", build)[0] / "so.pth"


@pytest.fixture(scope="session")
def demo(toy_root, tmp_path_factory):
    """``make demo``'s job at the suite's sizes (:data:`helpers.GRID`): notebook 01, the
    sweep (source-only, FT and PixDA at 1 and 2 shots, notebook 04); (its folder, what it
    printed). Its sweep is the session's sweep (:func:`sweep`)."""
    from pixda_core import demo as kit

    from .helpers import GRID, TINY

    assert GRID["methods"] == kit.METHODS and GRID["seeds"] == (0,)  # the demo's grid

    def build(folder: Path) -> dict:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            result = kit.run(
                toy_root,
                folder / "demo",
                pretrain_iterations=GRID["pretrain_iterations"],
                iterations=GRID["iterations"],
                overrides=TINY,
                progress=False,
                shots=GRID["shots"],
            )
        return {"printed": printed.getvalue(), "result": dataclasses.asdict(result)}

    folder, built = shared(tmp_path_factory, "demo", build)
    return folder / "demo", sweep_result(built["result"]), built["printed"]


def sweep_result(record: dict) -> SweepResult:
    """A sweep's result from its JSON record (as :func:`shared` keeps it)."""
    return SweepResult(
        summary=Path(record["summary"]) if record["summary"] else None,
        failed=[tuple(f) for f in record["failed"]],
        ran=[tuple(r) for r in record["ran"]],
        skipped=record["skipped"],
        submitted=record["submitted"],
    )


@pytest.fixture(scope="session")
def sweep(demo):
    """The demo's finished sweep (source-only, FT and PixDA at 1 and 2 shots, notebook 04),
    shared by the notebook, sweep and end-to-end tests: (its folder, what run_sweep
    returned)."""
    folder, result, _ = demo
    return folder / "sweep", result


@pytest.fixture
def sweep_copy(sweep, tmp_path):
    """A private copy of the session's sweep, for a test that adds runs to it or re-runs it.
    The copy is a sweep of its own folder: its source-only model goes under the name a sweep
    there gives it (the name's hash covers the output folder), so a sweep on the copy finds
    it done, as on the original."""
    out, result = sweep
    # (the source-only model's folder and log records are left out, then the model put back)
    copy = copy_tree(out, tmp_path / out.name, ignore=shutil.ignore_patterns("source_only_*"))
    take_source_only(out, copy)
    runs = copy / "runs.csv"
    runs.write_text(
        runs.read_text().replace(
            next(out.glob("source_only_*")).name, next(copy.glob("source_only_*")).name
        )
    )
    return copy, result


@pytest.fixture(scope="session")
def source_only(toy_root, tmp_path_factory) -> Path:
    """A source-only model trained by the kit on the toy (:func:`helpers.tiny`, 8 steps)."""
    from pixda_core.train import train_source_only

    from .helpers import tiny

    folder, _ = shared(
        tmp_path_factory, "source_only",
        lambda out: train_source_only(tiny(toy_root, out, run={"name": "so"})) and None,
    )  # fmt: skip
    return folder / "so" / "checkpoints" / "latest.pt"
