"""Run folders: ``<out_dir>/<name>/`` with the config, the split, the logs and the checkpoints.

Layout::

    config.yaml          the full config of the run
    split.txt            the target shots used (release format)
    metrics.json         final metrics (+ metrics_confusion.npy)
    validations.csv      one row per validation (step, phase, miou, per-class IoU)
    history.csv          losses and learning rate every ``run.log_every`` steps
    selection.csv        source images kept per selection round; selection/round_<k>.csv
                         scores every candidate (name, score, kept)
    checkpoints/         step_<N>.pt and latest.pt
    predictions/         coloured and label-id predictions, when asked for

An existing run folder is never overwritten: starting a run whose folder exists is an error
unless the run is resumed, and a resumed run must have the same configuration but for
logistics and a larger ``early_stop`` (:func:`config_differences`). A folder whose
run ended before its first checkpoint (a value that failed in the first step, a kill) holds
nothing to resume: it does not block the same or a corrected command, which starts it afresh.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from ..config import Config
from ..errors import ConfigError, DataError
from ..locks import held
from .runtime import log_stream

#: keys that may differ between a run and its resumption (they do not change the numbers)
RESUME_FREE = {
    ("run", "device"), ("run", "progress"), ("run", "tensorboard"), ("run", "save_predictions"),
    ("data", "num_workers"), ("data", "val_batch_size"), ("run", "keep_checkpoints"),
    ("data", "on_error"),  # a run stopped by a corrupt file may be resumed skipping it
    ("data", "select_batch_size"),  # eval-mode inference: the batch does not change scores
    ("run", "compile"),  # the same computation, compiled
}  # fmt: skip


def check_writable(folder: Path, flag: str = "--checkpoints_dir (config run.out_dir)") -> None:
    """Fail before training if ``folder`` cannot be created or written to."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".pixda_write_test_{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"{flag} {folder} is not writable ({exc.strerror or exc}); choose another folder"
        ) from None


#: what a run writes into its folder before its first checkpoint (removed when it starts afresh)
EARLY_FILES = ("config.yaml", "split.txt", "history.csv", "validations.csv", "selection.csv",
               "selection", "predictions", "tensorboard", "checkpoints")  # fmt: skip


def read_table(path: Path, nrows: int | None = None) -> pd.DataFrame:
    """A run's ``history``, ``validations`` or ``selection`` table, read back on resume;
    damaged (not CSV, no ``step`` column): an error naming it and what to do."""
    fix = (
        "the checkpoints are intact: move the file away and resume with --continue_train "
        "(the table then starts again from the checkpoint's step)"
    )
    try:
        frame = pd.read_csv(path, nrows=nrows)
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' parser and empty-data errors
        why = " ".join(str(exc).split())
        raise DataError(f"run table {path} is damaged ({why}); {fix}") from None
    if "step" not in frame.columns:
        raise DataError(f"run table {path} is damaged (it has no 'step' column); {fix}")
    steps = pd.to_numeric(frame["step"], errors="coerce")
    if steps.isna().any():
        raise DataError(f"run table {path} is damaged (a 'step' that is not a number); {fix}")
    return frame.assign(step=steps.astype(int))


def not_started(path: Path) -> bool:
    """Did the run of this folder end before writing its first checkpoint (and so has nothing
    to resume)?"""
    return (
        (path / "config.yaml").is_file()
        and not (path / "metrics.json").exists()
        and not any((path / "checkpoints").glob("*.pt"))
    )


def _has_files(path: Path) -> bool:
    return any(not p.name.startswith(".") for p in path.iterdir())  # .lock is not a run


@contextmanager
def run_lock(path: Path, wait: bool = False) -> Iterator[None]:
    """Hold ``<path>/.lock`` while a run trains, so that two processes never write one run
    folder: a second one is refused (``wait=False``) or waits for the first (``wait=True``,
    the shared source-only model, which the waiting run then reuses). Under torchrun only
    rank 0 takes it; the lock goes with the process, even when it is killed."""
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    path.mkdir(parents=True, exist_ok=True)

    def busy() -> None:
        if not wait:
            raise ConfigError(
                f"run folder {path} is in use by another process (a run of the same --name "
                "is going on); wait for it to end or choose another --name"
            )
        print(f"another process is training {path}; waiting for it", file=log_stream(), flush=True)

    with held(path / ".lock", busy):
        yield


