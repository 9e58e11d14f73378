"""Run folders (pixda_core.train.rundir): names, locks, full disks, resume rules, damaged files."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from pixda_core import checkpoint as ckpt_module
from pixda_core.checkpoint import load_checkpoint
from pixda_core.data import write_split
from pixda_core.errors import ConfigError
from pixda_core.train import adapt
from pixda_core.train.rundir import RunFolder, read_metrics
from tests.helpers import assert_user_error, hold_lock, per_city, tiny, train


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


@pytest.mark.training
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


@pytest.mark.training
def test_read_only_output_folder(toy_root, tmp_path, capsys):
    """A folder the user cannot write: for a user, one without write permission; for root (CI),
    who writes through permissions, a read-only file system mounted there (tmpfs)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        ro.chmod(0o555)
        try:
            assert_user_error(*train(capsys, toy_root, ro), f"{ro} is not writable", "denied")
        finally:
            ro.chmod(0o755)
        return
    mount = ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)]
    mounted = subprocess.run(mount, capture_output=True, text=True)
    assert mounted.returncode == 0, f"root could not mount a read-only tmpfs: {mounted.stderr}"
    try:
        code, err = train(capsys, toy_root, ro)
    finally:
        subprocess.run(["umount", str(ro)], check=True)
    assert_user_error(code, err, f"{ro} is not writable", "Read-only file system")


@pytest.mark.training
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


@pytest.mark.training
def test_a_run_name_that_exists(toy_root, tmp_path, capsys, weights):
    args = ["--method", "finetune"]
    assert train(capsys, toy_root, tmp_path, weights, *args)[0] == 0
    before = {p: p.read_bytes() for p in (tmp_path / "e").rglob("*") if p.is_file()}
    # without --restore_from the shared source-only model would be trained first: the name is
    # checked before that
    code, err = train(capsys, toy_root, tmp_path, None, *args)
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


@pytest.mark.training
def test_a_run_name_that_is_a_file(toy_root, tmp_path, capsys, weights):
    (tmp_path / "e").write_text("notes\n")
    code, err = train(capsys, toy_root, tmp_path, weights)
    assert_user_error(code, err, "--name e", f"{tmp_path / 'e'} exists and is not a folder")


@pytest.mark.training
def test_a_full_disk_while_checkpointing(toy_root, tmp_path, capsys, weights, monkeypatch):
    args = ["--restore_from", weights, "--method", "finetune", "--early_stop", "6"]
    assert train(capsys, toy_root, tmp_path, None, *args, "--name", "straight")[0] == 0
    with monkeypatch.context() as m:
        _disk_fills_at(m, 2)  # step_2.pt (latest.pt is a hard link to it), then step_4.pt
        code, err = train(capsys, toy_root, tmp_path, None, *args, "--name", "full")
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
    code, err = train(
        capsys, toy_root, tmp_path, None, *args, "--name", "full", "--continue_train"
    )
    assert code == 0, err
    a = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    b = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert {**a, "run": None} == {**b, "run": None}


@pytest.mark.training
def test_a_full_disk_while_logging(toy_root, tmp_path, capsys, weights, monkeypatch):
    real = RunFolder.append

    def append(self, table, row):
        if table == "history":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path / "history.csv"))
        return real(self, table, row)

    monkeypatch.setattr(RunFolder, "append", append)
    code, err = train(capsys, toy_root, tmp_path, weights)
    assert_user_error(
        code,
        err,
        f"{tmp_path / 'e' / 'history.csv'}: No space left on device",
        "what was written before is kept",
    )
    assert (tmp_path / "e" / "config.yaml").exists()


@pytest.mark.training
def test_a_run_in_use_by_another_process(toy_root, tmp_path, capsys, weights):
    held = hold_lock(tmp_path / "e")  # another run.py training --name e right now
    try:
        code, err = train(capsys, toy_root, tmp_path, weights)
    finally:
        held.close()
    assert_user_error(
        code,
        err,
        f"run folder {tmp_path / 'e'} is in use by another process",
        "choose another --name",
    )
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == [".lock"]
    assert train(capsys, toy_root, tmp_path, weights)[0] == 0  # once free


