"""The method API: a method is one class (docs/add-a-method.md).

The kit owns the loop, the data, checkpoints, precision, torchrun, the records and resume; a
method says, in one class derived from :class:`Method`:

- what G trains on: ``source`` (labelled source batches, FDA-styled towards the target batch
  when it also uses the target), ``target`` (the target shots), ``all_target`` (every target
  training image instead of the shots: the oracle);
- its extra networks (:meth:`Method.networks`: any ``nn.Module``; a discriminator is just
  that), each with its optimiser (:meth:`Method.optimizer`, Adam at ``lr_d`` by default) and
  the poly schedule;
- its losses for one step, given the batches and G's outputs (:meth:`Method.source_loss`,
  :meth:`Method.target_loss`: terms added to G's segmentation losses; :meth:`Method.network_loss`:
  the loss of each of its networks on G's detached predictions), reported through
  :meth:`Step.record` under the names of ``losses`` (the columns of ``history.csv``);
- its own phases: something at the end of each pass over the source images
  (:meth:`Method.source_pass_end`, PixDA's selection) and a last phase after the main one
  (:meth:`Method.last_phase_steps` and :meth:`Method.last_phase_step`, PixDA's distillation).

One step of the main phase, as the kit runs it (:func:`pixda_core.train.step.main_step`): G on
the source batch, its segmentation loss plus ``source_loss``, backward; G on the target batch,
its segmentation loss plus ``target_loss``, backward; G's optimiser; then each network in the
order :meth:`Method.networks` gave: ``network_loss``, backward, its optimiser.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .. import losses as L
from ..data.common import release_normalize

if TYPE_CHECKING:
    from ..config import Config, OptimConfig

#: the loss names the built-in methods report (the columns of history.csv)
SEG_SRC, SEG_TRG, ADV, D1, D2, KD = (
    "loss_seg_src",
    "loss_seg_trg",
    "loss_adv",
    "loss_d1",
    "loss_d2",
    "loss_kd",
)


class Method:
    """A training method. Subclass it, set the class attributes, override the hooks it needs
    and register it (:func:`pixda_core.methods.register_method`, an entry point, or the class
    itself passed to :func:`pixda_core.train.adapt`). An instance is made per run from the
    run's config (``self.cfg``)."""

    #: its name in configs (``method.name``, ``--method``), run folders and tables: a Python
    #: identifier in lower case
    name: ClassVar[str] = ""
    #: how tables, figures and logs name it
    title: ClassVar[str] = ""
    #: trains G on the labelled source batches
    source: ClassVar[bool] = False
    #: trains G on the target shots
    target: ClassVar[bool] = False
    #: trains on every target training image instead of ``data.num_shots`` per city
    all_target: ClassVar[bool] = False
    #: the config section of its optimiser and length: "adapt" (few-shot methods) or
    #: "pretrain" (trained in full on their data: source-only, the oracle)
    schedule: ClassVar[str] = "adapt"
    #: the losses it reports, in order: the columns of its history.csv
    losses: ClassVar[tuple[str, ...]] = ()
    #: the config keys (``section.key``) that are its own settings: runs that differ in them
    #: are never pooled in a table (:mod:`pixda_core.analysis`)
    options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg: Config):
        self.cfg = cfg

    # ------------------------------------------------------------------ what it trains
    def networks(self, num_classes: int) -> dict[str, nn.Module]:
        """Its networks besides G, by name (made in this order, after G, with the run's seed:
        the order decides their random initialisation). Each is placed on the device,
        wrapped for torchrun, trained by :meth:`network_loss`, checkpointed and checked for
        NaN by the kit."""
        return {}

    def optimizer(self, name: str, module: nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
        """The optimiser of network ``name`` (the poly schedule of ``optim`` is added by the
        kit): Adam at ``optim.lr_d`` with ``optim.betas``, as the release's discriminators."""
        return torch.optim.Adam(module.parameters(), lr=optim.lr_d, betas=optim.betas)

    # ------------------------------------------------------------------ one step
    def source_loss(self, step: Step, logits: torch.Tensor, labels: torch.Tensor):
        """A term added to G's segmentation loss on the source batch (``logits`` (B, C, H, W)
        fp32 at the label's size, ``labels`` (B, H, W) trainIds), or None."""
        return None

    def target_loss(self, step: Step, logits: torch.Tensor, labels: torch.Tensor):
        """A term added to G's segmentation loss on the target batch, or None."""
        return None

    def network_loss(
        self, step: Step, name: str, pred_src: torch.Tensor | None, pred_trg: torch.Tensor | None
    ) -> torch.Tensor:
        """The loss of network ``name`` on G's detached logits of this step (None for a domain
        the method does not use); the kit runs backward and its optimiser."""
        raise NotImplementedError(f"{type(self).__name__} has networks but no network_loss")

    # ------------------------------------------------------------------ its phases
    #: does it act at the end of each pass over the source images (:meth:`source_pass_end`)?
    acts_at_pass_end: bool = False

    def source_pass_end(self, job) -> None:
        """At the end of a pass over the (kept) source images, after validation, while
        iterations remain in the budget. It may set ``job.state.end_reason`` to end the main
        phase early."""

    def main_phase_over(self, job) -> None:
        """The main phase has ended (``job.state.end_reason`` says why)."""

    #: how logs and messages name its last phase
    last_phase: ClassVar[str] = "last phase"

    def last_phase_steps(self) -> int:
        """Steps of its last phase, after the main one (0: none)."""
        return 0

    def start_last_phase(self, job, saved: dict[str, dict] | None) -> None:
        """The last phase begins, or resumes (``saved``: the state dicts of
        :meth:`saved_modules` as its checkpoint held them)."""

    def last_phase_step(self, step: Step, trg: dict) -> None:
        """One step of its last phase on a target batch; it steps G's optimiser itself
        (:meth:`Step.g_step`)."""
        raise NotImplementedError(f"{type(self).__name__} has a last phase but no step for it")

    def saved_modules(self) -> dict[str, nn.Module]:
        """Modules of its phases besides its networks that checkpoints hold and the kit checks
        for NaN (PixDA's teacher, while distillation runs), by name."""
        return {}

    def __repr__(self) -> str:
        return f"<method {self.name} ({type(self).__module__}.{type(self).__qualname__})>"


class Step:
    """What a method's hooks are given in a step: the config, the nets, the runtime, and the
    losses of the logging interval (:meth:`record`)."""

    def __init__(self, nets, cfg: Config, losses):
        self.nets, self.cfg, self.losses = nets, cfg, losses
        self.rt = nets.rt

    def record(self, name: str, value: torch.Tensor) -> None:
        """Add a loss of this step to its column of history.csv (summed on the device, read
        back only when a log row is written)."""
        self.losses.add(name, value)

    def judge(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Network ``name`` on ``x``, as it trains (wrapped for torchrun, compiled when asked),
        under the run's autocast."""
        with self.rt.autocast():
            return self.nets.train_forward[name](x)

    def judge_for_g(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Network ``name`` on ``x`` (made from G's output) with its own parameters out of the
        graph: the gradient goes to G only."""
        net = self.nets.networks[name]
        for p in net.parameters():
            p.requires_grad_(False)
        try:
            with self.rt.autocast():
                return self.nets.on_g[name](x)
        finally:
            for p in net.parameters():
                p.requires_grad_(True)

    # the pieces of G's own step, for a last phase
    def g_logits(self, images: torch.Tensor) -> torch.Tensor:
        """G's main-head logits for 0-255 RGB ``images`` on the device (G's output size)."""
        with self.rt.autocast():
            _, main = self.nets.g_train(release_normalize(images))
        return main

    def seg_loss(self, main: torch.Tensor, labels: torch.Tensor):
        """(logits at the label's size in fp32, the run's segmentation loss)."""
        logits = upsample(main.float(), labels.shape[-2:])
        fn = L.focal_loss if self.cfg.method.seg_loss == "focal" else L.cross_entropy
        return logits, fn(logits, labels)

    def g_step(self, loss: torch.Tensor) -> None:
        """Backward ``loss`` and step G's optimiser and schedule (the networks' stay)."""
        self.nets.backward(loss)
        self.nets.optimizer_step("g")
        self.nets.end_step()
        self.nets.schedulers["g"].step()


def upsample(logits: torch.Tensor, size) -> torch.Tensor:
    """Logits to the label's size, bilinear with aligned corners (as the release)."""
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=True)


def domain_discriminator_loss(
    step: Step, name: str, src: torch.Tensor, trg: torch.Tensor
) -> torch.Tensor:
    """A domain discriminator's loss: network ``name`` on a source input labelled SOURCE and
    on a target input labelled TARGET, the two BCEs averaged (AdaptSegNet, AdvEnt, PixDA)."""
    out_src, out_trg = step.judge(name, src), step.judge(name, trg)
    return L.domain_bce(out_src, L.SOURCE) / 2 + L.domain_bce(out_trg, L.TARGET) / 2
