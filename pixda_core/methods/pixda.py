"""PixDA (Tavera et al., WACV 2022), as the paper's algorithm, top to bottom (docs/method.md).

Starting from the source-only model, with FDA-styled source batches and the target shots:

1. **Main phase**, every step: G's segmentation loss on the source batch and on the target
   batch; on the target, the pixel-by-pixel adversarial loss through the pixel discriminator
   D1, each pixel weighted by its segmentation error and its class's rarity
   (:func:`pixda_core.losses.pixel_adversarial_loss`, weight ``lambda_adv``); then D1 and the
   image discriminator D2 learn to tell source predictions from target ones.
2. **Sample selection**, at the end of each pass over the kept source images while iterations
   remain: D2 scores every kept source image (styled towards a target shot); those scoring
   above tau stay, tau grows by ``tau_step``; the main phase ends early when fewer than one
   batch stay.
3. **Distillation**, ``kd_steps`` steps on the target shots alone: the segmentation loss plus
   ``lambda_kd`` times the distillation loss towards a frozen copy of G taken as the phase
   begins (the teacher).

The switches ``method.selection`` (off: no D2, no selection), ``method.distillation`` (off,
or ``kd_steps`` 0: no last phase), ``method.pixel_weights`` and ``method.release_gradient``
give the paper's ablations.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .. import losses as L
from ..data.common import release_normalize
from ..data.fda import fda_source_to_target
from ..models import FCDiscriminator, PixelDiscriminator
from .base import ADV, D1, D2, KD, SEG_SRC, SEG_TRG, Method, domain_discriminator_loss, upsample


class PixDA(Method):
    name = "pixda"
    title = "PixDA"
    source = True
    target = True
    losses = (SEG_SRC, SEG_TRG, ADV, D1, D2, KD)
    options = (
        "method.fda", "method.fda_beta",
        "method.lambda_adv", "method.pixel_weights", "method.release_gradient",
        "method.selection", "method.tau", "method.tau_step",
        "method.distillation", "method.kd_steps", "method.kd_alpha", "method.lambda_kd",
    )  # fmt: skip

    def __init__(self, cfg):
        super().__init__(cfg)
        mc = cfg.method
        #: D2 is there for the selection only
        self.selects = mc.selection
        self.distils = mc.distillation and mc.kd_steps > 0
        self.acts_at_pass_end = self.selects
        self.teacher: nn.Module | None = None  # while distillation runs

    # ------------------------------------------------------------------ 1. the main phase
    def networks(self, num_classes):
        nets = {"d1": PixelDiscriminator(num_classes)}
        if self.selects:
            nets["d2"] = FCDiscriminator(num_classes)
        return nets

    def target_loss(self, step, logits, labels):
        mc = self.cfg.method
        d_out = step.judge_for_g("d1", logits.softmax(1))
        if mc.pixel_weights:
            adv = L.pixel_adversarial_loss(
                logits, d_out, labels, detach_weights=not mc.release_gradient
            )
        else:  # the ablation: a plain per-pixel adversarial loss
            adv = L.domain_bce(d_out, L.SOURCE)
        step.record(ADV, adv)
        return mc.lambda_adv * adv

    def network_loss(self, step, name, pred_src, pred_trg):
        return domain_discriminator_loss(step, name, pred_src.softmax(1), pred_trg.softmax(1))

    # ------------------------------------------------------------------ 2. the selection
    def source_pass_end(self, job) -> None:
        """One round: D2 scores every kept source image, the rule keeps those above tau; the
        round's scores go to ``selection/round_<k>.csv`` and a row to ``selection.csv``; the
        source stream starts over on the images kept, or the main phase ends when they are
        fewer than one batch."""
        from ..train.selection import against_truth, score_kept_source

        s, mc, rt = job.state, self.cfg.method, job.rt
        d2 = job.nets.networks["d2"]

        def score(images, paired, label_size):
            return score_images(job.nets.g, d2, images, label_size, rt, paired, mc.fda_beta)

        scores = score_kept_source(job, score, paired=mc.fda)
        keep_mask = keep(scores, s.tau).tolist()
        new = [k for k, ok in zip(s.kept, keep_mask, strict=True) if ok]
        s.selection_round += 1
        names = [job.source.samples[k].name for k in s.kept]
        row = {
            "step": s.step,
            "round": s.selection_round,
            "tau": round(s.tau, 6),
            "candidates": len(s.kept),
            "kept": len(new),
            "mean_score": float(scores.nanmean()),
            "event": "",
        }
        truth = job.look_distances  # a toy benchmark's source: how the round did against it
        if truth is not None:
            distances = [truth.get(name, float("nan")) for name in names]
            row.update(against_truth(scores.tolist(), keep_mask, distances))
        job.folder.append("selection", row)
        if job.folder.is_main:
            import pandas as pd

            out = job.folder.path / "selection" / f"round_{s.selection_round}.csv"
            out.parent.mkdir(exist_ok=True)
            table = pd.DataFrame({"name": names, "score": scores.tolist(), "kept": keep_mask})
            if truth is not None:
                table["distance"] = distances
            table.to_csv(out, index=False)
        rt.log(
            f"step {s.step}: selection round {s.selection_round} at tau {s.tau:.2f} kept "
            f"{len(new)} of {len(s.kept)} source images"
        )
        s.tau = next_tau(s.tau, mc.tau_step)
        job.keep_source(new)

    def main_phase_over(self, job) -> None:
        if not self.selects:
            return
        s = job.state
        job.folder.append(
            "selection",
            {
                "step": s.step,
                "round": s.selection_round,
                "tau": round(s.tau, 6),
                "candidates": len(s.kept),
                "kept": len(s.kept),
                "mean_score": None,
                "event": f"main phase over: {s.end_reason}",
            },
        )

    # ------------------------------------------------------------------ 3. the distillation
    last_phase = "distillation"

    def last_phase_steps(self) -> int:
        return self.cfg.method.kd_steps if self.distils else 0

    def start_last_phase(self, job, saved) -> None:
        # G as the phase begins; a run resumed inside the phase takes the teacher its checkpoint
        # saved (the checkpoint written as the phase begins has none: G is the teacher there)
        self.teacher = make_teacher(job.nets.g, (saved or {}).get("teacher"))

    def last_phase_step(self, step, trg) -> None:
        """Segmentation loss + ``lambda_kd`` x distillation loss towards the teacher's soft
        predictions (``kd_alpha`` its temperature)."""
        rt, mc = step.rt, self.cfg.method
        step.nets.optimizers["g"].zero_grad(set_to_none=True)
        img, lab = rt.images(trg["image"]), rt.labels(trg["label"])
        logits, loss = step.seg_loss(step.g_logits(img), lab)
        with torch.no_grad(), rt.autocast():
            _, teacher_main = self.teacher(release_normalize(img))
        kd = L.distillation_loss(
            logits, upsample(teacher_main.float(), lab.shape[-2:]), mc.kd_alpha
        )
        step.g_step(loss + mc.lambda_kd * kd)  # the discriminators are done: only G moves
        step.record(SEG_TRG, loss)
        step.record(KD, kd)

    def saved_modules(self) -> dict[str, nn.Module]:
        return {"teacher": self.teacher} if self.teacher is not None else {}


# ---------------------------------------------------------------------- the pieces


@torch.no_grad()
def score_images(
    g: nn.Module,
    d2: nn.Module,
    images: torch.Tensor,
    label_size,
    rt,
    paired: torch.Tensor | None = None,
    fda_beta: float = 0.01,
) -> torch.Tensor:
    """Selection scores of a batch of source ``images`` (B, 3, H, W) RGB 0-255 on the device,
    shape (B,): G (in eval mode: call it so) then D2 on G's softmax at ``label_size``; with
    ``paired`` target images, each source image is first FDA-styled towards its pair. The
    score is the per-image BCE of D2's output against the *source* label: a high score means
    D2 takes the image for a target one."""
    if paired is not None:
        images = fda_source_to_target(images, paired, fda_beta)
    with rt.autocast():
        _, main = g(release_normalize(images))
        d_out = d2(upsample(main, label_size).softmax(1))
    return L.domain_bce_per_image(d_out, L.SOURCE)


def keep(scores: torch.Tensor, tau: float) -> torch.Tensor:
    """The rule: a source image stays when its score is above tau (NaN, an unreadable file,
    never stays)."""
    return scores > tau


def next_tau(tau: float, tau_step: float) -> float:
    """Each round is stricter than the last (the paper: 0.4, then +0.4 per round)."""
    return tau + tau_step


def make_teacher(g: nn.Module, saved: dict | None = None) -> nn.Module:
    """The teacher: a frozen eval-mode copy of G as the phase begins, or, when a run resumes
    in the middle of the phase, the teacher its checkpoint saved (``saved``)."""
    teacher = copy.deepcopy(g).eval()
    if saved is not None:
        teacher.load_state_dict(saved)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher
