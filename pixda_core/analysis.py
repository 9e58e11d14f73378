"""Per-class analysis over run folders: the tables and numbers that go into a paper.

A run folder is any folder holding ``metrics.json`` and ``config.yaml`` (see
:mod:`pixda_core.train.rundir`); a sweep folder holds run folders. Everything here reads those
files only, so it works on runs made anywhere (a cluster, a laptop) once copied together.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import ConfigError, DataError, PixdaError
from .labels import CLASS_NAMES
from .methods import REFERENCES, SOURCE_ONLY, TITLES, known
from .metrics import ConfusionMatrix
from .steptimes import read_timing
from .train.rundir import read_metrics

#: what a run took, from its timing.json: the device, the wall time (s) of its attempts, the
#: mean step time (s) and the peak memory (GB; GPU memory allocated, else the process's RSS)
TIMING = ("device", "wall_s", "step_s", "peak_memory_gb")

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


# ------------------------------------------------------------------- what a run computed

#: the columns :func:`load_runs` adds to tell settings apart (:func:`run_settings`)
SETTING_COLUMNS = ("fingerprint", "setting", "origin", "setting_label")
#: what a run without a config.yaml (a hand-made or very old folder) has in those columns
UNKNOWN = "-"
_SCHEDULE = ("batch_size", "lr", "momentum", "weight_decay", "lr_d", "betas", "power",
             "max_iters", "early_stop", "release_sgd")  # fmt: skip
#: the keys the shared settings of a run are made of (the schedule and the method's own
#: options are added by :func:`run_settings`); the rest of a config is where and how fast
#: it ran (paths, devices, workers, logging, checkpoints) or what the tables key on already
#: (method, shots, seed, split)
_COMMON = ("preset", "data.source", "data.source_list", "data.target", "data.size",
           "data.val_size", "data.val_limit", "model.backbone", "model.multi_level",
           "model.init", "run.precision", "run.cpu_bf16", "run.concat_forward",
           "method.seg_loss")  # fmt: skip


def _flat(config: dict) -> dict:
    """A config mapping as ``section.key -> value`` (lists as tuples, paths kept)."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in _flat(value).items()})
        else:
            out[key] = tuple(value) if isinstance(value, list) else value
    return out


def _read_config(folder: Path) -> dict | None:
    """A run's ``config.yaml`` over the defaults of its preset (keys added to the kit since
    the run keep their defaults), flat; None without one. Damaged: an error naming it."""
    import yaml

    from .config import PRESETS, preset
    from .textfiles import load_yaml, read_text

    path = folder / "config.yaml"
    if not path.is_file():
        return None
    fix = "restore it from the run's copy, or move the run folder out of the analysis"
    try:
        data = load_yaml(read_text(path, "config file", f"a run's YAML config; {fix}"))
    except (ValueError, RecursionError, yaml.YAMLError):
        raise DataError(f"config file {path} is damaged (not valid YAML); {fix}") from None
    if not isinstance(data, dict):
        raise DataError(f"config file {path} is damaged (not a YAML mapping); {fix}")
    name = data.get("preset")
    base = _flat(preset(name if name in PRESETS else "paper").to_dict())
    return base | _flat(data)


def _name(path) -> str | None:
    """A file named by what stays when a run folder is copied elsewhere: its name, and the run
    folder it lies in (``<run>/checkpoints/latest.pt`` -> ``<run>/latest.pt``)."""
    if path in (None, "none"):
        return path
    p = Path(str(path))
    parent = p.parent.parent if p.parent.name == "checkpoints" else p.parent
    return f"{parent.name}/{p.name}" if parent.name else p.name


def _toy_keys(metrics: dict) -> dict:
    """The toy benchmark a run was scored on (``metrics.json``'s ``toy``): format, gap, seed."""
    toy = metrics.get("toy") if isinstance(metrics.get("toy"), dict) else {}
    return {f"toy.{k}": toy[k] for k in ("version", "gap", "seed") if k in toy}


def _common(c: dict, metrics: dict) -> dict:
    """The keys every method's run shares with the source-only model (data, sizes, model,
    init, precision, loss, the toy), file names as :func:`_name` gives them."""
    out = {k: c.get(k) for k in _COMMON} | _toy_keys(metrics)
    out["model.init"] = _name(out["model.init"])
    out["data.source_list"] = _name(out["data.source_list"])
    return out


