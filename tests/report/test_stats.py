"""Statistics over runs (pixda_core.stats): every number against scipy on the same numbers, the
marks of the tables, the line that says what varied, and the cases without a test."""

from __future__ import annotations

import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from pixda_core import analysis as A
from pixda_core import stats as S
from tests.helpers import FT_1, PIXDA_1, runs_frame

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
    assert row["note"] == "no finetune run with the same source, shots, seed and split"


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
