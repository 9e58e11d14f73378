"""Batch runs: the source-only model (notebook 02), notebook 03 once per (method, shots, seed
[, split seed]) with papermill, then notebook 04 over the results; here or on a SLURM cluster.

    python -m pixda_core sweep --shots 1 5 --methods source_only finetune pixda --seeds 0 1 2 \\
        --source gta5 --preset toy --out results/toy_sweep [--jobs 2]
    python -m pixda_core sweep ...same grid... --executor slurm --partition gpu \\
        --gpus-per-job 1 --out /shared/sweep        # submits and returns; --wait to follow
    python -m pixda_core sweep --status /shared/sweep    # a table: run, state, step, mIoU
    python -m pixda_core sweep --collect /shared/sweep   # summary.csv and notebook 04

The command line is :mod:`pixda_core.sweep_cli`. Layout of the sweep folder::

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

import contextlib
import itertools
import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd

from .errors import ConfigError, DataError, SlurmError, user_message
from .executors import (
    SlurmOptions,
    Task,
    check_slurm,
    read_status,
    run_here,
    slurm_ended,
    slurm_jobs,
    slurm_queue,
    submit_collect,
    submit_to_slurm,
)
from .locks import held
from .methods import ADAPTATION, SOURCE_ONLY, method_class, portable, run_name
from .notebook_run import NB_ANALYSIS, execute
from .runspec import RunSpec
from .train.rundir import finished

SWEEP_METHODS = (SOURCE_ONLY, *ADAPTATION)


@contextmanager
def _lock(folder: Path):
    """One sweep at a time per folder: a second one waits instead of racing the first."""
    folder.mkdir(parents=True, exist_ok=True)

    def busy() -> None:
        print(f"another sweep is running in {folder}; waiting for it", file=sys.stderr, flush=True)

    with held(folder / ".sweep.lock", busy):
        yield


# ------------------------------------------------------------------------------ the grid


@dataclass(frozen=True)
class Grid:
    """What a sweep command asks for: the combinations and the settings they share."""

    methods: tuple[str, ...] = (SOURCE_ONLY, "finetune", "pixda")
    shots: tuple[int, ...] = (1, 5)
    seeds: tuple[int, ...] = (0,)
    #: seeds of drawn target splits (variance over splits); empty: the default split
    split_seeds: tuple[int, ...] = ()
    source: str = "gta5"
    preset: str = "toy"
    data_root: str = "data/toy"
    source_root: str | None = None
    target_root: str | None = None
    iterations: int | None = None
    pretrain_iterations: int | None = None
    overrides: dict = field(default_factory=dict)
    init: str | None = None
    #: one source-only model per training seed (``run.own_source_only``) instead of one
    source_only_per_seed: bool = False

    def check(self) -> None:
        for m in self.methods:
            if m == SOURCE_ONLY:
                continue
            try:
                method_class(m)
            except ConfigError as exc:
                raise ConfigError(f"--methods {m!r}: {exc}") from None
        bad = [s for s in self.shots if s < 1]
        if bad:
            raise ConfigError(f"--shots {bad[0]}: shots are images per city, at least 1")

    def base(self, out: Path) -> RunSpec:
        """What every run of the grid shares (paths absolute), as one spec."""
        from .paths import resolve

        overrides = self.overrides
        if self.source_only_per_seed:
            overrides = {**overrides, "run": {**overrides.get("run", {}), "own_source_only": True}}
        return RunSpec(
            source=self.source,
            preset=self.preset,
            data_root=str(resolve(self.data_root)),
            source_root=str(resolve(self.source_root)) if self.source_root else None,
            target_root=str(resolve(self.target_root)) if self.target_root else None,
            iterations=self.iterations,
            pretrain_iterations=self.pretrain_iterations,
            init=self.init,
            out_dir=str(out),
            device="auto",
            overrides=overrides,
        )

    def specs(self, out: Path) -> tuple[list[RunSpec], list[RunSpec]]:
        """The source-only models (one, or one per seed) and the adaptation runs of the
        grid, each as one spec."""
        base = self.base(out)
        so = [replace(base, method=SOURCE_ONLY, seed=seed) for seed in self.source_only_seeds()]
        runs = [
            replace(
                base,
                method=method,
                num_shots=n or 1,
                seed=seed,
                split_seed=split,
                run_name=run_name(method, n, seed, split),
            )  # fmt: skip
            for method, n, seed, split in self.runs()
        ]  # (the oracle's shots, 0 here: any, it takes every image)
        return so, runs

    def runs(self) -> list[tuple[str, int, int, int | None]]:
        """(method, shots, seed, split seed) of every adaptation run; the oracle, which
        trains on every target image, runs once per seed (shots and split seeds do not
        apply: its shots are given as 0 here)."""
        splits = self.split_seeds or (None,)
        out = []
        for m in self.methods:
            if m == SOURCE_ONLY:
                continue
            if method_class(m).all_target:
                out += [(m, 0, seed, None) for seed in self.seeds]
            else:
                out += itertools.product([m], self.shots, self.seeds, splits)
        return out

    def source_only_seeds(self) -> list[int | None]:
        """The seeds of the source-only models: each training seed's, or None (the
        preset's seed, one model)."""
        return list(self.seeds) if self.source_only_per_seed else [None]


