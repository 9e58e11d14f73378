"""One training step of each method, separate from data, files and the loop.

:class:`Trainer` holds G, the discriminators, their optimisers and poly schedules for one
method, and runs a step on batches it is given: ``main_step(src, trg)`` and ``kd_step(trg)``.
The training loop (:mod:`pixda_core.train.loops`) feeds it from the datasets; the step
benchmark (``benchmarks/step.py``) feeds it random batches. Losses are summed on the device
(``acc``) and read back only when the caller logs them.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from .. import losses as L
from ..config import Config
from ..data.fda import fda_source_to_target
from ..labels import NUM_CLASSES
from ..models import FCDiscriminator, PixelDiscriminator, deeplabv2, load_pretrained, param_groups
from .runtime import Runtime, release_normalize, seed_everything


def poly(max_iters: int, power: float):
    return lambda step: (1 - min(step, max_iters) / max_iters) ** power


def seg_loss(cfg: Config):
    return L.focal_loss if cfg.method.seg_loss == "focal" else L.cross_entropy


def upsample(logits: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=True)


class Trainer:
    """Models, optimisers and the steps of one method (``kind``: "source_only" or "adapt")."""

    def __init__(self, cfg: Config, kind: str, rt: Runtime, init: str | None = None):
        self.cfg, self.kind, self.rt = cfg, kind, rt
        self.method = "source_only" if kind == "source_only" else cfg.method.name
        self.opt_cfg = cfg.pretrain if kind == "source_only" else cfg.adapt
        self.batch = self.opt_cfg.batch_size
        self.seg_loss = seg_loss(cfg)
        me = cfg.method
        self.uses_source = self.method != "finetune"
        self.uses_target = self.method != "source_only"
        self.use_d1 = self.method == "pixda"
        self.use_d2 = self.method == "adaptsegnet" or (self.method == "pixda" and me.selection)
        self.selection = self.method == "pixda" and me.selection
        self.kd_steps = me.kd_steps if self.method == "pixda" and me.distillation else 0
        self.acc: dict[str, torch.Tensor] = {}
        self.acc_n = 0
        # the two pieces the release computes on the host; benchmarks/step.py swaps in
        # release-style versions to measure the difference
        self.style_transfer = fda_source_to_target
        self.pixel_adv_loss = L.pixel_adversarial_loss

        seed_everything(cfg.run.seed)
        g = deeplabv2(NUM_CLASSES, cfg.model.backbone, cfg.model.multi_level)
        if init is not None:
            report = load_pretrained(g, init)
            rt.log(f"initial weights {init}: {report}")
        self.g = self._place(g)
        self.d1 = self._place(PixelDiscriminator(NUM_CLASSES)) if self.use_d1 else None
        self.d2 = self._place(FCDiscriminator(NUM_CLASSES)) if self.use_d2 else None
        self.teacher = None

        o = self.opt_cfg
        sched = poly(o.max_iters, o.power)
        self.opt_g = torch.optim.SGD(
            param_groups(self.g, o.lr), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay
        )
        self.optimizers = {"g": self.opt_g}
        for name, d in (("d1", self.d1), ("d2", self.d2)):
            if d is not None:
                self.optimizers[name] = torch.optim.Adam(d.parameters(), lr=o.lr_d, betas=o.betas)
        self.schedulers = {
            k: torch.optim.lr_scheduler.LambdaLR(opt, sched) for k, opt in self.optimizers.items()
        }
        self.g_ddp = self._wrap(self.g, find_unused=cfg.model.multi_level)
        self.d1_ddp = self._wrap(self.d1) if self.d1 is not None else None
        self.d2_ddp = self._wrap(self.d2) if self.d2 is not None else None
        self.d1_frozen = self.d1  # D1 on G's output, its own parameters out of the graph
        if cfg.run.compile:
            self.g_ddp = torch.compile(self.g_ddp)
            if self.d1 is not None:
                self.d1_ddp = torch.compile(self.d1_ddp)
                self.d1_frozen = torch.compile(self.d1)

    # ----------------------------------------------------------------------- building
    def _place(self, m: torch.nn.Module) -> torch.nn.Module:
        m = m.to(self.rt.device)
        if self.rt.channels_last:
            m = m.to(memory_format=torch.channels_last)
        return m.train()

    def _wrap(self, m: torch.nn.Module, find_unused: bool = False):
        if not self.rt.distributed:
            return m
        ids = [self.rt.local_rank] if self.rt.device.type == "cuda" else None
        return DDP(m, device_ids=ids, find_unused_parameters=find_unused)

    def _make_teacher(self) -> torch.nn.Module:
        teacher = copy.deepcopy(self.g).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher

    # ----------------------------------------------------------------------- the steps
    def _seg(self, logits_main: torch.Tensor, label: torch.Tensor):
        logits = upsample(logits_main.float(), label.shape[-2:])
        return logits, self.seg_loss(logits, label)

    def _logits(self, images: torch.Tensor) -> torch.Tensor:
        with self.rt.autocast():
            _, main = self.g_ddp(release_normalize(images))
        return main

    def _forward(self, images: torch.Tensor, label: torch.Tensor):
        return self._seg(self._logits(images), label)

    def _add(self, name: str, value: torch.Tensor) -> None:
        value = value.detach().float()
        self.acc[name] = self.acc[name] + value if name in self.acc else value

    def _d_step(self, name: str, d_ddp, pred_src: torch.Tensor, pred_trg: torch.Tensor) -> None:
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        with self.rt.autocast():
            out_src, out_trg = d_ddp(pred_src.softmax(1)), d_ddp(pred_trg.softmax(1))
        loss = L.domain_bce(out_src, L.SOURCE) / 2 + L.domain_bce(out_trg, L.TARGET) / 2
        loss.backward()
        opt.step()
        self._add(f"loss_{name}", loss)

    def _frozen_d(self, forward, d: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """D on G's output with D's own parameters out of the graph (gradient goes to G);
        ``forward`` is D itself or its compiled version."""
        for p in d.parameters():
            p.requires_grad_(False)
        try:
            with self.rt.autocast():
                return forward(x.softmax(1))
        finally:
            for p in d.parameters():
                p.requires_grad_(True)

    def main_step(self, src: dict | None, trg: dict | None) -> None:
        """One step of the main phase for the trainer's method: ``src`` and ``trg`` are
        batches (dicts with ``image`` (B, 3, H, W) RGB 0-255 and ``label`` (B, H, W)); either
        may be None where the method does not use that domain.

        G sees the source batch, then the target batch, each followed by its backward pass
        (BatchNorm statistics per domain, as the method does); with ``run.concat_forward``
        both go through G in one forward and one backward pass."""
        rt, me = self.rt, self.cfg.method
        self.opt_g.zero_grad(set_to_none=True)
        trg_img = rt.images(trg["image"]) if trg is not None else None
        together = self.cfg.run.concat_forward and src is not None and trg is not None
        pred_src = pred_trg = total = None
        if src is not None:
            src_img, src_lab = rt.images(src["image"]), rt.labels(src["label"])
            if self.method != "source_only" and me.fda:
                src_img = self.style_transfer(src_img, trg_img, me.fda_beta)
            if together:
                both = self._logits(torch.cat([src_img, trg_img]))
                main_src, main_trg = both.split([len(src_img), len(trg_img)])
            logits, loss = self._seg(main_src if together else self._logits(src_img), src_lab)
            if together:
                total = loss
            else:
                loss.backward()
            self._add("loss_seg_src", loss)
            pred_src = logits.detach()
        if trg is not None:
            trg_lab = rt.labels(trg["label"])
            logits, loss = self._seg(main_trg if together else self._logits(trg_img), trg_lab)
            self._add("loss_seg_trg", loss)
            if self.method == "pixda":
                d_out = self._frozen_d(self.d1_frozen, self.d1, logits)
                if me.pixel_weights:
                    adv = self.pixel_adv_loss(
                        logits, d_out, trg_lab, detach_weights=not me.release_gradient
                    )
                else:
                    adv = L.domain_bce(d_out, L.SOURCE)
                loss = loss + me.lambda_adv * adv
                self._add("loss_adv", adv)
            elif self.method == "adaptsegnet":
                adv = L.domain_bce(self._frozen_d(self.d2, self.d2, logits), L.SOURCE)
                loss = loss + me.lambda_adv_image * adv
                self._add("loss_adv", adv)
            (loss if total is None else total + loss).backward()
            pred_trg = logits.detach()
        self.opt_g.step()
        if self.d1 is not None:
            self._d_step("d1", self.d1_ddp, pred_src, pred_trg)
        if self.d2 is not None:
            self._d_step("d2", self.d2_ddp, pred_src, pred_trg)
        for sch in self.schedulers.values():
            sch.step()

    def kd_step(self, trg: dict) -> None:
        """Distillation on a target batch from the frozen teacher (method.md)."""
        me, rt = self.cfg.method, self.rt
        self.opt_g.zero_grad(set_to_none=True)
        img, lab = rt.images(trg["image"]), rt.labels(trg["label"])
        logits, loss = self._forward(img, lab)
        with torch.no_grad(), rt.autocast():
            _, t_main = self.teacher(release_normalize(img))
        kd = L.distillation_loss(logits, upsample(t_main.float(), lab.shape[-2:]), me.kd_alpha)
        (loss + me.lambda_kd * kd).backward()
        self.opt_g.step()
        self.schedulers["g"].step()
        self._add("loss_seg_trg", loss)
        self._add("loss_kd", kd)
