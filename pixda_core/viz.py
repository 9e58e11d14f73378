"""Figures: class frequencies per domain, sample mosaics. Saved as PNG and PDF for papers."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Rectangle
from matplotlib.transforms import blended_transform_factory

from . import labels as L
from .methods import SOURCE_ONLY
from .stats import CONFIDENCE, t_interval

#: fonts as TrueType in vector figures (matplotlib's default, Type 3, fails paper checkers)
EMBED_TRUETYPE = {"pdf.fonttype": 42, "ps.fonttype": 42}


def save_figure(
    fig, path: str | os.PathLike, formats=("png", "pdf"), dpi: int = 200
) -> list[Path]:
    """Save ``fig`` as ``path`` with each suffix in ``formats``; returns the files written.
    PDF and EPS embed TrueType (Type 42) fonts, not Type 3, which IEEE's and ACM's checkers
    reject."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    with matplotlib.rc_context(EMBED_TRUETYPE):
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
        ax.add_patch(
            Rectangle((i - 0.4, -0.035), 0.8, 0.025, transform=trans, color=colour, clip_on=False)
        )


def plot_class_frequency(freq: pd.DataFrame, title: str | None = None):
    """Bar chart of the share of labelled pixels per class, one bar per domain (log scale).

    ``freq`` has columns ``class``, ``domain``, ``share`` (long format, one row per pair).
    """
    order = [c for c in L.CLASS_NAMES if c in set(freq["class"])]
    fig, ax = plt.subplots(figsize=(11, 4.2))
    sns.barplot(data=freq, x="class", y="share", hue="domain", order=order, ax=ax, palette="deep")
    ax.set_yscale("log")
    ax.set_ylabel("share of labelled pixels (log)")
    ax.set_xlabel("")
    ax.tick_params(axis="x", rotation=50, pad=9)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    class_color_strip(ax, order)
    ax.grid(axis="y", which="major", alpha=0.3)
    ax.legend(
        title=None,
        frameon=False,
        ncol=len(freq["domain"].unique()),
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
    )
    ax.set_title(
        title or "Class frequencies per domain: the imbalance PixDA weights against", pad=28
    )
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


# --------------------------------------------------------------------- training and analysis

#: one colour per method, the same in every figure
METHOD_COLORS = dict(
    zip(
        ["source only", "FT", "joint", "AdaptSegNet-style", "PixDA"],
        sns.color_palette("colorblind", 5).as_hex(),
        strict=True,
    )
)


def _method_label(method: str) -> str:
    from .analysis import METHOD_NAMES

    return METHOD_NAMES.get(method, method)


def _class_axis(ax, classes) -> None:
    ax.set_xlabel("")
    ax.tick_params(axis="x", rotation=50, pad=9)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    class_color_strip(ax, classes)


def run_labels(frame: pd.DataFrame) -> list[str]:
    """Legend labels: the method's name, plus the shot count when the adapted runs have
    several (source-only is always just "source only")."""
    adapted = frame.loc[frame["method"] != "source_only", "shots"]
    several = adapted.nunique() > 1
    return [
        _method_label(m) if m == "source_only" or not several else f"{_method_label(m)} {s}-shot"
        for m, s in zip(frame["method"], frame["shots"], strict=True)
    ]


def label_palette(frame: pd.DataFrame) -> dict[str, str]:
    """Colour per :func:`run_labels` label: the method's colour (:data:`METHOD_COLORS`), paler
    for its smaller shot counts, so a method keeps its hue in every figure."""
    import matplotlib.colors as mcolors

    labels = run_labels(frame)
    palette = {}
    for method in dict.fromkeys(frame["method"]):
        name = _method_label(method)
        base = np.array(mcolors.to_rgb(METHOD_COLORS.get(name, "0.4")))
        mine = list(
            dict.fromkeys(
                lab for lab, m in zip(labels, frame["method"], strict=True) if m == method
            )
        )
        for i, lab in enumerate(mine):  # labels come in increasing shots
            t = 0.55 * (len(mine) - 1 - i) / max(len(mine) - 1, 1)
            palette[lab] = mcolors.to_hex(base * (1 - t) + t)
    return palette