def tasks_of(grid: Grid, out: Path, expected: dict | None = None) -> tuple[list[Task], list[Task]]:
    """The source-only tasks (one, or one per seed) and the adaptation tasks of the grid
    (``expected``: run name -> its planned seconds, recorded with it)."""
    logs, nbs = out / "logs", out / "notebooks"
    expected = expected or {}

    def task(spec: RunSpec) -> Task:
        name = spec.name
        if spec.is_source_only:
            executed = f"02_source_only_{grid.source}_{grid.preset}"
            executed += f"_seed{spec.seed}.ipynb" if spec.seed is not None else ".ipynb"
        else:
            executed = f"03_{name}.ipynb"
        return Task(name, spec, str(nbs / executed), str(logs / f"{name}.log"),
                    str(logs / f"{name}.json"), expected.get(name))  # fmt: skip

    so, runs = grid.specs(out)
    return [task(s) for s in so], [task(s) for s in runs]


# ------------------------------------------------------------------------------ state


def read_runs(out: Path) -> pd.DataFrame:
    """``runs.csv``: the last record of every run asked for in this sweep folder."""
    path = out / "runs.csv"
    if not path.is_file():
        return pd.DataFrame(
            columns=[
                "name",
                "method",
                "shots",
                "seed",
                "split_seed",
                "executor",
                "job_id",
                "submitted",
            ]
        )
    fix = (
        "delete it and re-run the sweep command (the runs' own folders say what is done; "
        "jobs still queued on SLURM are then not recognised: cancel them first)"
    )
    try:
        frame = pd.read_csv(path, dtype={"job_id": str})
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' parser and empty-data errors
        why = " ".join(str(exc).split())
        raise DataError(f"sweep record {path} is damaged ({why}); {fix}") from None
    missing = {"name", "method", "shots", "seed", "job_id"} - set(frame.columns)
    if missing:
        raise DataError(f"sweep record {path} lacks the columns {sorted(missing)}; {fix}")
    return frame.drop_duplicates("name", keep="last").reset_index(drop=True)


def record_runs(out: Path, rows: list[dict]) -> None:
    frame = pd.concat([read_runs(out), pd.DataFrame(rows)], ignore_index=True)
    frame = frame.drop_duplicates("name", keep="last")
    tmp = out / ".runs.csv.tmp"
    frame.to_csv(tmp, index=False)
    os.replace(tmp, out / "runs.csv")


def state_of(
    out: Path, name: str, queue: dict[str, str], job_id: str | None, local_sweep: bool = False
) -> str:
    """done (metrics.json), pending / running (in SLURM's queue, or run by a local sweep
    that is going on: ``local_sweep``), failed (tried, not finished: failed, cancelled, timed
    out, killed), or missing (never started)."""
    if finished(out / name):  # a damaged metrics.json is not done: the run is run again
        return "done"
    if job_id and job_id in queue:
        return "running" if queue[job_id] in ("RUNNING", "COMPLETING") else "pending"
    record = read_status(out / "logs" / f"{name}.json")
    if local_sweep and record.get("executor") == "local" and record.get("state") == "running":
        return "running"
    return "failed" if record else "missing"


