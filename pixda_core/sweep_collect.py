"""A sweep's results: ``summary.csv`` over its grid, ``failures.csv``, notebook 04 over its
runs, and what a sweep did (:class:`SweepResult`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .errors import ConfigError, DataError
from .executors import read_status
from .methods import SOURCE_ONLY, method_class
from .notebook_run import NB_ANALYSIS, execute
from .sweep_state import read_grid, read_runs, state_of


@dataclass(frozen=True)
class SweepResult:
    """What a sweep command did: the summary it wrote (None: none yet, e.g. jobs submitted),
    what failed as (method, shots, seed, why), what ran as (method, shots, seed, None), the
    runs it skipped (done, or queued already) and the SLURM jobs it submitted."""

    summary: Path | None = None
    failed: list[tuple] = field(default_factory=list)
    ran: list[tuple] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    submitted: list[str] = field(default_factory=list)

    def __add__(self, other: SweepResult) -> SweepResult:
        """Two sweeps' results as one (a sweep over gaps: one per gap); the summary is
        ``other``'s."""
        return SweepResult(
            other.summary,
            self.failed + other.failed,
            self.ran + other.ran,
            self.skipped + other.skipped,
            self.submitted + other.submitted,
        )


def collect(
    out: str | os.PathLike, analysis: bool = True, failed: list | None = None
) -> SweepResult:
    """``summary.csv`` over the sweep's grid, ``failures.csv`` for what failed, and notebook
    04 over the runs (a local sweep's last step; on SLURM, its last job)."""
    from .paths import resolve

    out = resolve(out)
    grid = read_grid(out)
    summary = _write_summary(
        out, grid["methods"], grid["shots"], grid["seeds"], grid["source"], grid["preset"]
    )
    if failed is None:  # from the jobs' records: what ended without finishing
        failed = [
            (
                r.method,
                r.shots,
                r.seed,
                read_status(out / "logs" / f"{r.name}.json").get("error") or "did not finish",
            )
            for r in read_runs(out).itertuples()
            if state_of(out, r.name, {}, None) == "failed"
        ]
    if failed:
        pd.DataFrame(failed, columns=["method", "shots", "seed", "error"]).to_csv(
            out / "failures.csv", index=False
        )
    elif (out / "failures.csv").exists():
        (out / "failures.csv").unlink()
    if analysis and summary is not None:
        failed = [*failed, *run_analysis(out)]
    return SweepResult(summary, failed)


def run_analysis(out: Path) -> list[tuple]:
    """Notebook 04 over every run under ``out``, into ``out/analysis``; [] or the failure."""
    why = execute(
        NB_ANALYSIS,
        out / "notebooks" / NB_ANALYSIS,
        {"runs": [str(out)], "out_dir": str(out / "analysis"), "interactive": False},
    )
    if not why:
        return []
    print(f"[sweep] analysis notebook FAILED: {why}", flush=True)
    return [("analysis", None, None, why)]


def collect_result(out: Path) -> SweepResult:
    """What the collecting job left: the summary and the failures."""
    failures = out / "failures.csv"
    failed = (
        [tuple(r) for r in pd.read_csv(failures).itertuples(index=False)]
        if (failures.is_file())
        else []
    )
    summary = out / "summary.csv"
    return SweepResult(summary if summary.is_file() else None, failed)


def _write_summary(out: Path, methods, shots, seeds, source, preset) -> Path | None:
    """``summary.csv`` over the runs of this grid (source-only when it was asked for)."""
    from .analysis import load_runs, summary_table

    path = out / "summary.csv"
    try:
        runs = load_runs(out)
    except DataError as exc:
        said = f"[sweep] summary.csv not written: {exc}"
        if path.exists():  # it would no longer describe the runs
            path.unlink()
            said += f"; the previous {path} was removed"
        print(said, flush=True)
        return None
    methods = [method_name(m) for m in methods]  # (a plug-in's spec -> its name)
    every = [m for m in methods if _all_target(m)]  # the oracle: any shots
    wanted = (
        runs["method"].isin(methods)
        & (runs["shots"].isin(shots) | runs["method"].isin(every))
        & runs["seed"].isin(seeds)
        & (runs["source"] == source)
    )
    if SOURCE_ONLY in methods:
        wanted |= (
            (runs["method"] == SOURCE_ONLY)
            & (runs["source"] == source)
            & runs["run"].str.startswith(f"source_only_{source}_{preset}_")
        )
    table = summary_table(runs[wanted])
    table.to_csv(path, index=False)
    return path


def method_name(spec: str) -> str:
    """A method's name as its runs record it (a spec's class's name; the spec itself where it
    no longer imports: then no run of it is found)."""
    try:
        return method_class(spec).name
    except ConfigError:
        return spec


def _all_target(name: str) -> bool:
    try:
        return method_class(name).all_target
    except ConfigError:
        return False
