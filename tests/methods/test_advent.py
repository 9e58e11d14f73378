"""AdvEnt (pixda_core.methods.advent): the self-information maps and the losses, on hand-made
maps."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pixda_core import losses as L
from pixda_core.methods import Step, method_of
from pixda_core.train.runtime import Runtime
from pixda_core.train.step import LossSums, build_nets
from tests.helpers import toy_preset

pytestmark = pytest.mark.unit


def test_self_information_maps_by_hand():
    c = 4
    probs = torch.zeros(1, c, 1, 3)
    probs[0, 2, 0, 0] = 1.0  # certain: no information anywhere
    probs[0, :, 0, 1] = 1 / c  # uniform: each class 1/C, the pixel's sum 1 (entropy log2 C)
    probs[0, :, 0, 2] = torch.tensor([0.5, 0.5, 0.0, 0.0])  # one bit of log2(4) = 2
    maps = L.self_information(probs)
    assert maps.shape == probs.shape and maps.dtype == torch.float32
    assert torch.equal(maps[0, :, 0, 0], torch.zeros(c))
    assert maps[0, :, 0, 1] == pytest.approx([0.25] * c)
    assert maps[0, :, 0, 2] == pytest.approx([0.25, 0.25, 0.0, 0.0])
    assert maps.sum(1)[0, 0].tolist() == pytest.approx([0.0, 1.0, 0.5])
    # from half-precision maps too, finite where p = 0
    half = L.self_information(probs.half())
    assert torch.isfinite(half).all() and half.dtype == torch.float32


def test_advents_losses_are_its_discriminator_on_the_maps():
    cfg = toy_preset(name="advent")
    method = method_of(cfg)
    nets = build_nets(cfg, method, cfg.adapt, Runtime(torch.device("cpu")))
    assert list(nets.networks) == ["d"] and method.losses[-1] == "loss_d"
    losses = LossSums()
    step = Step(nets, cfg, losses)
    gen = torch.Generator().manual_seed(0)
    trg, src = torch.randn(2, 19, 32, 64, generator=gen), torch.randn(2, 19, 32, 64, generator=gen)
    labels = torch.zeros(2, 32, 64, dtype=torch.long)
    d = nets.networks["d"]

    def bce(logits, value):
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, value))

    maps_t = -trg.softmax(1) * torch.log2(trg.softmax(1) + 1e-30) / math.log2(19)
    maps_s = -src.softmax(1) * torch.log2(src.softmax(1) + 1e-30) / math.log2(19)
    # G's term: the target's maps judged as source, weighted by lambda_adv_image
    term = method.target_loss(step, trg, labels)
    assert term.item() == pytest.approx(
        cfg.method.lambda_adv_image * bce(d(maps_t), 0.0).item(), rel=1e-5
    )
    assert losses.totals()["loss_adv"] == pytest.approx(bce(d(maps_t), 0.0).item(), rel=1e-5)
    # the gradient of G's term reaches G's logits, none of D's parameters
    logits = trg.clone().requires_grad_(True)
    method.target_loss(step, logits, labels).backward()
    assert logits.grad.abs().sum() > 0 and all(p.grad is None for p in d.parameters())
    # D's loss: source maps as source, target maps as target, averaged
    got = method.network_loss(step, "d", src, trg).item()
    assert got == pytest.approx(
        (bce(d(maps_s), 0.0) / 2 + bce(d(maps_t), 1.0) / 2).item(), rel=1e-5
    )