def _source_only_settings(c: dict, metrics: dict) -> dict:
    """What a source-only model computed: the shared keys and its ``pretrain`` schedule."""
    return _common(c, metrics) | {f"pretrain.{k}": c.get(f"pretrain.{k}") for k in _SCHEDULE}


def _given_model(path: Path) -> dict:
    """The settings of a source-only model given as a file (``run.restore_from``): those of
    its run folder when it is one of ours (``<run>/checkpoints/<file>.pt``), else its name."""
    run = path.parent.parent if path.parent.name == "checkpoints" else None
    config = _read_config(run) if run is not None and run.is_dir() else None
    if config is None:
        return {"restore_from": _name(path)}
    try:
        metrics = read_metrics(run / "metrics.json")
    except DataError:
        metrics = {}
    return _source_only_settings(config, metrics)


def run_settings(folder: Path, metrics: dict) -> tuple[dict, dict] | None:
    """(settings, source-only model's settings) of a run: every config key that changes what
    it computed apart from its method, shots, seed and split (``section.key -> value``: the
    shared keys, its schedule, ``source_only.*`` for the model it started from where that
    differs, ``own.*`` for the method's own options; the toy benchmark's format, gap and seed
    as ``toy.*``), and the settings of the source-only model it started from (its own for a
    source-only run). None without a config.yaml."""
    c = _read_config(folder)
    if c is None:
        return None
    if metrics["method"] == SOURCE_ONLY:  # its schedule named as the others name it
        own = _source_only_settings(c, metrics)
        named = {f"source_only.{k}" if k.startswith("pretrain.") else k: v for k, v in own.items()}
        return named, own
    restore = c.get("run.restore_from")
    origin = _source_only_settings(c, metrics) if restore is None else _given_model(Path(restore))
    settings = _common(c, metrics)
    method = known(metrics["method"]) or _plugin(c.get("method.name"))
    section = method.schedule if method is not None else "adapt"
    settings |= {f"{section}.{k}": c.get(f"{section}.{k}") for k in _SCHEDULE}
    # the source-only model it started from, where it is not told by the keys above
    missing = object()
    settings |= {f"source_only.{k}": v for k, v in origin.items()
                 if settings.get(k, missing) != v}  # fmt: skip
    settings["run.own_source_only"] = bool(c.get("run.own_source_only")) and restore is None
    # (a method not loaded here: every method.* key counts as its own, so that runs of other
    # settings are never pooled)
    own = method.options if method is not None else [k for k in c if k.startswith("method.")]
    return settings | {f"own.{k}": c.get(k) for k in own}, origin


def _plugin(spec):
    """A plug-in method named by a run's config (an entry point's name, a file or module
    spec), loaded so that its title and options are known here; None where it cannot be
    (then the run is read by its name, and every ``method.*`` key counts as its own)."""
    from .methods import method_class

    if not isinstance(spec, str):
        return None
    try:
        return method_class(spec)
    except PixdaError:
        return None


def _hash(settings: dict) -> str:
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _value_words(key: str, v) -> str:
    """One setting in words: "64x32", "75 it.", "10 KD steps", "gap 1", "lr 0.0025"."""
    name = key.rsplit(".", 1)[-1]
    if isinstance(v, tuple) and name in ("size", "val_size"):
        return ("val " if name == "val_size" else "") + "x".join(map(str, v))
    if isinstance(v, bool):
        return f"{name.replace('_', ' ')} {'on' if v else 'off'}"
    number = isinstance(v, int | float)
    words = {
        "preset": f"{v} preset",
        "early_stop": f"{v} it.",
        "max_iters": f"poly horizon {v}",
        "batch_size": f"batch {v}",
        "kd_steps": f"{v} KD steps",
        "gap": f"gap {v:g}" if number else f"gap {v}",
        "version": f"toy format {v}",
        "seed": f"toy seed {v}",
        "backbone": str(v),
        "init": f"init {v}",
        "restore_from": f"from {v}",
        "seg_loss": f"{v} loss",
        "val_limit": f"{v} val images" if v else "all val images",
    }
    if name in words:
        return words[name]
    return f"{name.replace('_', ' ')} {v:g}" if number else f"{name.replace('_', ' ')} {v}"


