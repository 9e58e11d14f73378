"""Camera-ready figures (pixda_core.viz): sizes, fonts, NaN against 0, absent classes, titles."""

from __future__ import annotations

import re
import shutil
import subprocess

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.lines import Line2D
from matplotlib.text import Text

from pixda_core import analysis as A
from pixda_core import viz
from pixda_core.errors import ConfigError
from pixda_core.labels import CLASS_NAMES
from pixda_core.metrics import ConfusionMatrix
from tests.helpers import runs_with_classes

pytestmark = pytest.mark.unit


def texts(fig) -> list[Text]:
    fig.canvas.draw()
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def history():
    """history.csv of a run whose main phase ended at step 75 (its last main row, written
    when the phase ends), then distillation logged every 10 steps."""
    return pd.DataFrame(
        {
            "step": [10, 20, 30, 40, 50, 60, 70, 75, 80, 90],
            "phase": ["main"] * 8 + ["kd"] * 2,
            "loss_seg_src": np.linspace(1, 0.5, 10),
            "loss_d1": np.full(10, 0.69),
            "loss_kd": [np.nan] * 8 + [0.2, 0.1],
        }
    )


def runs_over_gaps() -> pd.DataFrame:
    """runs_with_classes() and an oracle run per seed at gaps 0, 0.5 and 1, each gap lower."""
    frames = []
    for gap in (0.0, 0.5, 1.0):
        runs = runs_with_classes().assign(gap=gap)
        oracle = runs[runs["method"] == "finetune"].assign(method="oracle", shots=24)
        runs = pd.concat([runs, oracle.assign(miou=oracle["miou"] + 0.1)], ignore_index=True)
        frames.append(runs.assign(miou=runs["miou"] - 0.1 * gap))
    return pd.concat(frames, ignore_index=True)


def selection_rounds() -> pd.DataFrame:
    """Two selection rounds over six source images: the nearer ones kept and scored higher."""
    return pd.DataFrame(
        {"round": [1] * 6 + [2] * 3, "name": [f"{i:05d}.png" for i in [*range(6), 0, 1, 2]],
         "score": [0.9, 0.8, 0.7, 0.3, 0.2, 0.1, 0.9, 0.7, 0.6],
         "kept": [True] * 3 + [False] * 3 + [True, False, False],
         "distance": [0.1, 0.3, 0.2, 1.0, 0.9, 1.0, 0.1, 0.3, 0.2]}
    )  # fmt: skip


def class_weights() -> pd.DataFrame:
    """diagnostics.pixel_weights() of a run: rare classes weighted more."""
    share = np.array([0.3, 0.1, 0.25, 0.01, 0.02, 0.01, 0.002, 0.004, 0.15, 0.03, 0.1, 0.01,
                      0.002, 0.05, 0.004, 0.003, 0.001, 0.001, 0.002])  # fmt: skip
    frame = pd.DataFrame(
        {"share": share / share.sum(), "w": 1 - share, "ce": 0.2 + 2 * (share < 0.02)},
        index=pd.Index(CLASS_NAMES, name="class"),
    )
    frame["weight"] = frame["w"] * frame["ce"]
    frame["bce"] = 0.7
    frame["term"] = frame["weight"] * frame["bce"]
    frame["pixels"] = (frame["share"] * 1e5).astype(int)
    return frame


def figure_makers(style) -> dict:
    """Every figure of the kit in ``style``, from hand-made data: name -> a function drawing it."""
    runs = runs_with_classes()
    cm = ConfusionMatrix(19)
    cm.mat[:5, :5] += 10  # classes 5-18 absent from the ground truth
    label = np.zeros((32, 64), dtype=np.uint8)
    pred = np.ones((32, 64), dtype=np.uint8)
    freq = pd.DataFrame(
        {"class": ["road", "sky"] * 2, "domain": ["a", "a", "b", "b"], "share": [0.6, 0.4] * 2}
    )
    selection = pd.DataFrame(
        {"step": [10, 20], "round": [1, 2], "tau": [0.4, 0.5], "candidates": [30, 30],
         "kept": [20, 12], "mean_score": [0.3, 0.2], "event": [None, None]}
    )  # fmt: skip
    validations = pd.DataFrame({"step": [70, 90], "phase": ["main", "final"], "miou": [0.3, 0.4]})
    makers = {
        "miou_vs_gap": lambda: viz.plot_miou_vs_gap(runs_over_gaps(), style=style),
        "selection_truth": lambda: viz.plot_selection_truth(selection_rounds(), style=style),
        "pixel_weights": lambda: viz.plot_pixel_weights(class_weights(), style=style),
        "per_class_iou": lambda: viz.plot_per_class_iou(A.long_per_class(runs), style=style),
        "miou_vs_shots": lambda: viz.plot_miou_vs_shots(runs, style=style),
        "gain": lambda: viz.plot_gain(A.gain_over(runs, per_run=True), style=style),
        "confusion": lambda: viz.plot_confusion(A.row_normalised(cm), style=style),
        "training": lambda: viz.plot_training(history(), validations, style=style),
        "selection": lambda: viz.plot_selection(selection, style=style),
        "class_frequency": lambda: viz.plot_class_frequency(freq, style=style),
        "error_maps": lambda: viz.plot_error_maps(
            [
                (f"aachen #{i}", np.zeros((32, 64, 3), np.uint8), label, preds)
                for i, preds in enumerate(
                    [
                        {
                            "source only": pred,
                            "AdaptSegNet-style 5-shot": label,
                            "PixDA 5-shot": pred,
                        }
                    ]
                    * 2
                )
            ],
            ["road"],
            style=style,
        ),  # fmt: skip
    }
    return makers