#: keys a resume may also change: logistics that do not change what the run computes, kept
#: out of RESUME_FREE because that set also leaves keys out of the shared source-only
#: model's name (models trained before would no longer be found)
RESUME_LOGISTICS = {("run", "log_every"), ("run", "ckpt_every"), ("run", "val_every")}
#: keys a resume may raise: a longer run (the poly schedule's horizon, max_iters, unchanged)
#: takes the same steps first (:meth:`pixda_core.train.job.Job.resume` checks the phase)
RESUME_EXTEND = {("pretrain", "early_stop"), ("adapt", "early_stop")}


def config_differences(a: Config, b: Config) -> tuple[list[str], list[str]]:
    """How ``b`` (a resume's config) differs from ``a`` (the run's saved one): (refused,
    accepted), each as ``section.key: old -> new``. Accepted: logistics (intervals, workers,
    progress, ...) and a larger ``early_stop``; refused: everything that changes what was
    computed (method, data, seeds, learning rates, the schedule's horizon, sizes, ...)."""
    da, db = a.to_dict(), b.to_dict()
    refused, accepted = [], []
    for section, values in da.items():
        if not isinstance(values, dict):
            if values != db[section]:
                refused.append(f"{section}: {values!r} -> {db[section]!r}")
            continue
        for key, value in values.items():
            new = db[section][key]
            if (section, key) in RESUME_FREE or value == new:
                continue
            line = f"{section}.{key}: {value!r} -> {new!r}"
            if (section, key) in RESUME_LOGISTICS:
                accepted.append(line)
            elif (section, key) in RESUME_EXTEND and new > value:
                accepted.append(line)
            elif (section, key) in RESUME_EXTEND:
                refused.append(f"{line} (a resume may raise it, never lower it)")
            else:
                refused.append(line)
    return refused, accepted


class RunFolder:
    def __init__(self, path: Path, is_main: bool = True):
        self.path = Path(path)
        self.is_main = is_main

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def latest(self) -> Path:
        return self.checkpoints / "latest.pt"

    @classmethod
    def check(cls, cfg: Config, resume: bool) -> Path:
        """What :meth:`open` checks, without writing anything but the output folder itself:
        the output folder is writable, a new run does not reuse an existing run's folder, and a
        resumed run has the same config except in keys that do not change what it computed
        (:func:`config_differences`)."""
        out = Path(cfg.run.out_dir)
        path = out / cfg.run.name
        check_writable(out)
        try:
            limit = os.pathconf(out, "PC_NAME_MAX")
        except (OSError, ValueError):  # no such query on this system
            limit = None
        size = len(os.fsencode(cfg.run.name))
        if limit is not None and size > limit:
            raise ConfigError(
                f"--name (config run.name) is {size} bytes long: expected at most {limit}, the "
                f"longest name the file system of {out} allows"
            )
        saved = path / "config.yaml"
        if saved.exists() and not_started(path):
            pass  # its start failed before a checkpoint: :meth:`open` starts it afresh
        elif saved.exists():
            if not resume:
                raise ConfigError(
                    f"run folder {path} already exists; resume it with --continue_train "
                    "(resume=True) or choose another --name"
                )
            try:
                before = Config.from_yaml(saved)
            except ConfigError as exc:
                raise ConfigError(
                    f"cannot resume {path}: {exc}; restore that file, or start the run afresh "
                    "under another --name"
                ) from None
            refused, _ = config_differences(before, cfg)
            if refused:
                raise ConfigError(
                    f"cannot resume {path}: its config.yaml differs in {'; '.join(refused)}; "
                    "that changes what the run computed: start a new run under another --name "
                    "(a resume may change intervals, workers and progress, and raise "
                    "early_stop up to max_iters)"
                )
        elif path.exists() and not path.is_dir():
            raise ConfigError(f"--name {cfg.run.name}: {path} exists and is not a folder")
        elif path.exists() and _has_files(path) and not resume:
            raise ConfigError(f"run folder {path} exists and is not empty; choose another --name")
        return path

    @classmethod
    def open(cls, cfg: Config, resume: bool, is_main: bool = True) -> RunFolder:
        """The run's folder: created for a new run, checked against ``cfg`` for a resumed one
        (see :meth:`check`)."""
        folder = cls(Path(cfg.run.out_dir) / cfg.run.name, is_main)
        if not is_main:  # under torchrun rank 0 checks and creates; the others wait for it
            return folder
        # (checked before the run too, before anything was written; again here, under the
        # run's lock: another process may have started a run of that name since)
        cls.check(cfg, resume)
        if not_started(folder.path):
            print(
                f"run folder {folder.path} has no checkpoint (its last start ended before the "
                "first one): starting it afresh",
                file=log_stream(),
            )
            for name in EARLY_FILES:
                stale = folder.path / name
                if stale.is_dir():
                    shutil.rmtree(stale)
                elif stale.exists():
                    stale.unlink()
        folder.checkpoints.mkdir(parents=True, exist_ok=True)
        saved = folder.path / "config.yaml"
        if not saved.exists():
            cfg.to_yaml(saved)
        return folder

    # ------------------------------------------------------------------------- tables
    def append(self, table: str, row: dict) -> None:
        """Append one row to ``<table>.csv`` (rank 0 only); the columns are fixed by the first
        row, later rows are aligned to them."""
        if not self.is_main:
            return
        path = self.path / f"{table}.csv"
        frame = pd.DataFrame([row])
        if path.exists() and path.stat().st_size:
            columns = read_table(path, nrows=0).columns
            frame = frame.reindex(columns=columns)
            frame.to_csv(path, mode="a", header=False, index=False)
        else:
            frame.to_csv(path, index=False)

    def truncate(self, table: str, step: int) -> None:
        """Drop rows logged after ``step`` (they are replayed when a run resumes)."""
        path = self.path / f"{table}.csv"
        if not self.is_main or not path.exists() or not path.stat().st_size:
            return
        frame = read_table(path)
        kept = frame[frame["step"] <= step]
        if len(kept) != len(frame):
            tmp = path.with_name(f".{path.name}.tmp")
            kept.to_csv(tmp, index=False)
            os.replace(tmp, path)


