"""The flag table: argparse and the flag -> config key mapping are made from it, so each flag
sets the keys it says and an error about a key names the flag."""

from __future__ import annotations

import pytest

from pixda_core.config import Config, preset
from pixda_core.errors import ConfigError
from pixda_core.train.cli import build_parser, config_from_args
from pixda_core.train.flags import FLAGS, KEY_FLAGS, nest_overrides

pytestmark = pytest.mark.unit


def parse(*argv, mode="run", section="adapt") -> Config:
    return config_from_args(build_parser("run.py", mode).parse_args(list(argv)), section)


def test_every_key_of_the_table_is_a_config_key():
    plain = preset("paper").to_dict()
    for key, flag in KEY_FLAGS.items():
        section, name = key.split(".")
        assert name in plain[section], (flag, key)
    assert KEY_FLAGS["adapt.lr"] == KEY_FLAGS["pretrain.lr"] == "--lr"
    assert KEY_FLAGS["data.size"] == "--crop_size" and "data.val_size" not in KEY_FLAGS
    assert "run.progress" not in KEY_FLAGS  # --quiet cannot set a wrong value


def test_the_parser_has_every_flag_of_its_mode():
    for mode in ("run", "pretrain", "adapt", "evaluate"):
        text = build_parser("x", mode).format_help()
        for flag in FLAGS:
            assert (flag.name in text) == (mode in flag.modes), (mode, flag.name)


def test_flags_set_their_keys():
    cfg = parse(
        "--source_dataset", "synthia", "--lr", "0.01", "--crop_size", "64,32", "--quiet",
        "--gpu_ids", "-1", "--compile", "--num_shots", "3", "--set", "method.tau=0.6",
        "--max_iters", "100", "--preset", "toy",
    )  # fmt: skip
    assert cfg.data.source == "synthia" and cfg.data.num_shots == 3
    assert cfg.adapt.lr == 0.01 and cfg.pretrain.lr == preset("toy").pretrain.lr
    assert cfg.data.size == cfg.data.val_size == (64, 32)
    assert cfg.run.progress is False and cfg.run.device == "cpu" and cfg.run.compile is True
    assert cfg.method.tau == 0.6
    # --max_iters alone caps the iterations run at the new horizon
    assert cfg.adapt.max_iters == 100 and cfg.adapt.early_stop == 100
    # flags not given leave the preset's values
    assert cfg.run.cpu_bf16 is False and cfg.run.save_predictions is False
    pre = parse("--lr", "0.02", "--preset", "toy", mode="pretrain", section="pretrain")
    assert pre.pretrain.lr == 0.02 and pre.adapt.lr == preset("toy").adapt.lr


def test_an_error_names_the_flag_of_the_key():
    with pytest.raises(ConfigError, match=r"--lr \(config pretrain.lr\) = -1.0"):
        parse("--lr", "-1", mode="pretrain", section="pretrain")
    with pytest.raises(ConfigError, match=r"--crop_size \(config data.size\) = \[4, 4\]"):
        parse("--crop_size", "4,4")
    with pytest.raises(ConfigError, match=r"^config method.tau = -1"):  # no flag: the key
        parse("--set", "method.tau=-1")


def test_set_pairs_nest_into_sections():
    assert nest_overrides([("adapt.lr", 0.1), ("adapt.power", 1), ("run.seed", 2)]) == {
        "adapt": {"lr": 0.1, "power": 1},
        "run": {"seed": 2},
    }
