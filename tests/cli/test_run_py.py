"""``run.py`` as the user calls it: bad flags and config files exit 2 with one line, the real
entry point, and the release's command lines training then testing."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from tests.helpers import ROOT, assert_user_error, cli, release_args


def run_py(*args, cwd=ROOT, check=True):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def run_py_here(capsys, *args, check=True) -> SimpleNamespace:
    """``run_py``'s result from run.py's entry point called in this process (what ``python
    run.py`` calls), where the process boundary is not what is tested."""
    from pixda_core.train.cli import run_main

    capsys.readouterr()
    try:
        code = run_main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    if check:
        assert code == 0, out.err[-3000:]
    return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


def release_flags(toy_root, out, name):
    return [
        "--source_dataset", "gta5", "--source_dataroot", toy_root / "gta5",
        "--target_dataset", "cityscapes", "--target_dataroot", toy_root / "cityscapes",
        "--name", name, "--preset", "toy", "--checkpoints_dir", out, "--crop_size", "64,32",
        "--batch_size", "2", "--max_iters", "20", "--early_stop", "4", "--kd_steps", "2",
        "--set", "pretrain.batch_size=2", "--set", "pretrain.early_stop=4",
        "--set", "run.ckpt_every=2", "--set", "data.val_batch_size=6", "--quiet",
    ]  # fmt: skip


@pytest.mark.data
@pytest.mark.parametrize(
    "args, words",
    [
        (["--set", "method.nope=1"], ["unknown config key method.nope", "expected one of name"]),
        (["--set", "nosection.key=1"], ["unknown config key nosection"]),
        (["--set", "adapt.lr=fast"], ["adapt.lr", "'fast'", "expected a number"]),
        (["--set", "run.seed=1.5"], ["--seed (config run.seed) = 1.5", "expected an integer"]),
        (["--set", "method.selection=maybe"], ["method.selection", "'maybe'", "true/false"]),
        (["--set", "data.on_error=ignore"], ["data.on_error", "'ignore'", "stop or skip"]),
        (["--set", "lr=0.1"], ["'lr=0.1' is not SECTION.KEY=VALUE"]),
        (["--lr", "-1"], ["--lr (config adapt.lr) = -1.0", "expected > 0"]),
        (["--lr", "fast"], ["--lr", "invalid float value: 'fast'"]),
        (["--batch_size", "0"], ["--batch_size (config adapt.batch_size) = 0", ">= 1"]),
        (["--num_shots", "0"], ["--num_shots (config data.num_shots) = 0", "positive"]),
        (["--num_shots", "two"], ["--num_shots", "invalid int value: 'two'"]),
        (["--early_stop", "50"], ["--early_stop (config adapt.early_stop) = 50",
                                  "between 1 and adapt.max_iters (20)"]),
        (["--preset", "huge"], ["--preset", "invalid choice: 'huge'"]),
        (["--method", "dann"], ["--method", "unknown method 'dann'", "module:Class"]),
        (["--backbone", "vgg16"], ["--backbone", "invalid choice: 'vgg16'"]),
        (["--crop_size", "1024x"], ["--crop_size", "'1024x' is not W,H", "e.g. 1024,512"]),
        (["--crop_size", "1024,512,3"], ["--crop_size", "is not W,H"]),
        (["--crop_size", "4,4"], ["--crop_size (config data.size) = [4, 4]", "at least 8"]),
        (["--gpu_ids", "first"], ["--gpu_ids", "'first' is not a list like 0 or 0,1"]),
        (["--which_iter", "3"], ["--which_iter selects a checkpoint", "test mode"]),
        (["--name", "a/b"], ["--name (config run.name) = 'a/b'", "a folder name"]),
    ],
    ids=lambda v: v[0] if isinstance(v, list) and v and v[0].startswith("-") else None,
)  # fmt: skip
def test_bad_flags_and_values(toy_root, tmp_path, capsys, args, words):
    code, err = cli(capsys, *release_args(toy_root, tmp_path), "--is_train", *args)
    assert_user_error(code, err, *words)
    assert list(tmp_path.iterdir()) == []  # nothing trained, nothing written


@pytest.mark.data
def test_config_file_with_unknown_key_and_wrong_type(toy_root, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method:\n  name: pixda\n  lamda_adv: 0.2\n")
    code, err = cli(capsys, *release_args(toy_root, tmp_path), "--is_train", "--config", bad)
    assert_user_error(code, err, f"--config {bad}", "unknown config key method.lamda_adv")
    bad.write_text("adapt:\n  batch_size: '4'\n")
    code, err = cli(capsys, *release_args(toy_root, tmp_path), "--is_train", "--config", bad)
    assert_user_error(code, err, f"--config {bad}", "adapt.batch_size = '4'", "an integer")
    bad.write_text("adapt: [1, 2\n")
    code, err = cli(capsys, *release_args(toy_root, tmp_path), "--is_train", "--config", bad)
    assert_user_error(code, err, f"--config {bad} is not valid YAML")
    missing = tmp_path / "none.yaml"
    code, err = cli(capsys, *release_args(toy_root, tmp_path), "--is_train", "--config", missing)
    assert_user_error(code, err, f"--config {missing}", "does not exist")


@pytest.mark.data
def test_the_real_entry_point_reports_the_same_way(toy_root, tmp_path):
    """``python run.py`` itself: the same message and exit code as the in-process calls."""
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "run.py"),
            *release_args(toy_root, tmp_path),
            "--is_train",
            "--num_shots",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert_user_error(proc.returncode, proc.stderr, "--num_shots (config data.num_shots) = 0")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pixda_core",
            "adapt",
            *release_args(toy_root, tmp_path),
            "--source_dataroot",
            tmp_path / "missing",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert_user_error(proc.returncode, proc.stderr, tmp_path / "missing", "does not exist")


@pytest.mark.data
def test_a_config_file_that_would_run_code(toy_root, tmp_path, capsys):
    """YAML is read with safe_load: a python/object tag is refused, never executed."""
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f'run:\n  name: !!python/object/apply:os.system ["touch {marker}"]\n')
    out = tmp_path / "out"
    code, err = cli(capsys, *release_args(toy_root, out), "--is_train", "--config", evil)
    assert_user_error(code, err, f"--config {evil} is not valid YAML", "python/object/apply")
    assert not marker.exists() and not out.exists()


@pytest.mark.training
@pytest.mark.slow
def test_release_command_lines_train_then_test(toy_root, tmp_path, capsys):
    flags = release_flags(toy_root, tmp_path, "toy_1shot")
    train = run_py(*flags, "--is_train", "--num_shots", "1")  # `python run.py`, as released
    assert "no --restore_from given: training a source-only model first" in train.stderr
    shared = [p for p in tmp_path.iterdir() if p.name.startswith("source_only_gta5_toy_")]
    assert len(shared) == 1 and (shared[0] / "metrics.json").exists()
    folder = tmp_path / "toy_1shot"
    final = json.loads((folder / "metrics.json").read_text())
    assert final["step"] == 6  # 4 adversarial + 2 distillation

    again = run_py_here(
        capsys,
        *release_flags(toy_root, tmp_path, "toy_1shot_b"),
        "--is_train",
        "--num_shots",
        "1",
        "--method",
        "joint",
    )
    assert f"source-only model: reusing {shared[0]}" in again.stderr

    test = run_py_here(capsys, *flags, "--which_iter", "4")
    m = json.loads((folder / "metrics_step_4.json").read_text())
    assert m["step"] == 4 and (folder / "metrics_step_4_confusion.npy").exists()
    assert "mIoU-19" in test.stdout
    latest = run_py_here(capsys, *flags)  # test mode without --which_iter: the latest checkpoint
    assert json.loads((folder / "metrics_step_6.json").read_text())["miou"] == final["miou"]
    assert "step 6" in latest.stdout

    bad = run_py_here(capsys, *flags, "--which_iter", "5", check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--which_iter 5" in bad.stderr and "steps kept: 2, 4, 6" in bad.stderr