def plot_training(history: pd.DataFrame, validations: pd.DataFrame | None = None, title=""):
    """Loss curves (``history.csv``) and, when given, val mIoU over steps (``validations.csv``)."""
    panels = 2 if validations is not None and len(validations) else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 3.6), squeeze=False)
    ax = axes[0, 0]
    for col in [c for c in history if c.startswith("loss_")]:
        if history[col].notna().any():
            ax.plot(history["step"], history[col], label=col.removeprefix("loss_"), lw=1.4)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (mean over the logging interval)")
    ax.set_yscale("log")
    ax.legend(frameon=False, fontsize=8)
    if "phase" in history and (history["phase"] == "kd").any():
        ax.axvspan(
            history.loc[history["phase"] == "kd", "step"].min(),
            history["step"].max(),
            color="0.9",
            zorder=0,
            label="distillation",
        )
    if panels == 2:
        ax = axes[0, 1]
        ax.plot(validations["step"], validations["miou"] * 100, marker="o", color="C3")
        if "miou_13" in validations:
            ax.plot(
                validations["step"],
                validations["miou_13"] * 100,
                marker="s",
                color="C4",
                label="mIoU-13",
            )
            ax.legend(frameon=False)
        ax.set_xlabel("step")
        ax.set_ylabel("target val mIoU (%)")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    sns.despine(fig)
    fig.tight_layout()
    return fig


def plot_selection(selection: pd.DataFrame):
    """Source images kept after each selection round, with the threshold used."""
    rounds = selection[selection.get("event", pd.Series(dtype=str)).fillna("") == ""]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    if rounds.empty:
        ax.text(0.5, 0.5, "no selection round ran", ha="center", va="center")
        ax.set_axis_off()
        return fig
    x = np.arange(len(rounds))
    ax.bar(x, rounds["candidates"], color="0.8", label="candidates")
    ax.bar(x, rounds["kept"], color="C0", label="kept")
    ticks = zip(rounds["round"], rounds["step"], rounds["tau"], strict=True)
    ax.set_xticks(x, [f"round {r}\n(step {s}, tau {t:.1f})" for r, s, t in ticks])
    ax.set_ylabel("source images")
    ax.legend(frameon=False)
    ax.set_title("Sample selection: source images D2 cannot tell from target")
    sns.despine(fig)
    fig.tight_layout()
    return fig


def ci_note(
    frame: pd.DataFrame, value: str, interval: str = "error bars", by=("class",), sep="; "
) -> str:
    """Legend title of a figure with intervals: the mark is a mean over n runs, the interval
    the tables' t-interval (:func:`pixda_core.stats.t_interval`), none for a single run."""
    n = frame.dropna(subset=[value]).groupby(["method", "shots", *by])[value].count()
    source_only = n.index.get_level_values("method") == SOURCE_ONLY
    ns = sorted(set(n[~source_only] if (~source_only).any() else n))
    if not ns:
        return ""
    runs = f"n = {ns[0]}" if len(ns) == 1 else f"n = {ns[0]}-{ns[-1]}"
    word = "run" if ns == [1] else "runs"
    note = f"mean of {runs} {word}{sep}{interval}: {CONFIDENCE:.0%} CI (t-interval)"
    if ns == [1]:
        return note + ", none with 1 run"
    if source_only.any() and n[source_only].eq(1).all():
        note += f"{sep}source only: 1 run"
    return note


