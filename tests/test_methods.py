"""The methods table and the pure pieces of the method: what each method builds and logs,
PixDA's switches, the selection score and rule, the distillation teacher and length."""

from __future__ import annotations

import math

import pytest
import torch

from pixda_core import losses as L
from pixda_core.config import METHODS, preset
from pixda_core.data.common import MEAN_BGR, release_normalize
from pixda_core.data.fda import fda_source_to_target
from pixda_core.methods import ADAPTATION, TABLE, TITLES, method_of, schedule
from pixda_core.train.distillation import kd_length, make_teacher
from pixda_core.train.runtime import Runtime
from pixda_core.train.selection import keep, next_tau, score_images
from pixda_core.train.step import build_nets, build_segmenter

pytestmark = pytest.mark.unit


def toy(**method):
    return preset("toy").override(data={"size": [64, 32]}, method=method, run={"seed": 3})


def test_the_table_is_what_the_config_and_the_titles_read():
    assert METHODS == ADAPTATION == ("pixda", "finetune", "joint", "adaptsegnet", "oracle")
    assert list(TITLES) == list(TABLE) and TITLES["finetune"] == "FT"
    assert list(TABLE) == ["source_only", "finetune", "joint", "adaptsegnet", "pixda", "oracle"]
    # the references: trained in full (the source-only model's schedule), on one domain
    assert [m for m in TABLE if schedule(TABLE[m]) == "pretrain"] == ["source_only", "oracle"]
    assert TABLE["oracle"].all_target and not TABLE["oracle"].source


@pytest.mark.parametrize(
    "name, switches, nets, selects, distils",
    [
        ("pixda", {}, {"d1", "d2"}, True, True),
        ("pixda", {"selection": False}, {"d1"}, False, True),
        ("pixda", {"distillation": False}, {"d1", "d2"}, True, False),
        ("pixda", {"kd_steps": 0}, {"d1", "d2"}, True, False),
        ("adaptsegnet", {"selection": False}, {"d2"}, False, False),
        ("joint", {}, set(), False, False),
        ("finetune", {}, set(), False, False),
        ("oracle", {}, set(), False, False),
    ],
)
def test_switches_decide_the_nets_selection_and_distillation(
    name, switches, nets, selects, distils
):
    cfg = toy(name=name, **switches)
    m = method_of(cfg)
    built = build_nets(cfg, m, cfg.adapt, Runtime(torch.device("cpu")))
    assert {k for k in ("d1", "d2") if getattr(built, k) is not None} == nets
    assert set(built.optimizers) == {"g"} | nets == set(built.schedulers)
    assert (m.selects, m.distils) == (selects, distils)
    assert kd_length(cfg, m) == (cfg.method.kd_steps if distils else 0)
    assert m.losses == TABLE[name].losses  # ablations keep the method's columns


def test_source_only_trains_on_the_source_alone():
    m = method_of(toy(name="pixda"), source_only=True)
    assert (m.name, m.source, m.target, m.d1, m.d2, m.selects, m.distils) == (
        "source_only",
        True,
        False,
        False,
        False,
        False,
        False,
    )
    assert m.losses == ("loss_seg_src",)


def test_the_selection_rule_keeps_scores_above_tau_and_never_nan():
    scores = torch.tensor([0.1, 0.4, 0.41, float("nan"), 2.0])
    assert keep(scores, 0.4).tolist() == [False, False, True, False, True]
    assert next_tau(0.4, 0.4) == pytest.approx(0.8)


def test_the_per_image_domain_bce_is_the_mean_bce_of_each_image():
    d = torch.randn(3, 1, 5, 7, generator=torch.Generator().manual_seed(0))
    per_image = L.domain_bce_per_image(d, L.SOURCE)
    assert per_image.shape == (3,)
    for i in range(3):
        assert per_image[i] == pytest.approx(L.domain_bce(d[i : i + 1], L.SOURCE).item(), rel=1e-6)
    # a discriminator sure of "target" everywhere scores high against "source"
    assert L.domain_bce_per_image(torch.full((1, 1, 2, 2), 8.0), L.SOURCE) > 7.9
    with pytest.raises(ValueError, match="SOURCE"):
        L.domain_bce_per_image(d, 3)


