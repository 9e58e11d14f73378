"""The kit's own methods (pixda_core.methods): what each trains on and with, and what the
config, the tables and the sweep read from them."""

from __future__ import annotations

import pytest
import torch

from pixda_core.config import METHODS
from pixda_core.methods import (
    ADAPTATION,
    BUILTIN,
    REFERENCES,
    TITLES,
    method_class,
    method_of,
    run_name,
)
from pixda_core.train.runtime import Runtime
from pixda_core.train.step import build_nets
from tests.helpers import toy_preset

pytestmark = pytest.mark.unit


def test_the_methods_are_what_the_config_and_the_titles_read():
    names = [c.name for c in BUILTIN]
    assert names == [
        "source_only",
        "finetune",
        "joint",
        "adaptsegnet",
        "advent",
        "pixda",
        "oracle",
    ]
    assert (
        METHODS == ADAPTATION == ("pixda", "finetune", "joint", "adaptsegnet", "advent", "oracle")
    )
    assert [TITLES[n] for n in names] == [
        "source only", "FT", "joint", "AdaptSegNet-style", "AdvEnt", "PixDA", "oracle"
    ]  # fmt: skip
    # the references: trained in full (the source-only model's schedule), on one domain
    assert [c.name for c in BUILTIN if c.schedule == "pretrain"] == list(REFERENCES)
    oracle = method_class("oracle")
    assert oracle.all_target and not oracle.source and oracle.target
    assert run_name("oracle", 5, 2) == "oracle_seed2" and run_name("advent", 1, 0, 3) == (
        "advent_1shot_seed0_split3"
    )


@pytest.mark.parametrize(
    "name, switches, nets, acts, last",
    [
        ("pixda", {}, ["d1", "d2"], True, True),
        ("pixda", {"selection": False}, ["d1"], False, True),
        ("pixda", {"distillation": False}, ["d1", "d2"], True, False),
        ("pixda", {"kd_steps": 0}, ["d1", "d2"], True, False),
        ("adaptsegnet", {"selection": False}, ["d2"], False, False),
        ("advent", {}, ["d"], False, False),
        ("joint", {}, [], False, False),
        ("finetune", {}, [], False, False),
        ("oracle", {}, [], False, False),
    ],
)
def test_switches_decide_the_networks_selection_and_last_phase(name, switches, nets, acts, last):
    cfg = toy_preset(name=name, **switches)
    m = method_of(cfg)
    built = build_nets(cfg, m, cfg.adapt, Runtime(torch.device("cpu")))
    assert list(built.networks) == nets
    assert list(built.optimizers) == ["g", *nets] == list(built.schedulers)
    assert m.acts_at_pass_end == acts
    assert m.last_phase_steps() == (cfg.method.kd_steps if last else 0)
    assert m.losses == method_class(name).losses  # ablations keep the method's columns
    # each network's columns: the loss the kit records for it
    assert all(f"loss_{n}" in m.losses for n in nets)


def test_source_only_trains_on_the_source_alone():
    m = method_of(toy_preset(name="pixda"), source_only=True)
    assert (m.name, m.source, m.target, m.networks(19), m.acts_at_pass_end) == (
        "source_only", True, False, {}, False
    )  # fmt: skip
    assert m.losses == ("loss_seg_src",) and m.last_phase_steps() == 0
