"""PixDA's losses (pixda_core.losses) against references written out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from pixda_core import losses as Lo

pytestmark = pytest.mark.unit


def _batch(seed=0, b=2, c=19, h=6, w=5, ignore_frac=0.2):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, h, w, generator=g) * 2
    labels = torch.randint(0, c, (b, h, w), generator=g)
    labels[torch.rand(b, h, w, generator=g) < ignore_frac] = 255
    return logits, labels


def _focal_reference(logits, labels, alpha, gamma, eps=1e-6):
    total, n = 0.0, 0
    p = logits.softmax(1)
    for bi in range(labels.shape[0]):
        for y in range(labels.shape[1]):
            for x in range(labels.shape[2]):
                t = int(labels[bi, y, x])
                if t == 255:
                    continue
                pt = float(p[bi, t, y, x])
                total += -float(alpha[t]) * (1 - pt) ** gamma * math.log(pt + eps)
                n += 1
    return total / n


def _pixel_reference(seg, d, labels):
    logp = seg.log_softmax(1)
    total = 0.0
    b, h, w = labels.shape
    for bi in range(b):
        n_total = h * w
        for y in range(h):
            for x in range(w):
                c = int(labels[bi, y, x])
                if c == 255:
                    continue  # CE is 0 there, but the pixel stays in the denominator
                ce = -float(logp[bi, c, y, x])
                weight = 1 - int((labels[bi] == c).sum()) / n_total
                z = float(d[bi, 0, y, x])
                bce = max(z, 0) - z * 0 + math.log1p(math.exp(-abs(z)))  # BCE(z, SOURCE=0)
                total += bce * ce * weight
    return total / (b * h * w)


def test_focal_loss_matches_reference_with_release_alpha():
    logits, labels = _batch()
    alpha = [0.75] * 19
    alpha[2] = 0.25
    got = Lo.focal_loss(logits, labels)
    assert got.item() == pytest.approx(_focal_reference(logits, labels, alpha, 2.0), rel=1e-5)
    custom = torch.linspace(0.1, 1.0, 19)
    got = Lo.focal_loss(logits, labels, alpha=custom, gamma=1.0)
    assert got.item() == pytest.approx(_focal_reference(logits, labels, custom, 1.0), rel=1e-5)


def test_cross_entropy_matches_reference_and_all_ignore_is_zero():
    logits, labels = _batch(1)
    logp = logits.log_softmax(1)
    vals = [
        -float(logp[b, labels[b, y, x], y, x])
        for b in range(2)
        for y in range(6)
        for x in range(5)
        if labels[b, y, x] != 255
    ]
    assert Lo.cross_entropy(logits, labels).item() == pytest.approx(
        sum(vals) / len(vals), rel=1e-5
    )
    logits.requires_grad_(True)
    for fn in (Lo.cross_entropy, Lo.focal_loss):
        out = fn(logits, torch.full_like(labels, 255))
        assert out.item() == 0.0 and not torch.isnan(out)
        out.backward()


def test_class_balance_weights_against_a_loop():
    _, labels = _batch(2, b=3, h=7, w=9, ignore_frac=0.3)
    labels[2] = 255  # an image that is all ignore
    got = Lo.class_balance_weights(labels)
    for b in range(3):
        n_total = labels[b].numel()
        for y in range(7):
            for x in range(9):
                c = int(labels[b, y, x])
                want = 0.0 if c == 255 else 1 - int((labels[b] == c).sum()) / n_total
                assert got[b, y, x].item() == pytest.approx(want, abs=1e-7)
    assert (got[2] == 0).all()


def test_pixel_adversarial_loss_value():
    seg, labels = _batch(3)
    d = torch.randn(2, 1, 6, 5)
    got = Lo.pixel_adversarial_loss(seg, d, labels)
    assert got.item() == pytest.approx(_pixel_reference(seg, d, labels), rel=1e-5)
    assert Lo.pixel_adversarial_loss(seg, d, torch.full_like(labels, 255)).item() == 0.0


def test_pixel_adversarial_gradient_paper_vs_release():
    seg, labels = _batch(4)
    d_weight = torch.randn(1, 19, 1, 1)

    def run(detach):
        s = seg.clone().requires_grad_(True)
        d = (s.softmax(1) * d_weight).sum(1, keepdim=True)  # a tiny differentiable "D1"
        Lo.pixel_adversarial_loss(s, d, labels, detach_weights=detach).backward()
        return s.grad

    paper, release = run(True), run(False)
    # paper form: gradient only through the BCE term, i.e. through D1's input
    s = seg.clone().requires_grad_(True)
    ce = torch.nn.functional.cross_entropy(s.detach(), labels, ignore_index=255, reduction="none")
    w = Lo.class_balance_weights(labels)
    d = (s.softmax(1) * d_weight).sum(1)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        d, torch.zeros_like(d), reduction="none"
    )
    (bce * ce * w).mean().backward()
    assert torch.allclose(paper, s.grad, atol=1e-7)
    assert not torch.allclose(paper, release, atol=1e-6)
    # the difference is exactly the gradient through the CE factor
    s2 = seg.clone().requires_grad_(True)
    bce_const = torch.nn.functional.binary_cross_entropy_with_logits(
        d.detach(), torch.zeros_like(d), reduction="none"
    )
    ce2 = torch.nn.functional.cross_entropy(s2, labels, ignore_index=255, reduction="none")
    (bce_const * ce2 * w).mean().backward()
    assert torch.allclose(release - paper, s2.grad, atol=1e-6)


def test_distillation_loss_reference_and_teacher_gets_no_grad():
    student, _ = _batch(5)
    student.requires_grad_(True)
    teacher = torch.randn_like(student).requires_grad_(True)
    ref = (
        -(student.detach().log_softmax(1) * (0.5 * teacher.detach()).softmax(1)).sum()
        / student.numel()
    )
    got = Lo.distillation_loss(student, teacher, alpha=0.5)
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    got.backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0


def test_domain_bce():
    z = torch.tensor([[-2.0, 0.0, 3.0]])
    want_src = sum(math.log1p(math.exp(v)) for v in (-2.0, 0.0, 3.0)) / 3
    want_trg = sum(math.log1p(math.exp(-v)) for v in (-2.0, 0.0, 3.0)) / 3
    assert Lo.domain_bce(z, Lo.SOURCE).item() == pytest.approx(want_src, rel=1e-6)
    assert Lo.domain_bce(z, Lo.TARGET).item() == pytest.approx(want_trg, rel=1e-6)
    with pytest.raises(ValueError, match="SOURCE"):
        Lo.domain_bce(z, 2)


def test_losses_accept_bf16_and_return_fp32():
    logits, labels = _batch(6)
    out = Lo.focal_loss(logits.bfloat16(), labels)
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(Lo.focal_loss(logits, labels).item(), rel=2e-2)
