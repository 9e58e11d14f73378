"""One training step of the main phase, in the method's order (docs/method.md).

:func:`build_nets` makes what a method trains (:class:`Nets`: G, the discriminators of the
methods table, their optimisers and poly schedules); :func:`main_step` runs one step on a
source and a target batch. Losses are summed on the device (:class:`LossSums`) and read back
only when the loop writes a log row, so a step never makes the host wait for the device.
The distillation step is in :mod:`pixda_core.train.distillation`, the selection pass in
:mod:`pixda_core.train.selection`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from .. import losses as L
from ..config import Config, OptimConfig, num_classes
from ..data.common import release_normalize
from ..data.fda import fda_source_to_target
from ..methods import Method
from ..models import FCDiscriminator, PixelDiscriminator, deeplabv2, load_pretrained, param_groups
from .runtime import Runtime, seed_everything


def build_segmenter(cfg: Config) -> nn.Module:
    """G as the run's config describes it (backbone, heads, class count), randomly initialised."""
    return deeplabv2(num_classes(cfg), cfg.model.backbone, cfg.model.multi_level)


def poly(max_iters: int, power: float) -> Callable[[int], float]:
    """The poly learning-rate factor: ``(1 - step / max_iters) ** power``, 0 past the horizon."""
    return lambda step: (1 - min(step, max_iters) / max_iters) ** power


def upsample(logits: torch.Tensor, size) -> torch.Tensor:
    """Logits to the label's size, bilinear with aligned corners (as the release)."""
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=True)


def seg_loss(cfg: Config, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The segmentation loss of the run (``method.seg_loss``: focal or plain CE)."""
    fn = L.focal_loss if cfg.method.seg_loss == "focal" else L.cross_entropy
    return fn(logits, labels)


class LossSums:
    """Each loss summed on the device over the steps since the last log row."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.steps = 0

    def add(self, name: str, value: torch.Tensor) -> None:
        value = value.detach().float()
        self.sums[name] = self.sums[name] + value if name in self.sums else value

    def __bool__(self) -> bool:
        return bool(self.sums)

    def means(self, rt: Runtime) -> dict[str, float]:
        """Each loss's mean over the steps (and over the processes): the one host
        synchronisation of a logging interval."""
        names = list(self.sums)
        values = torch.stack([self.sums[n] for n in names]) / self.steps
        rt.all_reduce_(values)
        return dict(zip(names, (values / rt.world).tolist(), strict=True))

    def totals(self) -> dict[str, float]:
        """This process's sums, read back (a host synchronisation)."""
        names = list(self.sums)
        values = torch.stack([self.sums[n] for n in names]).tolist() if names else []
        return dict(zip(names, values, strict=True))

    def clear(self) -> None:
        self.sums, self.steps = {}, 0

    def state_dict(self) -> dict:
        return {"loss_sums": {k: v.cpu() for k, v in self.sums.items()}, "loss_count": self.steps}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self.sums = {k: v.to(device) for k, v in state["loss_sums"].items()}
        self.steps = state["loss_count"]


@dataclass
class Nets:
    """What a method trains, and how the step calls it."""

    method: Method
    rt: Runtime
    g: nn.Module
    d1: nn.Module | None
    d2: nn.Module | None
    #: SGD for "g", Adam for "d1" / "d2"; each with its poly schedule
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler]
    #: the modules as the step calls them: wrapped for torchrun (DDP) and/or compiled
    g_train: Callable
    d_train: dict[str, Callable]
    #: D1 judging G's target output (D1's own parameters out of the graph): D1 itself or its
    #: compiled version, without DDP's wrapper (it takes no gradient)
    d1_on_g: Callable | None
    #: fp16's gradient scaler (None in bf16 and fp32)
    scaler: torch.amp.GradScaler | None = None

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def optimizer_step(self, name: str) -> None:
        """Step one optimiser (through the scaler in fp16: skipped on inf/NaN gradients)."""
        opt = self.optimizers[name]
        if self.scaler is not None:
            self.scaler.step(opt)
        else:
            opt.step()

    def end_step(self) -> None:
        """After a step's optimisers: fp16's scale adapts to the gradients just seen."""
        if self.scaler is not None:
            self.scaler.update()


