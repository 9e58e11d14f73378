"""The README's toy table from the runs of benchmarks/toy_table.sh: mean ± 95% CI of target
val mIoU over seeds, paired tests against FT (pixda_core.stats), and the reference fine-tuned
on every target image.

Usage: python benchmarks/toy_table.py results/toy_table   (prints Markdown, writes toy_table.md)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pixda_core import stats
from pixda_core.analysis import load_runs


def main(argv=None) -> int:
    out = Path((argv or sys.argv[1:] or ["results/toy_table"])[0])
    runs = load_runs(out)
    runs = runs[runs["run"] != "target_all_seed0"]
    comparison = stats.comparison(runs, reference="finetune")
    text = stats.render(comparison, fmt="markdown", spread="ci")
    reference = out / "target_all_seed0" / "metrics.json"
    if reference.is_file():
        miou = json.loads(reference.read_text())["miou"] * 100
        text += f"\n\nFT on all 144 target train images (seed 0): {miou:.1f} mIoU (%)."
    paired = comparison[comparison["method"] != "finetune"].dropna(subset=["p_ttest"])
    lines = [
        f"- {stats.TITLES.get(r.method, r.method)} {r.shots}-shot - FT: {r.diff:+.1f} "
        f"[{r.diff_low:+.1f}, {r.diff_high:+.1f}], paired t-test p = {r.p_ttest:.2f}, "
        f"Wilcoxon p = {r.p_wilcoxon:.2f}"
        for r in paired.itertuples()
    ]
    text += "\n\nPaired differences (points, 95% CI):\n" + "\n".join(lines) + "\n"
    (out / "toy_table.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
