"""Where results go: an output folder that cannot be written (found before anything is
trained), a run name already taken (never overwritten), and a disk that fills up while a
checkpoint is written (the previous checkpoints stay intact and the run resumes)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pixda_core import checkpoint as ckpt_module
from pixda_core.checkpoint import load_checkpoint
from pixda_core.train.rundir import RunFolder

from .helpers import assert_user_error, cli, release_args

pytestmark = pytest.mark.training

ROOT = Path(__file__).resolve().parents[1]


def train(capsys, toy, out, *extra):
    return cli(capsys, *release_args(toy, out), "--is_train", *extra)


def test_output_folder_under_a_file(toy_root, tmp_path, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("a file where the results folder should be\n")
    code, err = train(capsys, toy_root, blocker / "runs")  # no --restore_from: would train one
    assert_user_error(
        code,
        err,
        f"--checkpoints_dir (config run.out_dir) {blocker / 'runs'} is not writable",
        "choose another folder",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory permissions")
def test_read_only_output_folder(toy_root, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, err = train(capsys, toy_root, ro)
        assert_user_error(code, err, f"{ro} is not writable", "Permission denied")
    finally:
        ro.chmod(0o755)


def test_output_folder_without_write_permission(toy_root, tmp_path, capsys, monkeypatch):
    """What a read-only folder does to a user who is not root (tests may run as root, who
    writes through permissions): the write probe fails with EACCES."""
    real = Path.write_text

    def write_text(self, *args, **kwargs):
        if self.name.startswith(".pixda_write_test"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    code, err = train(capsys, toy_root, tmp_path / "runs")
    assert_user_error(code, err, f"{tmp_path / 'runs'} is not writable (Permission denied)")
    assert not list((tmp_path / "runs").iterdir())


def test_a_run_name_that_exists(toy_root, tmp_path, capsys, weights):
    args = ["--method", "finetune"]
    assert train(capsys, toy_root, tmp_path, "--restore_from", weights, *args)[0] == 0
    before = {p: p.read_bytes() for p in (tmp_path / "e").rglob("*") if p.is_file()}
    # without --restore_from the shared source-only model would be trained first: the name is
    # checked before that
    code, err = train(capsys, toy_root, tmp_path, *args)
    assert_user_error(
        code,
        err,
        f"run folder {tmp_path / 'e'} already exists",
        "--continue_train",
        "another --name",
    )
    assert not list(tmp_path.glob("source_only_*"))
    after = {p: p.read_bytes() for p in (tmp_path / "e").rglob("*") if p.is_file()}
    assert after == before


def test_a_run_name_that_is_a_file(toy_root, tmp_path, capsys, weights):
    (tmp_path / "e").write_text("notes\n")
    code, err = train(capsys, toy_root, tmp_path, "--restore_from", weights)
    assert_user_error(code, err, "--name e", f"{tmp_path / 'e'} exists and is not a folder")


def _disk_fills_at(monkeypatch, call: int) -> None:
    """The ``call``-th ``torch.save`` of a checkpoint writes half its bytes, then fails the way
    a full disk does."""
    real, calls = torch.save, []

    def save(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) != call:
            return real(obj, path, *args, **kwargs)
        real(obj, path, *args, **kwargs)
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(ckpt_module.torch, "save", save)


def test_a_full_disk_while_checkpointing(toy_root, tmp_path, capsys, weights, monkeypatch):
    args = ["--restore_from", weights, "--method", "finetune", "--early_stop", "6"]
    assert train(capsys, toy_root, tmp_path, *args, "--name", "straight")[0] == 0
    with monkeypatch.context() as m:
        _disk_fills_at(m, 2)  # step_2.pt (latest.pt is a hard link to it), then step_4.pt
        code, err = train(capsys, toy_root, tmp_path, *args, "--name", "full")
    ckpts = tmp_path / "full" / "checkpoints"
    assert_user_error(
        code,
        err,
        f"could not write the checkpoint {ckpts / 'step_4.pt'}",
        "No space left on device",
        "are intact",
    )
    assert load_checkpoint(ckpts / "latest.pt")["state"]["step"] == 2
    assert sorted(p.name for p in ckpts.iterdir()) == ["latest.pt", "step_2.pt"]  # no debris
    code, err = train(capsys, toy_root, tmp_path, *args, "--name", "full", "--continue_train")
    assert code == 0, err
    a = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    b = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert {**a, "run": None} == {**b, "run": None}


def test_a_full_disk_while_logging(toy_root, tmp_path, capsys, weights, monkeypatch):
    real = RunFolder.append

    def append(self, table, row):
        if table == "history":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path / "history.csv"))
        return real(self, table, row)

    monkeypatch.setattr(RunFolder, "append", append)
    code, err = train(capsys, toy_root, tmp_path, "--restore_from", weights)
    assert_user_error(
        code,
        err,
        f"{tmp_path / 'e' / 'history.csv'}: No space left on device",
        "what was written before is kept",
    )
    assert (tmp_path / "e" / "config.yaml").exists()


def _hold_lock(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    fh = open(folder / ".lock", "a")
    fcntl.flock(fh, fcntl.LOCK_EX)
    return fh


def test_a_run_in_use_by_another_process(toy_root, tmp_path, capsys, weights):
    held = _hold_lock(tmp_path / "e")  # another run.py training --name e right now
    try:
        code, err = train(capsys, toy_root, tmp_path, "--restore_from", weights)
    finally:
        held.close()
    assert_user_error(
        code,
        err,
        f"run folder {tmp_path / 'e'} is in use by another process",
        "choose another --name",
    )
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == [".lock"]
    assert train(capsys, toy_root, tmp_path, "--restore_from", weights)[0] == 0  # once free


@pytest.mark.slow
def test_runs_started_together_train_the_shared_source_only_model_once(toy_root, tmp_path):
    """A batch of jobs without --restore_from: while one trains the shared source-only model,
    another waits for it instead of training it a second time into the same folder."""
    from pixda_core.train import source_only_run
    from pixda_core.train.cli import build_parser, config_from_args

    args = release_args(toy_root, tmp_path, "second") + ["--is_train"]
    args += ["--set", "pretrain.batch_size=2", "--set", "pretrain.early_stop=2"]  # seconds
    cfg = config_from_args(build_parser("run.py", "run").parse_args(args), "adapt")
    shared = tmp_path / source_only_run(cfg).run.name
    held = _hold_lock(shared)  # the first job, training it
    cmd = [sys.executable, str(ROOT / "run.py"), *args]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        for line in proc.stderr:
            if "waiting for it" in line:
                break
        assert f"another process is training {shared}; waiting for it" in line
        time.sleep(1.0)
        assert proc.poll() is None and not (shared / "metrics.json").exists()
    finally:
        held.close()
    rest = proc.stderr.read()
    assert proc.wait(timeout=600) == 0, rest[-3000:]
    assert "training a source-only model first" in rest  # the first job left it unfinished
    assert (shared / "metrics.json").exists() and (tmp_path / "second" / "metrics.json").exists()