#: what every metrics.json holds (written by pixda_core.train.evaluate.metrics_dict)
METRICS_KEYS = {"miou": float, "per_class_iou": dict, "pixel_accuracy": float, "step": int,
                "method": str, "source": str, "shots": int, "seed": int}  # fmt: skip


def read_metrics(path: str | os.PathLike) -> dict:
    """A run's ``metrics.json``, checked: a JSON object with the keys the kit writes, of their
    types. Damaged, truncated, empty or of another schema: an error naming the file and what
    to do."""
    from ..textfiles import read_text

    path = Path(path)
    fix = (
        "resume the run with --continue_train (a finished run is evaluated again and the file "
        "rewritten), or delete the run folder"
    )
    text = read_text(path, "metrics file", f"the JSON a finished run writes; {fix}")
    try:
        data = json.loads(text)
    except RecursionError:
        raise DataError(f"metrics file {path} is damaged (nested too deep); {fix}") from None
    except json.JSONDecodeError as exc:
        raise DataError(
            f"metrics file {path} is damaged (not valid JSON: {exc.msg}); {fix}"
        ) from None
    if not isinstance(data, dict):
        raise DataError(f"metrics file {path} is damaged (not a JSON object); {fix}")
    for key, kind in METRICS_KEYS.items():
        value = data.get(key)
        ok = isinstance(value, kind) or (kind is float and isinstance(value, int | None))
        if not ok or isinstance(value, bool):
            raise DataError(
                f"metrics file {path} has no valid {key!r} (got {value!r}): damaged, or written "
                f"by an older kit; {fix}"
            )
    iou = data["per_class_iou"].values()
    if not all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in iou):
        raise DataError(f"metrics file {path} has a per_class_iou that is not numbers; {fix}")
    return data


def finished(folder: str | os.PathLike) -> bool:
    """Does ``folder`` hold a finished run (a readable, complete ``metrics.json``)?"""
    try:
        read_metrics(Path(folder) / "metrics.json")
    except DataError:
        return False
    return True
