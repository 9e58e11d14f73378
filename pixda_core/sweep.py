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

from .errors import ConfigError, DataError, SlurmError
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
from .notebook_run import NB_ADAPT, NB_ANALYSIS, NB_SOURCE_ONLY, execute
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

    def common(self, out: Path) -> dict:
        """The notebook parameters every run of the grid shares (paths absolute)."""
        from .paths import resolve

        return {
            "data_root": str(resolve(self.data_root)),
            "source": self.source,
            "source_root": str(resolve(self.source_root)) if self.source_root else None,
            "target_root": str(resolve(self.target_root)) if self.target_root else None,
            "preset": self.preset,
            "out_dir": str(out),
            "overrides": self.overrides,
            "device": "auto",
            "init": self.init,
        }

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


def plan(grid: Grid, out: Path) -> tuple[list[Task], list[Task]]:
    """The source-only tasks (one, or one per seed) and the adaptation tasks of the grid."""
    common = grid.common(out)
    if grid.source_only_per_seed:
        overrides = common["overrides"]
        common["overrides"] = {
            **overrides,
            "run": {**overrides.get("run", {}), "own_source_only": True},
        }
    logs, nbs = out / "logs", out / "notebooks"
    logs.mkdir(parents=True, exist_ok=True)

    def task(name: str, notebook: str, executed: str, params: dict) -> Task:
        return Task(
            name,
            notebook,
            str(nbs / executed),
            params,
            str(logs / f"{name}.log"),
            str(logs / f"{name}.json"),
        )

    so_tasks = []
    for seed in grid.source_only_seeds():
        so_params = {**common, "iterations": grid.pretrain_iterations}
        if seed is not None:  # notebook 02 takes the seed as an override
            overrides = so_params["overrides"]
            run = {**overrides.get("run", {}), "seed": seed}
            so_params["overrides"] = {**overrides, "run": run}
        so_name = _source_only_name(so_params)
        executed = f"02_source_only_{grid.source}_{grid.preset}"
        executed += f"_seed{seed}.ipynb" if seed is not None else ".ipynb"
        so_tasks.append(task(so_name, NB_SOURCE_ONLY, executed, so_params))
    tasks = []
    for method, n, seed, split in grid.runs():
        name = run_name(method, n, seed, split)
        overrides = common["overrides"]
        if split is not None:
            data = {**overrides.get("data", {}), "split_seed": split}
            overrides = {**overrides, "data": data}
        params = {
            **common,
            "method": method,
            "num_shots": n or 1,  # (the oracle's 0: any, it takes every image)
            "seed": seed,
            "iterations": grid.iterations,
            "pretrain_iterations": grid.pretrain_iterations,
            "run_name": name,
            "overrides": overrides,
        }
        tasks.append(task(name, NB_ADAPT, f"03_{name}.ipynb", params))
    return so_tasks, tasks


def _source_only_name(params: dict) -> str:
    """The folder of the source-only model these notebook parameters train or reuse."""
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
    return source_only_run(cfg).run.name


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
    analysis: bool = True,
    init: str | None = None,
    split_seeds=(),
    executor: str = "local",
    jobs: int = 1,
    slurm: SlurmOptions | None = None,
    time_limit: int | None = None,
    wait: bool = True,
    source_only_per_seed: bool = False,
) -> dict:
    """Run (or submit) the grid; see the module docstring. Returns ``{"summary": path,
    "failed": [(method, shots, seed, why)], "ran": [...], "skipped": [...], "submitted":
    [job ids]}``."""
    from .paths import resolve

    out = resolve(out)
    grid = Grid(
        tuple(portable(m) for m in methods),
        tuple(shots),
        tuple(seeds),
        tuple(split_seeds),
        source,
        preset,
        str(data_root),
        source_root,
        target_root,
        iterations,
        pretrain_iterations,
        overrides or {},
        init,
        source_only_per_seed,
    )
    grid.check()
    if executor not in ("local", "slurm"):
        raise ConfigError(f"--executor {executor!r} is not one of local, slurm")
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: expected at least 1")
    slurm = slurm_options(slurm, time_limit)
    if executor == "slurm":  # the cluster answers and takes such jobs: before anything is written
        check_slurm(slurm)
    with _lock(out):
        _remember(out, grid)
        so, tasks = plan(grid, out)
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


def _remember(out: Path, grid: Grid) -> None:
    """``sweep.json``: the union of the grids asked for here, for --status and --collect."""
    path = out / "sweep.json"
    try:
        old = read_grid(out)
    except DataError:  # none yet, or damaged: written anew from this grid
        old = {}
    if "gaps" in old:
        raise ConfigError(
            f"{out} is a sweep over gaps (its runs are in {out}/gap<G>): give --gaps again, or "
            "choose another --out"
        )
    new = asdict(grid)
    for key in ("methods", "shots", "seeds", "split_seeds"):
        new[key] = list(dict.fromkeys([*old.get(key, []), *new[key]]))
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
    p = task.params
    return (_method_name(p["method"]), _shots(p), p["seed"])


def _shots(params: dict):
    """A task's shots as reports give them: "all" for the oracle."""
    method = params.get("method", SOURCE_ONLY)
    return "all" if method_class(method).all_target else params.get("num_shots", 0)


def _so_seed(task: Task) -> int | None:
    """The seed of a source-only task (None: the preset's)."""
    return task.params["overrides"].get("run", {}).get("seed")


def _start_of(grid: Grid, so: list[Task]):
    """task -> the name of the source-only task it adapts from."""
    by_seed = {_so_seed(t): t.name for t in so}
    if grid.source_only_per_seed:
        return lambda task: by_seed[task.params["seed"]]
    return lambda task: so[0].name


def _row(task: Task, executor: str, job_id: str | None) -> dict:
    p = task.params
    split = p.get("overrides", {}).get("data", {}).get("split_seed")
    return {
        "name": task.name,
        "method": p.get("method", SOURCE_ONLY),
        "shots": _shots(p),
        "seed": p.get("seed", _so_seed(task)),
        "split_seed": split,
        "executor": executor,
        "job_id": job_id,
        "submitted": time.time(),
    }


def _submit(out, so, so_todo, todo, jobs_of, states, options, skipped, analysis) -> dict:
    """SLURM: the source-only job (when needed), the runs as one array after it, and a last
    job that collects the results when they have all ended. sbatch refusing one of them
    (the controller gone since the check) is one line saying what was submitted before it:
    each job is in runs.csv as soon as it is queued, so the same command submits the rest."""
    folder = out / ".submitit"
    after, new, ids = [], [], []
    try:
        if so_todo:
            new = submit_to_slurm(so_todo, folder, options, name="pixda-source-only")
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
        rows.append(
            {
                "run": r.name,
                "state": state,
                "step": step,
                "miou": miou,
                "job": job or "-",
                "why": why,
            }
        )
    table = pd.DataFrame(rows, columns=["run", "state", "step", "miou", "job", "why"])
    failed = table[(table["state"] == "failed") & (table["job"] != "-")]
    if len(failed):  # killed from outside (time limit, memory, node): SLURM says which
        ended = slurm_ended(list(failed["job"]))
        for i, job in failed["job"].items():
            if job in ended:
                table.loc[i, "why"] = ended[job]
    return table


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
