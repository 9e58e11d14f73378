"""Figures: class frequencies per domain, sample mosaics. Saved as PNG and PDF for papers."""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Patch, Rectangle
from matplotlib.transforms import blended_transform_factory

from . import labels as L
from .methods import REFERENCES, SOURCE_ONLY
from .stats import CONFIDENCE, t_interval

#: fonts as TrueType in vector figures (matplotlib's default, Type 3, fails paper checkers)
EMBED_TRUETYPE = {"pdf.fonttype": 42, "ps.fonttype": 42}


@dataclass(frozen=True)
class Style:
    """A figure's size and fonts: ``width`` in inches (None: the figure's own screen size)
    and the body font in points (ticks and legends one point smaller, titles one larger)."""

    width: float | None
    font: float | None = None

    @property
    def paper(self) -> bool:
        return self.width is not None

    def rc(self) -> dict:
        if not self.paper:
            return dict(EMBED_TRUETYPE)
        small, body, large = self.font - 1, self.font, self.font + 1
        return {
            **EMBED_TRUETYPE,
            "font.size": body,
            "axes.titlesize": large,
            "axes.labelsize": body,
            "xtick.labelsize": small,
            "ytick.labelsize": small,
            "legend.fontsize": small,
            "legend.title_fontsize": small,
            "figure.titlesize": large,
            "axes.linewidth": 0.6,
            "lines.linewidth": 1.0,
            "lines.markersize": 3.5,
            "xtick.major.width": 0.6,
            "ytick.major.width": 0.6,
            "xtick.major.size": 2.5,
            "ytick.major.size": 2.5,
            "patch.linewidth": 0.5,
            "legend.handlelength": 1.4,
            "legend.columnspacing": 1.0,
            "figure.constrained_layout.h_pad": 0.02,
            "figure.constrained_layout.w_pad": 0.02,
        }


#: ``style`` of every figure function: "screen" (notebooks), or the widths of a paper's
#: one column (3.5 in) and two columns (7.2 in), where every text is 7-9 pt
STYLES = {
    "screen": Style(None),
    "one-column": Style(3.5, 8),
    "two-column": Style(7.2, 8),
}


def get_style(style: str | Style) -> Style:
    if isinstance(style, Style):
        return style
    if style not in STYLES:
        from .errors import ConfigError

        raise ConfigError(f"style {style!r} is not one of {', '.join(STYLES)}")
    return STYLES[style]


def new_figure(style, screen: tuple[float, float], paper_aspect: float, **kw):
    """``plt.subplots`` at the style's size: ``screen`` (w, h) in inches for "screen", else
    the style's width by ``paper_aspect`` times it, laid out by constrained layout (so the
    saved figure keeps exactly that width). Call it inside ``styled(style)``."""
    st = get_style(style)
    if not st.paper:
        fig, axes = plt.subplots(figsize=screen, **kw)
    else:
        size = (st.width, st.width * paper_aspect)
        fig, axes = plt.subplots(figsize=size, layout="constrained", **kw)
    fig.pixda_style = st
    return fig, axes


def styled(style):
    """Context for drawing a figure in ``style`` (its rcParams)."""
    return matplotlib.rc_context(get_style(style).rc())


def finish(fig, title: str | None = None):
    """Last touches: the title only when asked for; on screen, tight layout; in a paper
    style, tick labels fixed at the style's size (ticks made later keep it)."""
    st = getattr(fig, "pixda_style", STYLES["screen"])
    if title:
        fig.suptitle(title)
    if st.paper:
        for ax in fig.axes:
            ax.tick_params(labelsize=st.font - 1)
    else:
        fig.tight_layout()
    return fig


