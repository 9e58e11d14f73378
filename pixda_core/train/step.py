"""One training step of the main phase, in the kit's order, with the method's hooks
(:mod:`pixda_core.methods.base`).

:func:`build_nets` makes what a method trains (:class:`Nets`: G, the method's networks, their
optimisers and poly schedules); :func:`main_step` runs one step on a source and a target batch.
Losses are summed on the device (:class:`LossSums`) and read back only when the loop writes a
log row, so a step never makes the host wait for the device.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ..config import Config, OptimConfig, num_classes
from ..data.fda import fda_source_to_target
from ..methods import Method, Step
from ..methods.base import upsample
from ..models import deeplabv2, load_pretrained, param_groups
from .runtime import Runtime, seed_everything

__all__ = ["build_segmenter", "build_nets", "main_step", "poly", "upsample", "LossSums", "Nets"]


def build_segmenter(cfg: Config) -> nn.Module:
    """G as the run's config describes it (backbone, heads, class count), randomly initialised."""
    return deeplabv2(num_classes(cfg), cfg.model.backbone, cfg.model.multi_level)


def poly(max_iters: int, power: float) -> Callable[[int], float]:
    """The poly learning-rate factor: ``(1 - step / max_iters) ** power``, 0 past the horizon."""
    return lambda step: (1 - min(step, max_iters) / max_iters) ** power


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

    def state_dict(self, rt: Runtime) -> dict:
        """The sums over every process (under torchrun each has its own; called by all of
        them): what the next log row's mean is made of, whichever process saves it."""
        if rt.distributed and self.sums:
            total = rt.all_reduce_(torch.stack(list(self.sums.values())))
            sums = {k: t.to("cpu", copy=True) for k, t in zip(self.sums, total, strict=True)}
        else:
            sums = {k: v.cpu() for k, v in self.sums.items()}
        return {"loss_sums": sums, "loss_count": self.steps}

    def load_state_dict(self, state: dict, rt: Runtime) -> None:
        """The saved sums to the first process, zeros to the others: their sum over the
        processes (:meth:`means`) is the saved one."""
        self.sums = {k: v.to(rt.device) if rt.is_main else torch.zeros_like(v, device=rt.device)
                     for k, v in state["loss_sums"].items()}  # fmt: skip
        self.steps = state["loss_count"]


@dataclass
class Nets:
    """What a method trains, and how the step calls it."""

    method: Method
    rt: Runtime
    g: nn.Module
    #: the method's networks by name (its discriminators), in the order it made them
    networks: dict[str, nn.Module]
    #: SGD for "g", the method's optimiser for each network; each with its poly schedule
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler]
    #: the modules as the step calls them: wrapped for torchrun (DDP) and/or compiled
    g_train: Callable
    train_forward: dict[str, Callable]
    #: each network judging G's output (its own parameters out of the graph): itself or its
    #: compiled version, without DDP's wrapper (it takes no gradient)
    on_g: dict[str, Callable]
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
    cfg: Config,
    method: Method,
    optim: OptimConfig,
    rt: Runtime,
    init: str | None = None,
    weights: object | None = None,
) -> Nets:
    """G (from the weights file ``init``, or ``weights``, that file as read already; None or
    "none": random) and the networks ``method`` makes, placed on the device, with their
    optimisers and poly schedules. Seeds everything with ``run.seed`` first, so the random
    initialisations are those of the seed."""
    seed_everything(cfg.run.seed)
    g = build_segmenter(cfg)
    if init is not None and init != "none":
        report = load_pretrained(g, init, raw=weights)
        rt.log(f"initial weights {init}: {report}")
    g = _place(g, rt)
    networks = {name: _place(m, rt) for name, m in method.networks(num_classes(cfg)).items()}

    with warnings.catch_warnings():  # release_sgd lists parameters twice on purpose
        warnings.filterwarnings("ignore", "optimizer contains a parameter group with duplicate")
        opt_g = torch.optim.SGD(
            param_groups(g, optim.lr, release=optim.release_sgd),
            lr=optim.lr,
            momentum=optim.momentum,
            weight_decay=optim.weight_decay,
        )
    optimizers: dict[str, torch.optim.Optimizer] = {"g": opt_g}
    for name, m in networks.items():
        optimizers[name] = method.optimizer(name, m, optim)
    factor = poly(optim.max_iters, optim.power)
    schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, factor) for k, o in optimizers.items()}

    g_train = _ddp(g, rt, find_unused=cfg.model.multi_level)  # the aux head gets no loss
    train_forward = {name: _ddp(m, rt) for name, m in networks.items()}
    on_g: dict[str, Callable] = dict(networks)
    if cfg.run.compile:
        g_train = torch.compile(g_train)
        train_forward = {name: torch.compile(f) for name, f in train_forward.items()}
        on_g = {name: torch.compile(m) for name, m in networks.items()}
    scaler = rt.grad_scaler()
    return Nets(method, rt, g, networks, optimizers, schedulers, g_train, train_forward, on_g,
                scaler)  # fmt: skip


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


def main_step(
    nets: Nets, src: dict | None, trg: dict | None, cfg: Config, losses: LossSums
) -> None:
    """One step of the main phase. ``src`` and ``trg`` are batches (``image`` (B, 3, H, W)
    RGB 0-255, ``label`` (B, H, W) trainIds); either is None where the method does not use
    that domain.

    G sees the source batch, then the target batch, each followed by its backward pass
    (BatchNorm statistics per domain, as the method does), each loss with the method's term
    added (:meth:`~pixda_core.methods.Method.source_loss`, ``target_loss``); G's optimiser;
    then each of the method's networks on G's detached predictions (``network_loss``). With
    ``run.concat_forward`` both batches go through G in one forward and one backward pass."""
    rt, mc, method = nets.rt, cfg.method, nets.method
    step = Step(nets, cfg, losses)
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
            main_src, main_trg = step.g_logits(torch.cat([src_img, trg_img])).split(
                [len(src_img), len(trg_img)]
            )
        else:
            main_src = step.g_logits(src_img)
        logits, loss_src = step.seg_loss(main_src, src_lab)
        losses.add("loss_seg_src", loss_src)
        extra = method.source_loss(step, logits, src_lab)
        if extra is not None:
            loss_src = loss_src + extra
        if not together:
            nets.backward(loss_src)
            loss_src = None
        pred_src = logits.detach()

    # G on the target: segmentation loss, plus the method's term (an adversarial one)
    if trg is not None:
        trg_lab = rt.labels(trg["label"])
        main = main_trg if together else step.g_logits(trg_img)
        logits, loss = step.seg_loss(main, trg_lab)
        losses.add("loss_seg_trg", loss)
        extra = method.target_loss(step, logits, trg_lab)
        if extra is not None:
            loss = loss + extra
        nets.backward(loss if loss_src is None else loss_src + loss)
        pred_trg = logits.detach()
    nets.optimizer_step("g")

    # the method's networks, in its order, on G's detached predictions
    for name in nets.networks:
        nets.optimizers[name].zero_grad(set_to_none=True)
        loss = method.network_loss(step, name, pred_src, pred_trg)
        nets.backward(loss)
        nets.optimizer_step(name)
        losses.add(f"loss_{name}", loss)

    nets.end_step()
    for scheduler in nets.schedulers.values():
        scheduler.step()
