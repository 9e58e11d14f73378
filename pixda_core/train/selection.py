"""PixDA's sample selection (method.md): after each pass over the kept source images, D2
scores every one of them and only those it finds target-like enough stay.

The score of a source image is the per-image BCE of D2's output against the *source* label
(:func:`pixda_core.losses.domain_bce_per_image`), the image styled towards a target shot
with FDA first: a high score means D2 takes it for a target image. The rule keeps the
images scoring above tau; tau then grows by ``tau_step`` for the next round. The loop
(:func:`pixda_core.train.loop.selection_round`) feeds the batches, splits the work between
processes, skips unreadable files and writes the rounds down.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import losses as L
from ..data.common import release_normalize
from ..data.fda import fda_source_to_target
from .runtime import Runtime
from .step import upsample


@torch.no_grad()
def score_images(
    g: nn.Module,
    d2: nn.Module,
    images: torch.Tensor,
    label_size,
    rt: Runtime,
    paired: torch.Tensor | None = None,
    fda_beta: float = 0.01,
) -> torch.Tensor:
    """Selection scores of a batch of source ``images`` (B, 3, H, W) RGB 0-255 on the device,
    shape (B,): G (in eval mode: call it so) then D2 on G's softmax at ``label_size``; with
    ``paired`` target images, each source image is first FDA-styled towards its pair."""
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
