"""Batch runs: the source-only model (notebook 02), notebook 03 once per (method, shots, seed
[, split seed]) with papermill, then notebook 04 over the results; here or on a SLURM cluster.

    python -m pixda_core sweep --shots 1 5 --methods source_only finetune pixda --seeds 0 1 2 \\
        --source gta5 --preset toy --out results/toy_sweep [--jobs 2]
    python -m pixda_core sweep ...same grid... --executor slurm --partition gpu \\
        --gpus-per-job 1 --out /shared/sweep        # submits and returns; --wait to follow
    python -m pixda_core sweep --status /shared/sweep    # a table: run, state, step, mIoU
    python -m pixda_core sweep --collect /shared/sweep   # summary.csv and notebook 04

In Python, the same sweep is a grid, a folder and an executor::

    from pixda_core.executors import Local, Slurm, SlurmOptions
    from pixda_core.sweep import run_sweep
    from pixda_core.sweep_grid import Grid

    grid = Grid(methods=("source_only", "finetune", "pixda"), shots=(1, 5), seeds=(0, 1, 2))
    result = run_sweep(grid, "results/toy_sweep", Local(jobs=2))  # a SweepResult
    # or: Slurm(SlurmOptions(partition="gpu", gpus_per_job=1), wait=True)

The command line is :mod:`pixda_core.sweep_cli`; the grid and its runs' specs
:mod:`pixda_core.sweep_grid`; the folder's records and the runs' states
:mod:`pixda_core.sweep_state`; the plan :mod:`pixda_core.sweep_plan`; the summary and
notebook 04 :mod:`pixda_core.sweep_collect`. Layout of the sweep folder::

    <out>/<method>_<N>shot_seed<S>[_split<K>]/   one run folder per combination
    <out>/source_only_<source>_<preset>_<hash>/  the source-only model they start from
    <out>/notebooks/                             the executed notebooks
    <out>/logs/<run>.log, <out>/logs/<run>.json  what each notebook printed, as it ran; its
                                                 job's record (state, job id, host, GPUs)
    <out>/runs.csv                               every run asked for here, executor, job id
    <out>/sweep.json                             the grid summary.csv is made of
    <out>/analysis/                              notebook 04's figures and tables
    <out>/summary.csv, <out>/failures.csv        one row per finished run; runs that failed
    <out>/.submitit/                             submitit's job files

A run whose folder holds a readable ``metrics.json`` is done and skipped (a damaged one is run
again: its resume evaluates the finished model anew); one still queued on SLURM
(pending, running, requeued) is left alone; any other (never started, failed, cancelled,
timed out) is started again and resumes from its last checkpoint. So re-running the same
command finishes an interrupted sweep and never runs a combination twice.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from .errors import SlurmError, user_message
from .executors import (
    Local,
    Slurm,
    SlurmOptions,
    Task,
    check_slurm,
    run_here,
    slurm_queue,
    submit_collect,
    submit_to_slurm,
)
from .methods import SOURCE_ONLY, method_class
from .runspec import RunSpec
from .sweep_collect import SweepResult, collect, collect_result, method_name
from .sweep_grid import Grid, tasks_of
from .sweep_state import (
    lock_folder,
    read_runs,
    record_grid,
    record_runs,
    state_of,
    status_table,
)


def run_sweep(
    grid: Grid, out: str | Path, executor: Local | Slurm | None = None, analysis: bool = True
) -> SweepResult:
    """Run the runs of ``grid`` into the sweep folder ``out`` that are not done or queued
    (:class:`~pixda_core.executors.Local`, the default) or submit them (``Slurm``); see the
    module docstring. A local sweep, or one on SLURM with ``wait``, ends with the summary
    and notebook 04 (``analysis``)."""
    from .paths import resolve

    out = resolve(out)
    executor = executor or Local()
    if isinstance(executor, Slurm):  # the cluster answers and takes such jobs: before writing
        check_slurm(executor.options)
    with lock_folder(out):
        planned = _plan(grid, out, executor)
        expected = {r.name: r.seconds for r in planned.runs} if planned else {}
        record_grid(out, asdict(grid))
        so, tasks = tasks_of(grid, out, expected)
        (out / "logs").mkdir(exist_ok=True)
        runs = read_runs(out)
        jobs_of = dict(zip(runs["name"], runs["job_id"].fillna(""), strict=True))
        queue = slurm_queue(list(jobs_of.values()))
        states = {t.name: state_of(out, t.name, queue, jobs_of.get(t.name)) for t in (*so, *tasks)}
        skipped = [
            t.name for t in (*so, *tasks) if states[t.name] in ("done", "pending", "running")
        ]
        todo = [t for t in tasks if states[t.name] in ("failed", "missing")]
        so_todo = [t for t in so if states[t.name] in ("failed", "missing")]
        if isinstance(executor, Local):
            result = _run_here(out, grid, so, so_todo, todo, executor, analysis)
            return replace(result, skipped=skipped)
        limits = _limits(planned, executor)
        result = _submit(out, so, so_todo, todo, jobs_of, states, limits, skipped, analysis)
    if executor.wait:  # outside the lock: another sweep command may add runs meanwhile
        follow(out, result.submitted)
        done = collect_result(out)
        result = replace(result, summary=done.summary, failed=done.failed)
    return result


def _plan(grid: Grid, out: Path, executor: Local | Slurm):
    """The sweep's plan (:mod:`pixda_core.sweep_plan`), for the times it records with each run
    and SLURM's time limits; where it cannot be made (a damaged step-time store, a run's bad
    value) that is said, and the sweep goes on."""
    from .errors import PixdaError
    from .sweep_plan import plan_sweep

    try:
        return plan_sweep(grid, out, executor)
    except PixdaError as exc:  # (a run's bad value fails in its notebook, counted there)
        print(f"[sweep] no time plan: {user_message(exc)}", flush=True)
        return None


def _limits(planned, executor: Slurm) -> dict[str, SlurmOptions]:
    """The SLURM options of the source-only job and of the array: with ``planned_time``,
    --time from the plan (:meth:`~pixda_core.sweep_plan.SweepPlan.time_limit_min`), else
    (or where nothing was measured) the options' own, said either way."""
    from .sweep_plan import MARGIN_FACTOR, MARGIN_MIN

    slurm = executor.options
    if not executor.planned_time:
        return {"source_only": slurm, "array": slurm}
    out = {}
    for which, so in (("source_only", True), ("array", False)):
        limit = planned.time_limit_min(so) if planned is not None else None
        out[which] = replace(slurm, time_min=limit) if limit else slurm
    said = {k: f"{o.time_min} min" for k, o in out.items()}
    if planned is not None and not planned.unmeasured:
        print(f"[sweep] SLURM --time from the plan on {planned.device} (its longest run x "
              f"{MARGIN_FACTOR:g} + {MARGIN_MIN} min): source-only job {said['source_only']}, "
              f"array {said['array']}", flush=True)  # fmt: skip
    else:
        print(
            f"[sweep] SLURM --time {slurm.time_min} min: no step time measured for the "
            "plan (`pixda sweep ... --plan` says how); --time-limit sets it",
            flush=True,
        )
    return out


