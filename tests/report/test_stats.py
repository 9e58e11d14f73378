"""Statistics over runs (pixda_core.stats): every number against scipy on the same numbers, the
marks of the tables, the line that says what varied, and the cases without a test."""

from __future__ import annotations

import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.multitest import multipletests

from pixda_core import analysis as A
from pixda_core import stats as S
from tests.helpers import FT_1, FUZZ, PIXDA_1, runs_frame

pytestmark = pytest.mark.unit


matplotlib.use("Agg")


JOINT_1 = [41.0, 44.0, 46.0]  # FT + 1, -2, 3: not significant


FT_2 = [50.0, 52.0, 54.0]


PIXDA_2 = [49.0, 51.0, 52.0]  # FT - 1, -1, -2: p = 0.057


def three_seeds(split="published") -> pd.DataFrame:
    rows = [("source_only", 0, 0, None, 30.0)]
    for method, shots, values in (
        ("pixda", 1, PIXDA_1),
        ("finetune", 1, FT_1),
        ("joint", 1, JOINT_1),
        ("finetune", 2, FT_2),
        ("pixda", 2, PIXDA_2),
    ):
        rows += [(method, shots, s, split, v) for s, v in enumerate(values)]
    return runs_frame(rows)


def cell(comp, method, shots, metric="mIoU") -> pd.Series:
    row = comp[(comp["method"] == method) & (comp["shots"] == shots) & (comp["metric"] == metric)]
    assert len(row) == 1
    return row.iloc[0]


def markdown_cells(text: str) -> dict[str, list[str]]:
    """Row label -> cell texts of a Markdown table (the header row under '')."""
    rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("|")]
    rows = [[c.strip() for c in r] for r in rows if not set("".join(r)) <= set(":- ")]
    return {r[0]: r[1:] for r in rows}


def latex_cells(text: str) -> dict[str, list[str]]:
    rows = [line.removesuffix(r"\\").split("&") for line in text.splitlines() if " & " in line]
    return {r[0].strip(): [c.strip() for c in r[1:]] for r in rows}


def test_mean_sd_n_and_interval_equal_scipy():
    comp = S.comparison(three_seeds())
    for method, shots, values in (("finetune", 1, FT_1), ("pixda", 1, PIXDA_1)):
        row = cell(comp, method, shots)
        low, high = stats.t.interval(
            0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values)
        )
        assert row["n"] == 3
        assert row["mean"] == pytest.approx(np.mean(values))
        assert row["sd"] == pytest.approx(np.std(values, ddof=1))
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))
        assert row["ci_half"] == pytest.approx((high - low) / 2)
        assert S.t_interval(values) == pytest.approx((low, high))


def test_paired_differences_and_p_values_equal_scipy():
    runs = three_seeds()
    # pairs are matched on (seed, split), not on row order; a run without a partner is left out
    runs = pd.concat([runs.iloc[::-1], runs_frame([("pixda", 1, 7, "published", 60.0)])])
    comp = S.comparison(runs)
    for method, shots, a, b in (
        ("pixda", 1, PIXDA_1, FT_1),
        ("joint", 1, JOINT_1, FT_1),
        ("pixda", 2, PIXDA_2, FT_2),
    ):
        row = cell(comp, method, shots)
        t = stats.ttest_rel(a, b)
        assert row["n_pairs"] == 3
        assert row["diff"] == pytest.approx(np.mean(np.subtract(a, b)))
        assert (row["diff_low"], row["diff_high"]) == pytest.approx(t.confidence_interval(0.95))
        assert row["p_ttest"] == pytest.approx(t.pvalue)
        assert row["p_wilcoxon"] == pytest.approx(stats.wilcoxon(a, b).pvalue)
        # three pairs: the signed-rank test cannot go below 2 / 2**3
        assert row["note"] == "Wilcoxon: 3 non-zero pairs, exact p >= 0.25"
    assert cell(comp, "pixda", 1)["n"] == 4  # the unpaired run still counts in its mean
    assert cell(comp, "finetune", 1)["note"] == "reference"
    so = cell(comp, "source_only", 0)
    assert so["note"] == "source-only: not paired" and np.isnan(so["p_ttest"])
    assert not so["not_significant"] and not so["best"]


def test_another_reference_and_per_class_metrics():
    runs = three_seeds().assign(iou_road=lambda f: f["miou"] + 0.1)
    comp = S.comparison(runs, reference="pixda", metrics=None)
    assert list(pd.unique(comp["metric"])) == ["mIoU", "road"]
    row = cell(comp, "finetune", 1, "road")
    assert row["diff"] == pytest.approx(np.mean(np.subtract(FT_1, PIXDA_1)))
    assert row["p_ttest"] == pytest.approx(stats.ttest_rel(FT_1, PIXDA_1).pvalue)
    assert cell(comp, "pixda", 1, "road")["note"] == "reference"


