"""Property-based tests (hypothesis): whatever bytes or values reach the kit's parsers and
readers (the flag and config parser, split and list files, the run folder's and the sweep's
records), the answer is a result or a one-line error naming the input, never a traceback."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pixda_core.checkpoint import load_checkpoint
from pixda_core.config import Config
from pixda_core.data import read_list_file, read_split
from pixda_core.errors import PixdaError
from pixda_core.models.pretrained import read_weights
from pixda_core.sweep import read_grid, read_runs
from pixda_core.train.cli import build_parser, config_from_args
from pixda_core.train.rundir import read_metrics

pytestmark = pytest.mark.data  # bounded, but ~15 s in all: kept out of make test-fast

#: bounded and reproducible: a few seconds a test, the same examples in every run
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip

#: text that looks like what the readers expect, broken in the ways files get broken
LINES = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "aachen/aachen_000000_000019_leftImg8bit.png",
                "",
                "  ",
                "../x.png",
                "/abs/path.png",
                "a/b/c.png",
                "{",
                "miou: 1",
                "run:",
                "  name: x",
                "  seed: 2001-02-30",
                "x: !!int abc",
                "[" * 3000,
                "{" * 3000,
                '{"miou": 1}',
                "name,method,shots,seed,job_id",
                "\ufeff",
                "\x00",
            ]
        ),
        st.text(max_size=40),
    ),  # fmt: skip
    max_size=8,
)
CONTENT = st.one_of(
    st.binary(max_size=200),
    LINES.map(lambda lines: "\n".join(lines).encode()),
    LINES.map(lambda lines: "\r\n".join(lines).encode("utf-8-sig")),
)


def one_line_error(exc: Exception, path: Path) -> None:
    message = str(exc)
    assert str(path) in message, message
    assert "\n" not in message.strip(), message


def read_each(read, content: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(content)
        try:
            read(path)
        except PixdaError as exc:
            one_line_error(exc, path)


READERS = [(read_split, "split.txt"), (read_list_file, "list.txt"),
           (read_metrics, "metrics.json")]  # fmt: skip


@FUZZ
@given(CONTENT, st.sampled_from(READERS))
def test_split_list_and_metrics_files(content, reader):
    read_each(reader[0], content, reader[1])


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


@FUZZ
@given(st.one_of(CONTENT, st.binary(max_size=64).map(lambda b: b"PK\x03\x04" + b)))
def test_checkpoint_and_weights_files(content):
    read_each(load_checkpoint, content, "latest.pt")
    read_each(read_weights, content, "weights.pth")


@FUZZ
@given(CONTENT, st.sampled_from(["runs.csv", "sweep.json"]))
def test_the_sweeps_records(content, name):
    read = read_runs if name == "runs.csv" else read_grid
    read_each(lambda path: read(path.parent), content, name)  # they read the sweep's folder


FLAG_VALUES = st.one_of(
    st.sampled_from(["0", "-1", "1e9", "nan", "inf", "64,32", "0,0", "a,b", "1,2,3", "", "x",
                     "method.tau=0.5", "method.tau=[", "run.name=a/b", "data.size=[1]",
                     "nosuch.key=1", "adapt.lr=-1", "run.seed=99999999999", "=", "a=b"]),
    st.text(max_size=12),
)  # fmt: skip
FLAGS = ["--num_shots", "--crop_size", "--batch_size", "--lr", "--max_iters", "--early_stop",
         "--seed", "--set", "--method", "--kd_steps", "--name", "--split_seed"]  # fmt: skip


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


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(FLAGS), FLAG_VALUES), max_size=4))
def test_flags(pairs):
    argv = [x for flag, value in pairs for x in (flag, value)]
    config_or_refusal(argv, [v for _, v in pairs], "error: ")


KEYS = st.sampled_from(["method.tau", "run.name", "data.size", "adapt.lr", "run.seed",
                        "data.split_file", "model.backbone", "nosuch.key", "method"])  # fmt: skip


@FUZZ
@given(st.lists(st.tuples(KEYS, st.one_of(st.text(max_size=12), st.sampled_from(
    ["[", "{", "]", "[1", "'", '"', "!!python/object:x", "*a", "&a [*a]", "- -", ": :", "%"]))),
    min_size=1, max_size=3))  # fmt: skip
def test_set_values(pairs):
    """Every ``--set KEY=VALUE``, whatever VALUE holds."""
    argv = [x for key, value in pairs for x in ("--set", f"{key}={value}")]
    config_or_refusal(argv, [v for _, v in pairs], "argument --set: ")
