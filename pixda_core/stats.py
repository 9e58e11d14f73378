"""Statistics over runs for papers: means with confidence intervals, paired tests against a
reference method, and tables whose marks say what the tests found.

Why: on the toy benchmark the run-to-run spread of mIoU (about ±4 points) is larger than most
gaps between methods, so a table of means alone ranks methods by noise. Every number here is
in IoU points (%), over the runs of one (source, method, shots) cell.

Counting (one rule for cells, captions, tests and figures, :func:`observations`): a run is one
observation per (source, method, shots, settings, seed, split); runs repeating the same seed
and split with the same settings are averaged into one, and a run without a value (NaN: a
class absent from val, a failed evaluation) is left out of that metric's n. Different sources
never share a cell, and only runs with a recorded split pair (a missing split never pairs).

Settings (:func:`pixda_core.analysis.run_settings`, read from each run's ``config.yaml``): runs
whose ``fingerprint`` differs (sizes, schedule lengths, learning rates, the source-only model,
the toy's gap, a method's own options, ...) never share a cell: each has its own row, named by
the keys that differ (``setting_label``: "PixDA, 64x32, 75 it."). A method is paired with the
reference, and bold decided, only within one ``setting`` (what every method of a comparison
shares: the settings less each method's own options).

* mean, standard deviation (ddof 1), n and the t-interval of the mean (``scipy.stats.t``);
  a single run has no interval (NaN, shown as "n=1" in tables, never as ± 0);
* each method's difference to a reference method (FT by default) over the (seed, split) pairs
  both ran at the same source and shots: mean difference and its t-interval, the paired t-test
  (``scipy.stats.ttest_rel``) and the Wilcoxon signed-rank test (``scipy.stats.wilcoxon``,
  its defaults: zero differences dropped, exact p-values for small n). Fewer than two pairs,
  or differences that are all the same (zero variance: the t statistic is not defined) give
  no t-test and say why in ``note``;
* Holm's correction (``statsmodels.stats.multitest.multipletests(method="holm")``) over each
  table's family of tests against the reference (``correction=None`` turns it off): the marks
  use the adjusted p, the CSV holds both.

Protocols: SYNTHIA's ``miou`` is the mean over its 16 classes, so its tables say "mIoU-16"
and show "mIoU-13" beside it; in a per-class table a class outside the run's protocol shows as
"outside" (never tested, never bold). GTA5's mIoU is over the 19 classes.

Source-only is described (mean, n) but not tested against the reference: it trains on no
target shots. How far each method gets from it is the gain figure
(:func:`pixda_core.viz.plot_gain` with :func:`pixda_core.analysis.gain_over`, paired by seed
when each seed has its own source-only model).

Tables (:func:`render`, :func:`write_tables`): mean ± CI half-width (or ± sd), n in the cell
where it is not the table's usual n, a mark against the reference (:data:`BETTER`,
:data:`WORSE`, :data:`NOT_SIGNIFICANT`, :data:`NOT_TESTABLE`) and **bold** by one rule
(:func:`comparison`). The note under the table (the caption in LaTeX) states the rule, the
marks, the correction and what varied between the runs.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from .analysis import RUN_KEYS as _RUN_KEYS
from .analysis import one_per_key  # noqa: F401  (a run counts once: tables and figures)
from .errors import DataError
from .labels import CLASS_NAMES, PROTOCOLS
from .methods import ORACLE, REFERENCES, SOURCE_ONLY, TITLES

#: the fingerprint of a run without a config.yaml (:data:`pixda_core.analysis.UNKNOWN`)
UNKNOWN = "-"

#: the confidence level of every interval (tables, figures)
CONFIDENCE = 0.95
#: the significance level of the paired tests behind the marks and the bold
ALPHA = 0.05
#: the method the others are compared with, run for run
REFERENCE = "finetune"
#: the correction over a table's family of tests against the reference (None: none)
CORRECTION = "holm"
#: marks against the reference at the same shots: significantly better, significantly worse,
#: tested and not significantly different, not testable
BETTER, WORSE, NOT_SIGNIFICANT, NOT_TESTABLE = "↑", "↓", "†", "‡"
#: ``comparison()["mark"]`` -> its symbol
MARKS = {"better": BETTER, "worse": WORSE, "ns": NOT_SIGNIFICANT, "untested": NOT_TESTABLE}
#: the fewest (seed, split) pairs a paired test is run on
MIN_PAIRS = 2
#: what a per-class cell shows for a class outside its source's protocol
OUTSIDE = "outside"
#: a run without a recorded split (source-only, older runs): shown so, never paired
NO_SPLIT = "-"
#: differences below this (points) are float noise, not a difference (0.4245 * 100 is not 42.45)
_NOISE = 9

_KEYS = ["source", "method", "shots", "setting", "fingerprint", "metric"]
#: a table's cell without its metric: one (source, method, shots, settings)
_CELL = _KEYS[:-1]
#: the columns of :func:`paired` after the keys
_PAIRED = ["n_pairs", "diff", "diff_low", "diff_high", "p_ttest", "p_wilcoxon", "note"]
#: sources whose ``miou`` is not over the 19 classes: their protocol
SOURCE_PROTOCOL = {"synthia": "16"}
_SOURCE_TITLES = {"gta5": "GTA5", "synthia": "SYNTHIA"}
#: the names of the protocols' mIoUs in tables
MIOU_NAMES = ("mIoU", "mIoU-16", "mIoU-13")


def source_title(source: str) -> str:
    return _SOURCE_TITLES.get(source, source)


def _protocol_of(source) -> str:
    return SOURCE_PROTOCOL.get(source, "19")


def metric_columns(runs: pd.DataFrame) -> dict[str, str]:
    """:func:`pixda_core.analysis.load_runs` column -> metric name in tables: ``mIoU``,
    ``mIoU-13`` (when any run has it: SYNTHIA) and the class names (those with a column).
    SYNTHIA's ``miou`` is named "mIoU-16" in its rows (:func:`run_values`)."""
    cols = {"miou": "mIoU"}
    if "miou_13" in runs and runs["miou_13"].notna().any():
        cols["miou_13"] = "mIoU-13"
    return cols | {f"iou_{c}": c for c in CLASS_NAMES if f"iou_{c}" in runs}


