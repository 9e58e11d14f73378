"""Bad weights and checkpoints: missing, truncated, for another model, or a pickle that would
run code. Exit code 2, no traceback, the file named; a damaged latest checkpoint of a run is
passed over for the newest readable one."""

from __future__ import annotations

import json
import os

import pytest
import torch

from pixda_core.models import deeplabv2
from pixda_core.train import loop as loop_module

from .helpers import assert_user_error, cli, release_args

pytestmark = pytest.mark.training


def train(capsys, toy, out, weights, *extra):
    return cli(capsys, *release_args(toy, out), "--is_train", "--restore_from", weights, *extra)


def test_missing_weights_file(toy_root, tmp_path, capsys):
    missing = tmp_path / "so.pth"
    code, err = train(capsys, toy_root, tmp_path / "out", missing)
    assert_user_error(code, err, f"--restore_from {missing} does not exist")
    assert not (tmp_path / "out" / "e").exists()


def test_truncated_weights_file(toy_root, tmp_path, capsys, weights):
    cut = tmp_path / "cut.pth"
    data = weights.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    code, err = train(capsys, toy_root, tmp_path / "out", cut)
    assert_user_error(code, err, f"{cut} cannot be read as PyTorch weights", "complete .pth")
    assert not (tmp_path / "out" / "e").exists()


def test_weights_for_another_class_count(toy_root, tmp_path, capsys):
    other = tmp_path / "sixteen.pth"
    torch.save({"model": deeplabv2(16, "resnet18", multi_level=False).state_dict()}, other)
    code, err = train(capsys, toy_root, tmp_path / "out", other)
    assert_user_error(
        code,
        err,
        f"{other} (pixda checkpoint) does not fit the model's heads",
        "another class count or backbone (model: 19 classes)",
    )


def test_weights_for_another_backbone(toy_root, tmp_path, capsys):
    other = tmp_path / "r34.pth"
    torch.save({"model": deeplabv2(19, "resnet34", multi_level=False).state_dict()}, other)
    code, err = train(capsys, toy_root, tmp_path / "out", other)
    assert_user_error(
        code,
        err,
        f"{other} (pixda checkpoint) holds 96 tensors the model does not have",
        "layer1.2.",
        "another backbone (model: resnet18)",
    )
    r101 = tmp_path / "r101.pth"
    torch.save({"model": deeplabv2(19, "resnet101", multi_level=False).state_dict()}, r101)
    code, err = train(capsys, toy_root, tmp_path / "out", r101)
    assert_user_error(
        code,
        err,
        f"{r101} (pixda checkpoint) leaves",
        "backbone tensors uninitialised",
        "another backbone",
    )


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['PIXDA_TEST_MARKER']}",))


def test_pickle_that_would_run_code(toy_root, tmp_path, capsys, monkeypatch):
    marker = tmp_path / "code_ran"
    monkeypatch.setenv("PIXDA_TEST_MARKER", str(marker))
    evil = tmp_path / "evil.pth"
    torch.save({"model": _RunsCode()}, evil)
    code, err = train(capsys, toy_root, tmp_path / "out", evil)
    assert_user_error(code, err, f"{evil} was refused", "could run code", "posix.system")
    assert not marker.exists()


def test_evaluating_a_run_that_does_not_exist(toy_root, tmp_path, capsys):
    code, err = cli(capsys, *release_args(toy_root, tmp_path, "missing_run"))
    assert_user_error(code, err, "--name missing_run", f"no run folder {tmp_path / 'missing_run'}")


def _interrupt_at(monkeypatch, call: int) -> None:
    """Make the ``call``-th training step raise KeyboardInterrupt (Ctrl-C)."""
    real, calls = loop_module.main_step, []

    def main_step(*args):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(loop_module, "main_step", main_step)


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
