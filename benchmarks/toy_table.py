"""Summarise the runs of benchmarks/toy_table.sh: mean +- std of target val mIoU over seeds.

Usage: python benchmarks/toy_table.py results/toy_table   (prints Markdown, writes table.csv)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd

from pixda_core.methods import TITLES

NAMES = {
    **TITLES,
    "target_all": "FT on all 144 target images",
}
RUN = re.compile(r"^(?P<method>[a-z]+)_(?P<shots>\d+)shot_seed(?P<seed>\d+)$")


def collect(out: Path) -> pd.DataFrame:
    rows = []
    seen_source_only = False
    for metrics in sorted(out.glob("*/metrics.json")):
        name = metrics.parent.name
        m = json.loads(metrics.read_text())
        if name.startswith("source_only_"):
            # one source-only model per source and preset (a second folder appears only when
            # the config gained a field mid-table; its model is the same, trained again)
            if seen_source_only:
                continue
            seen_source_only = True
            for shots in (1, 5):
                rows.append(
                    {"method": "source_only", "shots": shots, "seed": 0, "miou": m["miou"]}
                )
        elif name.startswith("target_all"):
            rows.append({"method": "target_all", "shots": 8, "seed": 0, "miou": m["miou"]})
        elif match := RUN.match(name):
            rows.append(
                {
                    "method": match["method"],
                    "shots": int(match["shots"]),
                    "seed": int(match["seed"]),
                    "miou": m["miou"],
                }
            )
    return pd.DataFrame(rows)


def table(runs: pd.DataFrame) -> pd.DataFrame:
    runs = runs.assign(miou=runs["miou"] * 100)
    stats = runs.groupby(["method", "shots"])["miou"].agg(["mean", "std", "count"]).reset_index()
    stats["cell"] = [
        f"{r['mean']:.1f} ± {r['std']:.1f} (n={r['count']})"
        if r["count"] > 1
        else f"{r['mean']:.1f}"
        for _, r in stats.iterrows()
    ]
    wide = stats.pivot(index="method", columns="shots", values="cell")
    wide = wide.reindex([m for m in NAMES if m in wide.index])
    wide.index = [NAMES[m] for m in wide.index]
    wide.columns = [f"{c}-shot" if c != 8 else "all target" for c in wide.columns]
    return wide.fillna("")


def main(argv=None) -> int:
    out = Path((argv or sys.argv[1:] or ["results/toy_table"])[0])
    runs = collect(out)
    if runs.empty:
        print(f"no finished runs under {out}", file=sys.stderr)
        return 1
    runs.to_csv(out / "runs.csv", index=False)
    wide = table(runs)
    wide.to_csv(out / "table.csv")
    print(wide.to_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
