"""The methods table (pixda_core.methods)."""

from __future__ import annotations

import pytest
import torch

from pixda_core.config import METHODS
from pixda_core.data.common import MEAN_BGR, release_normalize
from pixda_core.methods import ADAPTATION, TABLE, TITLES, method_of, schedule
from pixda_core.train.distillation import kd_length
from pixda_core.train.runtime import Runtime
from pixda_core.train.step import build_nets
from tests.helpers import toy_preset

pytestmark = pytest.mark.unit


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
    cfg = toy_preset(name=name, **switches)
    m = method_of(cfg)
    built = build_nets(cfg, m, cfg.adapt, Runtime(torch.device("cpu")))
    assert {k for k in ("d1", "d2") if getattr(built, k) is not None} == nets
    assert set(built.optimizers) == {"g"} | nets == set(built.schedulers)
    assert (m.selects, m.distils) == (selects, distils)
    assert kd_length(cfg, m) == (cfg.method.kd_steps if distils else 0)
    assert m.losses == TABLE[name].losses  # ablations keep the method's columns


def test_source_only_trains_on_the_source_alone():
    m = method_of(toy_preset(name="pixda"), source_only=True)
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


def test_one_normalisation_for_single_images_and_batches():
    x = torch.rand(2, 3, 4, 5) * 255
    out = release_normalize(x)
    mean = torch.tensor(MEAN_BGR).view(1, 3, 1, 1)
    assert torch.allclose(out, x.flip(1) - mean)
    assert torch.equal(release_normalize(x[0]), out[0])
