"""Watching a long run in TensorBoard (``run.tensorboard: true``; the ``tensorboard`` extra).

Writes to ``<run folder>/tensorboard/``: every loss row (``train/<loss>``), the learning rate
of each optimiser (``lr/g``, ``lr/d1``, ``lr/d2``), and at each validation the mIoU
(``val/miou``), the IoU of every class (``val_iou/<class>``) and a few val images with their
prediction and ground truth side by side (``val_predictions/<name>``). Open it with
``tensorboard --logdir results``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..config import Config
from ..data import Cityscapes
from ..labels import colorize
from .evaluate import predict
from .runtime import Runtime

#: val images shown with their predictions at each validation
SHOWN = 3


class Board:
    def __init__(self, writer, cfg: Config, rt: Runtime):
        self.writer, self.rt = writer, rt
        val = Cityscapes(cfg.data.target_root, "val", size=cfg.data.val_size)
        self.shown = [val[i] for i in range(min(SHOWN, len(val)))]

    @classmethod
    def open(cls, folder, cfg: Config, rt: Runtime) -> Board | None:
        """A board for the run, or None when not asked for (or not rank 0)."""
        if not (cfg.run.tensorboard and rt.is_main):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            rt.warn(
                "run.tensorboard: the tensorboard package is not installed (pip install -e "
                '".[tensorboard]"); skipped'
            )
            return None
        return cls(SummaryWriter(str(folder / "tensorboard")), cfg, rt)

    def losses(self, step: int, means: dict[str, float], optimizers: dict) -> None:
        for name, value in means.items():
            self.writer.add_scalar(f"train/{name}", value, step)
        for name, opt in optimizers.items():
            self.writer.add_scalar(f"lr/{name}", opt.param_groups[0]["lr"], step)

    def validation(self, step: int, metrics: dict, g: torch.nn.Module) -> None:
        if metrics["miou"] is not None:
            self.writer.add_scalar("val/miou", metrics["miou"], step)
        for name, iou in metrics["per_class_iou"].items():
            if iou is not None:
                self.writer.add_scalar(f"val_iou/{name}", iou, step)
        was_training = g.training
        g.eval()
        for item in self.shown:
            image = item["image"]
            size = image.shape[-2:]
            pred = predict(g, image[None], self.rt, size).argmax(1)[0].cpu().numpy()
            label = F.interpolate(item["label"][None, None].float(), size=size, mode="nearest")
            label = label[0, 0].long().numpy()
            rgb = image.clamp(0, 255).byte().permute(1, 2, 0).numpy()
            row = np.concatenate([rgb, colorize(pred), colorize(label)], axis=1)
            tag = f"val_predictions/{item['name'].rsplit('/', 1)[-1].removesuffix('.png')}"
            self.writer.add_image(tag, row, step, dataformats="HWC")
        g.train(was_training)

    def close(self) -> None:
        self.writer.close()
