"""PixDA's sample selection (docs/method.md): after each pass over the kept source images, D2
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


#: the columns :func:`against_truth` adds to a round's row of ``selection.csv``
TRUTH_COLUMNS = ("distance_rho", "kept_distance", "dropped_distance")


def against_truth(scores, kept, distances) -> dict[str, float]:
    """A round of selection against what only a synthetic benchmark knows: each candidate's
    true distance to the target look (the toy's ``toy_looks.csv``; 0 = the target's look).

    ``distance_rho``: Spearman's rank correlation of the scores with the distances (a
    selection that finds target-like images scores the nearer ones higher: rho < 0);
    ``kept_distance`` / ``dropped_distance``: the mean distance of the images kept and of
    those dropped. Candidates without a score or a distance are left out; NaN where a value
    cannot be computed (fewer than 3 candidates, no spread, no image on one side)."""
    import numpy as np
    from scipy import stats

    s = np.asarray(scores, dtype=float)
    d = np.asarray(distances, dtype=float)
    k = np.asarray(kept, dtype=bool)
    ok = np.isfinite(s) & np.isfinite(d)
    rho = np.nan
    if ok.sum() >= 3 and np.ptp(s[ok]) > 0 and np.ptp(d[ok]) > 0:
        rho = float(stats.spearmanr(s[ok], d[ok])[0])
    kept_d = float(d[ok & k].mean()) if (ok & k).any() else np.nan
    dropped_d = float(d[ok & ~k].mean()) if (ok & ~k).any() else np.nan
    return dict(zip(TRUTH_COLUMNS, (rho, kept_d, dropped_d), strict=True))