def local_sweep_running(out: Path) -> bool:
    """Does a sweep hold this folder's lock (a local sweep running its notebooks)?"""
    from filelock import FileLock, Timeout

    lock = FileLock(out / ".sweep.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


# ------------------------------------------------------------------------------ the sweep


def slurm_options(slurm: SlurmOptions | None, time_limit: int | None) -> SlurmOptions:
    """The SLURM options a sweep submits with: ``slurm`` (or the defaults), with the
    ``--time-limit`` minutes when given."""
    slurm = slurm or SlurmOptions()
    return replace(slurm, time_min=time_limit) if time_limit else slurm


def run_sweep(
    out: str | os.PathLike,
    analysis: bool = True,
    executor: str = "local",
    jobs: int = 1,
    slurm: SlurmOptions | None = None,
    time_limit: int | None = None,
    wait: bool = True,
    **grid,
) -> dict:
    """Run (or submit) the grid (``grid``: :func:`make_grid`'s keyword arguments); see the
    module docstring. Returns ``{"summary": path, "failed": [(method, shots, seed, why)],
    "ran": [...], "skipped": [...], "submitted": [job ids]}``."""
    from .paths import resolve

    out = resolve(out)
    grid = make_grid(**grid)
    if executor not in ("local", "slurm"):
        raise ConfigError(f"--executor {executor!r} is not one of local, slurm")
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: expected at least 1")
    slurm = slurm_options(slurm, time_limit)
    if executor == "slurm":  # the cluster answers and takes such jobs: before anything is written
        check_slurm(slurm)
    with _lock(out):
        planned = _plan(grid, out, executor, jobs, slurm)
        expected = {r.name: r.seconds for r in planned.runs} if planned else {}
        if executor == "slurm" and time_limit is None:
            slurm = _planned_limits(planned, slurm)
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
        if executor == "local":
            return _run_here(out, grid, so, so_todo, todo, jobs, time_limit, skipped, analysis)
        result = _submit(out, so, so_todo, todo, jobs_of, states, slurm, skipped, analysis)
    if wait:  # outside the lock: another sweep command may add runs meanwhile
        follow(out, result["submitted"])
        result.update(collect_result(out))
    return result


def _plan(grid: Grid, out: Path, executor: str, jobs: int, slurm: SlurmOptions):
    """The sweep's plan (:mod:`pixda_core.sweep_plan`), for the times it records with each run
    and SLURM's time limits; where it cannot be made (a damaged step-time store, a run's bad
    value) that is said, and the sweep goes on."""
    from .errors import PixdaError
    from .sweep_plan import plan_sweep

    try:
        return plan_sweep(grid, out, executor, jobs, slurm.gpus_per_job, slurm.cpus_per_job)
    except PixdaError as exc:  # (a run's bad value fails in its notebook, counted there)
        print(f"[sweep] no time plan: {user_message(exc)}", flush=True)
        return None


def _planned_limits(planned, slurm: SlurmOptions) -> dict[str, SlurmOptions]:
    """The SLURM options of the source-only job and of the array: --time from the plan
    (:meth:`~pixda_core.sweep_plan.SweepPlan.time_limit_min`), else ``slurm``'s (24 h by
    default), said either way."""
    from .sweep_plan import MARGIN_FACTOR, MARGIN_MIN

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


def make_grid(
    shots=(1, 5),
    methods=(SOURCE_ONLY, "finetune", "pixda"),
    seeds=(0,),
    source: str = "gta5",
    preset: str = "toy",
    data_root: str = "data/toy",
    source_root: str | None = None,
    target_root: str | None = None,
    iterations: int | None = None,
    pretrain_iterations: int | None = None,
    overrides: dict | None = None,
    init: str | None = None,
    split_seeds=(),
    source_only_per_seed: bool = False,
) -> Grid:
    """The grid a sweep command asks for, checked (an unknown method, shots below 1: one
    line naming it)."""
    grid = Grid(
        methods=tuple(portable(m) for m in methods),
        shots=tuple(shots),
        seeds=tuple(seeds),
        split_seeds=tuple(split_seeds),
        source=source,
        preset=preset,
        data_root=str(data_root),
        source_root=source_root,
        target_root=target_root,
        iterations=iterations,
        pretrain_iterations=pretrain_iterations,
        overrides=overrides or {},
        init=init,
        source_only_per_seed=source_only_per_seed,
    )
    grid.check()
    return grid


def read_grid(out: Path) -> dict:
    """``sweep.json``, checked: the grid --status and --collect work from."""
    from .textfiles import read_text

    path = out / "sweep.json"
    text = read_text(path, "sweep record", "the grid a sweep writes (run the sweep first)")
    try:
        grid = json.loads(text)
    except json.JSONDecodeError as exc:
        grid, why = None, f"not valid JSON: {exc.msg}"
    except RecursionError:
        grid, why = None, "nested too deep"
    lists, names = ("methods", "shots", "seeds"), ("source", "preset")
    shaped = isinstance(grid, dict) and all(isinstance(grid.get(k), list) for k in lists)
    shaped = shaped and all(isinstance(grid.get(k), str) for k in names)
    if grid is not None and not shaped:
        why = f"not an object with the lists {', '.join(lists)} and {' and '.join(names)}"
        grid = None
    if grid is None:
        raise DataError(
            f"sweep record {path} is damaged ({why}); delete it and re-run the sweep command, "
            "which writes it again"
        )
    return grid


def record_grid(out: Path, grid: dict, gaps=None) -> None:
    """``sweep.json`` (the one writer): the union of the grids asked for in ``out``, for
    --status and --collect; a sweep over gaps (``gaps``) also records them. A folder holds
    one kind of sweep: a plain sweep into a sweep over gaps, or the other way, is refused,
    naming it. A damaged record is written anew from this grid."""
    path = out / "sweep.json"
    try:
        old = read_grid(out)
    except DataError:  # none yet, or damaged
        old = {}
    if gaps is None and "gaps" in old:
        raise ConfigError(
            f"{out} is a sweep over gaps (its runs are in {out}/gap<G>): give --gaps again, or "
            "choose another --out"
        )
    if gaps is not None and old and "gaps" not in old:
        raise DataError(
            f"{out} is a sweep folder of one benchmark (its sweep.json has no gaps); choose "
            "another --out for a sweep over gaps"
        )
    new = dict(grid)
    if gaps is not None:
        new["gaps"] = sorted(set(old.get("gaps", [])) | set(gaps))
    for key in ("methods", "shots", "seeds", "split_seeds"):
        new[key] = list(dict.fromkeys([*old.get(key, []), *new.get(key, [])]))
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(new, indent=1) + "\n")


