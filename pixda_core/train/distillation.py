"""PixDA's last phase: distillation on the target shots (docs/method.md).

After the adversarial phase, G goes on for ``method.kd_steps`` steps on the target shots
alone, its segmentation loss plus ``lambda_kd`` times the distillation loss towards a frozen
copy of itself taken as the phase begins (the teacher). Everything about the phase is here:
its length, the teacher and the step; the loop (:mod:`pixda_core.train.loop`) runs it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .. import losses as L
from ..config import Config
from ..data.common import release_normalize
from ..methods import Method
from .step import LossSums, Nets, g_logits, seg_logits_and_loss, upsample


def kd_length(cfg: Config, method: Method) -> int:
    """Steps of the distillation phase: ``method.kd_steps`` for PixDA with distillation on,
    else 0 (no phase)."""
    return cfg.method.kd_steps if method.distils else 0


def make_teacher(g: nn.Module, saved: dict | None = None) -> nn.Module:
    """The teacher: a frozen eval-mode copy of G as the phase begins, or, when a run resumes
    in the middle of the phase, the teacher its checkpoint saved (``saved``)."""
    teacher = copy.deepcopy(g).eval()
    if saved is not None:
        teacher.load_state_dict(saved)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def kd_step(nets: Nets, teacher: nn.Module, trg: dict, cfg: Config, losses: LossSums) -> None:
    """One distillation step on a target batch: segmentation loss + ``lambda_kd`` x
    distillation loss towards the teacher's soft predictions (``kd_alpha`` its temperature)."""
    rt, mc = nets.rt, cfg.method
    nets.optimizers["g"].zero_grad(set_to_none=True)
    img, lab = rt.images(trg["image"]), rt.labels(trg["label"])
    logits, loss = seg_logits_and_loss(cfg, g_logits(nets, img), lab)
    with torch.no_grad(), rt.autocast():
        _, teacher_main = teacher(release_normalize(img))
    kd = L.distillation_loss(logits, upsample(teacher_main.float(), lab.shape[-2:]), mc.kd_alpha)
    nets.backward(loss + mc.lambda_kd * kd)
    nets.optimizer_step("g")
    nets.end_step()
    nets.schedulers["g"].step()  # the discriminators are done: only G's schedule moves
    losses.add("loss_seg_trg", loss)
    losses.add("loss_kd", kd)
