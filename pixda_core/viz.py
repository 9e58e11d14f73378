"""Figures: class frequencies per domain, sample mosaics. Saved as PNG and PDF for papers."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Rectangle
from matplotlib.transforms import blended_transform_factory

from . import labels as L


def save_figure(
    fig, path: str | os.PathLike, formats=("png", "pdf"), dpi: int = 200
) -> list[Path]:
    """Save ``fig`` as ``path`` with each suffix in ``formats``; returns the files written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        p = path.with_suffix(f".{fmt}")
        fig.savefig(p, dpi=dpi, bbox_inches="tight")
        written.append(p)
    return written


def class_color_strip(ax, classes) -> None:
    """Draw each class's Cityscapes colour as a swatch under its x tick."""
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    for i, name in enumerate(classes):
        colour = L.PALETTE[L.CLASS_NAMES.index(name)] / 255.0
        ax.add_patch(Rectangle((i - 0.4, -0.035), 0.8, 0.025, transform=trans, color=colour,
                               clip_on=False))  # fmt: skip


def plot_class_frequency(freq: pd.DataFrame, title: str | None = None):
    """Bar chart of the share of labelled pixels per class, one bar per domain (log scale).

    ``freq`` has columns ``class``, ``domain``, ``share`` (long format, one row per pair).
    """
    order = [c for c in L.CLASS_NAMES if c in set(freq["class"])]
    fig, ax = plt.subplots(figsize=(11, 4.2))
    sns.barplot(data=freq, x="class", y="share", hue="domain", order=order, ax=ax,
                palette="deep")  # fmt: skip
    ax.set_yscale("log")
    ax.set_ylabel("share of labelled pixels (log)")
    ax.set_xlabel("")
    ax.tick_params(axis="x", rotation=50, pad=9)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    class_color_strip(ax, order)
    ax.grid(axis="y", which="major", alpha=0.3)
    ax.legend(title=None, frameon=False, ncol=len(freq["domain"].unique()), loc="lower center",
              bbox_to_anchor=(0.5, 1.0))  # fmt: skip
    ax.set_title(title or "Class frequencies per domain: the imbalance PixDA weights against",
                 pad=28)  # fmt: skip
    sns.despine(fig)
    fig.tight_layout()
    return fig


def plot_samples(rows: list[tuple[str, np.ndarray, np.ndarray]]):
    """A mosaic: one row per (title, RGB image (H, W, 3) uint8, trainIds (H, W))."""
    fig, axes = plt.subplots(len(rows), 2, figsize=(9, 1.9 * len(rows)), squeeze=False)
    for (title, image, train_ids), (a, b) in zip(rows, axes, strict=True):
        a.imshow(image)
        b.imshow(L.colorize(train_ids))
        a.set_ylabel(title, rotation=0, ha="right", va="center")
        for ax in (a, b):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("image")
    axes[0, 1].set_title("label (Cityscapes palette; black = ignore)")
    fig.tight_layout()
    return fig
