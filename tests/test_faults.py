"""Faults during a run: SIGKILL or SIGTERM at random points, each time resumed with
``--continue_train``, ends with exactly the results of a run never stopped; a NaN or inf loss
stops the run naming the loss, the step and the newest checkpoint checked clean; weights gone
non-finite are never saved."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from pixda_core import losses
from pixda_core.checkpoint import (
    finite_checkpoint,
    floating_tensors,
    load_checkpoint,
    nonfinite_parts,
    step_checkpoints,
)

from .helpers import assert_user_error, cli, release_args

pytestmark = pytest.mark.training

ROOT = Path(__file__).resolve().parents[1]
FAULTS = [signal.SIGKILL, signal.SIGTERM, signal.SIGKILL, signal.SIGTERM, signal.SIGTERM]


def _rows(path: Path) -> int:
    try:
        return max(len(path.read_text().splitlines()) - 1, 0)
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_random_sigkills_and_sigterms_then_resume_give_the_uninterrupted_results(
    toy_root, tmp_path, weights
):
    """SIGKILL (nothing more is written) and SIGTERM (what SLURM and torchrun send first: the
    step in flight ends, a checkpoint is written, exit 143 saying so) at random points, each
    time resumed with --continue_train: the run ends as one never stopped."""

    # PixDA with every phase: selection after each 4-step source epoch (tau kept at 0.4, so
    # rounds go on), validation after each, then distillation; 46 steps in all
    def flags(name):
        return release_args(toy_root, tmp_path, name) + [
            "--is_train", "--restore_from", str(weights), "--early_stop", "40", "--max_iters",
            "60", "--kd_steps", "6", "--set", "method.tau_step=0", "--set", "run.ckpt_every=3",
            "--set", "run.log_every=2",
        ]  # fmt: skip

    def start(name, *extra):
        return subprocess.Popen(
            [sys.executable, str(ROOT / "run.py"), *flags(name), *extra],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    straight = start("straight")
    assert straight.wait(timeout=600) == 0, straight.stderr.read()[-3000:]

    rng = random.Random(2026)
    folder = tmp_path / "killed"
    history = folder / "history.csv"
    for n, fault in enumerate(FAULTS):
        proc = start("killed", *(["--continue_train"] if n else []))
        target = _rows(history) + rng.randint(1, 2)  # 2-4 more steps logged, then a bit more
        deadline = time.time() + 300
        while _rows(history) < target and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.2))
        assert proc.poll() is None, (
            f"the run ended before fault {n + 1}: " + (proc.stderr.read()[-2000:])
        )
        logged = pd.read_csv(history)["step"].max()
        proc.send_signal(fault)
        if fault == signal.SIGKILL:
            proc.wait()
        else:
            assert proc.wait(timeout=120) == 128 + fault
            err = proc.stderr.read()
            assert "Traceback" not in err, err[-3000:]
            said = re.search(r"stopped by SIGTERM at step (\d+): checkpoint \S+ written", err)
            assert said, err[-3000:]
            latest = load_checkpoint(folder / "checkpoints" / "latest.pt")
            assert latest["state"]["step"] == int(said[1]) >= logged  # no finished step lost
        proc.stderr.close()
    assert not (folder / "metrics.json").exists()
    last = start("killed", "--continue_train")
    assert last.wait(timeout=600) == 0, last.stderr.read()[-3000:]

    a = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    b = json.loads((folder / "metrics.json").read_text())
    assert a["step"] == 46 and {**a, "run": None} == {**b, "run": None}
    timing = ["step_s", "data_wait"]  # wall-clock measurements, not results
    for table in ("history", "validations", "selection"):
        ta = pd.read_csv(tmp_path / "straight" / f"{table}.csv")
        tb = pd.read_csv(folder / f"{table}.csv")
        if table == "history":
            ta, tb = ta.drop(columns=timing), tb.drop(columns=timing)
        pd.testing.assert_frame_equal(ta, tb)
    assert len(pd.read_csv(folder / "selection.csv")) >= 10  # the rounds were replayed exactly


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_to_the_whole_process_group_with_loader_workers_is_a_clean_stop(
    toy_root, tmp_path, weights, sig
):
    """Ctrl-C in a terminal (SIGINT) and SLURM's scancel or time limit (SIGTERM) signal
    every process of the group or job: the DataLoader workers ignore it (they would die
    under the loop, which would end with their error), the loop stops at the step's end."""
    argv = [sys.executable, str(ROOT / "run.py"), *release_args(toy_root, tmp_path, "k"),
            "--is_train", "--restore_from", str(weights), "--early_stop", "40", "--max_iters",
            "60", "--set", "run.log_every=1", "--set", "data.num_workers=1"]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    history = tmp_path / "k" / "history.csv"
    deadline = time.time() + 300
    while _rows(history) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    os.killpg(proc.pid, sig)  # the main process and its loader workers
    try:
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:  # never left running, whatever happened
            os.killpg(proc.pid, signal.SIGKILL)
    err = proc.stderr.read()
    assert code == 128 + sig and "Traceback" not in err, err[-3000:]
    step = int(re.search(rf"stopped by {sig.name} at step (\d+): checkpoint", err)[1])
    assert load_checkpoint(tmp_path / "k" / "checkpoints" / "latest.pt")["state"]["step"] == step


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_a_non_finite_loss_stops_the_run(toy_root, tmp_path, capsys, weights, monkeypatch, bad):
    real, calls = losses.focal_loss, []

    def poisoned(*args, **kwargs):  # the 5th step's loss turns NaN or inf
        calls.append(1)
        out = real(*args, **kwargs)
        return out * float(bad) if len(calls) == 5 else out

    monkeypatch.setattr(losses, "focal_loss", poisoned)
    code, err = cli(
        capsys,
        *release_args(toy_root, tmp_path),
        "--is_train",
        "--restore_from",
        weights,
        "--method",
        "finetune",
        "--early_stop",
        "8",
        "--set",
        "run.log_every=5",
        "--set",
        "run.ckpt_every=3",
    )
    ckpts = tmp_path / "e" / "checkpoints"
    assert_user_error(
        code,
        err,
        f"loss_seg_trg is not finite ({bad}) at step 5",
        f"the newest clean checkpoint (checked) is {ckpts / 'step_3.pt'}, step 3",
    )
    latest = load_checkpoint(ckpts / "latest.pt")
    assert latest["state"]["step"] == 3  # written before the bad loss, kept
    assert all(torch.isfinite(v).all() for v in latest["model"].values() if v.is_floating_point())
    assert not (tmp_path / "e" / "metrics.json").exists()


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