def _class_bars(
    frame: pd.DataFrame, y: str, ylabel: str, title: str, legend_title=None, **bar_kws
):
    """Grouped bars per class (x, with its Cityscapes colour) and run label (hue)."""
    data = frame.assign(label=run_labels(frame))
    order = [c for c in L.CLASS_NAMES if c in set(data["class"])]
    hues = list(dict.fromkeys(data["label"]))
    fig, ax = plt.subplots(figsize=(min(16, max(11, 0.16 * len(order) * len(hues))), 4.4))
    sns.barplot(
        data=data,
        x="class",
        y=y,
        hue="label",
        order=order,
        hue_order=hues,
        palette=label_palette(frame),
        ax=ax,
        **bar_kws,
    )
    ax.set_ylabel(ylabel)
    _class_axis(ax, order)
    ax.grid(axis="y", alpha=0.3)
    ncol = min(len(hues), 6)
    ax.legend(
        title=legend_title,
        frameon=False,
        ncol=ncol,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
    )
    lines = -(-len(hues) // ncol) + (1 if legend_title else 0)  # the legend's rows, its title
    ax.set_title(title, pad=12 + 18 * lines)  # above the legend, whatever its height
    sns.despine(fig)
    fig.tight_layout()
    return fig, ax


def plot_per_class_iou(long: pd.DataFrame, title: str = "Per-class IoU on target val"):
    """Grouped bars: x = class (with its Cityscapes colour), one bar per method (and shot count
    when several), mean over runs with the 95% t-interval of the mean as error bar (the
    tables' interval, :mod:`pixda_core.stats`; none for a single run).

    ``long``: :func:`pixda_core.analysis.long_per_class` output."""
    fig, ax = _class_bars(
        long,
        "iou",
        "IoU (%)",
        title,
        legend_title=ci_note(long, "iou"),
        errorbar=t_interval,
        err_kws={"linewidth": 1},
    )
    # an IoU lies in [0, 100]; the t-interval of a few runs may not
    ax.set_ylim(0, min(ax.get_ylim()[1], 100))
    return fig


def plot_miou_vs_shots(runs: pd.DataFrame, title: str = "Target val mIoU against shots"):
    """mIoU (%) against shots per method: mean over runs with the 95% t-interval of the mean
    as a band (:mod:`pixda_core.stats`; none for a single run); source-only (0 shots) as a
    dashed line, with its band when it has several runs."""
    fig, ax = plt.subplots(figsize=(6.4, 4))
    data = runs.assign(miou=runs["miou"] * 100, label=runs["method"].map(_method_label))
    adapted = data[data["method"] != "source_only"]
    if not adapted.empty:
        sns.lineplot(
            data=adapted,
            x="shots",
            y="miou",
            hue="label",
            marker="o",
            errorbar=t_interval,
            palette={k: METHOD_COLORS.get(k) for k in adapted["label"].unique()},
            ax=ax,
        )
        ax.set_xticks(sorted(adapted["shots"].unique()))
    so = data[data["method"] == "source_only"]
    if not so.empty:
        colour = METHOD_COLORS["source only"]
        ax.axhline(so["miou"].mean(), ls="--", color=colour, label="source only")
        low, high = t_interval(so["miou"])
        if np.isfinite(low):
            ax.axhspan(low, high, color=colour, alpha=0.15, lw=0)
    ax.set_ylim(max(ax.get_ylim()[0], 0), None)  # an mIoU is not negative; a t-band may be
    ax.set_xlabel("labelled target images per city (shots)")
    ax.set_ylabel("mIoU (%)")
    ax.grid(alpha=0.3)
    ax.legend(
        title=ci_note(data, "miou", "band", by=(), sep="\n"),
        frameon=False,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        alignment="left",
    )
    ax.set_title(title)
    sns.despine(fig)
    fig.tight_layout()
    return fig


def plot_gain(gain: pd.DataFrame, title: str = "Per-class IoU gain over source only"):
    """Bars of per-class IoU gain (points), one bar per (method, shots); ``gain`` from
    :func:`pixda_core.analysis.gain_over`. With ``per_run=True`` there the bars are means
    over runs with the 95% t-interval as error bars; with means only, no error bars."""
    per_run = "run" in gain
    fig, ax = _class_bars(
        gain,
        "gain",
        "IoU gain (points)",
        title,
        legend_title=ci_note(gain, "gain") if per_run else None,
        errorbar=t_interval if per_run else None,
        err_kws={"linewidth": 1},
    )
    ax.axhline(0, color="black", lw=0.8)
    return fig


def plot_confusion(norm: pd.DataFrame, title: str = ""):
    """Heatmap of a row-normalised confusion matrix (:func:`analysis.row_normalised`)."""
    fig, ax = plt.subplots(figsize=(8.5, 7.2))
    sns.heatmap(
        norm * 100,
        vmin=0,
        vmax=100,
        cmap="viridis",
        square=True,
        ax=ax,
        cbar_kws={"label": "% of the ground-truth class", "shrink": 0.8},
        xticklabels=True,
        yticklabels=True,
    )
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.tick_params(axis="x", rotation=60)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
        label.set_rotation_mode("anchor")
    ax.set_title(title)
    fig.tight_layout()
    return fig


ERROR_COLORS = {"right": (46, 160, 67), "wrong": (215, 48, 39), "ignored": (150, 150, 150)}


def error_map(label: np.ndarray, pred: np.ndarray, classes=None) -> np.ndarray:
    """(H, W, 3) uint8: green where the prediction is right, red where wrong, grey where the
    ground truth is ignored. With ``classes`` (names or trainIds), pixels whose ground truth
    and prediction are both outside them are black."""
    out = np.zeros((*label.shape, 3), dtype=np.uint8)
    ignored = label == L.IGNORE_INDEX
    out[(label == pred) & ~ignored] = ERROR_COLORS["right"]
    out[(label != pred) & ~ignored] = ERROR_COLORS["wrong"]
    out[ignored] = ERROR_COLORS["ignored"]
    if classes:
        ids = [L.CLASS_NAMES.index(c) if isinstance(c, str) else int(c) for c in classes]
        keep = np.isin(label, ids) | np.isin(pred, ids)
        out[~keep] = 0
    return out


def plot_error_maps(rows, classes=None):
    """One row per (title, image (H, W, 3) uint8, label (H, W), {method: prediction}):
    image, ground truth, then each method's prediction and its error map."""
    n_methods = max(len(r[3]) for r in rows)
    cols = 2 + 2 * n_methods
    fig, axes = plt.subplots(
        len(rows), cols, figsize=(2.6 * cols, 1.6 * len(rows) + 0.6), squeeze=False
    )
    for r, ((title, image, label, preds), ax_row) in enumerate(zip(rows, axes, strict=True)):
        ax_row[0].imshow(image)
        ax_row[0].set_ylabel(title, rotation=0, ha="right", va="center", fontsize=8)
        ax_row[1].imshow(L.colorize(label))
        for j, (method, pred) in enumerate(preds.items()):
            ax_row[2 + 2 * j].imshow(L.colorize(pred))
            ax_row[3 + 2 * j].imshow(error_map(label, pred, classes))
            if r == 0:
                ax_row[2 + 2 * j].set_title(f"{method}", fontsize=9)
                ax_row[3 + 2 * j].set_title(f"{method}: errors", fontsize=9)
        for ax in ax_row:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("image", fontsize=9)
    axes[0, 1].set_title("ground truth", fontsize=9)
    handles = [Rectangle((0, 0), 1, 1, color=np.array(c) / 255) for c in ERROR_COLORS.values()]
    fig.legend(
        handles,
        list(ERROR_COLORS),
        loc="lower center",
        ncol=3,
        frameon=False,
        bbox_to_anchor=(0.5, 0.0),
    )
    suffix = f" (classes: {', '.join(map(str, classes))})" if classes else ""
    fig.suptitle(f"Errors on target val images{suffix}")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def plot_fda_preview(rows):
    """One row per (source image, target image, source in the target's style), uint8 RGB."""
    fig, axes = plt.subplots(len(rows), 3, figsize=(10, 1.9 * len(rows) + 0.4), squeeze=False)
    for (src, trg, styled), ax_row in zip(rows, axes, strict=True):
        for ax, img in zip(ax_row, (src, trg, styled), strict=True):
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
    for ax, t in zip(
        axes[0], ("source", "target (style)", "source in target style (FDA)"), strict=True
    ):
        ax.set_title(t)
    fig.tight_layout()
    return fig