def _keyed(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with ``source`` ("-" where not recorded), ``split`` (:data:`NO_SPLIT`) and
    the settings' columns (:func:`pixda_core.analysis.with_settings`)."""
    from .analysis import with_settings

    source = runs["source"].fillna("-") if "source" in runs else "-"
    split = runs["split"].fillna(NO_SPLIT) if "split" in runs else NO_SPLIT
    return with_settings(runs.assign(source=source, split=split))


def run_values(runs: pd.DataFrame, metrics=("mIoU",)) -> pd.DataFrame:
    """One row per (run, metric): ``source, method, shots, seed, split, run, metric, value``
    (points) and ``in_protocol`` (False for a class outside its source's protocol).

    ``metrics``: "mIoU" (the protocol's: "mIoU" for GTA5, "mIoU-16" and "mIoU-13" for
    SYNTHIA), "mIoU-16", "mIoU-13" or class names; None: all of them. A missing ``split``
    becomes :data:`NO_SPLIT` (shown, never paired); a missing ``source`` "-"."""
    names = metric_columns(runs)
    if metrics is not None:
        metrics = list(metrics)
        known = [*MIOU_NAMES, *(n for n in names.values() if n not in MIOU_NAMES)]
        unknown = [m for m in metrics if m not in known]
        if unknown:
            raise DataError(f"unknown metric {unknown[0]!r}; expected one of {', '.join(known)}")
        wanted = set(metrics)
        if "mIoU" in wanted:
            wanted |= {"mIoU-16", "mIoU-13"}
    frame = _keyed(runs)
    long = frame.melt(
        id_vars=_RUN_KEYS + ["run", "setting_label"], value_vars=list(names), var_name="column",
        value_name="value",
    )  # fmt: skip
    protocol = long["source"].map(_protocol_of)
    metric = long["column"].map(names)
    # the main mIoU is over the source's protocol: named after it where that is not 19
    main = long["column"].eq("miou") & protocol.ne("19")
    long["metric"] = metric.where(~main, "mIoU-" + protocol)
    outside = pd.Series(False, index=long.index)
    for p, ids in PROTOCOLS.items():  # three protocols, a vectorised test each
        out_names = [f"iou_{CLASS_NAMES[i]}" for i in range(len(CLASS_NAMES)) if i not in ids]
        outside |= protocol.eq(p) & long["column"].isin(out_names)
    long["in_protocol"] = ~outside
    if metrics is not None:
        long = long[long["metric"].isin(wanted)]
    long["value"] = long["value"].astype(float) * 100
    return long.drop(columns="column").reset_index(drop=True)


def observations(runs: pd.DataFrame, metrics=("mIoU",)) -> pd.DataFrame:
    """The counting rule: one row per (source, method, shots, seed, split, metric) with a
    value: ``value`` the mean of the runs sharing that key (repeats of the same settings are
    one observation, not several), ``runs`` how many runs it averages. A run whose value is NaN
    is left out (of n, of the pairs, of the captions)."""
    long = run_values(runs, metrics).dropna(subset=["value"])
    keys = [*_RUN_KEYS, "metric"]
    out = long.groupby(keys, sort=False).agg(
        value=("value", "mean"), runs=("value", "size"), in_protocol=("in_protocol", "first"),
        setting_label=("setting_label", "first"),
    )  # fmt: skip
    return out.reset_index()


def ci_half_width(sd, n, confidence: float = CONFIDENCE):
    """Half-width of the t-interval of a mean: ``t(df = n - 1) quantile * sd / sqrt(n)``
    (vectorised). NaN for n < 2: one run says nothing about the spread; 0 for sd 0."""
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = stats.t.ppf(0.5 + confidence / 2, np.where(n > 1, n - 1, np.nan))
        return q * np.asarray(sd, dtype=float) / np.sqrt(n)


def t_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """(low, high) t-interval of the mean of ``values`` (NaNs dropped; NaN for fewer than two
    values). seaborn takes it as ``errorbar=``, so figures show the tables' intervals."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) < 2:
        return (np.nan, np.nan)
    half = float(ci_half_width(x.std(ddof=1), len(x), confidence))
    return (x.mean() - half, x.mean() + half)


def describe(runs: pd.DataFrame, metrics=("mIoU",), confidence: float = CONFIDENCE):
    """Per (source, method, shots, metric): ``n, mean, sd, ci_half, ci_low, ci_high`` in
    points over the cell's observations (:func:`observations`: repeats averaged, NaNs left
    out), ``runs`` (the runs behind them) and ``in_protocol``. A cell without any value has
    n 0 and a NaN mean."""
    long = run_values(runs, metrics)
    cells = long.groupby(_KEYS, sort=False)[["in_protocol", "setting_label"]].first()
    cells = cells.reset_index()
    obs = observations(runs, metrics)
    agg = (
        obs.groupby(_KEYS, sort=False)
        .agg(n=("value", "size"), mean=("value", "mean"), sd=("value", "std"),
             runs=("runs", "sum"))
        .reset_index()
    )  # fmt: skip
    out = cells.merge(agg, on=_KEYS, how="left")
    out[["n", "runs"]] = out[["n", "runs"]].fillna(0).astype(int)
    out["ci_half"] = ci_half_width(out["sd"], out["n"], confidence)
    out["ci_low"] = out["mean"] - out["ci_half"]
    out["ci_high"] = out["mean"] + out["ci_half"]
    cols = [*_KEYS, "n", "mean", "sd", "ci_half", "ci_low", "ci_high", "runs", "in_protocol",
            "setting_label"]  # fmt: skip
    return out[cols]


def by_gap(runs: pd.DataFrame, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """mIoU per (method, shots, gap) over the runs of a sweep over the toy's domain gap
    (``runs["gap"]``): :func:`describe`'s columns plus ``gap`` and ``label`` (the method, with
    the shots where it has them)."""
    from .analysis import setting_labels

    runs = runs.dropna(subset=["gap"])
    labels = setting_labels(_keyed(runs), ignore=("toy.gap",))  # the gap is the columns
    frames = [
        describe(group, ("mIoU",), confidence).assign(gap=gap)
        for gap, group in runs.assign(_label=labels).groupby("gap")
    ]
    if not frames:
        raise DataError("no run records a toy benchmark's gap")
    out = pd.concat(frames, ignore_index=True)
    label = pd.Series(labels.to_numpy(), index=_keyed(runs)["fingerprint"].to_numpy())
    out["setting_label"] = out["fingerprint"].map(label[~label.index.duplicated()])
    out.insert(0, "label", _labels(out.drop(columns="source")))
    return out


def render_by_gap(table: pd.DataFrame, digits: int = 1) -> str:
    """:func:`by_gap` as Markdown: a row per method, a column per gap, mean ± CI half-width
    (n=k where it is not the usual n)."""
    n_usual = int(table["n"].mode().max())
    mean = table["mean"].map(f"{{:.{digits}f}}".format)
    half = (" ± " + table["ci_half"].map(f"{{:.{digits}f}}".format)).where(table["n"] > 1, "")
    n = (" (n=" + table["n"].astype(str) + ")").where(table["n"] != n_usual, "")
    cells = table.assign(cell=mean + half + n, col="gap " + table["gap"].map("{:g}".format))
    wide = cells.pivot(index="label", columns="col", values="cell")
    wide = wide.reindex(index=pd.unique(cells["label"]), columns=pd.unique(cells["col"]))
    wide.index.name = wide.columns.name = None
    note = (
        f"mIoU (%) on target val: mean ± {CONFIDENCE:.0%} CI half-width (t-interval) over "
        f"n = {n_usual} runs unless given."
    )
    return wide.fillna("").to_markdown(colalign=("left", *["right"] * wide.shape[1])) + (
        "\n\n" + note + "\n"
    )


def _degenerate(d: np.ndarray) -> str:
    """Why the differences ``d`` (points) give no t-test, or "" (float noise below 1e-9
    points is no difference)."""
    r = np.round(d, _NOISE)
    if len(r) < MIN_PAIRS:
        return f"{len(r)} pair: no test"
    if not r.any():
        return "all differences are zero: no test"
    if np.ptp(r) == 0:
        return f"every difference is {r[0]:+g}: zero variance, no test"
    return ""


def _paired_tests(group: pd.DataFrame, confidence: float) -> pd.Series:
    """The tests of one (source, method, shots, metric) over its pairs with the reference."""
    a, b = group["value"].to_numpy(), group["value_ref"].to_numpy()
    d = a - b
    n = len(d)
    sd = d.std(ddof=1) if n > 1 else np.nan
    half = float(ci_half_width(sd, n, confidence))
    p_t = p_w = np.nan
    why = _degenerate(d)
    notes = [why] if why else []
    if n >= MIN_PAIRS and np.round(d, _NOISE).any():
        with warnings.catch_warnings():  # no RuntimeWarning from a zero-variance case
            warnings.simplefilter("ignore", RuntimeWarning)
            p_w = stats.wilcoxon(a, b).pvalue
            if not why:
                p_t = stats.ttest_rel(a, b).pvalue
        nonzero = np.count_nonzero(np.round(d, _NOISE))
        floor = 2 * 0.5**nonzero  # the smallest two-sided exact p of the signed-rank test
        if floor >= ALPHA:
            notes.append(f"Wilcoxon: {nonzero} non-zero pairs, exact p >= {floor:.3g}")
    return pd.Series(
        {
            "n_pairs": n,
            "diff": d.mean() if n else np.nan,
            "diff_low": d.mean() - half if n else np.nan,
            "diff_high": d.mean() + half if n else np.nan,
            "p_ttest": p_t,
            "p_wilcoxon": p_w,
            "note": "; ".join(notes),
        }
    )


def paired(
    runs: pd.DataFrame,
    reference: str = REFERENCE,
    metrics=("mIoU",),
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """Each method against ``reference`` at the same source and shots, over the (seed, split)
    pairs both ran: ``source, method, shots, metric, n_pairs, diff`` (method - reference,
    points), ``diff_low, diff_high`` (t-interval), ``p_ttest``, ``p_wilcoxon`` (raw),
    ``note`` (why a p-value is NaN, or why the Wilcoxon one cannot be small). Source-only, the
    oracle and the reference itself are left out; observations follow :func:`observations`
    (repeats averaged, NaNs out); a run without a recorded split never pairs."""
    obs = observations(runs, metrics)
    obs = obs[~obs["method"].isin(REFERENCES) & obs["in_protocol"]].drop(columns="in_protocol")
    keys = ["source", "shots", "setting", "seed", "split", "metric"]
    ref = obs[obs["method"] == reference].drop(columns=["method", "runs", "fingerprint",
                                                        "setting_label"])  # fmt: skip
    # a reference of several option sets in one setting has no one value to pair with
    ref = ref[~ref.duplicated(keys, keep=False)]
    others = obs[obs["method"] != reference]
    cells = run_values(runs, metrics)
    cells = cells[~cells["method"].isin([*REFERENCES, reference]) & cells["in_protocol"]]
    cells = cells[_KEYS].drop_duplicates()
    pairs = others[others["split"] != NO_SPLIT].merge(ref, on=keys, suffixes=("", "_ref"))
    if pairs.empty:
        tested = pd.DataFrame(columns=[*_KEYS, *_PAIRED]).astype({"note": object})
    else:
        tested = (
            pairs.groupby(_KEYS, sort=False)[["value", "value_ref"]]
            .apply(_paired_tests, confidence=confidence)
            .reset_index()
        )
    out = cells.merge(tested, on=_KEYS, how="left")
    out["n_pairs"] = out["n_pairs"].fillna(0).astype(int)
    missing = out["n_pairs"].eq(0)
    if missing.any():
        out.loc[missing, "note"] = _why_unpaired(runs, out[missing], others, reference)
    return out.reset_index(drop=True)


def _why_unpaired(runs, cells: pd.DataFrame, others: pd.DataFrame, reference: str) -> list:
    """Why each of ``cells`` has no pair: no split recorded, the reference ran there but has no
    value for the metric, or the reference did not run with the same source, shots, seed and
    split."""
    run_keys = ["source", "shots", "setting", "seed", "split"]
    frame = _keyed(runs)
    ref_runs = frame.loc[frame["method"] == reference, run_keys].drop_duplicates()
    own = cells[_KEYS].merge(others, on=_KEYS, how="left")
    split_known = own["split"].ne(NO_SPLIT) & own["split"].notna()
    ref_ran = own[run_keys].merge(ref_runs.assign(_ran=True), on=run_keys, how="left")["_ran"]
    own = own.assign(_split=split_known.to_numpy(), _ran=ref_ran.fillna(False).to_numpy())
    flags = own.groupby(_KEYS, sort=False)[["_split", "_ran"]].any()
    flags = cells[_KEYS].merge(flags.reset_index(), on=_KEYS, how="left")
    return np.select(
        [~flags["_split"].astype(bool), flags["_ran"].astype(bool)],
        [
            "split not recorded: a run without a split never pairs",
            f"{reference} ran with the same source, shots, settings, seed and split but has no "
            "value for it (absent from val?)",
        ],
        f"no {reference} run with the same source, shots, settings, seed and split",
    ).tolist()


# ---------------------------------------------------------------------- what varied, and n


def _ranges(values) -> str:
    """0, 1, 2, 5 -> '0-2, 5'."""
    v = sorted(set(values))
    groups = np.split(np.array(v), np.flatnonzero(np.diff(v) != 1) + 1)
    return ", ".join(f"{g[0]}-{g[-1]}" if len(g) > 2 else ", ".join(map(str, g)) for g in groups)


def _splits_text(splits) -> str:
    """'seed 0', 'seed 1', 'published' -> 'published; drawn with seeds 0, 1'."""
    s = pd.Series(sorted(set(splits)), dtype=object)
    drawn = s[s.str.startswith("seed ")].str.removeprefix("seed ").astype(int)
    parts = [x for x in s if not x.startswith("seed ") and x != "-"]
    if len(drawn):
        parts.append(f"drawn with seed{'s' if len(drawn) > 1 else ''} {_ranges(drawn)}")
    return "; ".join(parts) or "not recorded"


def _describe_group(g: pd.DataFrame) -> pd.Series:
    n, seeds, splits = len(g), g["seed"].unique(), g["split"].unique()
    seed_text, split_text = _ranges(seeds), _splits_text(splits)
    tied = (g["split"] == "seed " + g["seed"].astype(str)).all()
    if (splits == NO_SPLIT).all():
        split_part = ""
    else:
        split_part = f"; split: {split_text}"
    if n == 1:
        varies, text = "nothing", f"1 run (training seed {seed_text}{split_part})"
    elif len(seeds) > 1 and len(splits) > 1 and tied:
        varies = "seed and split"
        text = (
            f"n = {n} runs, each with its own training seed and split "
            f"(seeds {seed_text}; split drawn with the run's seed)"
        )
    elif len(seeds) > 1 and len(splits) > 1:
        varies = "seed and split"
        text = f"n = {n} runs; training seeds {seed_text} and splits ({split_text}) both vary"
    elif len(seeds) > 1:
        varies, text = "seed", f"n = {n} training seeds ({seed_text}){split_part}"
    else:
        varies, text = "split", f"n = {n} splits ({split_text}); training seed {seed_text}"
    repeats = int(g["runs"].sum()) - n
    if repeats and g["checked"].all():
        text += (
            f" ({repeats} more run{'s' * (repeats > 1)} repeating a seed and split with the "
            "same settings, averaged with it)"
        )
    elif repeats:  # no config.yaml: nothing says the repeats ran the same settings
        text += (
            f" ({repeats} more run{'s' * (repeats > 1)} repeating a seed and split, averaged "
            "with it; their settings are not recorded, so not checked to be the same)"
        )
    return pd.Series({"n": n, "seeds": seed_text, "splits": split_text, "varies": varies,
                      "variance": text})  # fmt: skip


def variance_sources(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (source, method, shots, settings): ``n, seeds, splits, varies`` ("seed", "split",
    "seed and split" or "nothing") and ``variance``, a sentence for captions, e.g. "n = 3
    training seeds (0-2); split: published" or "n = 3 splits (drawn with seeds 0-2); training
    seed 0". Counted as the cells are (:func:`observations` of the mIoU: repeats averaged, NaN
    runs left out). An interval over training seeds and one over splits answer different
    questions; the caption says which one a table shows."""
    obs = observations(runs, ("mIoU",))
    obs = obs[obs["metric"].isin(["mIoU", "mIoU-16"])]
    obs = obs.assign(checked=obs["fingerprint"].ne(UNKNOWN))
    return (
        obs.groupby(_CELL, sort=False)[["seed", "split", "runs", "checked"]]
        .apply(_describe_group)
        .reset_index()
    )


