"""``run.py``'s flags (pixda_core.train.flags, train/cli.py): the table, the parser, ``--set``, and
fuzzed flag values that end in a config or a one-line refusal."""

from __future__ import annotations

import contextlib
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pixda_core.config import Config, preset
from pixda_core.errors import ConfigError, PixdaError
from pixda_core.train.cli import build_parser, config_from_args
from pixda_core.train.flags import FLAGS, KEY_FLAGS, nest_overrides
from tests.helpers import FUZZ


def parse(*argv, mode="run", section="adapt") -> Config:
    return config_from_args(build_parser("run.py", mode).parse_args(list(argv)), section)


FLAG_VALUES = st.one_of(
    st.sampled_from(["0", "-1", "1e9", "nan", "inf", "64,32", "0,0", "a,b", "1,2,3", "", "x",
                     "method.tau=0.5", "method.tau=[", "run.name=a/b", "data.size=[1]",
                     "nosuch.key=1", "adapt.lr=-1", "run.seed=99999999999", "=", "a=b"]),
    st.text(max_size=12),
)  # fmt: skip


FUZZED_FLAGS = ["--num_shots", "--crop_size", "--batch_size", "--lr", "--max_iters",
                "--early_stop", "--seed", "--set", "--method", "--kd_steps", "--name",
                "--split_seed"]  # fmt: skip


def config_or_refusal(argv: list[str], values: list[str], argparse_says: str) -> None:
    """run.py's flags into a config: a config, an argparse error (exit 2, ``argparse_says``
    in its message), or one line naming the flag, the key or the value."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = build_parser("run.py", "run").parse_args(argv)
        config_from_args(args, "adapt")
    except SystemExit as exc:
        assert exc.code == 2 and argparse_says in err.getvalue(), err.getvalue()
    except PixdaError as exc:
        message = str(exc)
        named = any(v and v in message for v in values)
        assert named or "config " in message or "--" in message, message
        assert "\n" not in message, message


KEYS = st.sampled_from(["method.tau", "run.name", "data.size", "adapt.lr", "run.seed",
                        "data.split_file", "model.backbone", "nosuch.key", "method"])  # fmt: skip


@pytest.mark.unit
def test_every_key_of_the_table_is_a_config_key():
    plain = preset("paper").to_dict()
    for key, flag in KEY_FLAGS.items():
        section, name = key.split(".")
        assert name in plain[section], (flag, key)
    assert KEY_FLAGS["adapt.lr"] == KEY_FLAGS["pretrain.lr"] == "--lr"
    assert KEY_FLAGS["data.size"] == "--crop_size" and "data.val_size" not in KEY_FLAGS
    assert "run.progress" not in KEY_FLAGS  # --quiet cannot set a wrong value


@pytest.mark.unit
def test_the_parser_has_every_flag_of_its_mode():
    for mode in ("run", "pretrain", "adapt", "evaluate"):
        text = build_parser("x", mode).format_help()
        for flag in FLAGS:
            assert (flag.name in text) == (mode in flag.modes), (mode, flag.name)


@pytest.mark.unit
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


@pytest.mark.unit
def test_an_error_names_the_flag_of_the_key():
    with pytest.raises(ConfigError, match=r"--lr \(config pretrain.lr\) = -1.0"):
        parse("--lr", "-1", mode="pretrain", section="pretrain")
    with pytest.raises(ConfigError, match=r"--crop_size \(config data.size\) = \[4, 4\]"):
        parse("--crop_size", "4,4")
    with pytest.raises(ConfigError, match=r"^config method.tau = -1"):  # no flag: the key
        parse("--set", "method.tau=-1")


@pytest.mark.unit
def test_set_pairs_nest_into_sections():
    assert nest_overrides([("adapt.lr", 0.1), ("adapt.power", 1), ("run.seed", 2)]) == {
        "adapt": {"lr": 0.1, "power": 1},
        "run": {"seed": 2},
    }


@pytest.mark.data
@FUZZ
@given(st.lists(st.tuples(st.sampled_from(FUZZED_FLAGS), FLAG_VALUES), max_size=4))
def test_flags(pairs):
    argv = [x for flag, value in pairs for x in (flag, value)]
    config_or_refusal(argv, [v for _, v in pairs], "error: ")


@pytest.mark.data
@FUZZ
@given(st.lists(st.tuples(KEYS, st.one_of(st.text(max_size=12), st.sampled_from(
    ["[", "{", "]", "[1", "'", '"', "!!python/object:x", "*a", "&a [*a]", "- -", ": :", "%"]))),
    min_size=1, max_size=3))  # fmt: skip
def test_set_values(pairs):
    """Every ``--set KEY=VALUE``, whatever VALUE holds."""
    argv = [x for key, value in pairs for x in ("--set", f"{key}={value}")]
    config_or_refusal(argv, [v for _, v in pairs], "argument --set: ")


@pytest.mark.data
@pytest.mark.parametrize("steps", [50, 300])  # the toy preset's adapt horizon: 200
def test_iterations_mean_the_same_in_run_py_and_the_notebooks(toy_root, steps):
    """run.py's --early_stop and the notebooks' (and the sweep's) iterations: the iterations
    run; past the preset's poly horizon they stretch it (the learning rate reaches zero at
    the last step); --max_iters alone caps them; both given, steps past it are refused."""
    from pixda_core.workflow import make_config

    flags = parse("--early_stop", str(steps), "--preset", "toy")
    nb = make_config("toy", str(toy_root), iterations=steps, pretrain_iterations=steps)
    horizon = max(steps, preset("toy").adapt.max_iters)
    assert (flags.adapt.early_stop, flags.adapt.max_iters) == (steps, horizon)
    assert (nb.adapt.early_stop, nb.adapt.max_iters) == (steps, horizon)
    pre = parse("--early_stop", str(steps), "--preset", "toy", mode="pretrain",
                section="pretrain")  # fmt: skip
    assert (pre.pretrain.early_stop, pre.pretrain.max_iters) == (
        nb.pretrain.early_stop, nb.pretrain.max_iters)  # fmt: skip
    capped = parse("--max_iters", "100", "--preset", "toy")
    assert (capped.adapt.early_stop, capped.adapt.max_iters) == (100, 100)
    with pytest.raises(ConfigError, match=r"adapt.early_stop\) = 300: expected between 1 "
                       r"and adapt.max_iters \(250\)"):  # fmt: skip
        parse("--early_stop", "300", "--max_iters", "250", "--preset", "toy")