def save_figure(
    fig, path: str | os.PathLike, formats=("png", "pdf"), dpi: int = 200
) -> list[Path]:
    """Save ``fig`` as ``path`` with each suffix in ``formats``; returns the files written.
    PDF and EPS embed TrueType (Type 42) fonts, not Type 3, which IEEE's and ACM's checkers
    reject. A figure in a paper style keeps its exact width (3.5 or 7.2 in); a screen
    figure is cropped to what it draws."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    paper = getattr(fig, "pixda_style", STYLES["screen"]).paper
    written = []
    with matplotlib.rc_context(EMBED_TRUETYPE):
        for fmt in formats:
            p = path.with_suffix(f".{fmt}")
            fig.savefig(
                p, dpi=max(dpi, 300) if paper else dpi, bbox_inches=None if paper else "tight"
            )
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


def _rotate_classes(ax) -> None:
    narrow = ax.figure.get_figwidth() < 5
    ax.tick_params(axis="x", rotation=65 if narrow else 50, pad=6)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
        label.set_rotation_mode("anchor")


def plot_class_frequency(freq: pd.DataFrame, title: str | None = None, style="screen"):
    """Bar chart of the share of labelled pixels per class, one bar per domain (log scale).

    ``freq`` has columns ``class``, ``domain``, ``share`` (long format, one row per pair).
    """
    order = [c for c in L.CLASS_NAMES if c in set(freq["class"])]
    with styled(style):
        fig, ax = new_figure(style, (11, 4.2), 0.6)
        sns.barplot(
            data=freq, x="class", y="share", hue="domain", order=order, ax=ax, palette="deep"
        )
        ax.set_yscale("log")
        ax.set_ylabel("share of labelled pixels (log)")
        ax.set_xlabel("")
        _rotate_classes(ax)
        class_color_strip(ax, order)
        ax.grid(axis="y", which="major", alpha=0.3)
        ax.legend(
            title=None,
            frameon=False,
            ncol=len(freq["domain"].unique()),
            loc="lower center",
            bbox_to_anchor=(0.5, 1.0),
        )
        sns.despine(fig)
        return finish(fig, title)


def plot_samples(rows: list[tuple[str, np.ndarray, np.ndarray]], style="screen"):
    """A mosaic: one row per (title, RGB image (H, W, 3) uint8, trainIds (H, W))."""
    with styled(style):
        fig, axes = new_figure(
            style, (9, 1.9 * len(rows)), 0.28 * len(rows), nrows=len(rows), ncols=2, squeeze=False
        )
        for (title, image, train_ids), (a, b) in zip(rows, axes, strict=True):
            a.imshow(image)
            b.imshow(L.colorize(train_ids))
            a.set_ylabel(title, rotation=0, ha="right", va="center")
            for ax in (a, b):
                ax.set_xticks([])
                ax.set_yticks([])
        axes[0, 0].set_title("image")
        axes[0, 1].set_title("label (Cityscapes palette; black = ignore)")
        return finish(fig)


# --------------------------------------------------------------------- training and analysis

#: one colour per method, the same in every figure; its name is the methods table's title
METHOD_COLORS = dict(
    zip(
        ["source only", "FT", "joint", "AdaptSegNet-style", "PixDA", "oracle"],
        sns.color_palette("colorblind", 6).as_hex(),
        strict=True,
    )
)

#: what the loss columns of history.csv are called in figures
LOSS_NAMES = {
    "seg_src": "segmentation, source",
    "seg_trg": "segmentation, target",
    "seg": "segmentation",
    "adv": "adversarial (G)",
    "d1": "D1 (pixel level)",
    "d2": "D2 (image level)",
    "kd": "distillation",
}


def _method_label(method: str) -> str:
    from .methods import TITLES

    return TITLES.get(method, method)


def run_labels(frame: pd.DataFrame) -> list[str]:
    """Legend labels: the method's name, plus the shot count when the adapted runs have
    several (source-only is always just "source only"), plus the settings where the runs hold
    several (``setting_label``: "PixDA, 64x32, 75 it."): runs of different settings are never
    one bar or line."""
    adapted = frame.loc[~frame["method"].isin(REFERENCES), "shots"]
    several = adapted.nunique() > 1
    setting = frame["setting_label"] if "setting_label" in frame else [""] * len(frame)
    return [
        (_method_label(m) if m in REFERENCES or not several else f"{_method_label(m)} {s}-shot")
        + (f", {x}" if isinstance(x, str) and x else "")
        for m, s, x in zip(frame["method"], frame["shots"], setting, strict=True)
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


def main_phase_end(history: pd.DataFrame):
    """The step the main phase ended at (where distillation starts; the run logs a main row
    there when the phase ends), None without a distillation phase."""
    if "phase" not in history or not (history["phase"] == "kd").any():
        return None
    return int(history.loc[history["phase"] != "kd", "step"].max())


def plot_training(
    history: pd.DataFrame,
    validations: pd.DataFrame | None = None,
    title: str | None = None,
    style="screen",
):
    """Loss curves (``history.csv``) and, when given, val mIoU over steps (``validations.csv``);
    the distillation phase shaded from where the main phase ended."""
    panels = 2 if validations is not None and len(validations) else 1
    with styled(style):
        st = get_style(style)
        stacked = st.paper and st.width < 5 and panels == 2  # one column: one above the other
        grid = {"nrows": 2} if stacked else {"ncols": panels}
        fig, axes = new_figure(
            style, (6 * panels, 3.8), 1.2 if stacked else 0.45, sharex=True, squeeze=False, **grid
        )
        axes = axes.reshape(1, -1)
        ax = axes[0, 0]
        for col in [c for c in history if c.startswith("loss_")]:
            if history[col].notna().any():
                name = col.removeprefix("loss_")
                ax.plot(history["step"], history[col], label=LOSS_NAMES.get(name, name))
        ax.set_xlabel("step")
        ax.set_ylabel("loss (mean over the log interval)")
        ax.set_yscale("log")
        start = main_phase_end(history)
        for a in axes[0]:
            if start is not None:
                a.axvspan(start, history["step"].max(), color="0.9", zorder=0, lw=0)
        handles, labels = ax.get_legend_handles_labels()
        if start is not None:
            handles.append(Rectangle((0, 0), 1, 1, color="0.9"))
            labels.append("distillation phase")
        ax.legend(  # above the curves, never over them
            handles,
            labels,
            frameon=False,
            ncol=2 if stacked or panels == 1 else 3,
            loc="lower left",
            bbox_to_anchor=(0.0, 1.0),
            borderaxespad=0.2,
        )
        if panels == 2:
            ax = axes[0, 1]
            v = validations
            ax.plot(v["step"], v["miou"] * 100, marker="o", color="C3", label="mIoU")
            if "miou_13" in v:
                ax.plot(v["step"], v["miou_13"] * 100, marker="s", color="C4", label="mIoU-13")
            ax.legend(frameon=False, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2)
            ax.set_xlabel("step")
            ax.set_ylabel("target val mIoU (%)")
            top = np.nanmax(v[[c for c in ("miou", "miou_13") if c in v]].to_numpy()) * 100
            # from 0, so that one validation (or a flat curve) is not blown up to fill the axis
            ax.set_ylim(0, min(100, max(10.0, np.ceil(top * 1.25 / 5) * 5)))
            ax.grid(alpha=0.3)
            if stacked:
                axes[0, 0].set_xlabel("")
        sns.despine(fig)
        return finish(fig, title)


def selection_message(selection: pd.DataFrame) -> str | None:
    """Why there is no selection figure, or None when at least one round ran."""
    rounds = _selection_rounds(selection)
    if len(rounds):
        return None
    ended = selection.loc[selection.get("event", pd.Series(dtype=str)).notna(), ["step", "event"]]
    why = f" ({ended['event'].iloc[-1]} at step {ended['step'].iloc[-1]})" if len(ended) else ""
    return (
        "no selection round ran: the main phase ended before the first source epoch did"
        f"{why}; every source image was used"
    )


def _selection_rounds(selection: pd.DataFrame) -> pd.DataFrame:
    events = selection["event"] if "event" in selection else pd.Series("", index=selection.index)
    rounds = selection[events.fillna("") == ""]
    return rounds[rounds["round"] > 0] if "round" in rounds else rounds


def plot_selection(selection: pd.DataFrame, title: str | None = None, style="screen"):
    """Source images kept after each selection round, with the threshold used; None when no
    round ran (:func:`selection_message` says why)."""
    rounds = _selection_rounds(selection)
    if rounds.empty:
        return None
    with styled(style):
        fig, ax = new_figure(style, (6, 3.4), 0.62)
        x = np.arange(len(rounds))
        ax.bar(x, rounds["candidates"], color="0.8", label="candidates")
        ax.bar(x, rounds["kept"], color=METHOD_COLORS["PixDA"], label="kept")
        ticks = zip(rounds["round"], rounds["step"], rounds["tau"], strict=True)
        ax.set_xticks(x, [f"round {r}\n(step {s}, τ {t:.2f})" for r, s, t in ticks])
        ax.set_ylabel("source images")
        ax.legend(frameon=False, ncol=2, loc="lower left", bbox_to_anchor=(0.0, 1.0))
        sns.despine(fig)
        return finish(fig, title)


def ci_note(
    frame: pd.DataFrame, value: str, interval: str = "error bars", by=("class",), sep="; "
) -> str:
    """Legend title of a figure with intervals: the mark is a mean over n runs, the interval
    the tables' t-interval (:func:`pixda_core.stats.t_interval`), none for a single run."""
    keys = ["method", "shots", *(["fingerprint"] if "fingerprint" in frame else []), *by]
    n = frame.dropna(subset=[value]).groupby(keys)[value].count()
    source_only = n.index.get_level_values("method") == SOURCE_ONLY
    # the oracle's runs count like an adapted method's (one per seed)
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