def build_nets(
    cfg: Config, method: Method, optim: OptimConfig, rt: Runtime, init: str | None = None
) -> Nets:
    """G (from the weights file ``init``; None or "none": random) and the discriminators
    ``method`` uses, placed on the device, with their optimisers and poly schedules. Seeds
    everything with ``run.seed`` first, so the random initialisations are those of the seed."""
    seed_everything(cfg.run.seed)
    g = build_segmenter(cfg)
    if init is not None and init != "none":
        report = load_pretrained(g, init)
        rt.log(f"initial weights {init}: {report}")
    g = _place(g, rt)
    d1 = _place(PixelDiscriminator(num_classes(cfg)), rt) if method.d1 else None
    d2 = _place(FCDiscriminator(num_classes(cfg)), rt) if method.d2 else None

    with warnings.catch_warnings():  # release_sgd lists parameters twice on purpose
        warnings.filterwarnings("ignore", "optimizer contains a parameter group with duplicate")
        opt_g = torch.optim.SGD(
            param_groups(g, optim.lr, release=optim.release_sgd),
            lr=optim.lr,
            momentum=optim.momentum,
            weight_decay=optim.weight_decay,
        )
    optimizers: dict[str, torch.optim.Optimizer] = {"g": opt_g}
    for name, d in (("d1", d1), ("d2", d2)):
        if d is not None:
            optimizers[name] = torch.optim.Adam(d.parameters(), lr=optim.lr_d, betas=optim.betas)
    factor = poly(optim.max_iters, optim.power)
    schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, factor) for k, o in optimizers.items()}

    g_train = _ddp(g, rt, find_unused=cfg.model.multi_level)  # the aux head gets no loss
    d_train = {name: _ddp(d, rt) for name, d in (("d1", d1), ("d2", d2)) if d is not None}
    d1_on_g = d1
    if cfg.run.compile:
        g_train = torch.compile(g_train)
        if d1 is not None:
            d_train["d1"] = torch.compile(d_train["d1"])
            d1_on_g = torch.compile(d1)
    scaler = rt.grad_scaler()
    return Nets(method, rt, g, d1, d2, optimizers, schedulers, g_train, d_train, d1_on_g, scaler)


def _place(m: nn.Module, rt: Runtime) -> nn.Module:
    m = m.to(rt.device)
    if rt.channels_last:
        m = m.to(memory_format=torch.channels_last)
    return m.train()


def _ddp(m: nn.Module, rt: Runtime, find_unused: bool = False):
    if not rt.distributed:
        return m
    ids = [rt.local_rank] if rt.device.type == "cuda" else None
    return DDP(m, device_ids=ids, find_unused_parameters=find_unused)


# --------------------------------------------------------------------------------- the step


def g_logits(nets: Nets, images: torch.Tensor) -> torch.Tensor:
    """G's main-head logits for 0-255 RGB images on the device (at G's output size)."""
    with nets.rt.autocast():
        _, main = nets.g_train(release_normalize(images))
    return main


def seg_logits_and_loss(cfg: Config, main: torch.Tensor, labels: torch.Tensor):
    """(logits at the label's size in fp32, the segmentation loss)."""
    logits = upsample(main.float(), labels.shape[-2:])
    return logits, seg_loss(cfg, logits, labels)