FIGURES = ["miou_vs_gap", "selection_truth", "pixel_weights", "per_class_iou",
           "miou_vs_shots", "gain", "confusion", "training", "selection", "class_frequency",
           "error_maps"]  # fmt: skip


def test_every_figure_is_checked():
    assert list(figure_makers("one-column")) == FIGURES


@pytest.mark.slow  # 22 figures drawn, laid out and saved as PDF: about 20 s in all
@pytest.mark.parametrize("figure", FIGURES)
@pytest.mark.parametrize("style,width", [("one-column", 3.5), ("two-column", 7.2)])
def test_paper_figures_have_the_columns_width_and_7_to_9_pt_text(style, width, figure, tmp_path):
    for name, fig in [(figure, figure_makers(style)[figure]())]:
        assert fig.get_figwidth() == pytest.approx(width), name
        sizes = {round(t.get_fontsize(), 1) for t in texts(fig)}
        assert sizes and min(sizes) >= 7 and max(sizes) <= 9, (name, sizes)
        # no title inside the figure unless asked for (error maps name their columns)
        assert fig._suptitle is None, name
        assert name == "error_maps" or not any(ax.get_title() for ax in fig.axes), name
        # everything drawn lies inside the figure (it is saved uncropped) ...
        renderer = fig.canvas.get_renderer()
        drawn = fig.get_tightbbox(renderer)
        w, h = fig.get_size_inches()
        assert drawn.x0 > -0.02 and drawn.y0 > -0.02, (name, drawn)
        assert drawn.x1 < w + 0.02 and drawn.y1 < h + 0.02, (name, drawn, (w, h))
        # ... and no two upright texts (titles, labels, legends, notes) overlap
        ticks = {id(t) for ax in fig.axes for t in ax.get_xticklabels() + ax.get_yticklabels()}
        upright = [
            (t, t.get_window_extent(renderer))
            for t in texts(fig)
            if t.get_rotation() == 0 and id(t) not in ticks
        ]
        for i, (t, a) in enumerate(upright):
            for u, b in upright[i + 1 :]:
                assert not a.overlaps(b), (name, t.get_text(), u.get_text())
        (pdf,) = viz.save_figure(fig, tmp_path / name, formats=("pdf",))  # the paper's format
        box = re.search(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)", pdf.read_bytes())
        assert float(box.group(1)) == pytest.approx(width * 72, abs=0.5), name  # kept exact
        matplotlib.pyplot.close(fig)


def test_saved_pdfs_embed_truetype_fonts_never_type3(tmp_path):
    fig = figure_makers("one-column")["per_class_iou"]()
    pdf = viz.save_figure(fig, tmp_path / "f", formats=("pdf",))[0]
    pdffonts = shutil.which("pdffonts")  # poppler-utils, what paper checkers use
    if pdffonts:
        listing = subprocess.run([pdffonts, str(pdf)], capture_output=True, text=True).stdout
        header, _, *fonts = listing.splitlines()
        start, end = header.index("type"), header.index("encoding")
        kinds = [line[start:end].strip() for line in fonts]  # e.g. "CID TrueType", "Type 3"
        assert kinds and all(k.endswith("TrueType") for k in kinds), listing
    kinds = set(re.findall(rb"/Subtype\s*/(\w+)", pdf.read_bytes()))
    assert b"Type3" not in kinds and kinds & {b"TrueType", b"CIDFontType2"}, kinds


def test_screen_figures_have_no_title_unless_asked():
    runs = runs_with_classes()
    fig = viz.plot_per_class_iou(A.long_per_class(runs))
    assert fig._suptitle is None
    fig = viz.plot_per_class_iou(A.long_per_class(runs), title="Per-class IoU")
    assert fig._suptitle.get_text() == "Per-class IoU"