def _cell_label(method: str, shots: int, setting: str = "") -> str:
    """ "PixDA 1-shot", "PixDA 1-shot, 64x32, 75 it." (its settings where several are there)."""
    title = TITLES.get(method, method)
    label = title if method in REFERENCES else f"{title} {shots}-shot"
    return f"{label}, {setting}" if isinstance(setting, str) and setting else label


def _labels(cells: pd.DataFrame) -> list[str]:
    """ "PixDA 1-shot" and its settings where several are there (``setting_label``), with
    " (SYNTHIA)" after it when the table holds several sources."""
    setting = cells["setting_label"] if "setting_label" in cells else [""] * len(cells)
    labels = list(map(_cell_label, cells["method"], cells["shots"], setting))
    if "source" in cells and cells["source"].nunique() > 1:
        labels = [f"{x} ({source_title(s)})" for x, s in zip(labels, cells["source"], strict=True)]
    return labels


def variance_note(table: pd.DataFrame) -> str:
    """One line over the cells of ``table`` (:func:`variance_sources` or :func:`comparison`
    output): the shared description when the adapted cells share one, else each description
    with the cells it holds for; source-only's and the oracle's said apart."""
    keys = [k for k in _CELL if k in table]
    cells = table.drop_duplicates(keys).dropna(subset=["variance"])
    cells = cells.assign(label=_labels(cells))
    adapted = cells[~cells["method"].isin(REFERENCES)]
    parts = []
    if adapted["variance"].nunique() == 1:
        parts.append(f"Runs per cell: {adapted['variance'].iloc[0]}")
    elif len(adapted):
        for text, group in adapted.groupby("variance", sort=False):
            parts.append(f"{', '.join(group['label'])}: {text}")
    for method in REFERENCES:
        ref = cells[cells["method"] == method]
        for label, text in zip(ref["label"], ref["variance"], strict=True):
            parts.append(f"{label}: {text}")
    return "; ".join(parts) + "."