def _note_sep(style) -> str:
    """A legend title's parts on one line, or one per line in a one-column figure."""
    st = get_style(style)
    return "\n" if st.paper and st.width < 5 else "; "


#: the mark of a class with no IoU (NaN, not 0): absent from the val ground truth and never
#: predicted (a class absent from the ground truth but predicted scores 0)
ABSENT_MARK = {"marker": "x", "color": "0.35", "linestyle": "none", "markersize": 4}
ABSENT_LABEL = "no IoU: not in val, not predicted"
#: the same mark in the gain figure: one of the two IoUs it subtracts is missing
NO_GAIN_LABEL = "no gain: an IoU is missing"


def _class_bars(
    frame: pd.DataFrame, y: str, ylabel: str, title, legend_title, style,
    missing=ABSENT_LABEL, **bar_kws,
):  # fmt: skip
    """Grouped bars per class (x, with its Cityscapes colour) and run label (hue). A bar of 0
    shows as a line on the axis; a class with no value (NaN) as a grey × there, named in the
    legend as ``missing``."""
    from matplotlib.lines import Line2D

    data = frame.assign(label=run_labels(frame))
    order = [c for c in L.CLASS_NAMES if c in set(data["class"])]
    hues = list(dict.fromkeys(data["label"]))
    st = get_style(style)
    narrow = st.paper and st.width < 5
    with styled(style):
        screen = (min(16, max(11, 0.16 * len(order) * len(hues))), 4.4)
        fig, ax = new_figure(style, screen, 0.85 if narrow else 0.55)
        palette = label_palette(frame)
        sns.barplot(
            data=data,
            x="class",
            y=y,
            hue="label",
            order=order,
            hue_order=hues,
            palette=palette,
            ax=ax,
            **bar_kws,
        )
        width = 0.8 / len(hues)
        means = data.groupby(["class", "label"])[y].mean()
        absent = False
        for i, cls in enumerate(order):
            for j, lab in enumerate(hues):
                x = i - 0.4 + width * (j + 0.5)
                value = means.get((cls, lab), np.nan)
                if np.isnan(value):
                    ax.plot([x], [0], **ABSENT_MARK, zorder=4)
                    absent = True
                elif value == 0:  # a zero-height bar draws nothing: a line in its colour
                    ax.plot(
                        [x - width / 2, x + width / 2],
                        [0, 0],
                        color=palette[lab],
                        lw=1.6,
                        gid="zero",
                    )
        ax.set_ylabel(ylabel)
        ax.set_xlabel("")
        _rotate_classes(ax)
        class_color_strip(ax, order)
        ax.grid(axis="y", alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if absent:
            handles.append(Line2D([], [], **ABSENT_MARK))
            labels.append(missing)
        ncol = min(len(labels), 2 if narrow else 6)
        ax.legend(
            handles,
            labels,
            title=legend_title,
            frameon=False,
            ncol=ncol,
            loc="lower center",
            bbox_to_anchor=(0.5, 1.0),
        )
        sns.despine(fig)
        return finish(fig, title), ax


def plot_per_class_iou(long: pd.DataFrame, title: str | None = None, style="screen"):
    """Grouped bars: x = class (with its Cityscapes colour), one bar per method (and shot count
    when several), mean over runs with the 95% t-interval of the mean as error bar (the
    tables' interval, :mod:`pixda_core.stats`; none for a single run).

    ``long``: :func:`pixda_core.analysis.long_per_class` output."""
    fig, ax = _class_bars(
        long,
        "iou",
        "IoU (%)",
        title,
        ci_note(long, "iou", sep=_note_sep(style)),
        style,
        errorbar=t_interval,
        err_kws={"linewidth": 1},
    )
    # an IoU lies in [0, 100]; the t-interval of a few runs may not
    ax.set_ylim(0, min(ax.get_ylim()[1], 100))
    return fig


def plot_miou_vs_shots(runs: pd.DataFrame, title: str | None = None, style="screen"):
    """mIoU (%) against shots per method: mean over runs with the 95% t-interval of the mean
    as a band (:mod:`pixda_core.stats`; none for a single run); source-only (0 shots) and
    the oracle (every target image) as dashed and dotted lines, with their bands when they
    have several runs."""
    from .analysis import one_per_key, with_settings

    runs = one_per_key(with_settings(runs))  # repeats count once, as in the tables
    with styled(style):
        fig, ax = new_figure(style, (6.4, 4), 0.75)
        # a line per method and setting (runs of different settings are never one line)
        label = runs["method"].map(_method_label) + (", " + runs["setting_label"]).where(
            runs["setting_label"].ne(""), ""
        )
        data = runs.assign(miou=runs["miou"] * 100, label=label)
        adapted = data[~data["method"].isin(REFERENCES)]
        if not adapted.empty:
            sns.lineplot(
                data=adapted,
                x="shots",
                y="miou",
                hue="label",
                marker="o",
                errorbar=t_interval,
                palette=label_palette(adapted.assign(shots=0)),
                ax=ax,
            )
            ax.set_xticks(sorted(adapted["shots"].unique()))
        for method, ls in ((SOURCE_ONLY, "--"), ("oracle", ":")):
            colour = METHOD_COLORS[_method_label(method)]
            for name, ref in data[data["method"] == method].groupby("label", sort=False):
                ax.axhline(ref["miou"].mean(), ls=ls, color=colour, label=name)
                low, high = t_interval(ref["miou"])
                if np.isfinite(low):
                    ax.axhspan(low, high, color=colour, alpha=0.15, lw=0)
        ax.set_ylim(max(ax.get_ylim()[0], 0), None)  # an mIoU is not negative; a t-band may be
        ax.set_xlabel("labelled target images per city (shots)")
        ax.set_ylabel("mIoU (%)")
        ax.grid(alpha=0.3)
        _legend_right(ax, ci_note(data, "miou", "band", by=(), sep="\n"))
        sns.despine(fig)
        return finish(fig, title)


def _legend_right(ax, title: str, width: int = 24) -> None:
    """The legend beside the axes, on the right, under ``title`` (an interval note), the
    title wrapped at ``width`` characters so the legend stays narrower than the axes."""
    import textwrap

    title = "\n".join(textwrap.fill(line, width) for line in title.split("\n"))
    ax.legend(
        title=title, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0), alignment="left"
    )


