"""Browsing runs' predictions on target val images: computed on demand, cached per (image,
method), shown as error maps in notebook 04 (static rows) and in its JupyterLab widget.

Nothing is precomputed: the first picture costs one image's predictions whatever the size of
the val set, and moving to any other image costs that image's."""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
import torch

from .labels import CLASS_NAMES, NUM_CLASSES, class_ids

#: predictions kept in memory (uint8, one per (image, method)): 64 Cityscapes predictions at
#: 2048x1024 are 128 MiB
CACHE_SIZE = 64


def image_iou(label: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(19,) IoU per class on one image (the evaluation's :class:`ConfusionMatrix`): NaN for
    a class in neither ground truth nor prediction, ignored pixels left out."""
    from .metrics import ConfusionMatrix

    cm = ConfusionMatrix(NUM_CLASSES)
    cm.update(torch.from_numpy(pred), torch.from_numpy(label))
    return cm.iou()


def row_title(name: str, index: int) -> str:
    """A val image as figures name it: its city and its index in the val set."""
    return f"{name.split('/', 1)[0]} #{index}"


class ErrorBrowser:
    """Predictions of a few runs (``{label: run folder}``, e.g. :func:`workflow.pick_runs`)
    on the target val set of the first, computed when first asked for and cached."""

    def __init__(self, runs: dict[str, Path], device: str = "cpu", cache_size: int = CACHE_SIZE):
        from .config import Config
        from .data import Cityscapes
        from .errors import ConfigError

        if not runs:
            raise ConfigError("no runs to browse: pick_runs found none in the run folders given")
        self.runs = {label: Path(path) for label, path in runs.items()}
        first = Config.from_yaml(next(iter(self.runs.values())) / "config.yaml")
        self.device = torch.device(device)
        self.val = Cityscapes(first.data.target_root, "val", size=first.data.val_size)
        self.full = Cityscapes(first.data.target_root, "val", size=None)
        self._models: dict[str, object] = {}
        # what one image costs, kept for the images and predictions shown last
        self.item = functools.lru_cache(maxsize=8)(self._load_item)
        self.prediction = functools.lru_cache(maxsize=cache_size)(self._predict)
        self.computed = 0  # predictions computed so far (the tests count them)

    @property
    def methods(self) -> list[str]:
        return list(self.runs)

    def __len__(self) -> int:
        return len(self.val)

    # ---------------------------------------------------------------- on demand, cached

    def _load_item(self, index: int):
        """(name, image uint8 (H, W, 3) at full size, label (H, W), network input); through
        the cache as ``item(index)``."""
        from .errors import ConfigError
        from .workflow import as_uint8_image

        if not 0 <= index < len(self.val):
            raise ConfigError(f"val image {index} does not exist: the val set has {len(self)}")
        item = self.val[index]
        return (
            item["name"],
            as_uint8_image(self.full[index]["image"]),
            item["label"].numpy().astype(np.uint8),
            item["image"],
        )

    def _predict(self, index: int, method: str) -> np.ndarray:
        """(H, W) uint8 trainIds of ``method`` on val image ``index``, at the label's size;
        through the cache as ``prediction(index, method)``."""
        from .train import load_run_model
        from .train.evaluate import predict
        from .train.runtime import Runtime

        if method not in self._models:
            self._models[method] = load_run_model(self.runs[method]).g.eval().to(self.device)
        _, _, label, x = self.item(index)
        logits = predict(self._models[method], x[None], Runtime(self.device), label.shape)
        self.computed += 1
        return logits.argmax(1)[0].to(torch.uint8).cpu().numpy()

    def rows(self, images, methods=None):
        """Rows for :func:`viz.plot_error_maps`: (city #index, image, label, {method: pred})."""
        methods = list(methods or self.methods)
        out = []
        for i in images:
            name, image, label, _ = self.item(i)
            preds = {m: self.prediction(i, m) for m in methods}
            out.append((row_title(name, i), image, label, preds))
        return out

    def most_different(self, count: int, candidates: int | None = None) -> list[int]:
        """The ``count`` val images (of the first ``candidates``; all by default) where the
        methods' per-image mIoU spreads most (for the static error maps; with one method,
        its worst images). Predicts every candidate: a cost the widget never pays."""
        n = len(self) if candidates is None else min(candidates, len(self))
        scores = []
        for i in range(n):
            _, _, label, _ = self.item(i)
            mious = [np.nanmean(image_iou(label, self.prediction(i, m))) for m in self.methods]
            spread = np.ptp(mious) if len(mious) > 1 else 1 - mious[0]
            scores.append(-spread)
        return sorted(np.argsort(scores, kind="stable")[:count].tolist())

    def chosen_images(self, error_images, count: int, candidates: int) -> list[int]:
        """Notebook 04's ``error_images``: a list of val indices (checked), or "differ" for
        :meth:`most_different` (``count`` of the first ``candidates``)."""
        from .errors import ConfigError

        if error_images == "differ":
            return self.most_different(count, candidates)
        if isinstance(error_images, (list, tuple)) and error_images:
            bad = [i for i in error_images if not isinstance(i, int) or not 0 <= i < len(self)]
            if not bad:
                return list(error_images)
            raise ConfigError(
                f"error_images: {bad} are not val indices (0-{len(self) - 1}, "
                f"{len(self)} val images)"
            )
        raise ConfigError(
            f'error_images = {error_images!r}: a list of val indices, e.g. [0, 7], or "differ"'
        )

    # ------------------------------------------------------------------------ the widget

    def readout(self, index: int, methods: list[str], classes=()) -> str:
        """One line of HTML: the image, each shown method's mIoU on it (or the IoU of the
        filtered classes), and what is missing when a filtered class is absent."""
        import html

        name, _, label, _ = self.item(index)
        ids = class_ids(classes)
        parts = [f"<b>{html.escape(row_title(name, index))}</b> (val images #0-#{len(self) - 1})"]
        absent = {CLASS_NAMES[c] for c in ids}  # filtered classes that no shown map has
        for m in methods:
            iou = image_iou(label, self.prediction(index, m))
            scored = iou[ids] if ids else iou
            absent &= {CLASS_NAMES[c] for c in ids if np.isnan(iou[c])}
            score = np.nanmean(scored) if np.isfinite(scored).any() else np.nan
            if ids:
                what = "IoU of the chosen classes"
            else:
                what = f"mIoU over {int(np.isfinite(iou).sum())} classes"
            shown = "n/a" if np.isnan(score) else f"{score * 100:.1f}%"
            parts.append(f"{html.escape(m)}: {what} {shown}")
        line = " · ".join(parts)
        if absent:
            names = ", ".join(c for c in CLASS_NAMES if c in absent)
            line += (
                f"<br><i>{html.escape(names)}: not in this image's ground truth nor in the "
                "predictions shown (nothing to score; black = outside the filter)</i>"
            )
        return line

    def picture(self, index: int, methods: list[str], classes=()) -> bytes:
        """PNG of :func:`viz.plot_browser` for one image and one or two methods."""
        import matplotlib.pyplot as plt

        from .viz import plot_browser

        name, image, label, _ = self.item(index)
        preds = {m: self.prediction(index, m) for m in methods}
        fig = plot_browser(image, label, preds, class_ids(classes))
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        return buf.getvalue()

    def widget(self):
        """The ipywidgets browser: a val image slider over the whole val set, one method (or
        two, with "compare"), a class filter; a readout line and the picture."""
        import ipywidgets as w

        slider = w.IntSlider(0, 0, len(self) - 1, description="val image", continuous_update=False)
        method = w.Dropdown(options=self.methods, value=self.methods[0], description="method")
        compare = w.Dropdown(options=["none", *self.methods], value="none", description="compare")
        classes = w.SelectMultiple(
            options=CLASS_NAMES, description="classes", rows=6, tooltip="none chosen: all"
        )
        hint = w.HTML("<small>classes: none chosen = all; ctrl/shift-click for several</small>")
        readout = w.HTML()
        readout.add_class("pixda-readout")
        picture = w.Image(format="png")
        picture.add_class("pixda-picture")

        def draw(*_):
            shown = [method.value]
            if compare.value not in ("none", method.value):
                shown.append(compare.value)
            chosen = list(classes.value)
            readout.value = self.readout(slider.value, shown, chosen)
            if compare.value == method.value:
                readout.value += "<br><i>compare: choose a method other than the first</i>"
            picture.value = self.picture(slider.value, shown, chosen)

        for control in (slider, method, compare, classes):
            control.observe(draw, names="value")
        draw()
        controls = w.HBox([w.VBox([slider, method, compare]), w.VBox([classes, hint])])
        return w.VBox([controls, readout, picture])
