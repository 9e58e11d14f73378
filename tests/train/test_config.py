"""The configuration (pixda_core.config): presets, round trips, strict merging, refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pixda_core.config import Config, preset, protocol
from pixda_core.errors import ConfigError
from pixda_core.sweep_cli import main as sweep_main
from tests.helpers import CONTENT, FUZZ, assert_user_error, read_each, train


@pytest.mark.unit
def test_paper_preset_is_method_md_written_as_used():
    cfg = preset("paper")
    o = cfg.adapt
    assert (o.batch_size, o.lr, o.lr_d, o.max_iters, o.early_stop) == (4, 1e-3, 4e-4, 62500, 30000)
    assert (o.momentum, o.weight_decay, o.betas, o.power) == (0.9, 5e-4, (0.9, 0.99), 0.9)
    me = cfg.method
    assert (me.name, me.seg_loss, me.lambda_adv, me.tau, me.tau_step) == (
        "pixda",
        "focal",
        0.1,
        0.4,
        0.4,
    )
    assert (me.kd_steps, me.kd_alpha, me.lambda_kd, me.fda_beta) == (201, 0.5, 0.5, 0.01)
    assert me.pixel_weights and me.selection and me.distillation and not me.release_gradient
    assert cfg.data.size == (1024, 512) and cfg.model.backbone == "resnet101"
    assert cfg.run.seed == 1993


@pytest.mark.unit
def test_round_trip_through_dict_and_yaml(tmp_path):
    cfg = preset("toy").override(method={"name": "joint"}, data={"num_shots": 3})
    assert Config.from_dict(cfg.to_dict()) == cfg
    assert Config.from_yaml(cfg.to_yaml(tmp_path / "c.yaml")) == cfg
    assert isinstance(Config.from_dict({"data": {"size": [64, 32]}}).data.size, tuple)


@pytest.mark.unit
def test_partial_dict_starts_from_the_named_preset():
    cfg = Config.from_dict({"preset": "toy", "adapt": {"early_stop": 7}})
    assert cfg.model.backbone == "resnet18" and cfg.adapt.early_stop == 7
    assert cfg.adapt.lr == preset("toy").adapt.lr


@pytest.mark.unit
@pytest.mark.parametrize(
    "data, words",
    [
        ({"optim": {}}, ["unknown config key optim"]),
        ({"adapt": {"learning_rate": 1}}, ["adapt.learning_rate", "lr"]),
        ({"adapt": {"lr": -1}}, ["adapt.lr", "-1", "> 0"]),
        ({"adapt": {"lr": "0.1"}}, ["adapt.lr", "'0.1'", "number"]),
        ({"adapt": {"batch_size": 0}}, ["adapt.batch_size", ">= 1"]),
        ({"adapt": {"batch_size": 2.5}}, ["adapt.batch_size", "integer"]),
        ({"adapt": {"early_stop": 10, "max_iters": 5}}, ["adapt.early_stop", "max_iters (5)"]),
        ({"data": {"num_shots": 0}}, ["data.num_shots", "0"]),
        ({"data": {"size": "1024,512"}}, ["data.size", "list of 2 integers"]),
        ({"data": {"size": [1024]}}, ["data.size", "list of 2 integers"]),
        ({"run": {"seed": True}}, ["run.seed", "integer"]),
        ({"run": {"name": "a/b"}}, ["run.name", "a/b"]),
        ({"preset": "huge"}, ["unknown preset 'huge'", "paper, toy"]),
        ({"method": {"name": "dann"}}, ["method.name", "dann", "pixda"]),
        ({"model": {"backbone": "vgg16"}}, ["model.backbone", "vgg16", "resnet101"]),
        ({"method": {"selection": "yes"}}, ["method.selection", "true/false"]),
        ({"data": 3}, ["data", "mapping"]),
    ],
)
def test_bad_values_name_the_key(data, words):
    with pytest.raises(ConfigError) as err:
        Config.from_dict(data)
    for w in words:
        assert w in str(err.value)


@pytest.mark.unit
def test_protocol_follows_the_source():
    assert protocol(preset("toy")) == "19"
    assert protocol(preset("toy").override(data={"source": "synthia"})) == "16"


@pytest.mark.unit
def test_config_is_frozen():
    cfg = preset("toy")
    with pytest.raises(AttributeError):
        cfg.adapt.lr = 1.0  # type: ignore[misc]


@pytest.mark.data
@FUZZ
@given(st.one_of(CONTENT, st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["data", "model", "method", "run",
                                                             "adapt", "size", "seed", "x"]),
                                            inner, max_size=3)),
    max_leaves=10,
).map(lambda v: __import__("yaml").safe_dump(v).encode())))  # fmt: skip
def test_config_files(content):
    read_each(Config.from_yaml, content, "config.yaml")


@pytest.mark.data
@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_seeds_outside_numpys_range_are_refused(toy_root, tmp_path, capsys, weights, seed):
    code, err = train(capsys, toy_root, tmp_path, weights, "--seed", seed)
    assert_user_error(code, err, f"--seed (config run.seed) = {seed}", "from 0 to 4294967295")
    assert not (tmp_path / "e").exists()
    with pytest.raises(SystemExit) as stop:
        sweep_main(["--seeds", "0", seed, "--out", str(tmp_path / "s")])
    assert stop.value.code == 2 and f"--seeds {seed}" in capsys.readouterr().err