def plot_miou_vs_gap(runs: pd.DataFrame, title: str | None = None, style="screen"):
    """mIoU (%) against the toy benchmark's domain gap (``runs["gap"]``, from a sweep over
    gaps): one line per method (and shot count when several), source-only and the oracle
    included, each the mean over runs with the 95% t-interval of the mean as a band. A
    method (and shot count) run at one gap only has no line and is left out."""
    data = runs.dropna(subset=["gap"])
    if data["gap"].nunique() < 2:
        raise ValueError("plot_miou_vs_gap needs runs at two gaps or more")
    data = data.assign(label=run_labels(data))
    data = data[data.groupby("label")["gap"].transform("nunique") > 1]
    data = data.assign(miou=data["miou"] * 100, label=run_labels(data))
    with styled(style):
        fig, ax = new_figure(style, (6.4, 4), 0.75)
        palette = label_palette(data)
        for label, group in data.groupby("label", sort=False):
            ref = group["method"].iloc[0] in REFERENCES
            sns.lineplot(
                data=group,
                x="gap",
                y="miou",
                label=label,
                color=palette[label],
                marker="s" if ref else "o",
                linestyle={SOURCE_ONLY: "--", "oracle": ":"}.get(group["method"].iloc[0], "-"),
                errorbar=t_interval,
                ax=ax,
            )
        ax.set_xticks(sorted(data["gap"].unique()))
        ax.set_ylim(max(ax.get_ylim()[0], 0), None)
        ax.set_xlabel("domain gap of the toy (--gap)")
        ax.set_ylabel("mIoU (%)")
        ax.grid(alpha=0.3)
        _legend_right(ax, ci_note(data, "miou", "band", by=("gap",), sep="\n"))
        sns.despine(fig)
        return finish(fig, title)