def main_step(
    nets: Nets, src: dict | None, trg: dict | None, cfg: Config, losses: LossSums
) -> None:
    """One step of the main phase. ``src`` and ``trg`` are batches (``image`` (B, 3, H, W)
    RGB 0-255, ``label`` (B, H, W) trainIds); either is None where the method does not use
    that domain.

    G sees the source batch, then the target batch, each followed by its backward pass
    (BatchNorm statistics per domain, as the method does); with ``run.concat_forward`` both
    go through G in one forward and one backward pass."""
    rt, mc, method = nets.rt, cfg.method, nets.method
    opt_g = nets.optimizers["g"]
    opt_g.zero_grad(set_to_none=True)
    trg_img = rt.images(trg["image"]) if trg is not None else None
    together = cfg.run.concat_forward and src is not None and trg is not None
    pred_src = pred_trg = loss_src = None

    # G on the source: FDA-styled towards the target batch, segmentation loss
    if src is not None:
        src_img, src_lab = rt.images(src["image"]), rt.labels(src["label"])
        if trg is not None and mc.fda:
            src_img = fda_source_to_target(src_img, trg_img, mc.fda_beta)
        if together:
            main_src, main_trg = g_logits(nets, torch.cat([src_img, trg_img])).split(
                [len(src_img), len(trg_img)]
            )
        else:
            main_src = g_logits(nets, src_img)
        logits, loss_src = seg_logits_and_loss(cfg, main_src, src_lab)
        losses.add("loss_seg_src", loss_src)
        if not together:
            nets.backward(loss_src)
            loss_src = None
        pred_src = logits.detach()

    # G on the target: segmentation loss, plus the method's adversarial term
    if trg is not None:
        trg_lab = rt.labels(trg["label"])
        main = main_trg if together else g_logits(nets, trg_img)
        logits, loss = seg_logits_and_loss(cfg, main, trg_lab)
        losses.add("loss_seg_trg", loss)
        if method.adversarial == "pixel":  # PixDA: D1 per pixel, weighted (docs/method.md)
            d_out = _judged_by(nets.d1, nets.d1_on_g, logits, rt)
            if mc.pixel_weights:
                adv = L.pixel_adversarial_loss(
                    logits, d_out, trg_lab, detach_weights=not mc.release_gradient
                )
            else:
                adv = L.domain_bce(d_out, L.SOURCE)
            loss = loss + mc.lambda_adv * adv
            losses.add("loss_adv", adv)
        elif method.adversarial == "image":  # AdaptSegNet-style: D2 on the whole output
            adv = L.domain_bce(_judged_by(nets.d2, nets.d2, logits, rt), L.SOURCE)
            loss = loss + mc.lambda_adv_image * adv
            losses.add("loss_adv", adv)
        nets.backward(loss if loss_src is None else loss_src + loss)
        pred_trg = logits.detach()
    nets.optimizer_step("g")

    # the discriminators on detached predictions: source -> SOURCE, target -> TARGET
    for name in ("d1", "d2"):
        if name in nets.d_train:
            _d_step(nets, name, pred_src, pred_trg, losses)

    nets.end_step()
    for scheduler in nets.schedulers.values():
        scheduler.step()


def _judged_by(d: nn.Module, forward: Callable, logits: torch.Tensor, rt: Runtime):
    """D's logits on G's softmax output, with D's own parameters out of the graph (the
    gradient goes to G only); ``forward`` is D itself or its compiled version."""
    for p in d.parameters():
        p.requires_grad_(False)
    try:
        with rt.autocast():
            return forward(logits.softmax(1))
    finally:
        for p in d.parameters():
            p.requires_grad_(True)


def _d_step(
    nets: Nets, name: str, pred_src: torch.Tensor, pred_trg: torch.Tensor, losses: LossSums
) -> None:
    opt, forward = nets.optimizers[name], nets.d_train[name]
    opt.zero_grad(set_to_none=True)
    with nets.rt.autocast():
        out_src, out_trg = forward(pred_src.softmax(1)), forward(pred_trg.softmax(1))
    loss = L.domain_bce(out_src, L.SOURCE) / 2 + L.domain_bce(out_trg, L.TARGET) / 2
    nets.backward(loss)
    nets.optimizer_step(name)
    losses.add(f"loss_{name}", loss)