def _run_here(out, grid, so, so_todo, todo, jobs, time_limit, skipped, analysis) -> dict:
    from tqdm.auto import tqdm

    ran, failed = [], []
    folder = out / ".submitit"
    meta = {t.name: t for t in todo}

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
    result = collect(out, analysis, failed)
    return {**result, "ran": ran, "skipped": skipped, "submitted": []}


def _key(task: Task) -> tuple:
    return (_method_name(task.spec.method), _shots(task.spec), task.spec.seed)


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


def _submit(out, so, so_todo, todo, jobs_of, states, options, skipped, analysis) -> dict:
    """SLURM: the source-only job (when needed), the runs as one array after it, and a last
    job that collects the results when they have all ended. sbatch refusing one of them
    (the controller gone since the check) is one line saying what was submitted before it:
    each job is in runs.csv as soon as it is queued, so the same command submits the rest."""
    folder = out / ".submitit"
    limits = options if isinstance(options, dict) else {"source_only": options, "array": options}
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
    return {"summary": None, "failed": [], "ran": [], "skipped": skipped, "submitted": submitted}


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


# ------------------------------------------------------------------------------ status, collect


def status_table(out: str | os.PathLike) -> pd.DataFrame:
    """One row per run asked for: state, the step it reached, its mIoU so far (%)."""
    from .paths import resolve

    out = resolve(out)
    runs = read_runs(out)
    jobs = slurm_jobs([j for j in runs["job_id"].fillna("") if j])
    queue = {job: state for job, (state, _) in jobs.items()}
    local = local_sweep_running(out)
    rows = []
    for r in runs.itertuples():
        job = r.job_id if isinstance(r.job_id, str) else None
        step, miou = _progress(out / r.name)
        state = state_of(out, r.name, queue, job, local)
        why = jobs[job][1] if state == "pending" and job in jobs else ""
        if state == "failed":  # the job's own record says why, when its notebook failed
            why = read_status(out / "logs" / f"{r.name}.json").get("error") or ""
        record = read_status(out / "logs" / f"{r.name}.json")
        rows.append(
            {
                "run": r.name,
                "state": state,
                "step": step,
                "miou": miou,
                "elapsed": _elapsed(record, state),
                "expected": _minutes(getattr(r, "expected_s", None)),
                "job": job or "-",
                "why": why,
            }
        )
    table = pd.DataFrame(rows, columns=STATUS_COLUMNS)
    failed = table[(table["state"] == "failed") & (table["job"] != "-")]
    if len(failed):  # killed from outside (time limit, memory, node): SLURM says which
        ended = slurm_ended(list(failed["job"]))
        for i, job in failed["job"].items():
            if job in ended:
                table.loc[i, "why"] = ended[job]
    return table


