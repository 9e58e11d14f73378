"""The main job of ``make demo``: toy data, its check, class statistics and figures.

Later stages (source-only training, adaptation, sweeps) are added here as they land.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .data import GTA5, Cityscapes, Synthia, toy
from .data.prep import check_dataset, class_frequencies, label_histograms, scan_layout
from .errors import DataError, run_cli
from .viz import plot_class_frequency, plot_samples, save_figure

DOMAINS = {  # domain name -> (layout kind, sub-folder of the toy root)
    "GTA5 (source)": ("gta5", "gta5"),
    "SYNTHIA (source)": ("synthia", "synthia"),
    "Cityscapes train (target)": ("cityscapes", "cityscapes"),
}


def class_statistics(data_root: Path, progress: bool = True) -> pd.DataFrame:
    """Per-class pixel statistics of each domain, long format (class, domain, pixels, share,
    images), computed from the label files at native resolution."""
    frames = []
    for domain, (kind, sub) in DOMAINS.items():
        samples = scan_layout(kind, data_root / sub)
        chosen = [s for g, ss in samples.groups.items() if g.startswith(("all", "train"))
                  for s in ss]  # fmt: skip
        freq = class_frequencies(label_histograms(kind, chosen, progress=progress))
        frames.append(freq.assign(domain=domain))
    return pd.concat(frames, ignore_index=True)


def sample_rows(data_root: Path, n: int = 2):
    rows = []
    for title, ds in (
        ("GTA5", GTA5(data_root / "gta5", size=None)),
        ("SYNTHIA", Synthia(data_root / "synthia", size=None)),
        ("Cityscapes", Cityscapes(data_root / "cityscapes", "train", size=None)),
    ):
        for i in range(n):
            item = ds[i * 7]
            image = item["image"].permute(1, 2, 0).numpy().astype(np.uint8)
            short = Path(item["name"]).name.removesuffix("_leftImg8bit.png")
            rows.append((f"{title}\n{short}", image, item["label"].numpy()))
    return rows


def run(data_root: str | os.PathLike = "data/toy", out: str | os.PathLike = "results/demo",
        progress: bool = True) -> dict:  # fmt: skip
    data_root, out = Path(data_root), Path(out)
    if not (data_root / "toy.json").is_file() and not data_root.exists():
        print(f"generating the toy benchmark in {data_root}")
        toy.generate(data_root, progress=progress)
    for kind, sub in DOMAINS.values():
        report = check_dataset(kind, data_root / sub, progress=False)
        print(report.summary())
        if not report.ok:
            raise DataError(f"{data_root / sub} failed its check; see the problems above")

    stats = class_statistics(data_root, progress)
    out.mkdir(parents=True, exist_ok=True)
    stats.to_csv(out / "class_stats.csv", index=False)
    table = stats.pivot(index="class", columns="domain", values="share").loc[
        list(stats["class"].unique())
    ]
    print("\nshare of labelled pixels per class (%):")
    print((100 * table).round(2).to_string())
    figs = []
    for fig, name, formats in (
        (plot_class_frequency(stats), "class_frequency", ("png", "pdf")),
        (plot_samples(sample_rows(data_root)), "samples", ("png",)),
    ):
        figs += save_figure(fig, out / name, formats=formats)
        plt.close(fig)
    print("\nwrote " + ", ".join(str(p) for p in [out / "class_stats.csv", *figs]))
    return {"class_stats": out / "class_stats.csv", "figures": figs}


@run_cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="pixda demo", description="Run the demo on the toy benchmark."
    )
    p.add_argument("--data", default="data/toy", help="toy benchmark root (generated if missing)")
    p.add_argument("--out", default="results/demo", help="where figures and tables go")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    run(args.data, args.out, progress=not args.quiet)
    return 0
