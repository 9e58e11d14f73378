"""Batch runs: notebook 03 once per (method, shots, seed) with papermill, then notebook 04.

    python -m pixda_core sweep --shots 1 5 --methods source_only finetune pixda --seeds 0 \\
        --source gta5 --preset toy --out results/toy_sweep

Layout of the sweep folder::

    <out>/<method>_<shots>shot_seed<seed>/   one run folder per combination
    <out>/source_only_<source>_<preset>_<hash>/   the source-only model they start from
    <out>/notebooks/                         the executed notebooks, one per run
    <out>/analysis/                          notebook 04's figures and tables
    <out>/summary.csv                        one row per run: method, shots, seed, source,
                                             miou, (miou_13), iou_<class>...
    <out>/failures.csv                       runs that failed and why (when any did)

A combination whose run folder holds ``metrics.json`` is skipped, so an interrupted sweep
resumes where it stopped (an unfinished run resumes from its last checkpoint). A failed run
is recorded and the sweep goes on; the exit code is the number of failed runs.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from .config import PRESETS, SOURCES
from .errors import ConfigError, run_cli
from .locks import held
from .methods import ADAPTATION, SOURCE_ONLY
from .train.cli import nest_overrides, parse_set

SWEEP_METHODS = (SOURCE_ONLY, *ADAPTATION)


def execute(notebook: str, output: Path, parameters: dict) -> str | None:
    """Run one of the kit's notebooks (the pristine ones, never a user's edited copy) with
    papermill into ``output``, in the base folder that relative paths are taken from; None
    on success, else a one-line reason."""
    import papermill as pm

    from .workflow import base_dir, notebooks_dir

    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        pm.execute_notebook(
            str(notebooks_dir() / notebook),
            str(output),
            parameters=parameters,
            cwd=str(base_dir()),
            progress_bar=False,
            log_output=False,
            kernel_name="python3",
        )
    except pm.PapermillExecutionError as exc:
        return f"{exc.ename}: {exc.evalue}".splitlines()[0]
    except Exception as exc:  # a kernel that died, a notebook that cannot be read
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


@contextmanager
def _lock(folder: Path):
    """One sweep at a time per folder: a second one waits instead of racing the first."""
    folder.mkdir(parents=True, exist_ok=True)

    def busy() -> None:
        print(f"another sweep is running in {folder}; waiting for it", file=sys.stderr, flush=True)

    with held(folder / ".sweep.lock", busy):
        yield


def run_sweep(
    out: str | os.PathLike,
    shots=(1, 5),
    methods=("source_only", "finetune", "pixda"),
    seeds=(0,),
    source: str = "gta5",
    preset: str = "toy",
    data_root: str = "data/toy",
    source_root: str | None = None,
    target_root: str | None = None,
    iterations: int | None = None,
    pretrain_iterations: int | None = None,
    overrides: dict | None = None,
    analysis: bool = True,
    init: str | None = None,
) -> dict:
    """Run the grid (see the module docstring). Returns ``{"summary": path, "failed": [...],
    "ran": [...], "skipped": [...]}``."""
    from .workflow import resolve

    out = resolve(out)
    unknown = [m for m in methods if m not in SWEEP_METHODS]
    if unknown:
        raise ConfigError(f"--methods {unknown[0]!r} is not one of {', '.join(SWEEP_METHODS)}")
    bad = [s for s in shots if s < 1]
    if bad:
        raise ConfigError(f"--shots {bad[0]}: shots are images per city, at least 1")
    common = {
        "data_root": str(resolve(data_root)),
        "source": source,
        "source_root": str(resolve(source_root)) if source_root else None,
        "target_root": str(resolve(target_root)) if target_root else None,
        "preset": preset,
        "out_dir": str(out),
        "overrides": overrides or {},
        "device": "auto",
        "init": init,
    }
    ran, skipped, failed = [], [], []
    with _lock(out):
        nb_dir = out / "notebooks"
        so_failed = None
        # the source-only model comes first: notebook 02, unless a finished one is there
        so_params = {**common, "iterations": pretrain_iterations}
        so_done = list(out.glob(f"source_only_{source}_{preset}_*/metrics.json"))
        if so_done and _matches_source_only(so_done, so_params):
            skipped.append("source_only")
        else:
            print(f"[sweep] source-only model ({source}, {preset} preset)", flush=True)
            executed = nb_dir / f"02_source_only_{source}_{preset}.ipynb"
            so_failed = execute("02_source_only_pretraining.ipynb", executed, so_params)
            (failed if so_failed else ran).append(("source_only", 0, None, so_failed))
        grid = [m for m in methods if m != "source_only"]
        for method, n, seed in itertools.product(grid, shots, seeds):
            name = f"{method}_{n}shot_seed{seed}"
            if (out / name / "metrics.json").exists():
                skipped.append(name)
                continue
            if so_failed:
                failed.append((method, n, seed, "the source-only model failed"))
                continue
            print(f"[sweep] {name}", flush=True)
            t0 = time.time()
            params = {
                **common,
                "method": method,
                "num_shots": n,
                "seed": seed,
                "iterations": iterations,
                "pretrain_iterations": pretrain_iterations,
                "run_name": name,
            }
            why = execute("03_few_shot_adaptation.ipynb", nb_dir / f"03_{name}.ipynb", params)
            if why:
                print(f"[sweep] {name} FAILED: {why}", flush=True)
                failed.append((method, n, seed, why))
            else:
                print(f"[sweep] {name} done in {time.time() - t0:.0f} s", flush=True)
                ran.append((method, n, seed, None))
        summary = _write_summary(out, methods, shots, seeds, source, preset)
        if failed:
            pd.DataFrame(failed, columns=["method", "shots", "seed", "error"]).to_csv(
                out / "failures.csv", index=False
            )
        elif (out / "failures.csv").exists():
            (out / "failures.csv").unlink()
        if analysis and summary is not None:
            why = execute(
                "04_per_class_error_visualization.ipynb",
                nb_dir / "04_per_class_error_visualization.ipynb",
                {"runs": [str(out)], "out_dir": str(out / "analysis"), "interactive": False},
            )
            if why:
                print(f"[sweep] analysis notebook FAILED: {why}", flush=True)
                failed.append(("analysis", None, None, why))
    return {"summary": summary, "failed": failed, "ran": ran, "skipped": skipped}


def _matches_source_only(done: list[Path], params: dict) -> bool:
    """Is one of the finished source-only runs the one these parameters describe?"""
    from .train import source_only_run
    from .workflow import make_config

    cfg = make_config(
        params["preset"],
        params["data_root"],
        params["source"],
        params["source_root"],
        params["target_root"],
        pretrain_iterations=params["iterations"],
        init=params["init"],
        out_dir=params["out_dir"],
        device=params["device"],
        overrides=params["overrides"],
    )
    name = source_only_run(cfg).run.name
    return any(p.parent.name == name for p in done)


def _write_summary(out: Path, methods, shots, seeds, source, preset) -> Path | None:
    """``summary.csv`` over the runs of this grid (source-only when it was asked for)."""
    from .analysis import load_runs, summary_table
    from .errors import DataError

    try:
        runs = load_runs(out)
    except DataError:
        return None
    wanted = (
        runs["method"].isin(methods)
        & runs["shots"].isin(shots)
        & runs["seed"].isin(seeds)
        & (runs["source"] == source)
    )
    if "source_only" in methods:
        wanted |= (
            (runs["method"] == "source_only")
            & (runs["source"] == source)
            & runs["run"].str.startswith(f"source_only_{source}_{preset}_")
        )
    table = summary_table(runs[wanted])
    path = out / "summary.csv"
    table.to_csv(path, index=False)
    return path


@run_cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="pixda sweep",
        description="Run notebook 03 for every (method, shots, seed) with papermill, then "
        "notebook 04; write summary.csv. Exit code: the number of failed runs.",
    )
    p.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    p.add_argument(
        "--methods",
        nargs="+",
        default=["source_only", "finetune", "pixda"],
        help=f"any of {', '.join(SWEEP_METHODS)}",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--source", choices=SOURCES, default="gta5")
    p.add_argument("--preset", choices=sorted(PRESETS), default="toy")
    p.add_argument("--out", required=True, help="the sweep folder (results/<sweep>)")
    p.add_argument(
        "--data-root",
        default="data/toy",
        help="folder holding gta5/, synthia/, cityscapes/ (default: the toy benchmark)",
    )
    p.add_argument("--source-root", help="source dataset root (overrides --data-root)")
    p.add_argument("--target-root", help="Cityscapes root (overrides --data-root)")
    p.add_argument("--iterations", type=int, help="adaptation iterations (default: preset's)")
    p.add_argument(
        "--pretrain-iterations", type=int, help="source-only iterations (default: the preset's)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        type=parse_set,
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="any other config value",
    )
    p.add_argument(
        "--init",
        help="initial weights of the source-only model (a file, or 'none'); default: the "
        "preset's (as run.py's --init)",
    )
    p.add_argument("--no-analysis", action="store_true", help="skip notebook 04")
    args = p.parse_args(argv)
    overrides = nest_overrides(args.overrides)
    result = run_sweep(
        args.out,
        args.shots,
        args.methods,
        args.seeds,
        args.source,
        args.preset,
        args.data_root,
        args.source_root,
        args.target_root,
        args.iterations,
        args.pretrain_iterations,
        overrides,
        analysis=not args.no_analysis,
        init=args.init,
    )
    n_failed = len(result["failed"])
    print(
        f"[sweep] ran {len(result['ran'])}, skipped {len(result['skipped'])} (already done), "
        f"failed {n_failed}"
    )
    if result["summary"]:
        print(f"[sweep] summary: {result['summary']}")
    for method, n, seed, why in result["failed"]:
        print(f"[sweep] failed: {method} shots={n} seed={seed}: {why}", file=sys.stderr)
    return min(n_failed, 125)
