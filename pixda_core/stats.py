"""Statistics over runs for papers: means with confidence intervals, paired tests against a
reference method, and tables that say what varied between the runs.

Why: on the toy benchmark the run-to-run spread of mIoU (about ±4 points) is larger than most
gaps between methods, so a table of means alone ranks methods by noise. Every number here is
in IoU points (%), over the runs of one (method, shots) cell:

* mean, standard deviation (ddof 1), n and the t-interval of the mean (``scipy.stats.t``);
  a single run has no interval (NaN, shown as "n=1" in tables, never as ± 0);
* each method's difference to a reference method (FT by default) over the (seed, split) pairs
  both ran at the same shots: mean difference and its t-interval, the paired t-test
  (``scipy.stats.ttest_rel``) and the Wilcoxon signed-rank test (``scipy.stats.wilcoxon``,
  its defaults: zero differences dropped, exact p-values for small n). Fewer than two pairs or
  all differences zero give NaN p-values and say why in ``note``. Pairing on (seed, split)
  removes what the two runs share (the same shots, the same initial weights for that seed),
  so it detects smaller gaps than comparing the two intervals.

Source-only is described (mean, n) but not tested: it trains on no target shots and a sweep
has one source-only model, the start of every adapted run, so there is no (seed, split) pair
to match it on. How far each method gets from it is the gain figure
(:func:`pixda_core.viz.plot_gain` with :func:`pixda_core.analysis.gain_over` per run).

Tables (:func:`render`, :func:`write_tables`): mean ± CI half-width (or ± sd), n in the cell
where it is not the table's usual n, **bold** the best mean among the methods with the same
shots, and :data:`NOT_SIGNIFICANT` (†) where a method is not significantly different from the
reference (paired t-test p >= ``alpha``, or too few pairs to test). A note under the table (the
caption in LaTeX) says what the interval is and whether training seeds, splits or both varied.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .errors import DataError
from .labels import CLASS_NAMES
from .methods import ORACLE, REFERENCES, SOURCE_ONLY, TITLES

#: the confidence level of every interval (tables, figures)
CONFIDENCE = 0.95
#: the significance level of the paired t-test behind the † marks
ALPHA = 0.05
#: the method the others are compared with, run for run
REFERENCE = "finetune"
#: marks a method not significantly different from the reference at the same shots
NOT_SIGNIFICANT = "†"
#: the fewest (seed, split) pairs a paired test is run on
MIN_PAIRS = 2

_KEYS = ["method", "shots", "metric"]
#: the columns of :func:`paired` after the keys
_PAIRED = ["n_pairs", "diff", "diff_low", "diff_high", "p_ttest", "p_wilcoxon", "note"]


def metric_columns(runs: pd.DataFrame) -> dict[str, str]:
    """:func:`pixda_core.analysis.load_runs` column -> metric name in tables: ``mIoU``,
    ``mIoU-13`` (when any run has it: SYNTHIA) and the class names (those with a column)."""
    cols = {"miou": "mIoU"}
    if "miou_13" in runs and runs["miou_13"].notna().any():
        cols["miou_13"] = "mIoU-13"
    return cols | {f"iou_{c}": c for c in CLASS_NAMES if f"iou_{c}" in runs}


def run_values(runs: pd.DataFrame, metrics=("mIoU",)) -> pd.DataFrame:
    """One row per (run, metric): ``method, shots, seed, split, run, metric, value`` (points).

    ``metrics``: names from :func:`metric_columns` (None: all of them). A missing ``split``
    (source-only, runs older than the split record) becomes "-" so that such runs still pair."""
    names = metric_columns(runs)
    if metrics is not None:
        unknown = [m for m in metrics if m not in names.values()]
        if unknown:
            raise DataError(f"unknown metric {unknown[0]!r}; one of {', '.join(names.values())}")
        names = {c: n for n in metrics for c, m in names.items() if m == n}
    frame = runs.assign(split=runs["split"].fillna("-"))
    long = frame.melt(
        id_vars=["method", "shots", "seed", "split", "run"],
        value_vars=list(names),
        var_name="metric",
        value_name="value",
    )
    long["metric"] = long["metric"].map(names)
    long["value"] = long["value"].astype(float) * 100
    return long


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
    """Per (method, shots, metric): ``n, mean, sd, ci_half, ci_low, ci_high`` in points, over
    the runs (NaN IoUs, a class absent from val, left out of n)."""
    long = run_values(runs, metrics)
    out = (
        long.groupby(_KEYS, sort=False)["value"]
        .agg(n="count", mean="mean", sd="std")
        .reset_index()
    )
    out["ci_half"] = ci_half_width(out["sd"], out["n"], confidence)
    out["ci_low"] = out["mean"] - out["ci_half"]
    out["ci_high"] = out["mean"] + out["ci_half"]
    return out


def by_gap(runs: pd.DataFrame, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """mIoU per (method, shots, gap) over the runs of a sweep over the toy's domain gap
    (``runs["gap"]``): :func:`describe`'s columns plus ``gap`` and ``label`` (the method, with
    the shots where it has them)."""
    frames = [
        describe(group, ("mIoU",), confidence).assign(gap=gap)
        for gap, group in runs.dropna(subset=["gap"]).groupby("gap")
    ]
    if not frames:
        raise DataError("no run records a toy benchmark's gap")
    out = pd.concat(frames, ignore_index=True)
    out.insert(0, "label", list(map(_cell_label, out["method"], out["shots"])))
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


def _paired_tests(group: pd.DataFrame, confidence: float) -> pd.Series:
    """The tests of one (method, shots, metric) over its pairs with the reference."""
    a, b = group["value"].to_numpy(), group["value_ref"].to_numpy()
    d = a - b
    n, notes = len(d), []
    sd = d.std(ddof=1) if n > 1 else np.nan
    half = float(ci_half_width(sd, n, confidence))
    p_t = p_w = np.nan
    if n < MIN_PAIRS:
        notes.append(f"{n} pair: no test")
    elif not d.any():
        notes.append("all differences are zero: no test")
    else:
        with warnings.catch_warnings():  # zero-variance differences: t = inf, p = 0
            warnings.simplefilter("ignore", RuntimeWarning)
            p_t = stats.ttest_rel(a, b).pvalue
            p_w = stats.wilcoxon(a, b).pvalue
        if sd == 0:
            notes.append("all differences equal: t-test degenerate")
        nonzero = np.count_nonzero(d)
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
    """Each method against ``reference`` at the same shots, over the (seed, split) pairs both
    ran: ``method, shots, metric, n_pairs, diff`` (method - reference, points), ``diff_low,
    diff_high`` (t-interval), ``p_ttest``, ``p_wilcoxon``, ``note`` (why a p-value is NaN, or
    why the Wilcoxon one cannot be small). Source-only and the reference itself are left out
    (module docstring); runs repeated with the same (seed, split) are averaged first."""
    long = run_values(runs, metrics)
    long = long[~long["method"].isin(REFERENCES)]
    keys = ["shots", "seed", "split", "metric"]
    per_key = long.groupby(["method", *keys], sort=False)["value"].mean().reset_index()
    ref = per_key[per_key["method"] == reference].drop(columns="method")
    others = per_key[per_key["method"] != reference]
    pairs = others.merge(ref, on=keys, suffixes=("", "_ref")).dropna(subset=["value", "value_ref"])
    cells = others[_KEYS].drop_duplicates()
    if pairs.empty:
        tested = pd.DataFrame(columns=[*_KEYS, *_PAIRED]).astype({"note": object})
    else:
        tested = (
            pairs.groupby(_KEYS, sort=False)[["value", "value_ref"]]
            .apply(_paired_tests, confidence=confidence)
            .reset_index()
        )
    out = cells.merge(tested, on=_KEYS, how="left")
    missing = out["n_pairs"].isna()
    out["n_pairs"] = out["n_pairs"].fillna(0).astype(int)
    out.loc[missing, "note"] = f"no {reference} run with the same shots, seed and split"
    return out.reset_index(drop=True)


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
    if (splits == "-").all():
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
    elif len(splits) > 1:
        varies, text = "split", f"n = {n} splits ({split_text}); training seed {seed_text}"
    else:
        varies = "nothing"
        text = f"n = {n} repeats of the same settings (training seed {seed_text}{split_part})"
    return pd.Series({"n": n, "seeds": seed_text, "splits": split_text, "varies": varies,
                      "variance": text})  # fmt: skip


def variance_sources(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (method, shots): ``n, seeds, splits, varies`` ("seed", "split", "seed and split"
    or "nothing") and ``variance``, a sentence for captions, e.g. "n = 3 training seeds (0-2);
    split: published" or "n = 3 splits (drawn with seeds 0-2); training seed 0". An interval
    over training seeds and one over splits answer different questions; the caption says
    which one a table shows."""
    frame = runs.assign(split=runs["split"].fillna("-"))
    return (
        frame.groupby(["method", "shots"], sort=False)[["seed", "split"]]
        .apply(_describe_group)
        .reset_index()
    )