def test_one_run_has_no_interval_and_no_test():
    runs = runs_frame([("finetune", 1, 0, "published", 40.0), ("pixda", 1, 0, "published", 45.0)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from a degenerate case either
        comp = S.comparison(runs)
        md = S.render(comp)
    row = cell(comp, "pixda", 1)
    assert row["n"] == 1 and np.isnan(row["sd"]) and np.isnan(row["ci_half"])
    assert row["n_pairs"] == 1 and np.isnan(row["p_ttest"]) and np.isnan(row["p_wilcoxon"])
    # one pair is not a test: its own mark, not "not significantly different"
    assert row["note"] == "1 pair: no test" and row["mark"] == "untested"
    assert not row["not_significant"] and not row["best"]  # a cell of one run is never bold
    cells = markdown_cells(md)
    assert cells["PixDA"] == ["45.0‡ (n=1)"] and cells["FT"] == ["40.0 (n=1)"]
    assert "No bold at 1-shot: FT, PixDA: a single run." in md
    assert "±" not in "".join(sum(cells.values(), [])) and "nan" not in md
    assert "n given in each cell (n=1: a single run, no interval)" in md
    # nothing was tested, so no family to correct over is claimed
    assert "no pair of runs could be tested; α = 0.05" in md and "Holm" not in md


def test_all_equal_differences_give_nan_with_a_reason():
    same = runs_frame(
        [(m, 1, s, "published", v) for m in ("finetune", "pixda") for s, v in enumerate(FT_1)]
        + [("joint", 1, s, "published", v + 2) for s, v in enumerate(FT_1)]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        comp = S.comparison(same)
    zero = cell(comp, "pixda", 1)
    assert np.isnan(zero["p_ttest"]) and np.isnan(zero["p_wilcoxon"])
    assert zero["note"] == "all differences are zero: no test" and zero["mark"] == "untested"
    assert (zero["diff"], zero["diff_low"], zero["diff_high"]) == (0, 0, 0)
    # +2 on every seed: zero variance, scipy's t is infinite and its p 0; not testable (issue
    # 33): no p, its own mark, and no bold over the others on a test that did not happen
    constant = cell(comp, "joint", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert stats.ttest_rel(np.add(FT_1, 2), FT_1).pvalue == 0.0
    assert np.isnan(constant["p_ttest"]) and np.isnan(constant["p_adjusted"])
    assert constant["p_wilcoxon"] == pytest.approx(stats.wilcoxon(np.add(FT_1, 2), FT_1).pvalue)
    assert constant["note"].startswith("every difference is +2: zero variance, no test")
    assert constant["mark"] == "untested" and not constant["not_significant"]
    md = markdown_cells(S.render(comp))
    half = stats.t.ppf(0.975, 2) * stats.sem(FT_1)
    assert md["joint"] == [f"**45.0** ± {half:.1f}‡"]
    assert md["FT"] == [f"**43.0** ± {half:.1f}"] and md["PixDA"] == [f"**43.0** ± {half:.1f}‡"]


def test_missing_reference_is_said_and_marked():
    runs = three_seeds()
    comp = S.comparison(runs[runs["method"] != "finetune"])
    row = cell(comp, "pixda", 1)
    assert row["n_pairs"] == 0 and row["mark"] == "untested" and not row["not_significant"]
    assert row["note"] == "no finetune run with the same source, shots, settings, seed and split"


def test_markdown_and_latex_mark_best_and_not_significant():
    comp = S.comparison(three_seeds())
    values = {"ft1": FT_1, "px1": PIXDA_1, "jo1": JOINT_1, "ft2": FT_2, "px2": PIXDA_2}
    half = {k: stats.t.ppf(0.975, 2) * stats.sem(v) for k, v in values.items()}
    md = markdown_cells(S.render(comp))
    assert md[""] == ["0-shot", "1-shot", "2-shot"]
    assert md["source only"] == ["30.0 (n=1)", "", ""]
    # PixDA 1-shot vs FT: p = 0.009, Holm over the table's 3 tests: 0.028, significantly better
    p = [stats.ttest_rel(a, b).pvalue for a, b in
         ((PIXDA_1, FT_1), (JOINT_1, FT_1), (PIXDA_2, FT_2))]  # fmt: skip
    holm = multipletests(p, method="holm")[1]
    assert holm[0] < 0.05 <= holm[2] and holm[1] >= 0.05
    assert [cell(comp, *k)["p_adjusted"] for k in (("pixda", 1), ("joint", 1), ("pixda", 2))] == (
        pytest.approx(holm)
    )
    # bold: FT 1-shot is significantly below PixDA (p = 0.009); joint is not (p = 0.057 on
    # 4, 8, 4); at 2-shot PixDA is not significantly below FT (p = 0.057)
    assert stats.ttest_rel(PIXDA_1, JOINT_1).pvalue > 0.05
    assert md["FT"] == ["", f"43.0 ± {half['ft1']:.1f}", f"**52.0** ± {half['ft2']:.1f}"]
    assert md["PixDA"] == ["", f"**49.0** ± {half['px1']:.1f}↑", f"**50.7** ± {half['px2']:.1f}†"]
    assert md["joint"] == ["", f"**43.7** ± {half['jo1']:.1f}†", ""]
    text = S.render(comp)
    assert "Bold: the highest mean at its shots and every mean no higher mean is" in text
    assert "↑ significantly better, ↓ significantly worse, † not significantly different" in text
    assert "‡ not testable (fewer than 2 pairs, or every difference the same)" in text
    assert "p Holm-adjusted over the table's 3 tests; α = 0.05" in text
    assert "95% CI half-width (t-interval)" in text

    tex = S.render(comp, "latex")
    rows = latex_cells(tex)
    assert rows["PixDA"][1] == (
        rf"\textbf{{49.0}} $\pm$ {half['px1']:.1f}\textsuperscript{{$\uparrow$}}"
    )
    assert rows["PixDA"][2] == rf"\textbf{{50.7}} $\pm$ {half['px2']:.1f}\textsuperscript{{\dag}}"
    assert rows["joint"][1].endswith(r"\textsuperscript{\dag}")
    assert r"\caption{mIoU (\%) on target val" in tex and r"\begin{tabular}{lrrr}" in tex
    # the marks are explained in the caption, in LaTeX
    assert r"\textsuperscript{$\downarrow$} significantly worse" in tex
    assert r"\textsuperscript{\ddag} not testable" in tex and r"p $<$ 0.05" in tex
    for raw in ("±", "†", "‡", "↑", "↓", "≥", "α"):
        assert raw not in tex


def test_standard_deviation_switch_and_per_class_layout():
    runs = three_seeds().assign(iou_road=lambda f: f["miou"], iou_sky=0.0)
    comp = S.comparison(runs, metrics=None)
    md = markdown_cells(S.render(comp, spread="sd"))
    assert md[""] == ["mIoU", "road", "sky"]
    # source only, then by shots, methods in the order of the methods table
    assert list(md) == ["", "source only", "FT (1-shot)", "joint (1-shot)", "PixDA (1-shot)",
                        "FT (2-shot)", "PixDA (2-shot)"]  # fmt: skip
    # Holm over the per-class table's own family (6 tests): PixDA 1-shot's 0.009 is not
    # significant there
    assert md["PixDA (1-shot)"][:2] == [f"**49.0** ± {np.std(PIXDA_1, ddof=1):.1f}†"] * 2
    # sky is 0 everywhere: a tie, no best, not testable; zero spread is shown as such
    assert md["FT (1-shot)"][2] == "0.0 ± 0.0" and md["PixDA (1-shot)"][2] == "0.0 ± 0.0‡"
    assert "mean ± standard deviation" in S.render(comp, spread="sd")


def test_written_files(tmp_path):
    runs = three_seeds()
    paths = S.write_tables(runs, tmp_path, spread="sd")
    assert [p.name for p in paths] == [
        f"{stem}.{ext}"
        for stem in ("stats_miou", "stats_per_class")
        for ext in ("csv", "md", "tex")
    ]
    back = pd.read_csv(paths[0])
    assert back.loc[back["method"].eq("pixda") & back["shots"].eq(1), "p_ttest"].item() == (
        pytest.approx(stats.ttest_rel(PIXDA_1, FT_1).pvalue)
    )
    assert set(back["reference"]) == {"finetune"} and set(back["confidence"]) == {0.95}
    assert "standard deviation" in paths[1].read_text()
    assert r"\end{table}" in paths[2].read_text()


def test_variance_source_seeds_splits_or_both():
    seeds = three_seeds("published")
    lines = S.variance_sources(seeds).set_index(["method", "shots"])
    assert lines.loc[("finetune", 1), "varies"] == "seed"
    assert lines.loc[("finetune", 1), "variance"] == "n = 3 training seeds (0-2); split: published"
    assert lines.loc[("source_only", 0), "variance"] == "1 run (training seed 0)"
    assert S.variance_note(S.comparison(seeds)) == (
        "Runs per cell: n = 3 training seeds (0-2); split: published; "
        "source only: 1 run (training seed 0)."
    )

    splits = runs_frame([("finetune", 1, 0, f"seed {s}", v) for s, v in enumerate(FT_1)])
    line = S.variance_sources(splits).iloc[0]
    assert line["varies"] == "split"
    assert line["variance"] == "n = 3 splits (drawn with seeds 0-2); training seed 0"

    both = runs_frame([("finetune", 1, s, f"seed {s}", v) for s, v in enumerate(FT_1)])
    line = S.variance_sources(both).iloc[0]
    assert line["varies"] == "seed and split"
    assert "each with its own training seed and split (seeds 0-2" in line["variance"]

    files = runs_frame([("pixda", 2, 0, "file a.txt", 1.0), ("pixda", 2, 5, "file b.txt", 2.0)])
    line = S.variance_sources(files).iloc[0]
    assert (
        line["variance"]
        == "n = 2 runs; training seeds 0, 5 and splits (file a.txt; file b.txt) both vary"
    )

    mixed = pd.concat([seeds, splits.assign(method="joint", shots=2)])
    note = S.variance_note(S.comparison(mixed))
    assert "FT 1-shot, joint 1-shot, PixDA 1-shot, FT 2-shot, PixDA 2-shot: n = 3 training" in note
    assert "joint 2-shot: n = 3 splits (drawn with seeds 0-2); training seed 0" in note


def test_figures_say_their_intervals_are_95_percent_cis():
    from pixda_core import viz

    runs = three_seeds("published")
    for c in A.CLASS_NAMES:
        runs[f"iou_{c}"] = runs["miou"]
    fig = viz.plot_miou_vs_shots(runs)
    title = fig.axes[0].get_legend().get_title().get_text()
    # wrapped to stay narrower than the axes: the words are the note, no line above 24
    words = "mean of n = 3 runs band: 95% CI (t-interval) source only: 1 run"
    assert " ".join(title.split()) == words
    assert max(map(len, title.split("\n"))) <= 24
    gain = A.gain_over(runs, per_run=True)
    assert len(gain) == 15 * len(A.CLASS_NAMES)  # one row per adapted run and class
    road = gain[(gain["class"] == "road") & (gain["method"] == "pixda") & (gain["shots"] == 1)]
    assert road["gain"].tolist() == pytest.approx(np.subtract(PIXDA_1, 30.0))
    fig = viz.plot_gain(gain)
    title = fig.axes[0].get_legend().get_title().get_text()
    # the legend says which baseline: here the sweep's one source-only model
    assert title == (
        "mean of n = 3 runs; error bars: 95% CI (t-interval); gain over the one source only model"
    )
    fig = viz.plot_per_class_iou(A.long_per_class(runs[runs["seed"] == 0]))
    title = fig.axes[0].get_legend().get_title().get_text()
    assert title == "mean of n = 1 run; error bars: 95% CI (t-interval), none with 1 run"
    assert S.t_interval([3.0]) == (pytest.approx(np.nan, nan_ok=True),) * 2


def test_the_oracle_is_a_reference_in_its_own_column_never_tested_or_best():
    # the oracle trained on every target image (3 per city here): above every method
    runs = pd.concat(
        [three_seeds(), runs_frame([("oracle", 3, s, "all", 60.0 + s) for s in range(3)])],
        ignore_index=True,
    )
    comp = S.comparison(runs)
    oracle = cell(comp, "oracle", 3)
    assert oracle["mean"] == pytest.approx(61.0) and oracle["n"] == 3
    assert oracle["note"] == "oracle: not paired" and np.isnan(oracle["p_ttest"])
    assert not oracle["not_significant"] and not oracle["best"]
    assert cell(comp, "pixda", 1)["best"]  # the best few-shot method keeps its bold
    text = S.render(comp)
    table = markdown_cells(text)
    assert table[""][-1].strip() == "all"  # its column says what it trained on
    assert table["oracle"][-1].strip().startswith("61.0 ±")
    assert "source only and oracle are not tested" in text
    assert "oracle: n = 3 training seeds (0-2); split: all" in text


# ------------------------------------------------------------------------- issue 33, by defect


def test_bold_never_on_one_run_nor_on_means_over_different_runs():
    # FT ran 5 seeds, PixDA 2: their means are over different runs, so no bold, said so
    ft5 = [18.0, 25.0, 20.0, 23.0, 21.5]
    runs = runs_frame(
        [("finetune", 5, s, "published", v) for s, v in enumerate(ft5)]
        + [("pixda", 5, s, "published", v) for s, v in enumerate([18.2, 25.2])]
    )
    comp = S.comparison(runs)
    assert not comp["best"].any()
    text = S.render(comp)
    assert "No bold at 5-shot: the methods' means are over different runs" in text
    # on the 2 seeds both ran, PixDA is ahead by 0.2: the paired difference says it
    assert cell(comp, "pixda", 5)["diff"] == pytest.approx(0.2)
    # a single run of 60.0 is not bold over 49.0 ± 9.0
    one = runs_frame(
        [("finetune", 1, s, "published", v) for s, v in enumerate([40.0, 49.0, 58.0])]
        + [("pixda", 1, 0, "published", 60.0)]
    )
    comp = S.comparison(one)
    assert not comp["best"].any()
    assert "No bold at 1-shot: PixDA: a single run." in S.render(comp)


def test_equal_printed_means_bold_alike():
    # the same mean, 42.35, computed two ways: groupby gives 42.349999999999994 for one (so
    # "42.3") and 42.35 for the other ("42.4") before; now both print 42.4 and bold alike
    a, b = [40.01, 44.69], [42.35, 42.35]
    runs = runs_frame(
        [("pixda", 1, s, "published", v) for s, v in enumerate(a)]
        + [("joint", 1, s, "published", v) for s, v in enumerate(b)]
        + [("finetune", 1, s, "published", v) for s, v in enumerate([30.0, 31.0])]
    )
    naive = (runs["miou"] * 100).groupby(runs["method"]).mean().map("{:.1f}".format)
    assert naive["pixda"] == "42.3" and naive["joint"] == "42.4"
    md = markdown_cells(S.render(S.comparison(runs)))
    assert md["PixDA"][0].startswith("**42.4**") and md["joint"][0].startswith("**42.4**")
    assert md["FT"][0].startswith("30.5")
    # 45.04 against 45.00, significantly (0.03, 0.05, 0.04): both print 45.0, both bold
    px = [45.03, 45.05, 45.04]
    assert stats.ttest_rel(px, [45.0] * 3).pvalue < 0.05
    runs = runs_frame(
        [("pixda", 1, s, "published", v) for s, v in enumerate(px)]
        + [("joint", 1, s, "published", 45.0) for s in range(3)]
        + [("finetune", 1, s, "published", v) for s, v in enumerate([30.0, 31.0, 32.0])]
    )
    comp = S.comparison(runs)
    assert cell(comp, "pixda", 1)["best"] and cell(comp, "joint", 1)["best"]
    assert not cell(comp, "finetune", 1)["best"]


def test_a_significantly_worse_method_is_marked_worse_not_like_a_win():
    ft, worse = [50.0, 52.0, 54.0, 51.0, 53.0], [44.0, 47.0, 48.0, 46.0, 46.0]
    runs = runs_frame(
        [("finetune", 1, s, "published", v) for s, v in enumerate(ft)]
        + [("pixda", 1, s, "published", v) for s, v in enumerate(worse)]
    )
    comp = S.comparison(runs)
    row = cell(comp, "pixda", 1)
    t = stats.ttest_rel(worse, ft)
    assert t.pvalue < 0.05 and t.statistic < 0
    assert row["mark"] == "worse" and row["p_adjusted"] == pytest.approx(t.pvalue)  # 1 test
    md = markdown_cells(S.render(comp))
    assert md["PixDA"][0].endswith("↓") and not md["PixDA"][0].startswith("**")
    assert md["FT"][0].startswith("**52.0**")


def test_holm_over_each_tables_family_and_the_switch(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for shots in (1, 2, 5):
        for method in ("finetune", "pixda", "joint"):
            rows += [(method, shots, s, "published", 40.0) for s in range(4)]
    runs = runs_frame(rows)
    # null data: every method's IoU drawn from the same distribution
    for c in A.CLASS_NAMES:
        runs[f"iou_{c}"] = rng.normal(0.4, 0.05, len(runs))
    runs["miou"] = rng.normal(0.4, 0.05, len(runs))
    comp = S.comparison(runs, metrics=None)
    tested = comp[comp["p_ttest"].notna()]
    assert len(tested) == 2 * 3 * 20 == comp.attrs["tests"]  # methods x shots x 20 metrics
    expected = multipletests(tested["p_ttest"], method="holm")[1]
    assert tested["p_adjusted"].to_numpy() == pytest.approx(expected)
    assert (tested["p_ttest"] < 0.05).sum() > 0  # raw: some null tests come out significant
    assert not comp["mark"].isin(["better", "worse"]).any()  # Holm: none
    assert "p Holm-adjusted over the table's 120 tests" in S.render(comp)
    # the mIoU table is its own family
    main = S.comparison(runs)
    p = main["p_ttest"].dropna()
    assert main["p_adjusted"].dropna().to_numpy() == pytest.approx(
        multipletests(p, method="holm")[1]
    )
    raw = S.comparison(runs, metrics=None, correction=None)
    assert raw["p_adjusted"].equals(raw["p_ttest"].where(raw["p_adjusted"].notna()))
    assert "p not corrected for the table's 120 tests" in S.render(raw)
    with pytest.raises(ValueError, match="correction 'bonferroni'"):
        S.comparison(runs, correction="bonferroni")
    back = pd.read_csv(S.write_tables(runs, tmp_path)[3])  # stats_per_class.csv
    assert {"p_ttest", "p_wilcoxon", "p_adjusted", "correction", "mark"} <= set(back)
    assert set(back["correction"]) == {"holm"}


def test_zero_variance_differences_are_not_testable():
    runs = runs_frame(
        [("finetune", 1, s, "published", v) for s, v in enumerate([40.0, 46.0])]
        + [("pixda", 1, s, "published", v) for s, v in enumerate([41.0, 47.0])]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert stats.ttest_rel([41.0, 47.0], [40.0, 46.0]).pvalue == 0.0  # scipy: p = 0
    comp = S.comparison(runs)
    row = cell(comp, "pixda", 1)
    assert np.isnan(row["p_ttest"]) and row["mark"] == "untested"
    md = markdown_cells(S.render(comp))
    half = stats.t.ppf(0.975, 1) * stats.sem([40.0, 46.0])
    assert f"{half:.1f}" == "38.1"
    # both ± 38.1, no test between them: both bold, PixDA marked not testable
    assert md["PixDA"] == ["**44.0** ± 38.1‡"] and md["FT"] == ["**43.0** ± 38.1"]


def test_repeats_are_averaged_and_nan_runs_left_out_everywhere():
    rows = [("finetune", 1, s, "published", v) for s, v in enumerate([40.0, 46.0, 43.0])]
    rows += [("finetune", 1, 0, "published", 50.0)]  # seed 0 again
    rows += [("pixda", 1, s, "published", v) for s, v in enumerate([45.0, 52.0, 50.0, 0.0])]
    runs = runs_frame(rows)
    runs.loc[runs.index[-1], "miou"] = np.nan  # PixDA seed 3: no value
    comp = S.comparison(runs)
    ft = cell(comp, "finetune", 1)
    values = [45.0, 46.0, 43.0]  # seed 0: (40 + 50) / 2
    low, high = stats.t.interval(0.95, 2, loc=np.mean(values), scale=stats.sem(values))
    assert ft["n"] == 3 and ft["runs"] == 4 and ft["mean"] == pytest.approx(np.mean(values))
    assert (ft["ci_low"], ft["ci_high"]) == pytest.approx((low, high))
    px = cell(comp, "pixda", 1)
    assert px["n"] == 3 and px["n_pairs"] == 3
    assert px["p_ttest"] == pytest.approx(stats.ttest_rel([45.0, 52.0, 50.0], values).pvalue)
    text = S.render(comp)
    assert "(n=" not in "".join(sum(markdown_cells(text).values(), []))  # n = 3: the caption's
    assert "n = 3 training seeds (0-2); split: published (1 more run repeating" in text
    assert "PixDA 1-shot: n = 3 training seeds (0-2)" in text
    # the figures count the same way
    from pixda_core import viz

    fig = viz.plot_miou_vs_shots(runs)
    title = " ".join(fig.axes[0].get_legend().get_title().get_text().split())
    assert title.startswith("mean of n = 3 runs")


def synthia(runs: pd.DataFrame) -> pd.DataFrame:
    runs = runs.assign(source="synthia", miou_13=runs["miou"] + 0.05)
    for c in A.CLASS_NAMES:
        runs[f"iou_{c}"] = runs["miou"]
    return runs


def test_synthia_tables_say_their_protocol():
    runs = synthia(three_seeds())
    comp = S.comparison(runs)
    md = markdown_cells(S.render(comp))
    assert md[""] == ["0-shot mIoU-16", "0-shot mIoU-13", "1-shot mIoU-16", "1-shot mIoU-13",
                      "2-shot mIoU-16", "2-shot mIoU-13"]  # fmt: skip
    assert md["PixDA"][3].startswith("**54.0**")  # mIoU-13: each run's + 5
    text = S.render(comp)
    assert "SYNTHIA: mIoU-16 over its 16 classes, mIoU-13 over 13 beside it" in text
    per_class = S.comparison(runs, metrics=None)
    table = markdown_cells(S.render(per_class))
    head = table[""]
    assert head[:2] == ["mIoU-16", "mIoU-13"]
    for c in ("terrain", "truck", "train"):
        assert table["PixDA (1-shot)"][head.index(c)] == "outside"
        assert cell(per_class, "pixda", 1, c)["mark"] == ""
    assert table["PixDA (1-shot)"][head.index("road")].startswith("**49.0**")
    # the outside classes are not in the family of tests
    assert per_class.attrs["tests"] == 3 * (2 + 16)


def test_sources_never_share_a_cell_and_a_missing_split_never_pairs():
    gta = three_seeds().assign(source="gta5")
    syn = three_seeds().assign(source="synthia", miou_13=np.nan)
    # SYNTHIA's FT is gone: its PixDA must not pair with GTA5's FT
    mixed = pd.concat([gta, syn[syn["method"] != "finetune"]], ignore_index=True)
    comp = S.comparison(mixed)
    gta_px = comp[(comp["source"] == "gta5") & (comp["method"] == "pixda") & (comp["shots"] == 1)]
    syn_px = comp[(comp["source"] == "synthia") & (comp["method"] == "pixda")]
    assert gta_px["n"].item() == 3 and gta_px["n_pairs"].item() == 3
    assert set(syn_px["n_pairs"]) == {0} and set(syn_px["mark"]) == {"untested"}
    said = "no finetune run with the same source, shots, settings, seed and split"
    assert set(syn_px["note"]) == {said}
    md = markdown_cells(S.render(comp))
    assert "PixDA (GTA5)" in md and "PixDA (SYNTHIA)" in md
    assert "1-shot mIoU" in md[""] and "1-shot mIoU-16" in md[""]
    # a missing split pairs with nothing, not even another missing split
    nosplit = three_seeds(split=None)
    comp = S.comparison(nosplit)
    row = cell(comp, "pixda", 1)
    assert row["n_pairs"] == 0 and row["note"].startswith("split not recorded")


def test_gain_paired_by_seed_with_per_seed_source_only_models():
    so = [30.0, 40.0, 35.0]
    rows = [("source_only", 0, s, None, v) for s, v in enumerate(so)]
    rows += [("finetune", 1, s, "published", v + 3) for s, v in enumerate(so)]
    runs = runs_frame(rows).assign(source="gta5")
    for c in A.CLASS_NAMES:
        runs[f"iou_{c}"] = runs["miou"]
    gain = A.gain_over(runs, per_run=True)
    road = gain[gain["class"] == "road"]
    assert road["gain"].tolist() == pytest.approx([3.0, 3.0, 3.0])  # not 8, -2, 3 (pooled)
    assert S.t_interval(road["gain"]) == pytest.approx((3.0, 3.0))
    assert gain.attrs["baseline"] == "gain over each seed's own source only model (paired by seed)"
    from pixda_core import viz

    title = viz.plot_gain(gain).axes[0].get_legend().get_title().get_text()
    assert title.endswith("gain over each seed's own source only model (paired by seed)")
    means = A.gain_over(runs)
    assert means.loc[means["class"] == "road", "gain"].item() == pytest.approx(3.0)
    # a run whose seed has no source-only model has no gain, and the baseline says so
    more = pd.concat([runs, runs.iloc[[3]].assign(seed=7, run="ft_seed7")], ignore_index=True)
    gain = A.gain_over(more, per_run=True)
    assert (
        "ft_seed7" not in set(gain["run"])
        and "1 run without one left out" in (gain.attrs["baseline"])
    )


def test_smaller_ones():
    # a class absent from every FT run: FT ran, it has no value
    runs = three_seeds().assign(iou_road=lambda f: f["miou"])
    runs.loc[runs["method"] == "finetune", "iou_road"] = np.nan
    comp = S.comparison(runs, metrics=None)
    assert cell(comp, "pixda", 1, "road")["note"] == (
        "finetune ran with the same source, shots, settings, seed and split but has no value "
        "for it (absent from val?)"
    )
    # a per-class cell with fewer runs says its n
    runs = three_seeds().assign(iou_road=lambda f: f["miou"])
    runs.loc[(runs["method"] == "pixda") & (runs["seed"] == 2), "iou_road"] = np.nan
    table = markdown_cells(S.render(S.comparison(runs, metrics=None)))
    assert table["PixDA (1-shot)"][1].endswith("(n=2)")
    # p-values are never rounded across alpha
    assert S.format_p([0.0496, 0.04996, 0.05, 0.5, np.nan]).tolist() == [
        "0.0496", "0.04996", "0.05", "0.5", "-"]  # fmt: skip
    shown = S.display_table(S.comparison(three_seeds()))
    assert shown["p_ttest"].iloc[-1] == S.format_p([cell(S.comparison(three_seeds()), "pixda",
                                                         2)["p_ttest"]]).item()  # fmt: skip
    # two oracle shot counts: two columns, no crash
    runs = pd.concat(
        [three_seeds()]
        + [runs_frame([("oracle", k, s, "all", 60.0 + s) for s in range(3)]) for k in (3, 5)],
        ignore_index=True,
    )
    md = markdown_cells(S.render(S.comparison(runs)))
    assert md[""][-2:] == ["all (3)", "all (5)"]
    with pytest.raises(ValueError, match="digits 2: the table's bold was decided at 1"):
        S.render(S.comparison(three_seeds()), digits=2)


@st.composite
def run_tables(draw):
    """FT, PixDA and joint at 1 and 2 shots over 2-6 seeds; IoUs in halves (ties), PixDA
    sometimes FT plus a constant (zero variance), a run sometimes missing."""
    k = draw(st.integers(2, 6))
    rows = []
    for shots in (1, 2):
        ft = [draw(st.integers(60, 100)) / 2 for _ in range(k)]
        shift = draw(st.one_of(st.none(), st.integers(-6, 6).map(lambda x: x / 2)))
        for method in ("finetune", "pixda", "joint"):
            for s in range(k):
                if method != "finetune" and draw(st.integers(0, 11)) == 0:
                    continue  # a run missing: means over different runs
                if method == "finetune":
                    v = ft[s]
                elif method == "pixda" and shift is not None:
                    v = ft[s] + shift
                else:
                    v = draw(st.integers(60, 100)) / 2
                rows.append((method, shots, s, "published", v))
    return runs_frame(rows)


def _significant_above(y, x) -> bool:
    """scipy: y significantly above x over their pairs (zero variance: no test)."""
    d = np.subtract(y, x)
    if len(d) < 2 or np.ptp(np.round(d, 9)) == 0:
        return False
    t = stats.ttest_rel(y, x)
    return t.pvalue < 0.05 and t.statistic > 0


@pytest.mark.slow  # 25 generated run tables, each through the whole comparison
@settings(FUZZ, max_examples=25)
@given(run_tables())
def test_bold_and_marks_never_contradict_the_paired_tests(runs):
    comp = S.comparison(runs)
    values = runs.assign(v=runs["miou"] * 100).pivot_table(
        index="seed", columns=["shots", "method"], values="v"
    )
    # the marks: scipy's paired t-test, statsmodels' Holm over the table's tests
    rows, p = [], []
    for r in comp[comp["method"].isin(["pixda", "joint"])].itertuples():
        pair = values[[(r.shots, r.method), (r.shots, "finetune")]].dropna().to_numpy()
        d = pair[:, 0] - pair[:, 1]
        if len(d) < 2 or np.ptp(np.round(d, 9)) == 0:
            assert r.mark == "untested" and np.isnan(r.p_ttest)
            continue
        assert r.p_ttest == pytest.approx(stats.ttest_rel(pair[:, 0], pair[:, 1]).pvalue)
        rows.append((r, d.mean()))
        p.append(r.p_ttest)
    if p:
        holm = multipletests(p, method="holm")[1]
        for (r, diff), adj in zip(rows, holm, strict=True):
            assert r.p_adjusted == pytest.approx(adj)
            want = "ns" if adj >= 0.05 else "better" if diff > 0 else "worse"
            assert r.mark == want
    # the bold, at each shot count
    for shots, block in comp.groupby("shots"):
        shown = block.set_index("method")["mean"].round(9).map("{:.1f}".format).astype(float)
        bold = block.set_index("method")["best"]
        runs_of = {m: values[(shots, m)].dropna() for m in bold.index}
        eligible = (
            len({tuple(v.index) for v in runs_of.values()}) == 1
            and min(map(len, runs_of.values())) >= 2
        )
        if not eligible or shown.nunique() == 1:
            assert not bold.any()
            continue
        assert bold[shown == shown.max()].all()  # the highest printed mean
        for m in bold.index:
            assert bold[shown == shown[m]].nunique() == 1  # equal printed means alike
            if not bold[m]:
                continue
            for other in bold.index:  # nothing printed higher is significantly above a bold
                if shown[other] > shown[m]:
                    assert not _significant_above(runs_of[other], runs_of[m])
        marks = block.set_index("method")["mark"]
        ft = shown["finetune"]
        for m in marks.index:
            if marks[m] == "worse" and ft > shown[m]:
                assert not bold[m]
            if marks[m] == "better" and shown[m] > ft:
                assert not bold["finetune"]