# ---------------------------------------------------------------------------- the tables


def _printed(mean: pd.Series, digits: int) -> pd.Series:
    """A mean as the table prints it (float noise below 1e-9 first removed: 0.4245 * 100 and
    42.45 print alike)."""
    return mean.round(_NOISE).map(f"{{:.{digits}f}}".format, na_action="ignore")


def _block_bold(block: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Bold within one (source, shots, metric) block of adapted methods; ``block`` holds their
    observations (``method, seed, split, value``) and ``shown`` (the printed mean)."""
    wide = block.pivot_table(
        index=["seed", "split"], columns="method", values="value", aggfunc="first"
    )
    methods = list(wide.columns)
    firsts = block.drop_duplicates("method").set_index("method")
    shown = firsts["shown"].reindex(methods)
    names = firsts["name"] if "name" in firsts else pd.Series(methods, index=methods).map(TITLES)
    result = pd.DataFrame({"method": methods, "best": False, "why": ""})
    counts = wide.notna().sum()
    if len(methods) < 2:
        return result
    if counts.min() < 2:
        one = [names.get(m, m) for m in methods if counts[m] < 2]
        result["why"] = f"{', '.join(one)}: a single run"
        return result
    if wide.isna().any().any():
        result["why"] = "the methods' means are over different runs (seeds or splits)"
        return result
    printed = shown.astype(float).to_numpy()
    if np.unique(printed).size == 1:
        return result  # all equal as printed: nothing stands out
    x = wide.to_numpy()
    d = np.round(x[:, None, :] - x[:, :, None], _NOISE)  # d[k, i, j]: j minus i
    k = len(x)
    mean, sd = d.mean(0), d.std(0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = 2 * stats.t.sf(np.abs(mean / (sd / np.sqrt(k))), k - 1)
    above = (sd > 0) & (p < alpha) & (mean > 0)  # j significantly above i
    higher = printed[None, :] > printed[:, None]
    beaten = (above & higher).any(1)
    # a printed value is bold unless one of its cells is significantly below a higher one
    beaten_value = pd.Series(beaten).groupby(printed).transform("any").to_numpy()
    result["best"] = ~beaten_value
    return result


def _bold(obs: pd.DataFrame, out: pd.DataFrame, alpha: float, digits: int):
    """(bold flags for ``out``'s rows, {block label: why it has no bold})."""
    cand = out[~out["method"].isin(REFERENCES) & out["in_protocol"] & out["mean"].notna()]
    # one block per (source, setting, shots, metric): methods are compared within a setting;
    # a method's cells of different options of its own are columns of their own
    blocks = ["source", "setting", "shots", "metric"]
    data = obs.merge(cand[[*_KEYS, "shown"]], on=_KEYS)
    if data.empty:
        return pd.Series(False, index=out.index), {}
    cell = lambda f: f["method"] + "\x1f" + f["fingerprint"]  # noqa: E731
    title = data["method"].map(TITLES).fillna(data["method"])
    data = data.assign(
        name=title.where(data["setting_label"].eq(""), title + " (" + data["setting_label"] + ")"),
        method=cell(data),
    )
    res = (
        data.groupby(blocks, sort=False)[["method", "name", "seed", "split", "value", "shown"]]
        .apply(_block_bold, alpha=alpha)
        .reset_index(level=blocks)
        .reset_index(drop=True)
        .rename(columns={"method": "cell"})
    )
    flags = (
        out[_KEYS]
        .assign(cell=cell(out))
        .merge(res, on=["source", "setting", "cell", "shots", "metric"], how="left")
    )
    why = res[res["why"] != ""].drop_duplicates(blocks)
    many = out["source"].nunique() > 1
    settings = out[~out["method"].isin(REFERENCES)].drop_duplicates("setting")
    named = settings.set_index("setting")["setting_label"] if len(settings) > 1 else {}
    reasons: dict[str, list[str]] = {}
    for source, setting, shots, metric, text in why[[*blocks, "why"]].itertuples(index=False):
        where = f"{shots}-shot" + (f" ({source_title(source)})" if many else "")
        where += f" ({named[setting]})" if setting in named and named[setting] else ""
        reasons.setdefault(f"{where}: {text}", []).append(metric)
    return flags["best"].fillna(False).astype(bool).to_numpy(), reasons


def comparison(
    runs: pd.DataFrame,
    reference: str = REFERENCE,
    metrics=("mIoU",),
    confidence: float = CONFIDENCE,
    alpha: float = ALPHA,
    correction: str | None = CORRECTION,
    digits: int = 1,
) -> pd.DataFrame:
    """Everything a table shows, one row per (source, method, shots, metric), in points:
    :func:`describe`'s columns, :func:`paired`'s ``n_pairs, diff, diff_low, diff_high,
    p_ttest, p_wilcoxon, note``, ``p_adjusted`` (Holm over the table's tests against the
    reference; the raw p with ``correction=None``), ``mark`` ("better", "worse", "ns",
    "untested"; "" where not tested: the reference, source-only, the oracle, a class outside
    the protocol) and ``not_significant`` (mark "ns"), :func:`variance_sources`' ``variance``,
    and the settings (``reference, confidence, alpha, correction, digits``) so that the CSV
    says what it holds.

    ``best`` (bold), one rule over what is printed (``digits`` after the point): among the
    adapted methods at the same source, shots and metric, the highest printed mean and every
    printed mean that no higher one is significantly above (paired t-test over the same runs,
    p < ``alpha``, uncorrected: a stricter bold); equal printed means bold alike. Only where
    every method there has at least 2 runs over the same seeds and splits, and not where all
    print alike; where not, ``attrs["no_bold"]`` says why."""
    if correction not in ("holm", None):
        raise ValueError(f"correction {correction!r}: 'holm' or None")
    if runs.empty:
        raise DataError("no runs to compare: the run table is empty")
    runs = _keyed(runs)
    out = describe(runs, metrics, confidence).merge(
        paired(runs, reference, metrics, confidence), on=_KEYS, how="left"
    )
    variance = variance_sources(runs)[[*_CELL, "variance"]]
    out = out.merge(variance, on=_CELL, how="left")
    order = {m: i for i, m in enumerate(TITLES)}
    metric_order = {m: i for i, m in enumerate(pd.unique(out["metric"]))}
    setting_order = {m: i for i, m in enumerate(pd.unique(out["setting_label"]))}
    out = (
        out.assign(
            _o=out["method"].map(order).fillna(len(order)), _m=out["metric"].map(metric_order),
            _s=out["setting_label"].map(setting_order),
        )
        .sort_values(["source", "shots", "_o", "_s", "_m"], kind="stable")
        .drop(columns=["_o", "_m", "_s"])
        .reset_index(drop=True)
    )  # fmt: skip
    few_shot = ~out["method"].isin(REFERENCES)
    tested = (out["method"] != reference) & few_shot & out["in_protocol"]
    out["n_pairs"] = out["n_pairs"].fillna(0).astype(int)
    out.loc[~tested, "note"] = np.select(
        [out["method"].eq(reference), ~out["in_protocol"]],
        ["reference", "outside the source's protocol: not tested"],
        out["method"].str.replace("_", "-") + ": not paired",
    )[~tested.to_numpy()]
    p = out["p_ttest"].where(tested)
    finite = p.notna()
    out["p_adjusted"] = np.nan
    if finite.any():
        out.loc[finite, "p_adjusted"] = (
            multipletests(p[finite], alpha=alpha, method="holm")[1]
            if correction == "holm"
            else p[finite]
        )
    sig = out["p_adjusted"] < alpha
    out["mark"] = np.select(
        [~tested, ~finite, sig & out["diff"].gt(0), sig & out["diff"].lt(0)],
        ["", "untested", "better", "worse"],
        "ns",
    )
    out["not_significant"] = out["mark"].eq("ns")
    out["shown"] = _printed(out["mean"], digits)
    best, no_bold = _bold(observations(runs, metrics), out, alpha, digits)
    out["best"] = best
    out.insert(1, "title", out["method"].map(TITLES).fillna(out["method"]))
    out = out.assign(
        reference=reference, confidence=confidence, alpha=alpha,
        correction=correction or "none", digits=digits,
    )  # fmt: skip
    from .analysis import comparison_notes

    # what is not like for like (sources, shot counts, seeds): said under every table
    out.attrs["caveats"] = comparison_notes(runs)
    out.attrs["no_bold"] = no_bold
    out.attrs["tests"] = int(finite.sum())
    out.attrs["layout"] = "shots" if set(out["metric"]) <= set(MIOU_NAMES) else "metrics"
    # are repeats of a seed and split known to be of the same settings (every run's config)?
    out.attrs["settings_checked"] = bool(runs["fingerprint"].ne(UNKNOWN).all())
    return out.drop(columns="shown")


def _usual_n(comp: pd.DataFrame) -> int:
    """The n most cells of the table have (the largest on a tie), said once in the note."""
    n = comp.loc[~comp["method"].isin(REFERENCES) & comp["in_protocol"], "n"]
    n = n if len(n) else comp["n"]
    return int(n.mode().max()) if len(n) else 0


def _digits(comp: pd.DataFrame, digits) -> int:
    made = int(comp["digits"].iloc[0]) if "digits" in comp and len(comp) else 1
    if digits is not None and digits != made:
        raise ValueError(
            f"digits {digits}: the table's bold was decided at {made} digits (ties as printed); "
            f"pass digits={digits} to comparison() instead"
        )
    return made


def _cells(comp: pd.DataFrame, spread: str, digits: int) -> pd.Series:
    """Markdown cell text: **mean** ± spread, mark, (n=k)."""
    if spread not in ("ci", "sd"):
        raise ValueError(f"spread {spread!r}: 'ci' (confidence interval) or 'sd'")
    mean = _printed(comp["mean"], digits)
    mean = mean.where(~comp["best"], "**" + mean + "**")
    width = comp["ci_half" if spread == "ci" else "sd"]
    pm = (" ± " + width.map(f"{{:.{digits}f}}".format)).where(width.notna() & comp["n"].gt(1), "")
    mark = comp["mark"].map(MARKS).fillna("")
    shown_n = comp["n"].le(1) | comp["n"].ne(_usual_n(comp))
    n = (" (n=" + comp["n"].astype(str) + ")").where(shown_n, "")
    text = (mean + pm + mark + n).where(comp["mean"].notna(), "-")
    return text.where(comp["in_protocol"], OUTSIDE)


def _untested(comp: pd.DataFrame) -> str:
    """'source only is', or 'source only and oracle are' (the references in the table)."""
    shown = [TITLES[m] for m in REFERENCES if (comp["method"] == m).any()] or [TITLES[SOURCE_ONLY]]
    return " and ".join(shown) + (" are" if len(shown) > 1 else " is")


def _protocol_note(comp: pd.DataFrame) -> str:
    """What each source's mIoU is over ("" for GTA5 alone: the usual 19 classes)."""
    sources = list(pd.unique(comp["source"]))
    if all(_protocol_of(s) == "19" for s in sources) and len(sources) == 1:
        return ""
    parts = []
    for s in sources:
        if _protocol_of(s) == "16":
            outside = ", ".join(CLASS_NAMES[i] for i in range(len(CLASS_NAMES))
                                if i not in PROTOCOLS["16"])  # fmt: skip
            parts.append(
                f"{source_title(s)}: mIoU-16 over its 16 classes, mIoU-13 over 13 beside it "
                f"({outside}: {OUTSIDE} its protocol, not tested, never bold)"
            )
        else:
            parts.append(f"{source_title(s)}: mIoU over the 19 classes")
    return "Protocols: " + "; ".join(parts) + ". Different sources never share a cell."


def _notes(comp: pd.DataFrame, spread: str) -> list[str]:
    metrics = list(pd.unique(comp["metric"]))
    if comp.attrs.get("layout", "shots") == "shots":
        what = " and ".join(metrics) + " (%)"
    else:
        what = ", ".join(m for m in metrics if m in MIOU_NAMES) + " and IoU per class (%)"
    conf = f"{comp['confidence'].iloc[0]:.0%}"
    width = f"{conf} CI half-width (t-interval)" if spread == "ci" else "standard deviation"
    ref = TITLES.get(comp["reference"].iloc[0], comp["reference"].iloc[0])
    alpha = comp["alpha"].iloc[0]
    usual = _usual_n(comp)
    if usual > 1:
        n = f"n = {usual} unless given in the cell (n=1: a single run, no interval)"
    else:
        n = "n given in each cell (n=1: a single run, no interval)"
    tests = comp.attrs.get("tests", int(comp["p_adjusted"].notna().sum()))
    if tests == 0:  # nothing testable: no family to correct over
        corr = "no pair of runs could be tested"
    elif comp["correction"].iloc[0] == "holm":
        corr = f"p Holm-adjusted over the table's {tests} test{'s' * (tests != 1)}"
    else:
        corr = f"p not corrected for the table's {tests} test{'s' * (tests != 1)}"
    if comp.attrs.get("settings_checked", False):
        repeats = (
            "runs repeating a seed and split with the same settings (their configs checked) "
            "are averaged into one, runs of other settings have rows of their own"
        )
    else:
        repeats = (
            "runs repeating a seed and split are averaged into one (not all runs record "
            "their settings: those that do not are not checked to be the same)"
        )
    notes = [
        f"{what} on target val: mean ± {width} over the runs of each cell; {n}. A run is one "
        f"training seed and split: {repeats}, runs without a value are left out.",
        _protocol_note(comp),
        variance_note(comp),
        f"Against {ref} at the same shots (paired t-test over the runs with the same source, "
        f"setting, seed and split; {corr}; α = {alpha:g}): {BETTER} significantly better, {WORSE} "
        f"significantly worse, {NOT_SIGNIFICANT} not significantly different, {NOT_TESTABLE} "
        f"not testable (fewer than {MIN_PAIRS} pairs, or every difference the same); {ref} is "
        f"the reference; {_untested(comp)} not tested.",
        "Bold: the highest mean at its shots and every mean no higher mean is significantly "
        f"above (paired t-test over the same runs, p < {alpha:g}, uncorrected); equal printed "
        "means bold alike; only where every method at that shot count has at least 2 runs "
        "over the same seeds and splits, and not where all means print alike.",
        *[
            f"No bold at {where}" + (f" ({', '.join(m)})" if len(metrics) > 1 else "") + "."
            for where, m in comp.attrs.get("no_bold", {}).items()
        ],
        *[f"Not like for like: {c}." for c in comp.attrs.get("caveats", [])],
    ]
    return [x for x in notes if x]


def _layout(comp: pd.DataFrame, cells: pd.Series) -> pd.DataFrame:
    """The mIoU table: a row per method, a column per shot count (and per mIoU where there
    are several: SYNTHIA's mIoU-16 and mIoU-13). Otherwise a row per (method, shots), a column
    per metric (like :func:`pixda_core.analysis.per_class_table`). Rows say their source when
    the table holds several."""
    many = comp["source"].nunique() > 1
    suffix = (" (" + comp["source"].map(source_title) + ")") if many else ""
    if "setting_label" in comp:  # several settings: a row each, named by what differs
        label = comp["setting_label"].fillna("")
        suffix = (", " + label).where(label.ne(""), "") + suffix
    if comp.attrs.get("layout", "shots") == "shots":
        rows = comp["title"] + suffix
        oracle = comp["method"] == ORACLE
        # the oracle trains on every target image: its column says so
        all_col = "all" if comp.loc[oracle, "shots"].nunique() <= 1 else (
            "all (" + comp["shots"].astype(str) + ")"
        )  # fmt: skip
        cols = (comp["shots"].astype(str) + "-shot").where(~oracle, all_col)
        if comp["metric"].nunique() > 1:
            cols = cols + " " + comp["metric"]
    else:
        rows = (
            comp["title"].where(
                comp["method"].isin(REFERENCES),
                comp["title"] + " (" + comp["shots"].astype(str) + "-shot)",
            )
            + suffix
        )
        cols = comp["metric"]
    frame = pd.DataFrame({"row": rows, "col": cols, "cell": cells})
    dup = frame.duplicated(["row", "col"])
    if dup.any():
        raise DataError(f"two cells for row {frame['row'][dup].iloc[0]!r}, column "
                        f"{frame['col'][dup].iloc[0]!r}: expected one")  # fmt: skip
    wide = frame.pivot(index="row", columns="col", values="cell")
    wide = wide.reindex(index=pd.unique(rows), columns=pd.unique(cols)).fillna("")
    wide.index.name = wide.columns.name = None
    return wide


_TEX_SPECIAL = str.maketrans({c: "\\" + c for c in "&%$#_{}"} | {"~": r"\~{}", "^": r"\^{}"})
_TEX_SYMBOLS = {
    "<": "$<$",
    ">": "$>$",
    "±": r"$\pm$",
    "≥": r"$\geq$",
    "α": r"$\alpha$",
    BETTER: r"\textsuperscript{$\uparrow$}",
    WORSE: r"\textsuperscript{$\downarrow$}",
    NOT_SIGNIFICANT: r"\textsuperscript{\dag}",
    NOT_TESTABLE: r"\textsuperscript{\ddag}",
}


def _latex_text(series: pd.Series) -> pd.Series:
    """Markdown-flavoured text (cells, notes) as LaTeX: specials escaped, **x** in bold, the
    marks as superscripts."""
    out = series.map(lambda s: s.translate(_TEX_SPECIAL)).str.replace(
        r"\*\*(.+?)\*\*", r"\\textbf{\1}", regex=True
    )
    for symbol, tex in _TEX_SYMBOLS.items():
        out = out.str.replace(symbol, tex, regex=False)
    return out


def render(
    comp: pd.DataFrame, fmt: str = "markdown", spread: str = "ci", digits: int | None = None
):
    """The table of :func:`comparison` as ``fmt`` ("markdown": the table then its notes;
    "latex": a ``table`` with the notes, the marks and the bold rule as caption, booktabs
    rules). ``spread``: "ci" for ± the CI half-width, "sd" for ± the standard deviation (the
    marks stay the same). ``digits``: those of :func:`comparison` (its bold is decided on
    printed means)."""
    digits = _digits(comp, digits)
    wide = _layout(comp, _cells(comp, spread, digits))
    notes = _notes(comp, spread)
    if fmt == "markdown":
        align = ("left", *["right"] * wide.shape[1])
        return wide.to_markdown(colalign=align) + "\n\n" + "\n\n".join(notes) + "\n"
    if fmt == "latex":
        tex = wide.apply(_latex_text)
        tex.index = _latex_text(pd.Series(wide.index, dtype=object))
        tex.columns = _latex_text(pd.Series(wide.columns, dtype=object))
        caption = " ".join(_latex_text(pd.Series(notes)))
        return tex.to_latex(escape=False, caption=caption, column_format="l" + "r" * tex.shape[1])
    raise ValueError(f"fmt {fmt!r}: 'markdown' or 'latex'")


def format_p(p, alpha: float = ALPHA) -> pd.Series:
    """p-values as text with 2 significant digits, more where fewer would land on the other
    side of (or on) ``alpha`` (0.0496 is "0.0496", never "0.05"); "-" for NaN."""
    p = pd.Series(p, dtype=float)

    def one(x: float) -> str:
        if np.isnan(x):
            return "-"
        for sig in range(2, 17):
            text = f"{x:.{sig}g}"
            if (float(text) < alpha) == (x < alpha) and (float(text) != alpha or x == alpha):
                return text
        return repr(x)

    return p.map(one)


def display_table(comp: pd.DataFrame) -> pd.DataFrame:
    """:func:`comparison`'s numbers for reading (notebook 04): means and intervals to 3
    digits, p-values by :func:`format_p` (never rounded across α), the mark, the note."""
    cols = ["title", "source", "shots", "metric", "n", "mean", "ci_low", "ci_high", "diff",
            "diff_low", "diff_high", "p_ttest", "p_wilcoxon", "p_adjusted", "mark",
            "note"]  # fmt: skip
    shown = comp[[c for c in cols if c in comp]].round(3)
    alpha = float(comp["alpha"].iloc[0]) if len(comp) else ALPHA
    for c in ("p_ttest", "p_wilcoxon", "p_adjusted"):
        shown[c] = format_p(comp[c], alpha).to_numpy()
    return shown


def write_stat_table(
    comp: pd.DataFrame,
    folder: str | os.PathLike,
    stem: str,
    spread: str = "ci",
    digits: int | None = None,
) -> list[Path]:
    """Write :func:`comparison` output as ``<stem>.csv`` (every number, unrounded, one row per
    cell: raw and adjusted p-values), ``<stem>.md`` and ``<stem>.tex`` (:func:`render`), like
    :func:`pixda_core.analysis.write_table`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}.{ext}" for ext in ("csv", "md", "tex")]
    # the caveats (what is not like for like) as a column, so that the CSV says them too
    comp.assign(caveats="; ".join(comp.attrs.get("caveats", []))).to_csv(paths[0], index=False)
    paths[1].write_text(render(comp, "markdown", spread, digits))
    paths[2].write_text(render(comp, "latex", spread, digits))
    return paths


def write_tables(
    runs: pd.DataFrame,
    folder: str | os.PathLike,
    reference: str = REFERENCE,
    spread: str = "ci",
    confidence: float = CONFIDENCE,
    alpha: float = ALPHA,
    correction: str | None = CORRECTION,
) -> list[Path]:
    """The two tables of a sweep, each its own family of tests for ``correction``:
    ``stats_miou`` (methods x shots; SYNTHIA: mIoU-16 and mIoU-13) and ``stats_per_class``
    ((method, shots) x mIoU and classes), each as CSV, Markdown and LaTeX."""
    main = comparison(runs, reference, ("mIoU",), confidence, alpha, correction)
    per_class = comparison(runs, reference, None, confidence, alpha, correction)
    return [
        *write_stat_table(main, folder, "stats_miou", spread),
        *write_stat_table(per_class, folder, "stats_per_class", spread),
    ]