def test_selection_scores_are_d2_on_g_per_image_and_fda_changes_them():
    cfg = toy()
    nets = build_nets(cfg, method_of(cfg), cfg.adapt, Runtime(torch.device("cpu")))
    g, d2 = nets.g.eval(), nets.d2
    gen = torch.Generator().manual_seed(1)
    src, trg = torch.rand(2, 3, 32, 64, generator=gen) * 255, torch.rand(2, 3, 32, 64) * 255
    rt = Runtime(torch.device("cpu"))
    plain = score_images(g, d2, src, (32, 64), rt)
    one = score_images(g, d2, src[1:], (32, 64), rt)  # each image scored on its own
    assert plain.shape == (2,) and plain[1] == pytest.approx(one[0].item(), rel=1e-5)
    styled = score_images(g, d2, src, (32, 64), rt, paired=trg, fda_beta=0.05)
    by_hand = score_images(g, d2, fda_source_to_target(src, trg, 0.05), (32, 64), rt)
    assert torch.equal(styled, by_hand) and not torch.equal(styled, plain)
    assert all(math.isfinite(v) and v > 0 for v in plain.tolist())


def test_the_teacher_is_a_frozen_eval_copy_or_the_saved_one():
    cfg = toy()
    g = build_segmenter(cfg)
    teacher = make_teacher(g)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert teacher is not g and all(
        torch.equal(a, b)
        for a, b in zip(g.state_dict().values(), teacher.state_dict().values(), strict=True)
    )
    saved = {k: v + 1 if v.is_floating_point() else v for k, v in g.state_dict().items()}
    resumed = make_teacher(g, saved)
    assert torch.equal(resumed.state_dict()["conv1.weight"], saved["conv1.weight"])
    assert g.training  # G itself is untouched


def test_one_normalisation_for_single_images_and_batches():
    x = torch.rand(2, 3, 4, 5) * 255
    out = release_normalize(x)
    mean = torch.tensor(MEAN_BGR).view(1, 3, 1, 1)
    assert torch.allclose(out, x.flip(1) - mean)
    assert torch.equal(release_normalize(x[0]), out[0])


def test_selection_against_the_truth_on_a_hand_made_round():
    from pixda_core.train.selection import TRUTH_COLUMNS, against_truth

    # four candidates: the two nearest the target look score highest and are kept
    got = against_truth([0.9, 0.8, 0.2, 0.1], [True, True, False, False], [0.1, 0.2, 0.8, 0.9])
    assert list(got) == list(TRUTH_COLUMNS)
    assert got["distance_rho"] == pytest.approx(-1.0)
    assert got["kept_distance"] == pytest.approx(0.15)
    assert got["dropped_distance"] == pytest.approx(0.85)
    # ranks, not values: a tie and a reversed pair; an unreadable image (NaN score) and one
    # without a distance are left out of everything
    got = against_truth(
        [0.5, 0.5, 0.7, 0.1, math.nan, 0.3],
        [True, True, True, False, False, False],
        [1.0, 0.0, 0.5, 1.0, 0.0, math.nan],
    )
    # scores 0.5 0.5 0.7 0.1 -> ranks 2.5 2.5 4 1; distances 1 0 0.5 1 -> ranks 3.5 1 2 3.5
    a, b = [2.5, 2.5, 4, 1], [3.5, 1, 2, 3.5]
    ma, mb = sum(a) / 4, sum(b) / 4
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    rho = cov / math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))
    assert got["distance_rho"] == pytest.approx(rho)
    assert got["kept_distance"] == pytest.approx(0.5)
    assert got["dropped_distance"] == pytest.approx(1.0)
    # nothing to correlate: every distance equal, or a side with no image
    flat = against_truth([0.1, 0.5, 0.9], [False, True, True], [1.0, 1.0, 1.0])
    assert math.isnan(flat["distance_rho"]) and flat["kept_distance"] == 1.0
    none_kept = against_truth([0.1, 0.5, 0.9], [False] * 3, [0.2, 0.5, 1.0])
    assert math.isnan(none_kept["kept_distance"]) and none_kept["dropped_distance"] > 0.5
