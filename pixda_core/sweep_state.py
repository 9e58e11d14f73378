"""A sweep folder's records and the state of its runs: ``runs.csv`` (every run asked for,
its executor and job), ``sweep.json`` (the grid; one writer, :func:`record_grid`, one reader,
:func:`read_grid`), each run's state from its files and SLURM's queue, ``--status``'s table,
and the lock that keeps one sweep at a time in a folder."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from .errors import ConfigError, DataError
from .executors import read_status, slurm_ended, slurm_jobs
from .locks import held
from .train.rundir import finished


@contextmanager
def lock_folder(folder: Path):
    """One sweep at a time per folder: a second one waits instead of racing the first."""
    folder.mkdir(parents=True, exist_ok=True)

    def busy() -> None:
        print(f"another sweep is running in {folder}; waiting for it", file=sys.stderr, flush=True)

    with held(folder / ".sweep.lock", busy):
        yield


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