@pytest.mark.training
def test_a_start_that_failed_before_its_first_checkpoint_does_not_block_the_fix(
    toy_root, tmp_path, capsys, weights
):
    one = write_split(tmp_path / "one.txt", per_city(toy_root, 1)[:1])  # 1 image < a batch of 2
    for name, extra in (("new", []), ("resumed", ["--continue_train"])):
        code, err = train(capsys, toy_root, tmp_path, weights, "--split_file", one,
                          "--method", "finetune", name=name)  # fmt: skip
        assert_user_error(code, err, "fewer than one batch")
        assert (tmp_path / name / "config.yaml").exists()  # it had started: its folder is there
        # the corrected command, as a new run or resumed
        code, err = train(capsys, toy_root, tmp_path, weights, "--method", "finetune", *extra,
                          name=name)  # fmt: skip
        assert code == 0, err[-3000:]
        assert "has no checkpoint (its last start ended before the first one)" in err
        metrics = read_metrics(tmp_path / name / "metrics.json")
        assert metrics["method"] == "finetune" and metrics["split"] == "seed 0"


@pytest.mark.data
@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"\x80\x04\x95binary", "is not UTF-8 text (byte 0 is 0x80)"),
        (b"a\x00b", "is binary (it holds NUL bytes)"),
        (b"", "is empty; expected a YAML mapping of sections"),
        (b"just a string\n", "holds a str, not a YAML mapping of sections"),
        (b"data: [unclosed\n", "is not valid YAML at line 2"),
        (b"\xef\xbb\xbfdata:\n  nonsense_key: 1\n", "nonsense_key"),
    ],
)
def test_a_damaged_config_yaml_in_a_run_folder_is_named(
    toy_root, tmp_path, capsys, weights, content, said
):
    folder = tmp_path / "e"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "latest.pt").write_bytes(b"")  # a run that had checkpointed
    (folder / "config.yaml").write_bytes(content)
    code, err = train(capsys, toy_root, tmp_path, weights, "--continue_train")
    fix = "restore that file, or start the run afresh under another --name"
    assert_user_error(code, err, f"cannot resume {folder}", f"config file {folder}", said, fix)


@pytest.mark.training
def test_a_finished_run_with_a_truncated_metrics_json_is_evaluated_again_on_resume(
    toy_root, tmp_path, capsys, weights
):
    code, err = train(capsys, toy_root, tmp_path, weights, "--method", "finetune")
    assert code == 0, err[-3000:]
    path = tmp_path / "e" / "metrics.json"
    before = read_metrics(path)
    path.write_text(path.read_text()[:50])
    code, err = train(capsys, toy_root, tmp_path, weights, "--method", "finetune",
                      "--continue_train")  # fmt: skip
    assert code == 0, err[-3000:]
    assert read_metrics(path) == before


@pytest.mark.training
@pytest.mark.parametrize(
    "content", [b"\x00\x01garbage\n\x00,", b"a,b\n1,2\n", b"step,loss\n2,0.5\n\x00\x00\n"]
)
def test_a_damaged_run_table_is_named_on_resume(toy_root, tmp_path, capsys, weights, content):
    flags = ["--method", "finetune", "--early_stop", "4", "--max_iters", "20"]
    code, err = train(capsys, toy_root, tmp_path, weights, *flags)
    assert code == 0, err[-3000:]
    (tmp_path / "e" / "metrics.json").unlink()  # a run that has more to do
    table = tmp_path / "e" / "history.csv"
    table.write_bytes(content)
    code, err = train(capsys, toy_root, tmp_path, weights, *flags, "--continue_train")
    assert_user_error(code, err, f"run table {table} is damaged",
                      "move the file away and resume with --continue_train")  # fmt: skip
    table.rename(tmp_path / "history.bad")  # as the message says
    code, err = train(capsys, toy_root, tmp_path, weights, *flags, "--continue_train")
    assert code == 0, err[-3000:]
    assert read_metrics(tmp_path / "e" / "metrics.json")["step"] == 4