def _run_here(out, grid, so, so_todo, todo, executor: Local, analysis) -> SweepResult:
    from tqdm.auto import tqdm

    ran, failed = [], []
    folder = out / ".submitit"
    meta = {t.name: t for t in todo}
    jobs, time_limit = executor.jobs, executor.time_limit

    def rows(tasks):
        return [_row(t, "local", None) for t in tasks]

    if so_todo:
        many = f"{len(so_todo)} source-only models" if len(so_todo) > 1 else "source-only model"
        print(f"[sweep] {many} ({grid.source}, {grid.preset} preset)", flush=True)
        record_runs(out, rows(so_todo))
        whys = run_here(so_todo, folder, min(jobs, len(so_todo)), time_limit)
        bad = set()
        for t in so_todo:
            why = whys[t.name]
            (failed if why else ran).append((SOURCE_ONLY, 0, _so_seed(t), why))
            if why:
                print(f"[sweep] source-only model FAILED: {why} (log: {t.log})", flush=True)
                bad.add(t.name)
        start = _start_of(grid, so)
        failed += [(*_key(t), "the source-only model failed") for t in todo if start(t) in bad]
        todo = [t for t in todo if start(t) not in bad]
    record_runs(out, rows(todo))
    bar = tqdm(
        total=len(todo),
        desc="sweep",
        unit="run",
        file=sys.stderr,
        disable=not todo or not sys.stderr.isatty(),
    )
    started = time.time()

    def progress(task: Task, why: str | None) -> None:
        bar.update(1)
        if why:
            bar.write(f"[sweep] {task.name} FAILED: {why} (log: {task.log})")
            failed.append((*_key(meta[task.name]), why))
        else:
            bar.write(f"[sweep] {task.name} done ({time.time() - started:.0f} s into the sweep)")
            ran.append((*_key(meta[task.name]), None))

    for t in todo:
        print(f"[sweep] {t.name}", flush=True)
    run_here(todo, folder, jobs, time_limit, progress)
    bar.close()
    return replace(collect(out, analysis, failed), ran=ran)


