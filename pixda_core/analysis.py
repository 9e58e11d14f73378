"""Per-class analysis over run folders: the tables and numbers that go into a paper.

A run folder is any folder holding ``metrics.json`` and ``config.yaml`` (see
:mod:`pixda_core.train.rundir`); a sweep folder holds run folders. Everything here reads those
files only, so it works on runs made anywhere (a cluster, a laptop) once copied together.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError
from .labels import CLASS_NAMES
from .methods import REFERENCES, TITLES
from .metrics import ConfusionMatrix
from .train.rundir import read_metrics

#: method -> its name in tables and figures, in the order of the methods table
METHOD_NAMES = TITLES


def find_runs(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Run folders among ``paths``: each path is a run folder or a folder of run folders
    (searched recursively). Folders without ``metrics.json`` (unfinished runs) are left out."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise DataError(f"run folder {p} does not exist")
        if (p / "metrics.json").is_file():
            found.append(p)
        else:
            found += sorted(m.parent for m in p.rglob("metrics.json"))
    return list(dict.fromkeys(found))


def load_runs(paths) -> pd.DataFrame:
    """One row per finished run: ``run, path, method, source, shots, seed, split, miou, miou_13``
    (NaN unless SYNTHIA), ``pixel_accuracy``, ``gap`` (the toy benchmark's; NaN on real data)
    and one ``iou_<class>`` per class. A damaged
    ``metrics.json`` is an error naming it (:func:`read_metrics`)."""
    rows = []
    for folder in find_runs(paths):
        m = read_metrics(folder / "metrics.json")
        row = {
            "run": folder.name,
            "path": str(folder),
            "method": m["method"],
            "source": m["source"],
            "shots": m["shots"],
            "seed": m["seed"],
            # "published", "seed S", "file NAME"; None for source-only and older runs
            "split": m.get("split"),
            "miou": m["miou"],
            "miou_13": m.get("miou_13", np.nan),
            "pixel_accuracy": m["pixel_accuracy"],
            # the toy benchmark's domain gap (NaN for real data and older runs)
            "gap": _toy_gap(m),
        }
        row.update({f"iou_{c}": m["per_class_iou"].get(c) for c in CLASS_NAMES})
        rows.append(row)
    if not rows:
        raise DataError(f"no finished runs (folders with metrics.json) under {paths}")
    frame = pd.DataFrame(rows)
    iou_cols = [c for c in frame if c.startswith(("iou_", "miou"))]
    frame[iou_cols] = frame[iou_cols].astype(float)
    order = {m: i for i, m in enumerate(METHOD_NAMES)}
    frame["_o"] = frame["method"].map(order).fillna(len(order))
    return frame.sort_values(["_o", "shots", "seed"]).drop(columns="_o").reset_index(drop=True)


def _toy_gap(metrics: dict) -> float:
    toy = metrics.get("toy")
    gap = toy.get("gap") if isinstance(toy, dict) else None
    return float(gap) if isinstance(gap, int | float) and not isinstance(gap, bool) else np.nan


def seed_split(runs: pd.DataFrame) -> pd.Series:
    """Each run's (seed, split): what pairs two runs of different methods ("" for no split)."""
    split = runs["split"] if "split" in runs else pd.Series(None, index=runs.index)
    split = split.map(lambda s: "" if s is None or pd.isna(s) else str(s))
    return pd.Series(list(zip(runs["seed"], split, strict=True)), index=runs.index)


def _listing(groups: dict) -> str:
    return "; ".join(f"{k} {', '.join(map(str, v))}" for k, v in groups.items())


def comparison_notes(runs: pd.DataFrame) -> list[str]:
    """What makes the runs of a table or figure less than like for like, one sentence each:
    several sources; methods that ran different shot counts; at one shot count, methods
    that ran different (seed, split) pairs. Empty when every comparison is like for like."""
    notes = []
    sources = runs["source"].value_counts() if "source" in runs else pd.Series(dtype=int)
    if len(sources) > 1:
        counts = ", ".join(f"{s}: {n} run{'s' * (n > 1)}" for s, n in sources.items())
        notes.append(
            f"the runs come from different sources ({counts}): the tables keep them apart, "
            "the figures mix them; give one source's runs to compare like for like"
        )
    adapted = runs[~runs["method"].isin(REFERENCES)].reset_index(drop=True)
    title = lambda m: METHOD_NAMES.get(m, m)  # noqa: E731
    shots = {
        title(m): sorted(g["shots"].unique()) for m, g in adapted.groupby("method", sort=False)
    }
    if len({tuple(s) for s in shots.values()}) > 1:
        notes.append(
            f"the methods ran different shot counts ({_listing(shots)}): a shot count some "
            "methods lack compares only the others"
        )
    keys = seed_split(adapted)
    for n, group in adapted.groupby("shots"):
        pairs = {
            title(m): sorted(set(keys[g.index])) for m, g in group.groupby("method", sort=False)
        }
        if len({tuple(v) for v in pairs.values()}) > 1:
            seeds = {m: sorted({s for s, _ in v}) for m, v in pairs.items()}
            splits = {m: {sp for _, sp in v} for m, v in pairs.items()}
            what = "seeds" if len({tuple(v) for v in seeds.values()}) > 1 else "splits"
            shown = seeds if what == "seeds" else {m: sorted(v) for m, v in splits.items()}
            notes.append(
                f"at {n}-shot the methods ran different {what} ({_listing(shown)}): their "
                "means are over different runs (the paired tests use the pairs both ran)"
            )
    return notes


def long_per_class(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-class IoU in long format: ``method, shots, seed, run, class, iou`` (IoU in %), and
    ``source`` where the runs record it. Runs repeating a (source, method, shots, seed, split)
    are averaged into one first (:func:`pixda_core.stats.one_per_key`), so figures count runs
    as the tables do."""
    from .stats import one_per_key

    runs = one_per_key(runs)
    cols = [f"iou_{c}" for c in CLASS_NAMES]
    ids = ["method", "shots", "seed", "run", *(["source"] if "source" in runs else [])]
    long = runs.melt(id_vars=ids, value_vars=cols, var_name="class", value_name="iou")
    long["class"] = long["class"].str.removeprefix("iou_")
    long["iou"] *= 100
    return long


def per_class_table(runs: pd.DataFrame, shots: int | None = None) -> pd.DataFrame:
    """Mean per-class IoU (%) over seeds, one row per (method, shots), one column per class,
    plus ``mIoU``. ``shots`` keeps one shot count (source-only and the oracle are kept
    whatever theirs)."""
    if shots is not None:
        runs = runs[(runs["shots"] == shots) | runs["method"].isin(REFERENCES)]
    cols = [f"iou_{c}" for c in CLASS_NAMES]
    table = runs.groupby(["method", "shots"], sort=False)[["miou", *cols]].mean() * 100
    table.columns = ["mIoU", *CLASS_NAMES]
    table.index = [
        f"{METHOD_NAMES.get(m, m)} ({s}-shot)" if m not in REFERENCES else METHOD_NAMES[m]
        for m, s in table.index
    ]
    return table


def gain_over(
    runs: pd.DataFrame, baseline: str = "source_only", per_run: bool = False
) -> pd.DataFrame:
    """Per-class IoU gain (points) of each (method, shots) over the ``baseline``.

    Long format: ``method, shots, class, gain`` (and ``source`` where recorded: a run is only
    compared with a baseline of its own source). A source-only baseline is compared at every
    shot count; another baseline is matched shot for shot. When the source-only runs have
    several training seeds (``sweep --source-only-per-seed``: each seed adapts from its own
    model) each run is paired with its seed's model and the gain is that difference (a run
    whose seed has no source-only model has no gain); with one source-only model every run is
    compared with it. ``per_run``: one row per run (plus ``seed, run``), so that a figure draws
    the interval over those differences; else the mean gain per (method, shots, class).
    ``attrs["baseline"]`` says which baseline was used (the figure's legend shows it)."""
    long = long_per_class(runs)
    src = ["source"] if "source" in long else []
    base = long[long["method"] == baseline]
    if base.empty:
        raise DataError(f"no {baseline!r} run among the runs; cannot compute gains over it")
    others = long[long["method"] != baseline]
    seeds = base.groupby(src or (lambda _: 0))["seed"].nunique()
    per_seed = baseline == "source_only" and bool(seeds.gt(1).any())
    name = METHOD_NAMES.get(baseline, baseline)
    if per_seed:
        on = [*src, "seed", "class"]
        merged = others.merge(base[[*on, "iou"]], on=on, suffixes=("", "_base"))
        unpaired = len(others.drop_duplicates("run")) - len(merged.drop_duplicates("run"))
        text = f"gain over each seed's own {name} model (paired by seed)"
        if unpaired:
            text += f"; {unpaired} run{'s' * (unpaired > 1)} without one left out"
    else:
        on = [*src, "class"] if baseline == "source_only" else [*src, "shots", "class"]
        mean = base.groupby(on, sort=False)["iou"].mean().reset_index()
        merged = others.merge(mean, on=on, suffixes=("", "_base"))
        n = base.drop_duplicates([*src, "seed", "run"]).groupby(src or (lambda _: 0)).size()
        text = (
            f"gain over the one {name} model"
            if n.max() == 1
            else f"gain over the mean of {n.max()} {name} runs"
        )
    merged["gain"] = merged["iou"] - merged["iou_base"]
    keys = ["method", "shots", *src]
    if per_run:
        out = merged[[*keys, "seed", "run", "class", "gain"]]
    else:
        out = merged.groupby([*keys, "class"], sort=False)["gain"].mean().reset_index()
        out = out[[*keys, "class", "gain"]]
    out = out.reset_index(drop=True)
    out.attrs["baseline"] = text
    return out


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The sweep's ``summary.csv``: one row per run, columns ``method, shots, seed, split,
    source, miou, miou_13`` (SYNTHIA only) and one ``iou_<class>`` per class."""
    cols = ["method", "shots", "seed", "split", "source", "miou"]
    if runs["source"].eq("synthia").any():
        cols.append("miou_13")
    return runs[cols + [f"iou_{c}" for c in CLASS_NAMES]]


def write_table(
    table: pd.DataFrame, folder: str | os.PathLike, stem: str, digits: int = 1
) -> list[Path]:
    """Write ``table`` as ``<stem>.csv``, ``<stem>.md`` and ``<stem>.tex`` (numbers rounded
    to ``digits``; missing values shown as '-')."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}.{ext}" for ext in ("csv", "md", "tex")]
    table.to_csv(paths[0])
    shown = table.round(digits)
    paths[1].write_text(shown.to_markdown(floatfmt=f".{digits}f", missingval="-") + "\n")
    tex = shown.to_latex(float_format=f"%.{digits}f", na_rep="-", escape=True)
    paths[2].write_text(tex)
    return paths


def confusion(run: str | os.PathLike) -> ConfusionMatrix:
    path = Path(run) / "metrics_confusion.npy"
    if not path.is_file():
        raise DataError(f"{path} does not exist (is {run} a finished run folder?)")
    return ConfusionMatrix.load(path)


def row_normalised(cm: ConfusionMatrix) -> pd.DataFrame:
    """Confusion matrix with each ground-truth row divided by its total (NaN rows for classes
    absent from the ground truth), indexed and labelled by class name."""
    mat = cm.mat.double().cpu().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = mat / mat.sum(1, keepdims=True)
    names = list(CLASS_NAMES[: mat.shape[0]])
    return pd.DataFrame(
        norm,
        index=pd.Index(names, name="ground truth"),
        columns=pd.Index(names, name="prediction"),
    )
