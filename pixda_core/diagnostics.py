"""What PixDA's parts did in a run, checked where a synthetic benchmark can check them.

- :func:`selection_truth`: each selection round's kept and dropped source images against
  their true distance to the target look (the toy's ``toy_looks.csv``, written by the
  generator; the rounds' own summary is in ``selection.csv``, :func:`against_truth`).
- :func:`pixel_weights`: the pixel-level loss's per-pixel factors (D1's BCE, the CE weight,
  the class-balance weight ``w``) averaged per class over the target val set, beside each
  class's pixel share: does the loss push rare classes harder, as the method says?
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from .errors import ConfigError, DataError
from .labels import CLASS_NAMES, IGNORE_INDEX


def has_selection_truth(folder: str | os.PathLike) -> bool:
    """Did the run make a selection round on a source that records true distances?"""
    first = Path(folder) / "selection" / "round_1.csv"
    return first.is_file() and "distance" in pd.read_csv(first, nrows=0).columns


def selection_truth(folder: str | os.PathLike) -> pd.DataFrame:
    """Every candidate of every selection round of a PixDA run on a toy benchmark: ``round,
    name, score, kept, distance`` (from ``selection/round_<k>.csv``). An error naming the
    run when it made no selection round or its source records no distances."""
    folder = Path(folder)
    paths = sorted(
        (folder / "selection").glob("round_*.csv"), key=lambda p: int(p.stem.split("_")[1])
    )
    if not paths:
        raise DataError(f"{folder} has no selection rounds (selection/round_<k>.csv)")
    frames = []
    for path in paths:
        frame = pd.read_csv(path)
        if "distance" not in frame:
            raise DataError(
                f"{path} has no 'distance' column: the run's source is not a toy benchmark "
                "that records each image's distance to the target look (toy_looks.csv)"
            )
        frames.append(frame.assign(round=int(path.stem.split("_")[1])))
    out = pd.concat(frames, ignore_index=True)
    return out[["round", "name", "score", "kept", "distance"]]


@torch.no_grad()
def pixel_weights(folder: str | os.PathLike, limit: int | None = None) -> pd.DataFrame:
    """Per class, over the target val set (the first ``limit`` images), with the run's last
    G and D1 at the model's input size (``data.val_size``; the labels taken to it by nearest
    neighbour), as the loss is trained at the training size: ``share`` (the class's share of
    the labelled pixels), the mean per-pixel ``w`` (class balance), ``ce`` (G's error),
    ``weight`` (ce x w: what multiplies D1's term), ``bce`` (D1's BCE against the source
    label: high where D1 takes the pixel for a target one), ``term`` (the whole per-pixel
    loss, bce x ce x w) and ``pixels``. One row per class present in the val labels."""
    from torch.utils.data import DataLoader

    from .checkpoint import load_checkpoint
    from .data import Cityscapes, release_normalize
    from .losses import pixel_adversarial_terms
    from .models import PixelDiscriminator
    from .train import load_run_model
    from .train.step import upsample

    folder = Path(folder)
    run = load_run_model(folder)
    ck = load_checkpoint(folder / "checkpoints" / "latest.pt")
    if "d1" not in ck:
        raise ConfigError(
            f"{folder} ({run.method}) was trained without the pixel discriminator D1: it has no "
            "pixel-level loss to show"
        )
    cfg, g = run.cfg, run.g.eval()
    n = len(CLASS_NAMES)
    d1 = PixelDiscriminator(n)
    d1.load_state_dict(ck["d1"])
    d1.eval()
    ds = Cityscapes(cfg.data.target_root, "val", size=cfg.data.val_size)
    if limit is not None:
        ds = torch.utils.data.Subset(ds, range(min(limit, len(ds))))
    sums = torch.zeros(6, n, dtype=torch.float64)  # pixels, w, ce, weight, bce, term
    for batch in DataLoader(ds, batch_size=cfg.data.val_batch_size):
        image = batch["image"]
        labels = F.interpolate(batch["label"][:, None].float(), image.shape[-2:], mode="nearest")
        labels = labels[:, 0].long()
        _, main = g(release_normalize(image))
        logits = upsample(main, labels.shape[-2:])
        bce, ce, w = pixel_adversarial_terms(logits, d1(logits.softmax(1)), labels)
        valid = labels != IGNORE_INDEX
        cls = labels[valid]
        values = (torch.ones_like(w[valid]), w[valid], ce[valid], (ce * w)[valid], bce[valid])
        values = (*values, (bce * ce * w)[valid])
        for i, v in enumerate(values):  # six sums per class, each one bincount
            sums[i] += torch.bincount(cls, weights=v.double(), minlength=n)[:n]
    pixels = sums[0]
    frame = pd.DataFrame(
        (sums[1:] / pixels.clamp(min=1)).T.numpy(),
        columns=["w", "ce", "weight", "bce", "term"],
        index=pd.Index(CLASS_NAMES, name="class"),
    )
    frame.insert(0, "share", (pixels / pixels.sum()).numpy())
    frame["pixels"] = pixels.numpy().astype(int)
    return frame[frame["pixels"] > 0]