def _key(task: Task) -> tuple:
    return (method_name(task.spec.method), _shots(task.spec), task.spec.seed)


def _shots(spec: RunSpec):
    """A run's shots as reports give them: 0 for a source-only model, "all" for the oracle."""
    if spec.is_source_only:
        return 0
    return "all" if method_class(spec.method).all_target else spec.num_shots


def _so_seed(task: Task) -> int | None:
    """The seed of a source-only task (None: the preset's)."""
    return task.spec.seed


def _start_of(grid: Grid, so: list[Task]):
    """task -> the name of the source-only task it adapts from."""
    by_seed = {_so_seed(t): t.name for t in so}
    if grid.source_only_per_seed:
        return lambda task: by_seed[task.spec.seed]
    return lambda task: so[0].name


def _row(task: Task, executor: str, job_id: str | None) -> dict:
    spec = task.spec
    return {
        "name": task.name,
        "method": spec.method,
        "shots": _shots(spec),
        "seed": spec.seed,
        "split_seed": spec.split_seed,
        "executor": executor,
        "job_id": job_id,
        "submitted": time.time(),
        "expected_s": task.expected_s,
    }


def _submit(out, so, so_todo, todo, jobs_of, states, limits, skipped, analysis) -> SweepResult:
    """SLURM: the source-only job (when needed), the runs as one array after it, and a last
    job that collects the results when they have all ended. sbatch refusing one of them
    (the controller gone since the check) is one line saying what was submitted before it:
    each job is in runs.csv as soon as it is queued, so the same command submits the rest."""
    folder = out / ".submitit"
    options = limits["array"]
    after, new, ids = [], [], []
    try:
        if so_todo:
            new = submit_to_slurm(so_todo, folder, limits["source_only"], name="pixda-source-only")
            record_runs(out, [_row(t, "slurm", i) for t, i in zip(so_todo, new, strict=True)])
            after = list(new)
            for t, i in zip(so_todo, new, strict=True):
                print(f"[sweep] source-only model {t.name}: job {i}", flush=True)
        # those still queued from an earlier command
        after += [jobs_of[t.name] for t in so if states[t.name] in ("pending", "running")]
        ids = submit_to_slurm(todo, folder, options, after, name="pixda-runs")
        record_runs(out, [_row(t, "slurm", i) for t, i in zip(todo, ids, strict=True)])
        for t, i in zip(todo, ids, strict=True):
            print(f"[sweep] {t.name}: job {i}", flush=True)
        queued = [jobs_of[n] for n in skipped if states[n] in ("pending", "running")]
        submitted = new + ids
        if submitted or queued:
            collector = submit_collect(
                collect, (out, analysis), folder, options, submitted + queued
            )
            print(f"[sweep] collecting job {collector} runs when they have ended", flush=True)
            submitted.append(collector)
    except SlurmError as exc:
        raise SlurmError(f"--executor slurm: {exc}; {_kept(out, new + ids)}") from None
    print(f"[sweep] submitted {len(submitted)} job(s); follow with: pixda sweep --status {out}")
    return SweepResult(skipped=skipped, submitted=submitted)


def _kept(out: Path, submitted: list[str]) -> str:
    """What a sweep whose submission sbatch refused half-way keeps, and how it resumes."""
    if not submitted:
        return (
            f"nothing was submitted; the sweep's record in {out} is kept, and the same "
            "command submits the sweep once SLURM takes jobs again"
        )
    return (
        f"submitted before it: job(s) {', '.join(submitted)}, recorded in {out / 'runs.csv'}; "
        "the same command, once SLURM takes jobs again, submits the rest (queued jobs are "
        "left alone, those SLURM lost are resubmitted)"
    )


def follow(out: Path, job_ids: list[str], every: float = 2.0) -> None:
    """Wait until none of ``job_ids`` is queued any more, printing the status as it changes."""
    shown = None
    while True:
        queue = slurm_queue(job_ids)
        table = status_table(out)
        text = table.to_string(index=False) if len(table) else "(no runs yet)"
        if text != shown:
            print(text, flush=True)
            shown = text
        if not any(j in queue for j in job_ids):
            return
        time.sleep(every)