def _cell_label(method: str, shots: int) -> str:
    title = TITLES.get(method, method)
    return title if method in REFERENCES else f"{title} {shots}-shot"


def variance_note(table: pd.DataFrame) -> str:
    """One line over the cells of ``table`` (:func:`variance_sources` or :func:`comparison`
    output): the shared description when the adapted cells share one, else each description
    with the cells it holds for; source-only's and the oracle's said apart."""
    cells = table.drop_duplicates(["method", "shots"])
    adapted = cells[~cells["method"].isin(REFERENCES)]
    parts = []
    if adapted["variance"].nunique() == 1:
        parts.append(f"Runs per cell: {adapted['variance'].iloc[0]}")
    elif len(adapted):
        labels = adapted.assign(label=list(map(_cell_label, adapted["method"], adapted["shots"])))
        for text, group in labels.groupby("variance", sort=False):
            parts.append(f"{', '.join(group['label'])}: {text}")
    for method in REFERENCES:
        ref = cells[cells["method"] == method]
        if len(ref):
            parts.append(f"{TITLES[method]}: {ref['variance'].iloc[0]}")
    return "; ".join(parts) + "."


# ---------------------------------------------------------------------------- the tables


def comparison(
    runs: pd.DataFrame,
    reference: str = REFERENCE,
    metrics=("mIoU",),
    confidence: float = CONFIDENCE,
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """Everything a table shows, one row per (method, shots, metric), in points:
    :func:`describe`'s ``n, mean, sd, ci_half, ci_low, ci_high``, :func:`paired`'s
    ``n_pairs, diff, diff_low, diff_high, p_ttest, p_wilcoxon, note``, the marks ``best``
    (highest mean among methods with the same shots; none where they all tie or a cell is alone
    at its shots, as source-only is) and
    ``not_significant`` (an adapted method other than the reference whose paired t-test gives
    p >= ``alpha`` or none), :func:`variance_sources`' ``variance`` and the settings
    (``reference``, ``confidence``, ``alpha``) so that the CSV says what it holds."""
    out = describe(runs, metrics, confidence).merge(
        paired(runs, reference, metrics, confidence), on=_KEYS, how="left"
    )
    out = out.merge(
        variance_sources(runs)[["method", "shots", "variance"]], on=["method", "shots"]
    )
    order = {m: i for i, m in enumerate(TITLES)}
    metric_order = {m: i for i, m in enumerate(pd.unique(out["metric"]))}
    out = (
        out.assign(
            _o=out["method"].map(order).fillna(len(order)), _m=out["metric"].map(metric_order)
        )
        .sort_values(["shots", "_o", "_m"], kind="stable")
        .drop(columns=["_o", "_m"])
        .reset_index(drop=True)
    )
    few_shot = ~out["method"].isin(REFERENCES)  # best among the methods given shots
    block = out["mean"].where(few_shot).groupby([out["shots"], out["metric"]])
    top = block.transform("max")
    out["best"] = few_shot & out["mean"].eq(top) & top.gt(block.transform("min"))
    tested = (out["method"] != reference) & few_shot
    out["not_significant"] = tested & ~(out["p_ttest"] < alpha)
    out.loc[~tested, "note"] = [
        "reference" if m == reference else f"{m.replace('_', '-')}: not paired"
        for m in out.loc[~tested, "method"]
    ]
    out["n_pairs"] = out["n_pairs"].fillna(0).astype(int)
    out.insert(1, "title", out["method"].map(TITLES).fillna(out["method"]))
    out = out.assign(reference=reference, confidence=confidence, alpha=alpha)
    from .analysis import comparison_notes

    # what is not like for like (sources, shot counts, seeds): said under every table
    out.attrs["caveats"] = comparison_notes(runs)
    return out


def _usual_n(comp: pd.DataFrame) -> int:
    """The n most cells of the table have (the largest on a tie), said once in the note."""
    n = comp.loc[~comp["method"].isin(REFERENCES), "n"]
    n = n if len(n) else comp["n"]
    return int(n.mode().max()) if len(n) else 0


def _cells(comp: pd.DataFrame, spread: str, digits: int) -> pd.Series:
    """Markdown cell text: **mean** ± spread† (n=k)."""
    if spread not in ("ci", "sd"):
        raise ValueError(f"spread {spread!r}: 'ci' (confidence interval) or 'sd'")
    mean = comp["mean"].map(f"{{:.{digits}f}}".format)
    mean = mean.where(~comp["best"], "**" + mean + "**")
    width = comp["ci_half" if spread == "ci" else "sd"]
    pm = (" ± " + width.map(f"{{:.{digits}f}}".format)).where(width.notna() & comp["n"].gt(1), "")
    mark = pd.Series(np.where(comp["not_significant"], NOT_SIGNIFICANT, ""), index=comp.index)
    shown_n = comp["n"].le(1) | comp["n"].ne(_usual_n(comp))
    n = (" (n=" + comp["n"].astype(str) + ")").where(shown_n, "")
    return (mean + pm + mark + n).where(comp["mean"].notna(), "-")


def _untested(comp: pd.DataFrame) -> str:
    """'source only is', or 'source only and oracle are' (the references in the table)."""
    shown = [TITLES[m] for m in REFERENCES if (comp["method"] == m).any()] or [TITLES[SOURCE_ONLY]]
    return " and ".join(shown) + (" are" if len(shown) > 1 else " is")


def _notes(comp: pd.DataFrame, spread: str) -> list[str]:
    metrics = list(pd.unique(comp["metric"]))
    what = f"{metrics[0]} (%)" if len(metrics) == 1 else "mIoU and IoU per class (%)"
    conf = f"{comp['confidence'].iloc[0]:.0%}"
    width = f"{conf} CI half-width (t-interval)" if spread == "ci" else "standard deviation"
    ref = comp["reference"].iloc[0]
    alpha = comp["alpha"].iloc[0]
    usual = _usual_n(comp)
    if usual > 1:
        n = f"n = {usual} unless given in the cell (n=1: a single run, no interval)"
    else:
        n = "n given in each cell (n=1: a single run, no interval)"
    return [
        f"{what} on target val: mean ± {width} over the runs of each cell; {n}.",
        variance_note(comp),
        f"Bold: best mean among the methods with the same shots. {NOT_SIGNIFICANT}: not "
        f"significantly different from {TITLES.get(ref, ref)} at the same shots (paired "
        f"t-test over runs with the same seed and split, p ≥ {alpha:g}, or fewer than "
        f"{MIN_PAIRS} pairs); {_untested(comp)} not tested.",
        *[f"Not like for like: {c}." for c in comp.attrs.get("caveats", [])],
    ]


def _layout(comp: pd.DataFrame, cells: pd.Series) -> pd.DataFrame:
    """One metric: a row per method, a column per shot count. Several: a row per (method,
    shots), a column per metric (like :func:`pixda_core.analysis.per_class_table`)."""
    if comp["metric"].nunique() == 1:
        rows = comp["title"]
        # the oracle trains on every target image: its column says so
        cols = (comp["shots"].astype(str) + "-shot").where(comp["method"] != ORACLE, "all")
    else:
        rows = comp["title"].where(
            comp["method"].isin(REFERENCES),
            comp["title"] + " (" + comp["shots"].astype(str) + "-shot)",
        )
        cols = comp["metric"]
    wide = pd.DataFrame({"row": rows, "col": cols, "cell": cells}).pivot(
        index="row", columns="col", values="cell"
    )
    wide = wide.reindex(index=pd.unique(rows), columns=pd.unique(cols)).fillna("")
    wide.index.name = wide.columns.name = None
    return wide


_TEX_SPECIAL = str.maketrans({c: "\\" + c for c in "&%$#_{}"} | {"~": r"\~{}", "^": r"\^{}"})


def _latex_text(series: pd.Series) -> pd.Series:
    """Markdown-flavoured text (cells, notes) as LaTeX: specials escaped, **x** in bold."""
    return (
        series.map(lambda s: s.translate(_TEX_SPECIAL))
        .str.replace(r"\*\*(.+?)\*\*", r"\\textbf{\1}", regex=True)
        .str.replace("±", r"$\pm$", regex=False)
        .str.replace("≥", r"$\geq$", regex=False)
        .str.replace(NOT_SIGNIFICANT, r"\textsuperscript{\dag}", regex=False)
    )


def render(comp: pd.DataFrame, fmt: str = "markdown", spread: str = "ci", digits: int = 1):
    """The table of :func:`comparison` as ``fmt`` ("markdown": the table then its notes;
    "latex": a ``table`` with the notes as caption, booktabs rules). ``spread``: "ci" for
    ± the CI half-width, "sd" for ± the standard deviation (the marks stay the same)."""
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


def write_stat_table(
    comp: pd.DataFrame,
    folder: str | os.PathLike,
    stem: str,
    spread: str = "ci",
    digits: int = 1,
) -> list[Path]:
    """Write :func:`comparison` output as ``<stem>.csv`` (every number, unrounded, one row per
    cell), ``<stem>.md`` and ``<stem>.tex`` (:func:`render`), like
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
) -> list[Path]:
    """The two tables of a sweep: ``stats_miou`` (methods x shots) and ``stats_per_class``
    ((method, shots) x mIoU and classes), each as CSV, Markdown and LaTeX."""
    main = comparison(runs, reference, ("mIoU",), confidence, alpha)
    per_class = comparison(runs, reference, None, confidence, alpha)
    return [
        *write_stat_table(main, folder, "stats_miou", spread),
        *write_stat_table(per_class, folder, "stats_per_class", spread),
    ]