def _words(key: str, v) -> str:
    if key == "run.own_source_only":
        return "a source-only model per seed" if v else "one source-only model"
    if key.startswith("source_only."):
        return "source-only " + _value_words(key.removeprefix("source_only."), v)
    return _value_words(key, v)


def differing_keys(runs: pd.DataFrame, ignore=()) -> list[str]:
    """The settings (:func:`run_settings` keys) whose values differ between ``runs`` (among
    the runs that have the key), in the order the runs list them."""
    if "settings" not in runs:
        return []
    known = [d for d in runs["settings"] if isinstance(d, dict)]
    if not known:
        return []
    values = pd.DataFrame([{k: json.dumps(v, default=str) for k, v in d.items()} for d in known])
    varying = values.columns[values.nunique(dropna=True) > 1]
    return [k for k in varying if k not in ignore]


def setting_labels(runs: pd.DataFrame, ignore=()) -> pd.Series:
    """Each run's settings in words, the keys that differ between ``runs`` only ("64x32, 75
    it., source-only 120 it."); "" where nothing differs, "settings not recorded" for a run
    without a config.yaml among runs with one. ``ignore``: keys said elsewhere (a gap column)."""
    keys = differing_keys(runs, ignore)
    if "settings" not in runs:
        return pd.Series("", index=runs.index, dtype=object)
    sizes = "data.size" in keys
    some = runs["settings"].map(lambda d: isinstance(d, dict))

    def label(d) -> str:
        if not isinstance(d, dict):
            return "settings not recorded" if some.any() else ""
        shown = [k for k in keys if k in d]
        if sizes and d.get("data.val_size") == d.get("data.size"):
            shown = [k for k in shown if k != "data.val_size"]  # "64x32" says both
        return ", ".join(_words(k, d[k]) for k in shown)

    return runs["settings"].map(label).astype(object)


def with_settings(runs: pd.DataFrame, ignore=()) -> pd.DataFrame:
    """``runs`` with :data:`SETTING_COLUMNS` (a hand-made frame without them: one unrecorded
    setting, :data:`UNKNOWN`), ``setting_label`` worked out over these runs (keys that are
    the same in all of them are not said)."""
    missing = {c: UNKNOWN for c in SETTING_COLUMNS[:3] if c not in runs}
    runs = runs.assign(**missing) if missing else runs
    return runs.assign(setting_label=setting_labels(runs, ignore))