def plot_selection_truth(truth: pd.DataFrame, title: str | None = None, style="screen"):
    """Each selection round's kept and dropped source images against their true distance to
    the target look (0: the target's look, 1: the source's), as box plots; each round's
    tick gives Spearman's rho between D2's score and the distance (negative: images nearer
    the target score as more target-like). ``truth``: :func:`pixda_core.diagnostics.
    selection_truth` output."""
    from .train.selection import against_truth

    data = truth.assign(which=np.where(truth["kept"].astype(bool), "kept", "dropped"))
    rounds = sorted(data["round"].unique())
    rho = {
        r: against_truth(g["score"], g["kept"].astype(bool), g["distance"])["distance_rho"]
        for r, g in data.groupby("round")
    }
    colours = {"kept": METHOD_COLORS["PixDA"], "dropped": "0.7"}
    with styled(style):
        fig, ax = new_figure(style, (6, 3.6), 0.62)
        for i, r in enumerate(rounds):
            for j, which in enumerate(colours):
                values = data.loc[(data["round"] == r) & (data["which"] == which), "distance"]
                if values.empty:
                    continue
                ax.boxplot(
                    [values.to_numpy()],
                    positions=[i + (j - 0.5) * 0.4],
                    widths=0.34,
                    patch_artist=True,
                    boxprops={"facecolor": colours[which], "edgecolor": "0.25"},
                    medianprops={"color": "0.1"},
                    flierprops={"markersize": 2},
                )
        kept = data.groupby("round")["kept"].agg(
            ["sum", "size"]
        )  # "kept 300 of 300": none dropped
        ticks = [
            f"round {r}: kept {kept.loc[r, 'sum']:.0f} of {kept.loc[r, 'size']}\n(ρ {rho[r]:+.2f})"
            for r in rounds
        ]
        ax.set_xticks(range(len(rounds)), ticks)
        ax.set_xlim(-0.6, len(rounds) - 0.4)
        ax.set_ylabel("true distance to the target look")
        ax.set_ylim(-0.05, 1.05)
        handles = [Patch(facecolor=c, edgecolor="0.25", label=k) for k, c in colours.items()]
        ax.legend(
            handles=handles, frameon=False, ncol=2, loc="lower left", bbox_to_anchor=(0.0, 1.0)
        )
        sns.despine(fig)
        return finish(fig, title)