#: ``--status``: a row per run (elapsed: its job's time so far, or its last attempt's; expected:
#: its plan's time of training steps, recorded when it was started)
STATUS_COLUMNS = ["run", "state", "step", "miou", "elapsed", "expected", "job", "why"]


def _elapsed(record: dict, state: str) -> str:
    started, ended = record.get("started"), record.get("ended")
    if not isinstance(started, int | float):
        return "-"
    if state == "running" or not isinstance(ended, int | float) or ended < started:
        ended = time.time()
    return _minutes(ended - started)


def _minutes(seconds) -> str:
    if not isinstance(seconds, int | float) or pd.isna(seconds):
        return "-"
    return f"{seconds / 60:.1f} min"


def _progress(folder: Path) -> tuple[int | None, float | None]:
    """The step a run has logged and its latest validation mIoU (%), from its files."""
    step = miou = None
    for table in ("history", "validations"):
        path = folder / f"{table}.csv"
        try:
            frame = pd.read_csv(path)
        except (OSError, ValueError, UnicodeDecodeError):
            continue  # not written yet, or damaged (the run's resume names it)
        needed = {"step", "miou"} if table == "validations" else {"step"}
        if not len(frame) or not needed <= set(frame.columns):
            continue
        last = frame.iloc[-1]
        with contextlib.suppress(ValueError, TypeError):  # a damaged row: no progress shown
            step = max(step or 0, int(last["step"]))
            if table == "validations" and pd.notna(last["miou"]):
                miou = round(float(last["miou"]) * 100, 2)
    return step, miou


def collect(out: str | os.PathLike, analysis: bool = True, failed: list | None = None) -> dict:
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
    return {"summary": summary, "failed": failed}


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


def collect_result(out: Path) -> dict:
    """What the collecting job left: the summary and the failures."""
    failures = out / "failures.csv"
    failed = (
        [tuple(r) for r in pd.read_csv(failures).itertuples(index=False)]
        if (failures.is_file())
        else []
    )
    summary = out / "summary.csv"
    return {"summary": summary if summary.is_file() else None, "failed": failed}


def _write_summary(out: Path, methods, shots, seeds, source, preset) -> Path | None:
    """``summary.csv`` over the runs of this grid (source-only when it was asked for)."""
    from .analysis import load_runs, summary_table
    from .errors import DataError

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
    methods = [_method_name(m) for m in methods]  # (a plug-in's spec -> its name)
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


def _method_name(spec: str) -> str:
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