def settings_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per setting the few-shot methods ran (``setting``): its label, the methods,
    shot counts and runs in it; what :func:`choose_setting` takes."""
    runs = with_settings(runs)
    adapted = runs[~runs["method"].isin(REFERENCES)]
    adapted = adapted.assign(
        setting_label=setting_labels(adapted, [k for k in differing_keys(adapted)
                                               if k.startswith("own.")]),
        title=adapted["method"].map(METHOD_NAMES).fillna(adapted["method"]),
    )  # fmt: skip
    return (
        adapted.groupby("setting", sort=False)
        .agg(label=("setting_label", "first"),
             methods=("title", lambda t: ", ".join(dict.fromkeys(t))),
             shots=("shots", lambda x: ", ".join(map(str, sorted(set(x))))),
             runs=("run", "size"))
        .reset_index()
    )  # fmt: skip


def choose_setting(runs: pd.DataFrame, setting: str | None) -> pd.DataFrame:
    """The runs of one setting (``setting``: a ``setting`` or ``fingerprint`` hash, or its
    start, as :func:`settings_table` lists them): the few-shot runs in it and the source-only
    model and oracle runs they started from (``origin``). None: ``runs`` as they are."""
    if setting is None:
        return runs
    runs = with_settings(runs)
    text = str(setting)
    hit = runs["setting"].str.startswith(text) | runs["fingerprint"].str.startswith(text)
    hit &= text != "" and text != UNKNOWN
    if not hit.any():
        listed = settings_table(runs)
        rows = listed[["setting", "label", "methods"]].itertuples(index=False)
        known = "; ".join(f"{s} ({lab or 'the only one'}: {m})" for s, lab, m in rows)
        raise ConfigError(f"setting {setting!r}: no run has it; the runs have {known or 'none'}")
    chosen = runs[hit]
    origins = set(chosen["origin"])
    refs = runs["method"].isin(REFERENCES) & runs["origin"].isin(origins) & ~hit
    if chosen["method"].isin(REFERENCES).all():  # a source-only model chosen: its adaptations
        refs = runs["origin"].isin(origins) & ~hit
    keep = hit | refs
    return with_settings(runs[keep].reset_index(drop=True))


def load_runs(paths) -> pd.DataFrame:
    """One row per finished run: ``run, path, method, source, shots, seed, split, miou, miou_13``
    (NaN unless SYNTHIA), ``pixel_accuracy``, ``gap`` (the toy benchmark's; NaN on real data),
    one ``iou_<class>`` per class, and what it computed, read from its ``config.yaml`` (so for
    runs of any age): ``settings`` (:func:`run_settings`), ``fingerprint`` (a short hash of
    them: runs with different fingerprints are never pooled), ``setting`` (the hash of what
    the methods of one comparison must share: the settings less the method's own options),
    ``origin`` (a hash of the source-only model it started from; a source-only run's own)
    and ``setting_label`` (:func:`setting_labels` over these runs). A run without a
    config.yaml has :data:`UNKNOWN` ones. A damaged ``metrics.json`` or ``config.yaml`` is an
    error naming it (:func:`read_metrics`)."""
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
        found = run_settings(folder, m)
        if found is None:
            row.update(settings=None, fingerprint=UNKNOWN, setting=UNKNOWN, origin=UNKNOWN)
        else:
            settings, origin = found
            shared = {k: v for k, v in settings.items() if not k.startswith("own.")}
            row.update(settings=settings, fingerprint=_hash(settings), setting=_hash(shared),
                       origin=_hash(origin))  # fmt: skip
        row.update({f"iou_{c}": m["per_class_iou"].get(c) for c in CLASS_NAMES})
        timing = read_timing(folder) or {}  # what it took (none: NaN)
        row.update({k: timing.get(k, np.nan) for k in TIMING})
        rows.append(row)
    if not rows:
        raise DataError(f"no finished runs (folders with metrics.json) under {paths}")
    frame = pd.DataFrame(rows)
    iou_cols = [c for c in frame if c.startswith(("iou_", "miou"))]
    frame[iou_cols] = frame[iou_cols].astype(float)
    order = {m: i for i, m in enumerate(METHOD_NAMES)}
    frame["_o"] = frame["method"].map(order).fillna(len(order))
    frame = frame.sort_values(["_o", "shots", "seed"]).drop(columns="_o").reset_index(drop=True)
    return with_settings(frame)


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


def _settings_notes(runs: pd.DataFrame) -> list[str]:
    """What :func:`comparison_notes` says about settings: the few-shot methods ran several
    (which keys differ: each has rows of its own), a reference's runs are not of the model
    the others started from, runs that record no settings."""
    notes = []
    adapted = runs[~runs["method"].isin(REFERENCES)]
    known = runs[runs["fingerprint"] != UNKNOWN]
    if len(known) and len(known) < len(runs):
        k = len(runs) - len(known)
        notes.append(
            f"{k} run{'s' * (k > 1)} record no settings (no config.yaml): kept apart as a "
            "setting of their own, never averaged or paired with the others"
        )
    if adapted["setting"].nunique() > 1:
        listed = settings_table(runs)
        parts = "; ".join(f"{lab} ({m})" for lab, m in listed[["label", "methods"]].values)
        keys = [k for k in differing_keys(adapted) if not k.startswith("own.")]
        notes.append(
            f"the few-shot runs hold {len(listed)} settings ({parts}; keys that differ: "
            f"{', '.join(keys) or 'not recorded'}): each has rows of its own, and paired tests "
            "and bold compare methods within one setting only; choose one with the setting "
            "parameter of notebook 04 (sweep --collect --setting)"
        )
    own = adapted.groupby(["method", "setting"])["fingerprint"].nunique()
    if (own > 1).any():
        methods = ", ".join(METHOD_NAMES.get(m, m) for m in own[own > 1].index.unique("method"))
        keys = [k.removeprefix("own.") for k in differing_keys(adapted) if k.startswith("own.")]
        notes.append(
            f"{methods} ran with different options of its own ({', '.join(keys)}): a row for "
            "each, each compared with the reference"
        )
    origins = set(adapted["origin"]) - {UNKNOWN}
    for method in REFERENCES:
        ref = runs[(runs["method"] == method) & (runs["origin"] != UNKNOWN)]
        if origins and len(ref) and not set(ref["origin"]) & origins:
            started = runs[runs["origin"].isin(origins) | (runs["method"] == method)]
            keys = [k.removeprefix("source_only.") for k in differing_keys(started)
                    if not k.startswith(("own.", "adapt."))]  # fmt: skip
            notes.append(
                f"the {METHOD_NAMES[method]} runs are not of the settings of the source-only "
                f"model the other runs started from (keys that differ: {', '.join(keys)})"
            )
        elif ref["origin"].nunique() > 1:
            notes.append(
                f"{ref['origin'].nunique()} {METHOD_NAMES[method]} models of different settings: "
                "a row for each"
            )
    return notes


def comparison_notes(runs: pd.DataFrame) -> list[str]:
    """What makes the runs of a table or figure less than like for like, one sentence each:
    several sources; several settings (:func:`run_settings`: which keys differ); methods that
    ran different shot counts; at one shot count and setting, methods that ran different
    (seed, split) pairs. Empty when every comparison is like for like."""
    runs = with_settings(runs)
    notes = []
    sources = runs["source"].value_counts() if "source" in runs else pd.Series(dtype=int)
    if len(sources) > 1:
        counts = ", ".join(f"{s}: {n} run{'s' * (n > 1)}" for s, n in sources.items())
        notes.append(
            f"the runs come from different sources ({counts}): the tables keep them apart, "
            "the figures mix them; give one source's runs to compare like for like"
        )
    notes += _settings_notes(runs)
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
    for (n, _), group in adapted.groupby(["shots", "setting"], sort=False):
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
    return list(dict.fromkeys(notes))


#: what one run is: the runs that repeat all of these are averaged into one, everywhere
RUN_KEYS = ["source", "method", "shots", "setting", "fingerprint", "seed", "split"]


def one_per_key(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` (a :func:`pixda_core.analysis.load_runs` frame) with the runs that repeat a
    (source, method, shots, settings, seed, split) averaged into one row (numbers averaged,
    NaNs left out; other columns from the first run): the figures count runs as the tables do."""
    keys = [k for k in RUN_KEYS if k in runs]
    dup = runs.duplicated(subset=keys, keep=False)
    if not dup.any():
        return runs
    numeric = [c for c in runs.select_dtypes("number") if c not in keys]
    grouped = runs.groupby(keys, sort=False, dropna=False)
    first = grouped.first()
    first[numeric] = grouped[numeric].mean()
    return first.reset_index()[list(runs.columns)]


def long_per_class(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-class IoU in long format: ``method, shots, seed, run, fingerprint, setting,
    origin, setting_label, class, iou`` (IoU in %), and ``source`` where the runs record it. Runs
    repeating a (source, method, shots, settings, seed, split) are averaged into one first
    (:func:`one_per_key`), so figures count runs as the tables do; runs of
    different settings stay apart (their labels tell them apart in a figure)."""
    runs = one_per_key(with_settings(runs))
    cols = [f"iou_{c}" for c in CLASS_NAMES]
    ids = ["method", "shots", "seed", "run", "fingerprint", "setting", "origin", "setting_label",
           *(["source"] if "source" in runs else [])]  # fmt: skip
    long = runs.melt(id_vars=ids, value_vars=cols, var_name="class", value_name="iou")
    long["class"] = long["class"].str.removeprefix("iou_")
    long["iou"] *= 100
    return long


def per_class_table(runs: pd.DataFrame, shots: int | None = None) -> pd.DataFrame:
    """Mean per-class IoU (%) over seeds, one row per (method, shots, settings), one column
    per class, plus ``mIoU``; a row's name says its settings where several are there
    (:func:`setting_labels`). ``shots`` keeps one shot count (source-only and the oracle are
    kept whatever theirs)."""
    if shots is not None:
        runs = runs[(runs["shots"] == shots) | runs["method"].isin(REFERENCES)]
    runs = with_settings(runs)
    cols = [f"iou_{c}" for c in CLASS_NAMES]
    keys = ["method", "shots", "fingerprint"]
    table = runs.groupby(keys, sort=False)[["miou", *cols]].mean() * 100
    table.columns = ["mIoU", *CLASS_NAMES]
    labels = runs.groupby(keys, sort=False)["setting_label"].first()
    table.index = [
        (f"{METHOD_NAMES.get(m, m)} ({s}-shot)" if m not in REFERENCES else METHOD_NAMES[m])
        + (f", {lab}" if lab else "")
        for (m, s, _), lab in zip(table.index, labels, strict=True)
    ]
    return table


def gain_over(
    runs: pd.DataFrame, baseline: str = "source_only", per_run: bool = False
) -> pd.DataFrame:
    """Per-class IoU gain (points) of each (method, shots, settings) over the ``baseline``.

    Long format: ``method, shots, fingerprint, setting_label, class, gain`` (and ``source``
    where recorded: a run is only compared with a baseline of its own source). A run is
    compared with the source-only model it started from (``origin``: a source-only run of
    other settings is never its baseline). A source-only baseline is compared at every shot
    count; another baseline is matched shot for shot. When the source-only runs have
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
    # what pairs a run with its baseline: the source-only model it started from (a source-only
    # run's origin is its own settings), or the setting it shares with another baseline
    tie = "origin" if baseline == SOURCE_ONLY else "setting"
    if not others.merge(base[[*src, tie]].drop_duplicates(), on=[*src, tie]).shape[0]:
        raise DataError(
            f"no {baseline!r} run of the settings the other runs started from (their source-only "
            "model); cannot compute gains over it"
        )
    seeds = base.groupby(src or (lambda _: 0))["seed"].nunique()
    per_seed = baseline == "source_only" and bool(seeds.gt(1).any())
    name = METHOD_NAMES.get(baseline, baseline)
    if per_seed:
        on = [*src, tie, "seed", "class"]
        merged = others.merge(base[[*on, "iou"]], on=on, suffixes=("", "_base"))
        unpaired = len(others.drop_duplicates("run")) - len(merged.drop_duplicates("run"))
        text = f"gain over each seed's own {name} model (paired by seed)"
        if unpaired:
            text += f"; {unpaired} run{'s' * (unpaired > 1)} without one left out"
    else:
        on = [*src, tie, "class"] if baseline == "source_only" else [*src, tie, "shots", "class"]
        mean = base.groupby(on, sort=False)["iou"].mean().reset_index()
        merged = others.merge(mean, on=on, suffixes=("", "_base"))
        n = base.drop_duplicates([*src, tie, "seed", "run"]).groupby([*src, tie]).size()
        text = (
            f"gain over the one {name} model"
            if n.max() == 1
            else f"gain over the mean of {n.max()} {name} runs"
        )
    merged["gain"] = merged["iou"] - merged["iou_base"]
    keys = ["method", "shots", "fingerprint", "setting_label", *src]
    if per_run:
        out = merged[[*keys, "seed", "run", "class", "gain"]]
    else:
        out = merged.groupby([*keys, "class"], sort=False)["gain"].mean().reset_index()
        out = out[[*keys, "class", "gain"]]
    out = out.reset_index(drop=True)
    out.attrs["baseline"] = text
    return out


def summary_table(runs: pd.DataFrame, settings: bool = False) -> pd.DataFrame:
    """The sweep's ``summary.csv``: one row per run, columns ``method, shots, seed, split,
    source, miou, miou_13`` (SYNTHIA only), one ``iou_<class>`` per class, and what the run
    took (:data:`TIMING`: its device, wall time, mean step time, peak memory); with
    ``settings`` (notebook 04's) also ``fingerprint, setting, setting_label, run``."""
    cols = ["method", "shots", "seed", "split", "source", "miou"]
    if runs["source"].eq("synthia").any():
        cols.append("miou_13")
    extra = ["fingerprint", "setting", "setting_label", "run"] if settings else []
    runs = with_settings(runs) if settings else runs
    timing = [c for c in TIMING if c in runs]  # (tables made by hand may leave them out)
    return runs[cols + [f"iou_{c}" for c in CLASS_NAMES] + timing + extra]


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


def has_baseline(runs: pd.DataFrame) -> bool:
    """Is there a source-only run of the model some adapted run started from (a gain over it
    to show)?"""
    runs = with_settings(runs)
    base = runs["method"] == SOURCE_ONLY
    return bool(runs.loc[base, "origin"].isin(runs.loc[~base, "origin"]).any())
