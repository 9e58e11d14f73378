"""Evaluation on the target val set at full label resolution, accumulated on the device.

Val images are resized to ``data.val_size`` (the release feeds 1024x512); the logits are
upsampled bilinearly (align_corners=True) to the label's own size (2048x1024 on Cityscapes)
and only the confusion matrix is kept, so memory stays flat over the val set. Under
``torchrun`` every rank evaluates its share and the matrices are summed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Subset

from ..checkpoint import load_checkpoint, load_model_state, step_checkpoints
from ..config import Config, protocol
from ..data import Cityscapes, toy
from ..data.common import release_normalize, skipping
from ..data.splits import city_images, split_source
from ..errors import ConfigError
from ..labels import CLASS_NAMES, TRAINID_TO_CITYSCAPES_ID, colorize
from ..methods import SOURCE_ONLY, known
from ..metrics import ConfusionMatrix
from .runtime import Runtime, worker_ignores_stops
from .step import build_segmenter
from .streams import SkipReport


def val_loader(cfg: Config, rt: Runtime, ds: Cityscapes | None = None) -> DataLoader:
    """The target val set (``ds``, built here when not given), this rank's share, in file
    order. With ``data.on_error: skip`` an unreadable file is left out of the evaluation (and
    counted by :func:`evaluate`)."""
    if ds is None:
        ds = Cityscapes(cfg.data.target_root, "val", size=cfg.data.val_size)
    n = len(ds) if cfg.data.val_limit is None else min(cfg.data.val_limit, len(ds))
    ds, collate = skipping(ds, cfg.data.on_error, replace=False)
    subset = Subset(ds, list(range(rt.rank, n, rt.world)))
    return DataLoader(
        subset,
        batch_size=cfg.data.val_batch_size,
        num_workers=cfg.data.num_workers,
        pin_memory=rt.device.type == "cuda",
        collate_fn=collate,
        worker_init_fn=worker_ignores_stops,
    )


@torch.no_grad()
def predict(model, images: torch.Tensor, rt: Runtime, out_size) -> torch.Tensor:
    """Main-head logits for 0-255 RGB ``images``, upsampled to ``out_size`` (H, W), float32."""
    with rt.autocast():
        _, logits = model(release_normalize(rt.images(images)))
    return F.interpolate(logits.float(), size=out_size, mode="bilinear", align_corners=True)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    loader: DataLoader,
    rt: Runtime,
    num_classes: int = 19,
    predictions_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> ConfusionMatrix:
    """Confusion matrix of ``model`` over ``loader`` (summed over ranks).

    With ``predictions_dir``, also writes each prediction in the Cityscapes layout:
    ``labelIds/<city>/<stem>_pred_labelIds.png`` (label ids 0-33, what the official evaluator
    reads) and ``color/<city>/<stem>_pred_color.png``.
    """
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(num_classes, device=rt.device)
    skips = SkipReport("val set", rt.warn)
    for batch in tqdm(loader, desc="validation", leave=False, disable=not progress):
        skips.add(batch.pop("skipped", []))
        if "label" not in batch:  # every image of this batch was unreadable and skipped
            continue
        label = rt.labels(batch["label"])
        pred = predict(model, batch["image"], rt, label.shape[-2:]).argmax(1)
        cm.update(pred, label)
        if predictions_dir is not None:
            write_predictions(Path(predictions_dir), batch["name"], pred.cpu().numpy())
    skips.report("evaluation (these images are not in the scores)")
    rt.all_reduce_(cm.mat)
    model.train(was_training)
    return cm


def write_predictions(folder: Path, names, preds: np.ndarray) -> None:
    for name, pred in zip(names, preds, strict=True):
        city, file = name.split("/", 1)
        stem = file.removesuffix("_leftImg8bit.png")
        for kind, img in (
            ("labelIds", TRAINID_TO_CITYSCAPES_ID[pred.astype(np.uint8)]),
            ("color", colorize(pred)),
        ):
            out = folder / kind / city / f"{stem}_pred_{kind}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(out)


def _every(method: str) -> bool:
    cls = known(method)
    return cls is not None and cls.all_target


def shots_of(cfg: Config, method: str) -> int:
    """The shots a run records: ``data.num_shots``; for the oracle (every target training
    image) the images per city, the most any city has where they differ."""
    if not _every(method):
        return cfg.data.num_shots
    counts = [len(v) for v in city_images(cfg.data.target_root).values()]
    return max(counts, default=0)


def metrics_dict(
    cm: ConfusionMatrix, cfg: Config, step: int, method: str, split: str | None = None
) -> dict:
    """What ``metrics.json`` holds: mIoU under the source's protocol ("19" for GTA5, "16" for
    SYNTHIA, plus ``miou_13`` for SYNTHIA), per-class IoU by name (null where a class is absent
    from both prediction and ground truth), pixel accuracy, the step, and what the run was
    (``method``: "source_only" or the adaptation method; ``shots``: 0 for source-only;
    ``split``: where the target shots came from, None for source-only; given by a run that
    knows it, else worked out from the config); on a toy benchmark, ``toy``: its generator
    version, gap and seed."""
    iou, d = cm.iou(), cfg.data
    out = {
        "miou": _num(cm.miou(protocol(cfg))),
        "protocol": protocol(cfg),
        "per_class_iou": {CLASS_NAMES[c]: _num(v) for c, v in enumerate(iou)},
        "pixel_accuracy": _num(cm.pixel_accuracy()),
        "step": int(step),
        "method": method,
        "source": cfg.data.source,
        "shots": 0 if method == "source_only" else shots_of(cfg, method),
        "seed": cfg.run.seed,
        # where the target shots came from: "published", "seed S" (drawn) or "file NAME"
        "split": None
        if method == SOURCE_ONLY
        else split
        if split is not None
        else split_source(
            d.target_root, d.num_shots, d.split_file, d.split_seed, cfg.run.seed, _every(method)
        ),
        "run": cfg.run.name,
    }
    if cfg.data.source == "synthia":
        out["miou_13"] = _num(cm.miou("13"))
    found = toy.toy_manifest(cfg.data.target_root)
    if found is not None and found[1] is not None:  # on a toy benchmark: which one
        out["toy"] = {k: found[1].get(k) for k in ("version", "gap", "seed")}
    return out


def _num(v: float):
    return None if not np.isfinite(v) else float(v)


def write_metrics(folder: Path, metrics: dict, cm: ConfusionMatrix, stem: str = "metrics") -> Path:
    """``<stem>.json`` and ``<stem>_confusion.npy`` in ``folder`` (written atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    os.replace(tmp, path)
    cm.save(folder / f"{stem}_confusion.npy")
    return path


@dataclass
class RunModel:
    """A run's G as one of its checkpoints left it."""

    g: torch.nn.Module
    #: the run's own config (``config.yaml``)
    cfg: Config
    step: int
    #: "source_only" or the adaptation method
    method: str


def load_run_model(folder: str | os.PathLike, which_iter: int | None = None) -> RunModel:
    """G of the run in ``folder`` (on the CPU, in train mode) at its ``step_<which_iter>.pt``
    checkpoint, or at ``latest.pt``; built from the run's own config."""
    folder = Path(folder)
    cfg = Config.from_yaml(folder / "config.yaml")
    if which_iter is None:
        path = folder / "checkpoints" / "latest.pt"
        if not path.exists():
            raise ConfigError(f"run folder {folder} has no checkpoints/latest.pt")
    else:
        kept = step_checkpoints(folder / "checkpoints")
        if which_iter not in kept:
            have = ", ".join(map(str, kept)) or "none"
            raise ConfigError(
                f"--which_iter {which_iter}: {folder}/checkpoints has no step_{which_iter}.pt "
                f"(steps kept: {have})"
            )
        path = kept[which_iter]
    ck = load_checkpoint(path)
    g = build_segmenter(cfg)
    load_model_state(g, ck["model"], path)
    return RunModel(g, cfg, int(ck["state"]["step"]), checkpoint_method(ck, cfg))


def checkpoint_method(ck: dict, cfg: Config) -> str:
    """The method a checkpoint was trained with (checkpoints before the methods table
    recorded only whether they were source-only: ``kind``)."""
    if "method" in ck:
        return ck["method"]
    return SOURCE_ONLY if ck.get("kind") == SOURCE_ONLY else cfg.method.name
