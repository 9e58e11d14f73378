"""Helpers of the error tests: run ``run.py``'s entry point in-process and check what the user
sees."""

from __future__ import annotations

from pathlib import Path


def release_args(toy: Path, out: Path, name: str = "e") -> list[str]:
    """run.py's flags for a run of a few seconds on the toy benchmark (64x32, batch 2)."""
    return [
        "--source_dataset", "gta5", "--source_dataroot", str(toy / "gta5"),
        "--target_dataset", "cityscapes", "--target_dataroot", str(toy / "cityscapes"),
        "--name", name, "--preset", "toy", "--checkpoints_dir", str(out),
        "--crop_size", "64,32", "--batch_size", "2", "--max_iters", "20", "--early_stop", "2",
        "--kd_steps", "1", "--set", "data.val_batch_size=6", "--set", "run.keep_checkpoints=1",
        "--set", "run.ckpt_every=2", "--quiet",
    ]  # fmt: skip


def cli(capsys, *argv) -> tuple[int, str]:
    """Run ``run.py``'s entry point in this process: (exit code, what it printed to stderr).
    The entry point is what ``python run.py`` calls, so the exit code and the output are the
    user's (argparse's own errors exit through SystemExit)."""
    from pixda_core.train.cli import run_main

    capsys.readouterr()
    try:
        code = run_main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def assert_user_error(code: int, err: str, *words) -> None:
    """Exit code 2, no traceback, and the message names each of ``words``."""
    assert code == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert "error: " in err
    for w in words:
        assert str(w) in err, f"{w!r} not in: {err[-2000:]}"


#: overrides that shrink the toy preset for notebook and sweep tests
TINY = {
    "data": {"size": [64, 32], "val_size": [64, 32], "val_batch_size": 6},
    "pretrain": {"batch_size": 2},
    "adapt": {"batch_size": 2},
    "method": {"kd_steps": 2},
    "run": {"keep_checkpoints": 1},  # ~150 MB each: keep the disk use low
}