def plot_pixel_weights(weights: pd.DataFrame, title: str | None = None, style="screen"):
    """Per class (x, most frequent first, with its Cityscapes colour): its share of the val
    pixels (top, log scale) and the pixel-level loss's mean per-pixel factors (bottom): the
    weight on D1's term (CE x w) and the whole term (D1's BCE x CE x w). ``weights``:
    :func:`pixda_core.diagnostics.pixel_weights` output."""
    frame = weights.sort_values("share", ascending=False)
    order = list(frame.index)
    long = frame.reset_index().melt(
        id_vars="class", value_vars=["weight", "term"], var_name="what", value_name="value"
    )
    names = {"weight": "CE × w (weight on D1's term)", "term": "BCE × CE × w (the loss)"}
    long["what"] = long["what"].map(names)
    st = get_style(style)
    narrow = st.paper and st.width < 5
    with styled(style):
        fig, (top, bottom) = new_figure(
            style, (11, 5.6), 1.1 if narrow else 0.7, nrows=2, sharex=True,
            gridspec_kw={"height_ratios": [1, 2]},
        )  # fmt: skip
        colours = [L.PALETTE[L.CLASS_NAMES.index(c)] / 255.0 for c in order]
        top.bar(range(len(order)), frame["share"] * 100, color=colours)
        top.set_yscale("log")
        top.set_ylabel("val pixels (%)")
        top.grid(axis="y", alpha=0.3)
        sns.barplot(
            data=long,
            x="class",
            y="value",
            hue="what",
            order=order,
            palette=[METHOD_COLORS["PixDA"], "0.55"],
            ax=bottom,
        )
        bottom.set_ylabel("mean per pixel")
        bottom.set_xlabel("")
        bottom.grid(axis="y", alpha=0.3)
        _rotate_classes(bottom)
        class_color_strip(bottom, order)
        # the legend where the class shares have fallen: top right of the top panel
        handles, labels = bottom.get_legend_handles_labels()
        bottom.legend_.remove()
        top.legend(handles, labels, frameon=False, loc="upper right")
        sns.despine(fig)
        return finish(fig, title)


