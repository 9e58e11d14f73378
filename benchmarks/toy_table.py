"""The README's toy table from the runs of benchmarks/toy_table.sh: mean ± 95% CI of target
val mIoU over seeds at the toy's own gap, paired tests against FT (pixda_core.stats), the
paired differences, PixDA's selection against the toy's true distances (each round's
selection.csv row, over the PixDA runs), PixDA's pixel-level weights against the classes'
pixel shares (each run's pixel_weights.csv), and the mIoU against the domain gap.

Usage: python benchmarks/toy_table.py results/toy_table [--gap 1]
(prints Markdown, writes toy_table.md into the folder)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from scipy.stats import spearmanr

from pixda_core import stats
from pixda_core.analysis import load_runs
from pixda_core.errors import run_cli


def selection_truth(runs: pd.DataFrame) -> str:
    """PixDA's selection rounds against the true distance to the target look, per round over
    the PixDA runs: Spearman's rho of D2's score with the distance, the mean distance of
    the kept and of the dropped images (mean [95% CI] over runs), images kept of candidates."""
    frames = []
    for r in runs[runs["method"] == "pixda"].itertuples():
        path = Path(r.path) / "selection.csv"
        if path.is_file():
            frames.append(pd.read_csv(path).assign(run=r.run))
    rounds = pd.concat(frames) if frames else pd.DataFrame()
    if rounds.empty or "distance_rho" not in rounds:
        return "\nNo PixDA selection round against the toy's distances.\n"
    rounds = rounds.dropna(subset=["distance_rho"])

    def cell(values: pd.Series) -> str:  # mean [95% CI] over runs; one run: its value
        v = values.dropna()
        if v.empty:
            return "none dropped" if values.name == "dropped_distance" else "-"
        if len(v) == 1:
            return f"{v.iloc[0]:+.2f} (one run)"
        low, high = stats.t_interval(v)
        return f"{v.mean():+.2f} [{low:+.2f}, {high:+.2f}]"

    lines = []
    for k, g in rounds.groupby("round"):
        kept = ", ".join(
            f"{a:.0f}/{b:.0f}" for a, b in zip(g["kept"], g["candidates"], strict=True)
        )
        cells = [cell(g[c]) for c in ("distance_rho", "kept_distance", "dropped_distance")]
        lines.append(f"| {k} | {len(g)} | {kept} | " + " | ".join(cells) + " |")
    head = (
        "| round | runs | kept/candidates, per run | rho(score, distance) | kept: mean distance | "
        "dropped: mean distance |\n|---|---|---|---|---|---|\n"
    )
    return (
        "\n\nPixDA's selection against each source image's true distance to the target look "
        "(0: the target's, 1: the source's; mean [95% CI] over runs):\n\n"
        + head
        + "\n".join(lines)
        + "\n"
    )


def pixel_weights(runs: pd.DataFrame, rare: int = 4) -> str:
    """PixDA's per-pixel weight on D1's term (ce x w, ``pixel_weights.csv``) against each
    class's pixel share, one row per PixDA run: Spearman's rho over the classes, the mean
    weight of the ``rare`` rarest and of the ``rare`` commonest classes, the span of the
    class-balance factor w, and the class with the largest weight."""
    rows, rhos = [], []
    for r in runs[runs["method"] == "pixda"].sort_values(["shots", "seed"]).itertuples():
        path = Path(r.path) / "pixel_weights.csv"
        if not path.is_file():
            continue
        w = pd.read_csv(path).sort_values("share")
        rho = spearmanr(w["share"], w["weight"]).statistic
        rhos.append(rho)
        top = w.loc[w["weight"].idxmax()]
        rows.append(
            f"| {r.shots} | {r.seed} | {rho:+.2f} | {w['weight'].head(rare).mean():.2f} | "
            f"{w['weight'].tail(rare).mean():.2f} | {w['w'].min():.2f}-{w['w'].max():.2f} | "
            f"{top['class']} ({top['weight']:.1f}) |"
        )
    if not rows:
        return "\nNo PixDA run with pixel_weights.csv.\n"
    return (
        "\n\nPixDA's pixel-level weight (ce x w, the factor on D1's term; mean per class over "
        "the val pixels) against the class's pixel share:\n\n"
        f"| shots | seed | rho(share, weight) | {rare} rarest: mean weight | "
        f"{rare} commonest: mean weight | w spans | largest weight |\n"
        "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
        + (f"\nrho over the {len(rhos)} runs: {pd.Series(rhos).mean():+.2f} "
           "[{:+.2f}, {:+.2f}] (mean, 95% t-interval)\n".format(*stats.t_interval(rhos)))
    )  # fmt: skip


@run_cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", nargs="?", default="results/toy_table")
    p.add_argument("--gap", type=float, default=1.0, help="the table's gap (default: 1)")
    args = p.parse_args(argv)
    out = Path(args.folder)
    every = load_runs(out)
    runs = every[every["gap"] == args.gap] if every["gap"].notna().any() else every
    comparison = stats.comparison(runs, reference="finetune")
    text = stats.render(comparison, fmt="markdown", spread="ci")
    paired = comparison[comparison["method"] != "finetune"].dropna(subset=["p_ttest"])
    lines = [
        f"- {stats.TITLES.get(r.method, r.method)} {r.shots}-shot - FT: {r.diff:+.1f} "
        f"[{r.diff_low:+.1f}, {r.diff_high:+.1f}], paired t-test p = {r.p_ttest:.2g}, "
        f"Wilcoxon p = {r.p_wilcoxon:.2g}"
        for r in paired.itertuples()
    ]
    text += "\n\nPaired differences to FT (points, 95% CI):\n" + "\n".join(lines) + "\n"
    text += selection_truth(runs)
    text += pixel_weights(runs)
    if every["gap"].nunique() > 1:
        text += "\n\nmIoU against the domain gap:\n\n" + stats.render_by_gap(stats.by_gap(every))
    (out / "toy_table.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