def test_a_class_absent_from_val_is_drawn_apart_from_a_zero():
    runs = runs_with_classes(zero="wall", absent="train")
    fig = viz.plot_per_class_iou(A.long_per_class(runs), style="two-column")
    ax = fig.axes[0]
    hues = 3  # source only, FT, PixDA
    width = 0.8 / hues
    train, wall = CLASS_NAMES.index("train"), CLASS_NAMES.index("wall")
    crosses = [ln for ln in ax.lines if ln.get_marker() == "x"]
    xs = sorted(x for ln in crosses for x in ln.get_xdata())
    assert xs == pytest.approx([train - 0.4 + width * (j + 0.5) for j in range(hues)])
    zeros = [ln for ln in ax.lines if ln.get_gid() == "zero"]
    zero_lines = [ln for ln in zeros if abs(np.mean(ln.get_xdata()) - wall) < 0.5]
    assert len(zero_lines) == hues  # a visible mark for each 0
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert viz.ABSENT_LABEL in legend
    handles = ax.get_legend().legend_handles
    assert isinstance(handles[legend.index(viz.ABSENT_LABEL)], Line2D)
    # without a NaN the legend does not mention it
    fig = viz.plot_per_class_iou(A.long_per_class(runs_with_classes(absent=None)))
    assert viz.ABSENT_LABEL not in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_confusion_marks_the_rows_of_absent_classes():
    cm = ConfusionMatrix(19)
    cm.mat[:18, :18] += 5  # bicycle (18) absent from the ground truth
    fig = viz.plot_confusion(A.row_normalised(cm))
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[-1] == "bicycle (absent)" and labels[0] == "road"
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert len(hatched) == 1 and hatched[0].get_y() == 18
    assert "hatched: absent from val" in ax.get_ylabel()


def test_training_figure_shades_distillation_from_the_main_phase_end():
    # the last validation of the main phase ran at a source epoch's end (step 60), not where
    # the main phase ended
    validations = pd.DataFrame({"step": [60, 90], "phase": ["main", "final"], "miou": [0.2, 0.25]})
    fig = viz.plot_training(history(), validations)
    spans = [p for p in fig.axes[0].patches if p.get_facecolor()[:3] == pytest.approx((0.9,) * 3)]
    assert len(spans) == 1 and spans[0].get_x() == 75  # not the first kd log row (80)
    assert "distillation phase" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    names = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "segmentation, source" in names and "D1 (pixel level)" in names
    # the legend sits above the curves
    assert fig.axes[0].get_legend()._loc == 3 and fig.axes[0].get_legend().get_bbox_to_anchor()
    # one validation: an axis from 0, not a +-2 point window around it
    fig = viz.plot_training(history(), validations.iloc[:1].assign(miou=0.4))
    low, high = fig.axes[1].get_ylim()
    assert low == 0 and 40 < high <= 100


def test_no_selection_round_is_a_message_not_an_empty_figure():
    only_event = pd.DataFrame(
        {"step": [75], "round": [0], "tau": [0.4], "candidates": [300], "kept": [300],
         "mean_score": [np.nan], "event": ["main phase over: iteration budget (75) spent"]}
    )  # fmt: skip
    assert viz.plot_selection(only_event) is None
    message = viz.selection_message(only_event)
    assert message.startswith("no selection round ran") and "at step 75" in message


def test_a_bad_style_names_the_choices():
    with pytest.raises(ConfigError, match="style 'poster' is not one of screen, one-column"):
        viz.plot_miou_vs_shots(runs_with_classes(), style="poster")


def test_method_colours_and_names_are_the_same_everywhere():
    runs = runs_with_classes()
    assert set(viz.label_palette(runs)) == {"source only", "FT", "PixDA"}
    for label, colour in viz.label_palette(runs).items():
        assert colour == viz.METHOD_COLORS[label]
    table = A.per_class_table(runs)
    assert list(table.index) == ["source only", "FT (1-shot)", "PixDA (1-shot)"]


def test_class_filters_name_the_bad_class():
    from pixda_core.labels import class_ids

    assert class_ids(["road", 18]) == [0, 18]
    with pytest.raises(ConfigError, match="class 'raod' is not one of the 19: road, sidewalk"):
        viz.error_map(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8), ["raod"])
    with pytest.raises(ConfigError, match="class 19: a class name or a trainId 0-18"):
        class_ids([19])
    with pytest.raises(ConfigError, match="no val images to draw error maps of"):
        viz.plot_error_maps([])
