"""PixDA's losses (docs/method.md): tensors in, tensor out, device taken from the inputs.

Shapes: ``logits`` (B, C, H, W) at label resolution, ``labels`` (B, H, W) int64 trainIds with
``ignore_index`` for unlabelled pixels, discriminator outputs (B, 1, H', W'). Every loss is
computed in float32 whatever the input precision, and none loops in Python over pixels or classes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .labels import IGNORE_INDEX

#: Domain labels for the discriminators.
SOURCE = 0
TARGET = 1


def release_focal_alpha(num_classes: int = 19, device=None) -> torch.Tensor:
    """The release's focal alpha vector: 0.75 for every class, 0.25 for class index 2."""
    alpha = torch.full((num_classes,), 0.75, device=device)
    alpha[2] = 0.25
    return alpha


def _valid_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``valid`` pixels; 0 (with a gradient path) when none is valid."""
    return (values * valid).sum() / valid.sum().clamp(min=1)


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    alpha: torch.Tensor | None = None,
    gamma: float = 2.0,
    ignore_index: int = IGNORE_INDEX,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Focal loss ``-alpha_t (1 - p_t)^gamma log(p_t + eps)``, averaged over labelled pixels.

    Args:
        logits: (B, C, H, W). target: (B, H, W) int64.
        alpha: (C,) per-class weights; None means the release's vector
            (:func:`release_focal_alpha`), on every device.
    Returns a scalar; 0 for a batch that is all ``ignore_index``.
    """
    logits = logits.float()
    valid = target != ignore_index
    safe = torch.where(valid, target, 0)
    prob = logits.softmax(1).gather(1, safe.unsqueeze(1)).squeeze(1)
    if alpha is None:
        alpha = release_focal_alpha(logits.shape[1], logits.device)
    alpha_t = alpha.to(logits.device, torch.float32)[safe]
    loss = -alpha_t * (1 - prob).pow(gamma) * torch.log(prob + eps)
    return _valid_mean(loss, valid)


def cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Cross-entropy averaged over labelled pixels; 0 for a batch that is all ignore."""
    per_pixel = F.cross_entropy(
        logits.float(), target, ignore_index=ignore_index, reduction="none"
    )
    return _valid_mean(per_pixel, target != ignore_index)


def class_balance_weights(
    labels: torch.Tensor, num_classes: int = 19, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """PixDA's per-pixel weight ``1 - n_{y_p} / n_total``, computed per image by one
    scatter-add (no loop over classes, no host synchronisation).

    ``n_c`` counts pixels of class c in the image's label map and ``n_total`` all its pixels,
    ignored ones included. Ignored pixels get weight 0.

    Shape: labels (B, H, W) -> weights (B, H, W) float32.
    """
    b = labels.shape[0]
    flat = labels.reshape(b, -1)
    ignored = flat == ignore_index
    idx = torch.where(ignored, num_classes, flat)  # ignore gets its own bin
    # a fixed-size scatter_add instead of bincount: bincount sizes its output from the data,
    # which costs a host synchronisation on CUDA every step
    counts = torch.zeros(b, num_classes + 1, dtype=torch.int64, device=labels.device)
    counts.scatter_add_(1, idx, torch.ones_like(idx))
    weights = 1.0 - counts.gather(1, idx).float() / flat.shape[1]
    return weights.masked_fill(ignored, 0.0).reshape(labels.shape)


def pixel_adversarial_loss(
    seg_logits: torch.Tensor,
    d_logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    detach_weights: bool = True,
) -> torch.Tensor:
    """PixDA's pixel-by-pixel adversarial loss on target images (docs/method.md, L_pix).

    ``mean_p BCE(D1(s(P_t))_p, SOURCE) * CE(P_t, y_t)_p * w_p`` over all pixels (ignored ones
    contribute 0 but stay in the denominator), with ``w`` from :func:`class_balance_weights`.

    Args:
        seg_logits: (B, C, H, W) segmenter logits at label resolution.
        d_logits: (B, 1, H, W) pixel discriminator output on ``softmax(seg_logits)``.
        labels: (B, H, W) target labels.
        detach_weights: True (the paper, default) treats the CE factor as a weight, so gradient
            reaches G only through D1; False reproduces the release, whose gradient also flows
            through the CE factor.
    """
    bce, ce, weights = pixel_adversarial_terms(seg_logits, d_logits, labels, ignore_index)
    if detach_weights:
        ce = ce.detach()
    return (bce * ce * weights).mean()


def pixel_adversarial_terms(
    seg_logits: torch.Tensor,
    d_logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The three per-pixel factors of :func:`pixel_adversarial_loss`, each (B, H, W)
    float32: D1's BCE against the source label, the segmentation CE (0 on ignored pixels)
    and the class-balance weight ``w``."""
    bce = F.binary_cross_entropy_with_logits(
        d_logits.float().squeeze(1),
        torch.full_like(labels, SOURCE, dtype=torch.float32),
        reduction="none",
    )
    ce = F.cross_entropy(seg_logits.float(), labels, ignore_index=ignore_index, reduction="none")
    return bce, ce, class_balance_weights(labels, seg_logits.shape[1], ignore_index)


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, alpha: float = 0.5
) -> torch.Tensor:
    """``-mean(log_softmax(student) * softmax(alpha * teacher))``, the mean running over
    batch, classes and pixels (as the release does). The teacher gets no gradient."""
    soft = (alpha * teacher_logits.detach().float()).softmax(1)
    return -(student_logits.float().log_softmax(1) * soft).mean()


def self_information(probs: torch.Tensor) -> torch.Tensor:
    """AdvEnt's weighted self-information maps (Vu et al., CVPR 2019, eq. 2): per pixel and
    class ``-p log2(p) / log2(C)``, so that the maps of a pixel sum to its entropy normalised to
    [0, 1]. ``probs``: (B, C, H, W) softmax maps; returns the same shape, in fp32. (The 1e-30
    keeps log2 finite at p = 0, as AdvEnt's code does.)"""
    p = probs.float()
    return -p * torch.log2(p + 1e-30) / math.log2(p.shape[1])


def domain_bce(d_logits: torch.Tensor, domain: int) -> torch.Tensor:
    """Binary cross-entropy of discriminator logits against one domain label (SOURCE/TARGET)."""
    if domain not in (SOURCE, TARGET):
        raise ValueError(f"domain must be SOURCE (0) or TARGET (1), got {domain!r}")
    d_logits = d_logits.float()
    return F.binary_cross_entropy_with_logits(d_logits, torch.full_like(d_logits, float(domain)))


def domain_bce_per_image(d_logits: torch.Tensor, domain: int) -> torch.Tensor:
    """:func:`domain_bce` per image: the mean over each image's outputs, shape (B,). PixDA's
    selection scores source images with it (against SOURCE: high = looks like the target)."""
    if domain not in (SOURCE, TARGET):
        raise ValueError(f"domain must be SOURCE (0) or TARGET (1), got {domain!r}")
    d_logits = d_logits.float()
    bce = F.binary_cross_entropy_with_logits(
        d_logits, torch.full_like(d_logits, float(domain)), reduction="none"
    )
    return bce.mean(dim=tuple(range(1, bce.ndim)))
