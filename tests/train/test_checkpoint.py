"""Checkpoints (pixda_core.checkpoint): damaged and non-finite ones, resume past them."""

from __future__ import annotations

import json
import re

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pixda_core.checkpoint import (
    finite_checkpoint,
    floating_tensors,
    load_checkpoint,
    nonfinite_parts,
    step_checkpoints,
)
from pixda_core.models import deeplabv2
from pixda_core.models.pretrained import read_weights
from pixda_core.train import loop as loop_module
from tests.helpers import CONTENT, FUZZ, assert_user_error, cli, read_each, release_args, train


def _interrupt_at(monkeypatch, call: int) -> None:
    """Make the ``call``-th training step raise KeyboardInterrupt (Ctrl-C)."""
    real, calls = loop_module.main_step, []

    def main_step(*args):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(loop_module, "main_step", main_step)


@pytest.mark.training
def test_evaluating_a_run_that_does_not_exist(toy_root, tmp_path, capsys):
    code, err = cli(capsys, *release_args(toy_root, tmp_path, "missing_run"))
    assert_user_error(code, err, "--name missing_run", f"no run folder {tmp_path / 'missing_run'}")


@pytest.mark.training
def test_a_damaged_latest_checkpoint_resumes_from_the_previous_one(
    toy_root, tmp_path, capsys, weights, monkeypatch
):
    flags = ["--method", "finetune", "--early_stop", "8", "--set", "run.keep_checkpoints=0"]
    code, _ = train(capsys, toy_root, tmp_path, weights, *flags, "--name", "straight")
    assert code == 0
    with monkeypatch.context() as m:
        _interrupt_at(m, 7)
        code, err = train(capsys, toy_root, tmp_path, weights, *flags, "--name", "hurt")
    assert code == 130 and "interrupted" in err
    ckpts = tmp_path / "hurt" / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("step_*.pt")) == [
        "step_2.pt",
        "step_4.pt",
        "step_6.pt",
    ]
    data = (ckpts / "latest.pt").read_bytes()
    (ckpts / "latest.pt").write_bytes(data[: len(data) // 2])  # also step_6.pt (a hard link)
    code, err = train(
        capsys, toy_root, tmp_path, weights, *flags, "--name", "hurt", "--continue_train"
    )
    assert code == 0, err
    assert "latest.pt cannot be read" in err and f"resuming from {ckpts / 'step_4.pt'}" in err
    a = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    b = json.loads((tmp_path / "hurt" / "metrics.json").read_text())
    assert {**a, "run": None} == {**b, "run": None}


@pytest.mark.training
def test_no_readable_checkpoint_at_all(toy_root, tmp_path, capsys, weights, monkeypatch):
    flags = ["--method", "finetune", "--early_stop", "8"]
    with monkeypatch.context() as m:
        _interrupt_at(m, 4)
        code, _ = train(capsys, toy_root, tmp_path, weights, *flags)
    assert code == 130
    latest = tmp_path / "e" / "checkpoints" / "latest.pt"
    latest.write_bytes(b"not a checkpoint")
    code, err = train(capsys, toy_root, tmp_path, weights, *flags, "--continue_train")
    assert_user_error(code, err, f"cannot resume {tmp_path / 'e'}", "can be read", str(latest))


@pytest.mark.training
@pytest.mark.parametrize("damage", ["truncated", "other-model"])
def test_evaluating_a_damaged_checkpoint(toy_root, tmp_path, capsys, weights, damage):
    flags = ["--method", "finetune"]
    assert train(capsys, toy_root, tmp_path, weights, *flags)[0] == 0
    latest = tmp_path / "e" / "checkpoints" / "latest.pt"
    if damage == "truncated":
        data = latest.read_bytes()
        latest.unlink()  # a new file, so that the step checkpoint it links to stays intact
        latest.write_bytes(data[:1000])
        words = [f"{latest} cannot be read as PyTorch weights"]
    else:
        ck = torch.load(latest, weights_only=True)
        ck["model"] = deeplabv2(19, "resnet34", multi_level=False).state_dict()
        latest.unlink()
        torch.save(ck, latest)
        words = [f"{latest} does not fit the model", "another backbone or class count"]
    code, err = cli(capsys, *release_args(toy_root, tmp_path))
    assert_user_error(code, err, *words)


@pytest.mark.training
def test_a_diverging_run_never_saves_a_non_finite_checkpoint(toy_root, tmp_path, capsys, weights):
    # a huge learning rate: BatchNorm's running variances go inf steps before the loss does
    # (the loss stays finite here), so only a check of the state itself catches it
    diverging = [*release_args(toy_root, tmp_path), "--is_train", "--restore_from", weights,
                 "--method", "finetune", "--lr", "1e6", "--early_stop", "10", "--set",
                 "run.log_every=100", "--set", "run.ckpt_every=1", "--set",
                 "run.keep_checkpoints=0"]  # fmt: skip
    code, err = cli(capsys, *diverging)
    ckpts = tmp_path / "e" / "checkpoints"
    found = re.search(r"hold NaN or inf at step (\d+) \(main phase\)", err)
    assert code == 2 and found and "Traceback" not in err, err[-3000:]
    bad = int(found[1])
    saved = step_checkpoints(ckpts)
    assert list(saved) == list(range(1, bad))  # every step before the bad one, none after
    assert f"the newest clean checkpoint (checked) is {saved[bad - 1]}, step {bad - 1}" in err
    for path in [*saved.values(), ckpts / "latest.pt"]:
        ck = load_checkpoint(path)
        assert ck["state"]["step"] < bad
        assert all(torch.isfinite(t).all() for t in floating_tensors(ck["model"]))
        assert all(torch.isfinite(t).all() for t in floating_tensors(ck["optimizers"]))
    assert not (tmp_path / "e" / "metrics.json").exists()  # no metrics from bad weights

    # a checkpoint that holds NaN (written by a kit before the check): never resumed from
    ck = load_checkpoint(saved[bad - 1])
    ck["model"]["bn1.running_var"][0] = float("nan")
    torch.save(ck, saved[bad - 1])
    code, err = cli(capsys, *diverging, "--continue_train")
    assert_user_error(
        code, err, f"its checkpoint {ckpts / 'latest.pt'} holds NaN or inf", str(saved[bad - 2])
    )


@pytest.mark.training
def test_the_finiteness_check_names_each_part_holding_nan_or_inf():
    ok = [torch.ones(3), torch.zeros(2, dtype=torch.bfloat16)]
    parts = {
        "fine": ok,
        "nan": [*ok, torch.tensor([1.0, float("nan")])],
        "inf": [torch.tensor([-float("inf")], dtype=torch.float16)],
        "huge": [torch.full((2,), 3e38)],  # finite, near float32's largest: not flagged
        "empty": [],
    }
    assert nonfinite_parts(parts) == ["nan", "inf"]
    nested = {"a": [ok[0], {"b": (torch.tensor([float("nan")]), 3)}], "n": torch.arange(3)}
    assert len(floating_tensors(nested)) == 2  # integer tensors are left out
    assert not finite_checkpoint({"model": nested}) and finite_checkpoint({"model": {"w": ok[0]}})


@pytest.mark.data
@FUZZ
@given(st.one_of(CONTENT, st.binary(max_size=64).map(lambda b: b"PK\x03\x04" + b)))
def test_checkpoint_and_weights_files(content):
    read_each(load_checkpoint, content, "latest.pt")
    read_each(read_weights, content, "weights.pth")
