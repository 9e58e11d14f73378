"""``pixda sweep``: the command line of :mod:`pixda_core.sweep` (run a grid here or on
SLURM, follow it with --status, collect it with --collect)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from .config import PRESETS, SOURCES
from .errors import ConfigError, run_cli
from .executors import Local, Slurm, SlurmOptions
from .gap_sweep import collect_gaps, gap_status, read_gap_grid, run_gap_sweep
from .methods import SOURCE_ONLY
from .sweep import run_sweep
from .sweep_collect import SweepResult, collect
from .sweep_grid import SWEEP_METHODS, Grid
from .sweep_state import status_table
from .train.flags import nest_overrides, parse_set


@run_cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="pixda sweep",
        description="Run notebook 03 for every (method, shots, seed) with papermill, here or "
        "on SLURM, then notebook 04; write summary.csv. Exit code: the number of failed runs.",
    )
    p.add_argument("--out", help="the sweep folder (results/<sweep>)")
    p.add_argument("--status", metavar="OUT", help="show the state of the sweep in OUT")
    p.add_argument("--collect", metavar="OUT", help="write OUT's summary.csv, run notebook 04")
    p.add_argument(
        "--plan",
        action="store_true",
        help="print the runs, the jobs and the hours they take (from step times measured with "
        "`pixda bench` and the sweep's finished runs) and stop: nothing is written",
    )
    p.add_argument(
        "--setting",
        metavar="HASH",
        help="--collect: notebook 04's tables over the runs of this one setting (a hash its "
        "settings table lists); default: every setting, each in rows of its own",
    )
    g = p.add_argument_group("the grid")
    g.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    g.add_argument(
        "--methods",
        nargs="+",
        default=[SOURCE_ONLY, "finetune", "pixda"],
        help=f"any of {', '.join(SWEEP_METHODS)}, a plug-in package's method, or a class named "
        "as module:Class or path/to/file.py:Class (imported in every job; docs/add-a-method.md)",
    )
    g.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    g.add_argument(
        "--split-seeds",
        type=int,
        nargs="+",
        default=[],
        help="draw the target split with each of these seeds too (variance over "
        "splits; default: the published split, else one drawn with the run's seed)",
    )
    g.add_argument(
        "--source-only-per-seed",
        action="store_true",
        help="train a source-only model per training seed (each seed's runs adapt from "
        "its own), so that intervals over seeds include the source-only model's spread; "
        "default: one source-only model (the preset's seed) for every run",
    )
    g.add_argument(
        "--gaps",
        type=float,
        nargs="+",
        default=[],
        metavar="G",
        help="run the grid on toy benchmarks that differ only in their domain gap (written "
        "once as <data-root>_gap<G>, each into <out>/gap<G>), then mIoU against the gap",
    )
    g.add_argument("--source", choices=SOURCES, default="gta5")
    g.add_argument("--preset", choices=sorted(PRESETS), default="toy")
    g.add_argument(
        "--data-root",
        default="data/toy",
        help="folder holding gta5/, synthia/, cityscapes/ (default: the toy benchmark)",
    )
    g.add_argument("--source-root", help="source dataset root (overrides --data-root)")
    g.add_argument("--target-root", help="Cityscapes root (overrides --data-root)")
    g.add_argument("--iterations", type=int, help="adaptation iterations (default: preset's)")
    g.add_argument(
        "--pretrain-iterations", type=int, help="source-only iterations (default: the preset's)"
    )
    g.add_argument(
        "--init",
        help="initial weights of the source-only model (a file, or "
        "'none'); default: the preset's (as run.py's --init)",
    )
    g.add_argument(
        "--set",
        dest="overrides",
        type=parse_set,
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="any other config value",
    )
    g.add_argument("--no-analysis", action="store_true", help="skip notebook 04")
    e = p.add_argument_group("where it runs")
    e.add_argument(
        "--executor",
        choices=("local", "slurm"),
        default="local",
        help="this machine (default) or a SLURM cluster, through submitit",
    )
    e.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="local: notebooks at once (each gets the least busy GPU)",
    )
    e.add_argument(
        "--time-limit",
        type=int,
        metavar="MIN",
        help="minutes a run may take (SLURM: the job's --time; a job stopped at "
        "its limit is requeued and resumes)",
    )
    e.add_argument("--partition", help="SLURM partition (default: the cluster's default one)")
    e.add_argument("--gpus-per-job", type=int, default=0, help="SLURM: GPUs per run (default 0)")
    e.add_argument(
        "--cpus-per-job",
        type=int,
        default=4,
        help="SLURM: CPUs per run (default 4; loader workers and the CPU's own work)",
    )
    e.add_argument(
        "--mem-gb",
        type=int,
        help="SLURM: memory per run in GB (default: the partition's default per job); CPUs, "
        "memory and GPUs asked for are checked against the partition's nodes (sinfo) before "
        "anything is submitted",
    )
    e.add_argument("--account", help="SLURM account")
    e.add_argument("--qos", help="SLURM QoS")
    e.add_argument(
        "--parallel", type=int, default=0, help="SLURM: array tasks at once (default: no limit)"
    )
    e.add_argument(
        "--sbatch",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other sbatch option, e.g. --sbatch constraint=a100",
    )
    e.add_argument(
        "--wait",
        action="store_true",
        help="SLURM: follow the jobs until they end, then report like a local sweep",
    )
    args = p.parse_args(argv)

    if args.status or args.collect:
        _must_exist(args.status or args.collect, "--status" if args.status else "--collect")
    if args.status:
        table = gap_status(args.status) if read_gap_grid_safe(args.status) else None
        table = status_table(args.status) if table is None else table
        print(table.to_string(index=False) if len(table) else f"no runs in {args.status}")
        counts = table["state"].value_counts().to_dict() if len(table) else {}
        print("[sweep] " + ", ".join(f"{v} {k}" for k, v in counts.items()))
        return 0
    if args.setting is not None and not args.collect:
        p.error("--setting goes with --collect OUT")
    if args.collect:
        return _collect_command(args.collect, not args.no_analysis, args.setting)
    if not args.out:
        p.error("--out is required (or --status OUT / --collect OUT)")
    for flag, seeds in (("--seeds", args.seeds), ("--split-seeds", args.split_seeds)):
        bad = [x for x in seeds if not 0 <= x < 2**32]
        if bad:
            p.error(f"{flag} {bad[0]}: expected integers from 0 to {2**32 - 1} (numpy's range)")
    grid, executor = _grid(args), _executor(args)
    if args.plan:
        return _plan(grid, executor, args.out, args.gaps)
    if args.gaps:
        result = run_gap_sweep(grid, args.out, args.gaps, executor, not args.no_analysis)
    else:
        result = run_sweep(grid, args.out, executor, not args.no_analysis)
    return _report(result)


def _grid(args) -> Grid:
    """The grid the flags ask for, checked."""
    return Grid(
        methods=args.methods,
        shots=args.shots,
        seeds=args.seeds,
        split_seeds=args.split_seeds,
        source=args.source,
        preset=args.preset,
        data_root=args.data_root,
        source_root=args.source_root,
        target_root=args.target_root,
        iterations=args.iterations,
        pretrain_iterations=args.pretrain_iterations,
        overrides=nest_overrides(args.overrides),
        init=args.init,
        source_only_per_seed=args.source_only_per_seed,
    )


def _executor(args) -> Local | Slurm:
    """Where the flags run the grid: here (--jobs, --time-limit) or on SLURM (its options
    checked either way)."""
    extra = {}
    for item in args.sbatch:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--sbatch {item!r} is not KEY=VALUE (e.g. constraint=a100)")
        extra[key.removeprefix("--")] = value
    options = SlurmOptions(
        args.partition,
        args.gpus_per_job,
        args.cpus_per_job,
        args.mem_gb,
        args.time_limit or 24 * 60,
        args.account,
        args.qos,
        extra,
        args.parallel,
    )
    if args.executor == "local":
        return Local(args.jobs, args.time_limit)
    return Slurm(options, planned_time=args.time_limit is None, wait=args.wait)


def _plan(grid: Grid, executor: Local | Slurm, out: str, gaps) -> int:
    """``--plan``: the plan of the grid the other flags give (over gaps: each gap's runs,
    planned on the given root; their lengths and step times do not depend on the gap)."""
    from .gap_sweep import check_gaps, gap_folder
    from .paths import resolve
    from .sweep_plan import plan_sweep, render

    out = resolve(out)
    gaps = check_gaps(gaps, grid.source_root, grid.target_root) if gaps else (None,)
    for gap in gaps:
        here = out if gap is None else out / gap_folder(gap)
        if gap is not None:
            print(f"[plan] gap {gap:g}")
        print(render(plan_sweep(grid, here, executor), here))
    return 0


def read_gap_grid_safe(out: str) -> bool:
    """Is ``out`` a sweep over gaps? (A folder without sweep.json is not.)"""
    from pathlib import Path

    return (Path(out) / "sweep.json").is_file() and read_gap_grid(out) is not None


def _must_exist(out: str, flag: str) -> None:
    from .paths import resolve

    if not resolve(out).is_dir():
        raise ConfigError(f"{flag} {out}: no such sweep folder")


def _collect_command(out: str, analysis: bool, setting: str | None = None) -> int:
    from .paths import resolve

    gaps = read_gap_grid_safe(out)
    table = gap_status(out) if gaps else status_table(out)
    busy = table[table["state"].isin(["pending", "running"])]
    if len(busy):
        raise ConfigError(
            f"{len(busy)} run(s) of {resolve(out)} have not ended yet "
            f"({', '.join(busy['run'])}); collect once they have"
        )
    if setting is not None:  # checked before anything is written; notebook 04 keeps it
        from .analysis import choose_setting, load_runs

        choose_setting(load_runs(resolve(out)), setting)
        if gaps:
            raise ConfigError("--setting: a sweep over gaps keeps each gap apart already")
    result = collect_gaps(out, analysis) if gaps else collect(out, analysis and setting is None)
    if analysis and setting is not None and result.summary is not None:
        result = replace(result, failed=[*result.failed, *_analysis(resolve(out), setting)])
    return _report(replace(result, skipped=list(table["run"])))


def _analysis(out, setting: str) -> list[tuple]:
    """Notebook 04 over the runs of one ``setting`` under ``out``, into ``out/analysis``
    (:func:`pixda_core.sweep.run_analysis` with the setting); [] or the failure."""
    from .notebook_run import NB_ANALYSIS, execute

    params = {"runs": [str(out)], "out_dir": str(out / "analysis"), "interactive": False,
              "setting": setting}  # fmt: skip
    why = execute(NB_ANALYSIS, out / "notebooks" / NB_ANALYSIS, params)
    if not why:
        return []
    print(f"[sweep] analysis notebook FAILED: {why}", flush=True)
    return [("analysis", None, None, why)]


def _report(result: SweepResult) -> int:
    n_failed = len(result.failed)
    print(
        f"[sweep] ran {len(result.ran)}, skipped {len(result.skipped)} (already done "
        f"or queued), failed {n_failed}"
    )
    if result.summary:
        print(f"[sweep] summary: {result.summary}")
    for method, n, seed, why in result.failed:
        print(f"[sweep] failed: {method} shots={n} seed={seed}: {why}", file=sys.stderr)
    return min(n_failed, 125)