@pytest.mark.training
def test_a_finished_run_resumed_with_a_larger_early_stop_trains_on_as_one_longer_run(
    toy_root, tmp_path, capsys, weights
):
    ft = ("--method", "finetune")
    code, err = train(capsys, toy_root, tmp_path, weights, *ft)  # early_stop 2
    assert code == 0, err[-3000:]
    two = read_metrics(tmp_path / "e" / "metrics.json")
    # longer, and with other logistics (intervals, progress); what it computes is unchanged
    longer = ("--early_stop", "4", "--set", "run.log_every=1", "--set", "run.ckpt_every=1")
    code, err = train(capsys, toy_root, tmp_path, weights, *ft, "--continue_train", *longer)
    assert code == 0, err[-3000:]
    assert "with changed settings: adapt.early_stop: 2 -> 4; run.log_every: 10 -> 1" in err
    code, err = train(capsys, toy_root, tmp_path, weights, *ft, "--early_stop", "4", name="four")
    assert code == 0, err[-3000:]
    extended, four = (read_metrics(tmp_path / n / "metrics.json") for n in ("e", "four"))
    assert extended["step"] == four["step"] == 4
    for key in ("miou", "per_class_iou", "pixel_accuracy"):
        assert extended[key] == four[key], key
    ck = [load_checkpoint(tmp_path / n / "checkpoints" / "latest.pt") for n in ("e", "four")]
    assert all(torch.equal(ck[0]["model"][k], v) for k, v in ck[1]["model"].items())
    assert read_metrics(tmp_path / "e" / "metrics_step_2.json") == two  # kept, not lost
    assert "early_stop: 4" in (tmp_path / "e" / "config.yaml").read_text()

    # what changes the computation stays refused, saying what to do instead
    for flags, said in [
        (
            ("--early_stop", "3"),
            "adapt.early_stop: 4 -> 3 (a resume may raise it, never lower it)",
        ),
        (("--early_stop", "4", "--lr", "0.01"), "adapt.lr: 0.001 -> 0.01"),
    ]:
        code, err = train(capsys, toy_root, tmp_path, weights, *ft, "--continue_train", *flags)
        assert_user_error(code, err, said, "start a new run under another --name")


@pytest.mark.training
def test_a_run_whose_distillation_began_cannot_be_extended(toy_root, tmp_path, capsys, weights):
    code, err = train(capsys, toy_root, tmp_path, weights, "--method", "pixda")
    assert code == 0, err[-3000:]
    code, err = train(capsys, toy_root, tmp_path, weights, "--method", "pixda",
                      "--continue_train", "--early_stop", "3")  # fmt: skip
    said = f"cannot extend {tmp_path / 'e'} to adapt.early_stop 3: its main phase ended at step 2"
    assert_user_error(code, err, said, "its distillation has begun")
    assert read_metrics(tmp_path / "e" / "metrics.json")["step"] == 3  # left as it was
    assert "early_stop: 2" in (tmp_path / "e" / "config.yaml").read_text()


@pytest.mark.data
def test_a_name_longer_than_the_file_system_allows_is_refused_before_writing(
    toy_root, tmp_path, capsys, weights
):
    out = tmp_path / "out"
    code, err = train(capsys, toy_root, out, weights, "--method", "finetune", name="n" * 256)
    assert_user_error(code, err, "--name (config run.name)", "at most 255 bytes", "(256 bytes)")
    assert not out.exists()  # nothing written, not even the output folder
    code, err = train(capsys, toy_root, out, weights, "--method", "finetune", name="é" * 128)
    assert_user_error(code, err, "--name", "(256 bytes)")  # bytes, not characters


@pytest.mark.training
def test_an_existing_run_is_never_overwritten(toy_root, tmp_path, source_only):
    cfg = tiny(
        toy_root,
        tmp_path,
        method={"name": "finetune"},
        run={"name": "keep", "restore_from": str(source_only)},
    )
    adapt(cfg)
    before = (tmp_path / "keep" / "metrics.json").read_bytes()
    with pytest.raises(ConfigError, match="already exists.*--continue_train"):
        adapt(cfg)
    with pytest.raises(ConfigError, match="adapt.lr"):
        adapt(cfg.override(adapt={"lr": 0.5}), resume=True)
    assert adapt(cfg, resume=True) == json.loads(before)  # complete: nothing to do
    assert (tmp_path / "keep" / "metrics.json").read_bytes() == before