def plot_gain(gain: pd.DataFrame, title: str | None = None, style="screen"):
    """Bars of per-class IoU gain (points), one bar per (method, shots); ``gain`` from
    :func:`pixda_core.analysis.gain_over`. With ``per_run=True`` there the bars are means
    over runs with the 95% t-interval as error bars (over the per-seed differences when each
    seed has its own source-only model); with means only, no error bars. The legend says which
    baseline was used."""
    per_run = "run" in gain
    sep = _note_sep(style)
    # which baseline: each seed's own source-only model, or the one model (gain_over says)
    baseline = gain.attrs.get("baseline")
    note = ci_note(gain, "gain", sep=sep) if per_run else ""
    note = sep.join(x for x in (note, baseline) if x) or None
    fig, ax = _class_bars(
        gain,
        "gain",
        "IoU gain (points)",
        title,
        note,
        style,
        missing=NO_GAIN_LABEL,
        errorbar=t_interval if per_run else None,
        err_kws={"linewidth": 1},
    )
    ax.axhline(0, color="black", lw=0.8)
    return fig


def plot_confusion(norm: pd.DataFrame, title: str | None = None, style="screen"):
    """Heatmap of a row-normalised confusion matrix (:func:`analysis.row_normalised`). The row
    of a class absent from the val ground truth (no pixel to normalise) is hatched and its
    name marked "(absent)"."""
    absent = norm.isna().all(axis=1)
    with styled(style):
        fig, ax = new_figure(style, (8.5, 7.2), 0.9)
        sns.heatmap(
            norm * 100,
            vmin=0,
            vmax=100,
            cmap="viridis",
            square=True,
            ax=ax,
            cbar_kws={"label": "% of the ground-truth class", "shrink": 0.8},
            xticklabels=True,
            yticklabels=[f"{c} (absent)" if absent[c] else c for c in norm.index],
        )
        for row in np.flatnonzero(absent.to_numpy()):
            ax.add_patch(
                Rectangle((0, row), norm.shape[1], 1, fill=False, hatch="////", ec="0.6", lw=0)
            )
        ax.set_xlabel("prediction")
        ax.set_ylabel("ground truth" + ("  (hatched: absent from val)" if absent.any() else ""))
        narrow = fig.get_figwidth() < 5  # one column: upright names would overlap
        ax.tick_params(axis="x", rotation=90 if narrow else 60)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("center" if narrow else "right")
            label.set_rotation_mode("default" if narrow else "anchor")
        return finish(fig, title)


ERROR_COLORS = {"right": (46, 160, 67), "wrong": (215, 48, 39), "ignored": (150, 150, 150)}
OUTSIDE_FILTER = "outside the class filter"


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
        ids = L.class_ids(classes)
        keep = np.isin(label, ids) | np.isin(pred, ids)
        out[~keep] = 0
    return out


def _error_legend(fig, classes, present=None, ncol=4) -> None:
    """The colours of the error maps (black: outside the class filter, when one is set) and,
    with ``present`` (trainIds), the Cityscapes colour of each class in the picture."""
    items = [("right", ERROR_COLORS["right"]), ("wrong", ERROR_COLORS["wrong"])]
    items.append(("ignored in the ground truth", ERROR_COLORS["ignored"]))
    if classes:
        items.append((OUTSIDE_FILTER, (0, 0, 0)))
    for i in present or ():
        name = L.CLASS_NAMES[i] if i < L.NUM_CLASSES else "ignore (labels)"
        items.append((name, tuple(L.PALETTE[i]) if i < L.NUM_CLASSES else (0, 0, 0)))
    handles = [Rectangle((0, 0), 1, 1, color=np.array(c) / 255) for _, c in items]
    fig.legend(
        handles, [n for n, _ in items], loc="outside lower center", ncol=ncol, frameon=False
    )


