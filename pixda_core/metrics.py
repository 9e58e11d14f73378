"""Segmentation metrics from a confusion matrix accumulated on the device.

Rows are ground truth, columns predictions, over pixels whose ground truth is not ignored.
IoU_c = TP / (TP + FP + FN); a class absent from both ground truth and prediction is NaN
("missing"), never 0 or 100, and is left out of the mean. The numbers agree with the official
``cityscapesscripts`` evaluator (tests/report/test_metrics.py checks it).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .labels import CLASS_NAMES, IGNORE_INDEX, protocol_classes


class ConfusionMatrix:
    """A (C, C) int64 confusion matrix, updated with one scatter-add per batch, no host sync."""

    def __init__(self, num_classes: int = 19, ignore_index: int = IGNORE_INDEX, device=None):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add predictions and ground truth (int tensors of the same shape, any shape)."""
        if pred.shape != target.shape:
            raise ValueError(
                f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ"
            )
        c = self.num_classes
        pred, target = pred.to(self.mat.device), target.to(self.mat.device)
        valid = (target != self.ignore_index) & (target >= 0) & (target < c)
        # invalid pixels go to one spare bin; a fixed-size scatter_add (unlike boolean
        # indexing or bincount) needs no host synchronisation on CUDA
        idx = torch.where(valid, target.long() * c + pred.long(), c * c).reshape(-1)
        counts = torch.zeros(c * c + 1, dtype=torch.int64, device=self.mat.device)
        counts.scatter_add_(0, idx, torch.ones_like(idx))
        self.mat += counts[: c * c].reshape(c, c)

    def reset(self) -> None:
        self.mat.zero_()

    def _counts(self):
        mat = self.mat.double().cpu().numpy()
        tp = np.diag(mat)
        return mat, tp, mat.sum(1), mat.sum(0)

    def iou(self) -> np.ndarray:
        """(C,) IoU per class; NaN for a class absent from ground truth and prediction."""
        _, tp, gt, pred = self._counts()
        denom = gt + pred - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, tp / denom, np.nan)

    def miou(self, protocol: str = "19") -> float:
        """Mean IoU over the protocol's classes ("19", "16" or "13"), NaN classes left out."""
        values = self.iou()[list(protocol_classes(protocol))]
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

    def pixel_accuracy(self) -> float:
        mat, tp, _, _ = self._counts()
        return float(tp.sum() / mat.sum()) if mat.sum() else float("nan")

    def class_accuracy(self) -> np.ndarray:
        """(C,) recall per class, TP / ground-truth pixels; NaN where the class is absent."""
        _, tp, gt, _ = self._counts()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(gt > 0, tp / gt, np.nan)

    def precision(self) -> np.ndarray:
        """(C,) TP / predicted pixels; NaN where the class is never predicted."""
        _, tp, _, pred = self._counts()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(pred > 0, tp / pred, np.nan)

    def to_frame(self) -> pd.DataFrame:
        """Per-class table indexed by class name: iou, accuracy, precision, pixel counts."""
        _, _, gt, pred = self._counts()
        names = CLASS_NAMES if self.num_classes == len(CLASS_NAMES) else range(self.num_classes)
        return pd.DataFrame(
            {
                "iou": self.iou(),
                "accuracy": self.class_accuracy(),
                "precision": self.precision(),
                "gt_pixels": gt.astype(np.int64),
                "pred_pixels": pred.astype(np.int64),
            },
            index=pd.Index(list(names), name="class"),
        )

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, self.mat.cpu().numpy())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, ignore_index: int = IGNORE_INDEX) -> ConfusionMatrix:
        mat = np.load(path, allow_pickle=False)
        if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
            raise ValueError(f"{path} holds a {mat.shape} array, not a square confusion matrix")
        cm = cls(mat.shape[0], ignore_index)
        cm.mat = torch.from_numpy(mat.astype(np.int64))
        return cm
