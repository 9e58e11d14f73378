"""Sweeps over the toy benchmark's domain gap: the same grid on toy benchmarks that differ
only in ``--gap``, to see where adaptation starts to pay off.

    python -m pixda_core sweep --gaps 0 0.5 1 1.5 --methods source_only finetune pixda oracle \\
        --shots 1 --seeds 0 1 2 --out results/gap_sweep

Layout: ``<data-root>_gap<G>/`` beside the toy benchmark given as ``--data-root`` (written
once with its settings and that gap, then reused; the given root serves its own gap), and
``<out>/gap<G>/`` a sweep folder per gap (:mod:`pixda_core.sweep`), plus at the top:

    <out>/sweep.json      the grid and its gaps
    <out>/summary.csv     every gap's runs, with a ``gap`` column
    <out>/analysis/       notebook 04 over all of them: mIoU against the gap, then the
                          per-class figures at one gap
"""

from __future__ import annotations

import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from .data import toy
from .errors import ConfigError, DataError

if TYPE_CHECKING:
    from .executors import Local, Slurm
    from .sweep_collect import SweepResult
    from .sweep_grid import Grid


def gap_folder(gap: float) -> str:
    """``gap0``, ``gap0.5``, ``gap1``: a sweep folder's (or a toy root's suffix) name."""
    return f"gap{gap:g}"


def base_spec(data_root: Path) -> toy.ToySpec:
    """The spec of the toy benchmark at ``data_root`` (written with the defaults when the
    folder does not exist yet), checked current."""
    if not (data_root / "toy.json").is_file():
        if data_root.exists():
            raise ConfigError(
                f"--gaps needs --data-root to be a toy benchmark (a folder with toy.json); "
                f"{data_root} is not one"
            )
        print(f"{data_root} does not exist: writing the toy benchmark there", flush=True)
        toy.generate(data_root)
    data = toy.check_current(data_root)
    fields = {k: v for k, v in data.items() if k != "version"}
    return toy.ToySpec(**{**fields, "size": tuple(fields["size"])})


def toy_at_gap(data_root: str | os.PathLike, gap: float) -> Path:
    """The toy benchmark with ``data_root``'s settings and domain gap ``gap``: ``data_root``
    itself when it has that gap, else ``<data_root>_gap<G>`` (written when missing)."""
    root = Path(data_root)
    spec = base_spec(root)
    if gap == spec.gap:
        return root
    there = root.with_name(f"{root.name}_{gap_folder(gap)}")
    if not (there / "toy.json").is_file():
        print(f"writing the toy benchmark at gap {gap:g} to {there}", flush=True)
    toy.generate(there, replace(spec, gap=gap), progress=False)
    return there


def check_gaps(gaps, source_root, target_root) -> tuple[float, ...]:
    bad = [g for g in gaps if not g >= 0]
    if bad:
        raise ConfigError(f"--gaps {bad[0]}: expected values >= 0")
    if source_root or target_root:
        raise ConfigError(
            "--gaps writes a toy benchmark per gap from --data-root: leave out --source-root "
            "and --target-root"
        )
    return tuple(dict.fromkeys(float(g) for g in gaps))


def run_gap_sweep(
    grid: Grid, out, gaps, executor: Local | Slurm | None = None, analysis: bool = True
) -> SweepResult:
    """``grid`` (its ``data_root`` a toy benchmark) once per gap, each in ``<out>/gap<G>``
    (:func:`pixda_core.sweep.run_sweep`); then the summary over the gaps and notebook 04.
    Returns the sweeps' results as one."""
    from .executors import Local, check_slurm
    from .paths import resolve
    from .sweep import run_sweep
    from .sweep_collect import SweepResult
    from .sweep_state import lock_folder, record_grid

    executor = executor or Local()
    gaps = check_gaps(gaps, grid.source_root, grid.target_root)
    if not isinstance(executor, Local):  # before the toys and sweep.json are written
        check_slurm(executor.options)
    out, root = resolve(out), resolve(grid.data_root)
    with lock_folder(out):
        record_grid(out, asdict(replace(grid, data_root=str(root))), gaps)
    merged = SweepResult()
    for gap in gaps:
        print(f"[sweep] gap {gap:g}", flush=True)
        here = replace(grid, data_root=str(toy_at_gap(root, gap)))
        merged += run_sweep(here, out / gap_folder(gap), executor, analysis=False)
    if isinstance(executor, Local) or executor.wait:
        done = collect_gaps(out, analysis, merged.failed)
        merged = replace(merged, summary=done.summary, failed=done.failed)
    else:
        print(f"[sweep] when the jobs have ended: pixda sweep --collect {out}", flush=True)
    return merged


def read_gap_grid(out: str | os.PathLike) -> dict | None:
    """The grid of a sweep over gaps (``gaps`` in its sweep.json), or None for a sweep folder
    of one benchmark."""
    from .sweep_state import read_grid

    grid = read_grid(Path(out))
    gaps = grid.get("gaps")
    if gaps is None:
        return None
    if not isinstance(gaps, list) or not all(isinstance(g, int | float) for g in gaps):
        raise DataError(
            f"sweep record {Path(out) / 'sweep.json'} is damaged (gaps is not a list of "
            "numbers); delete it and re-run the sweep command, which writes it again"
        )
    return grid


def collect_gaps(out: str | os.PathLike, analysis: bool = True, failed=None) -> SweepResult:
    """``<out>/summary.csv`` over every gap's runs (with ``gap``), and notebook 04 over them.
    ``failed``: what a sweep just run reported (each gap's folder is collected already);
    None (``--collect``): each gap's folder is collected from its records first."""
    from .paths import resolve
    from .sweep_collect import SweepResult, collect, run_analysis

    out = resolve(out)
    grid = read_gap_grid(out)
    known = failed is not None
    failed = list(failed or [])
    frames = []
    for gap in grid["gaps"]:
        sub = out / gap_folder(gap)
        if not (sub / "sweep.json").is_file():
            continue
        if not known:
            failed += collect(sub, analysis=False).failed
        if (sub / "summary.csv").is_file():
            frames.append(pd.read_csv(sub / "summary.csv").assign(gap=gap))
    path = out / "summary.csv"
    if not frames:
        return SweepResult(None, failed)
    pd.concat(frames, ignore_index=True).to_csv(path, index=False)
    if analysis:
        failed += run_analysis(out)
    return SweepResult(path, failed)


def gap_status(out: str | os.PathLike) -> pd.DataFrame:
    """``sweep --status`` over every gap: the runs of ``<out>/gap<G>`` named ``gap<G>/run``."""
    from .paths import resolve
    from .sweep_state import STATUS_COLUMNS, status_table

    out = resolve(out)
    frames = []
    for gap in read_gap_grid(out)["gaps"]:
        sub = out / gap_folder(gap)
        if (sub / "runs.csv").is_file():
            table = status_table(sub)
            frames.append(table.assign(run=gap_folder(gap) + "/" + table["run"]))
    if not frames:
        return pd.DataFrame(columns=STATUS_COLUMNS)
    return pd.concat(frames, ignore_index=True)