def plot_error_maps(rows, classes=None, title: str | None = None, style="screen"):
    """Two rows per (name, image (H, W, 3) uint8, label (H, W), {method: prediction}): the
    image, its ground truth and each method's prediction, then each method's error map
    under its prediction. Images are named by ``name`` (city and val index,
    :func:`pixda_core.browse.row_title`); columns by what they show."""
    if not rows:
        from .errors import ConfigError

        raise ConfigError("no val images to draw error maps of (an empty list of images)")
    methods = list(rows[0][3])
    cols = 2 + len(methods)
    h, w = rows[0][2].shape
    st = get_style(style)
    narrow = st.paper and st.width / cols < 1.3  # a column under 1.3 in: names wrapped
    if narrow:
        chars = max(6, int((st.width - 0.3) / cols * 72 / (0.55 * st.font)))
        titles = [
            textwrap.fill(n, chars, break_long_words=False)
            for n in ["image", "ground truth", *methods]
        ]
    else:
        titles = ["image", "ground truth", *methods]
    with styled(style):
        if st.paper:
            # the height the panels need at this width: two rows of panels per image, the
            # column titles, the legend
            panel_h = (st.width - 0.3) / cols * h / w
            lines = max(t.count("\n") + 1 for t in titles)
            legend = 2 if narrow else 1
            height = 2 * len(rows) * panel_h * 1.1 + (lines * 1.3 + legend * 1.8) * st.font / 72
            fig, axes = new_figure(
                style, (0, 0), (height + 0.1) / st.width, nrows=2 * len(rows), ncols=cols
            )
        else:
            panel = 2.6
            fig, axes = plt.subplots(
                2 * len(rows), cols, figsize=(panel * cols, panel * h / w * 2 * len(rows) + 1.0),
                layout="constrained",
            )  # fmt: skip
            fig.pixda_style = st
        axes = np.asarray(axes).reshape(2 * len(rows), cols)
        for r, (name, image, label, preds) in enumerate(rows):
            top, bottom = axes[2 * r], axes[2 * r + 1]
            top[0].imshow(image)
            bottom[0].text(0.5, 0.9, name, ha="center", va="top", transform=bottom[0].transAxes)
            top[1].imshow(L.colorize(label))
            for j, method in enumerate(methods):
                top[2 + j].imshow(L.colorize(preds[method]))
                bottom[2 + j].imshow(error_map(label, preds[method], classes))
            bottom[1].text(
                0.97, 0.5, "errors:", ha="right", va="center", transform=bottom[1].transAxes
            )
            for ax in (*top, *bottom[2:]):
                ax.set_xticks([])
                ax.set_yticks([])
            for ax in bottom[:2]:
                ax.set_axis_off()
        for ax, name in zip(axes[0], titles, strict=True):
            ax.set_title(name)
        _error_legend(fig, classes, ncol=2 if narrow else 5)
        if title:
            fig.suptitle(title)
        return fig


def plot_browser(image, label, preds: dict, classes=(), width: float = 9.0):
    """The widget's picture: image and ground truth, then for each method (one, or two to
    compare) its prediction and error map, at a legible size; the legend names the error
    colours and the classes in the picture."""
    h, w = label.shape
    rows = 1 + len(preds)
    panel_h = width / 2 * h / w
    fig, axes = plt.subplots(
        rows, 2, figsize=(width, panel_h * rows + 0.9), squeeze=False, layout="constrained"
    )
    panels = [(image, "image"), (L.colorize(label), "ground truth")]
    for method, pred in preds.items():
        panels += [
            (L.colorize(pred), method),
            (error_map(label, pred, classes), f"{method}: errors"),
        ]
    for ax, (img, name) in zip(axes.ravel(), panels, strict=True):
        ax.imshow(img)
        ax.set_title(name, fontsize=10)
        ax.set_axis_off()
    shown = np.unique(np.concatenate([label.ravel(), *[p.ravel() for p in preds.values()]]))
    _error_legend(fig, classes, present=[int(c) for c in shown], ncol=5)
    return fig


def plot_fda_preview(rows, style="screen"):
    """One row per (source image, target image, source in the target's style), uint8 RGB."""
    with styled(style):
        fig, axes = new_figure(
            style,
            (10, 1.9 * len(rows) + 0.4),
            0.2 * len(rows) + 0.05,
            nrows=len(rows),
            ncols=3,
            squeeze=False,
        )
        for (src, trg, styled_img), ax_row in zip(rows, axes, strict=True):
            for ax, img in zip(ax_row, (src, trg, styled_img), strict=True):
                ax.imshow(img)
                ax.set_xticks([])
                ax.set_yticks([])
        for ax, t in zip(
            axes[0], ("source", "target (style)", "source in target style (FDA)"), strict=True
        ):
            ax.set_title(t)
        return finish(fig)
