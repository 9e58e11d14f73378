"""Training runs (pixda_core.train.loop): each method, stops, kills and resumes, determinism."""

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

import numpy as np
import pandas as pd
import pytest
import torch

from pixda_core import losses
from pixda_core.checkpoint import (
    load_checkpoint,
)
from pixda_core.config import Config
from pixda_core.errors import ConfigError
from pixda_core.train import adapt, setup_runtime, train_source_only
from tests.helpers import ROOT, assert_user_error, cli, corrupt, release_args, tiny

FAULTS = [signal.SIGKILL, signal.SIGTERM, signal.SIGKILL]  # each kind, and a kill after a stop


def _rows(path: Path) -> int:
    try:
        return max(len(path.read_text().splitlines()) - 1, 0)
    except FileNotFoundError:
        return 0


def _run_py(*args, check=True):
    import subprocess
    import sys

    root = ROOT
    proc = subprocess.run([sys.executable, str(root / "run.py"), *map(str, args)], cwd=root,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def finite_history(folder: Path) -> pd.DataFrame:
    hist = pd.read_csv(folder / "history.csv")
    losses = hist.filter(like="loss_")
    assert len(hist) > 0
    assert np.isfinite(losses.to_numpy(dtype=float)[~losses.isna().to_numpy()]).all()
    return hist


def check_metrics(folder: Path, step: int) -> dict:
    m = json.loads((folder / "metrics.json").read_text())
    assert m["step"] == step and m["protocol"] == "19"
    assert 0 <= m["miou"] <= 1 and 0 <= m["pixel_accuracy"] <= 1
    assert len(m["per_class_iou"]) == 19 and "road" in m["per_class_iou"]
    cm = np.load(folder / "metrics_confusion.npy")
    assert cm.shape == (19, 19) and 0.5 * 6 * 96 * 48 < cm.sum() <= 6 * 96 * 48  # full res
    return m


@pytest.mark.training
@pytest.mark.slow
def test_random_sigkills_and_sigterms_then_resume_give_the_uninterrupted_results(
    toy_root, tmp_path, weights, capsys
):
    """SIGKILL (nothing more is written) and SIGTERM (what SLURM and torchrun send first: the
    step in flight ends, a checkpoint is written, exit 143 saying so) at random points, each
    time resumed with --continue_train: the run ends as one never stopped."""

    # PixDA with every phase: selection after each 4-step source epoch (tau kept at 0.4, so
    # rounds go on), validation after each, then distillation; 16 steps at most (12 + 4: the
    # main phase ends early where a round keeps fewer images than a batch)
    def flags(name):
        return release_args(toy_root, tmp_path, name) + [
            "--is_train", "--restore_from", str(weights), "--early_stop", "12", "--max_iters",
            "60", "--kd_steps", "4", "--set", "method.tau_step=0", "--set", "run.ckpt_every=3",
            "--set", "run.log_every=1",
        ]  # fmt: skip

    def start(name, *extra):
        return subprocess.Popen(
            [sys.executable, str(ROOT / "run.py"), *flags(name), *extra],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    code, err = cli(capsys, *flags("straight"))  # never stopped: in this process
    assert code == 0, err[-3000:]

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
    assert {**a, "run": None} == {**b, "run": None}
    phases = pd.read_csv(tmp_path / "straight" / "history.csv")["phase"]
    assert set(phases) == {"main", "kd"} and a["step"] == len(phases) <= 16
    timing = ["step_s", "data_wait"]  # wall-clock measurements, not results
    for table in ("history", "validations", "selection"):
        ta = pd.read_csv(tmp_path / "straight" / f"{table}.csv")
        tb = pd.read_csv(folder / f"{table}.csv")
        if table == "history":
            ta, tb = ta.drop(columns=timing), tb.drop(columns=timing)
        pd.testing.assert_frame_equal(ta, tb)
    assert len(pd.read_csv(folder / "selection.csv")) >= 2  # the rounds were replayed exactly


@pytest.mark.training
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


@pytest.mark.training
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


@pytest.mark.training
@pytest.mark.slow
def test_a_bad_source_image_is_skipped_only_when_asked(toy_copy, tmp_path, capsys, weights):
    bad = toy_copy / "gta5" / "images" / "00003.png"
    corrupt(bad)
    flags = [
        *release_args(toy_copy, tmp_path),
        "--is_train",
        "--restore_from",
        weights,
        "--early_stop",
        "8",
    ]
    code, err = cli(capsys, *flags)
    assert_user_error(code, err, f"image {bad} cannot be decoded")

    code, err = cli(capsys, *flags, "--name", "skip", "--set", "data.on_error=skip")
    assert code == 0, err[-3000:]
    assert err.count("warning: skipping 00003.png of the source set") == 1
    assert "end of epoch 1: skipped 1 unreadable image(s) of the source set" in err
    # PixDA's selection pass cannot score the file: it is not kept for the next round
    scores = pd.read_csv(tmp_path / "skip" / "selection" / "round_1.csv").set_index("name")
    assert len(scores) == 8 and not scores.loc["00003.png", "kept"]
    assert np.isnan(scores.loc["00003.png", "score"])
    assert scores.drop(index="00003.png")["score"].notna().all()
    m = json.loads((tmp_path / "skip" / "metrics.json").read_text())
    assert m["step"] == 8 and 0 <= m["miou"] <= 1  # 4 + 3 (7 images kept) + 1 distillation


@pytest.mark.training
@pytest.mark.slow
def test_an_fp16_run_with_its_scaler_resumes_exactly_after_sigkill(
    toy_root, tmp_path, weights, capsys
):
    """fp16 autocast with a gradient scaler on the CPU (torch supports both there, slowly:
    about 8 s a step at 64x32, so this run is FT at 32x16): the scaler's state is in the
    checkpoint, so a run killed and resumed ends as one never stopped."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import pandas as pd

    from pixda_core.checkpoint import load_checkpoint

    def flags(name):
        return [
            *release_args(toy_root, tmp_path, name), "--is_train", "--restore_from", weights,
            "--amp", "fp16", "--method", "finetune", "--crop_size", "32,16", "--batch_size",
            "1", "--early_stop", "4", "--max_iters", "20", "--set", "run.log_every=1",
            "--set", "run.ckpt_every=2",
        ]  # fmt: skip

    code, err = cli(capsys, *flags("straight"))  # never stopped: in this process
    assert code == 0, err[-3000:]
    assert "fp16 autocast with a gradient scaler" in err
    ck = load_checkpoint(tmp_path / "straight" / "checkpoints" / "latest.pt")
    assert ck["scaler"]["scale"] > 0 and "_growth_tracker" in ck["scaler"]

    root = ROOT
    command = [sys.executable, str(root / "run.py"), *map(str, flags("killed"))]
    proc = subprocess.Popen(command, cwd=root, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    ckpt = tmp_path / "killed" / "checkpoints" / "step_2.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "metrics.json").exists()
    _run_py(*flags("killed"), "--continue_train")
    a = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    b = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert {**a, "run": None} == {**b, "run": None}
    timing = ["step_s", "data_wait"]
    ha = pd.read_csv(tmp_path / "straight" / "history.csv").drop(columns=timing)
    hb = pd.read_csv(tmp_path / "killed" / "history.csv").drop(columns=timing)
    pd.testing.assert_frame_equal(ha, hb)


@pytest.mark.training
def test_two_deterministic_runs_write_byte_identical_checkpoints(toy_root, tmp_path, capsys,
                                                                 weights):  # fmt: skip
    args = [*release_args(toy_root, tmp_path / "out", "det"), "--is_train", "--restore_from",
            weights, "--deterministic", "--early_stop", "4", "--kd_steps", "1"]  # fmt: skip
    ckpts = []
    for attempt in range(2):
        code, err = cli(capsys, *args)
        assert code == 0, err[-2000:]
        moved = tmp_path / f"run{attempt}"
        (tmp_path / "out" / "det").rename(moved)
        ckpts.append((moved / "checkpoints" / "latest.pt").read_bytes())
    assert ckpts[0] == ckpts[1]
    assert torch.are_deterministic_algorithms_enabled()
    cli(capsys, *release_args(toy_root, tmp_path / "out", "plain"), "--is_train",
        "--restore_from", weights, "--early_stop", "1", "--kd_steps", "1")  # fmt: skip
    assert not torch.are_deterministic_algorithms_enabled()  # the next run sets it back


@pytest.mark.training
def test_source_only_run_folder(source_only):
    folder = source_only.parents[1]
    assert {p.name for p in folder.iterdir()} >= {
        "config.yaml",
        "metrics.json",
        "metrics_confusion.npy",
        "validations.csv",
        "history.csv",
        "checkpoints",
    }
    check_metrics(folder, 8)
    hist = finite_history(folder)
    assert list(hist["step"]) == [2, 4, 6, 8]
    assert hist["lr"].is_monotonic_decreasing
    assert (hist["step_s"] > 0).all() and hist["data_wait"].between(0, 1).all()
    vals = pd.read_csv(folder / "validations.csv")
    assert list(vals["step"]) == [4, 8] and list(vals["phase"]) == ["main", "main"]
    ck = torch.load(source_only, weights_only=True)
    assert ck["state"]["phase"] == "done" and ck["state"]["step"] == 8


@pytest.mark.training
@pytest.mark.slow
def test_source_only_loss_falls(toy_root, tmp_path):
    cfg = tiny(toy_root, tmp_path, pretrain={"early_stop": 40}, run={"name": "fall"})
    train_source_only(cfg)
    loss = pd.read_csv(tmp_path / "fall" / "history.csv")["loss_seg_src"].to_numpy()
    assert loss[-3:].mean() < 0.6 * loss[:3].mean()


@pytest.mark.training
@pytest.mark.parametrize(
    "method, extra, columns",
    [
        ("pixda", {}, ["loss_seg_src", "loss_seg_trg", "loss_adv", "loss_d1", "loss_d2"]),
        ("pixda", {"pixel_weights": False, "selection": False}, ["loss_adv", "loss_d1"]),
        ("pixda", {"release_gradient": True, "distillation": False}, ["loss_adv"]),
        ("finetune", {}, ["loss_seg_trg"]),
        ("joint", {}, ["loss_seg_src", "loss_seg_trg"]),
        ("adaptsegnet", {}, ["loss_seg_src", "loss_seg_trg", "loss_adv", "loss_d2"]),
    ],
)
def test_each_method_runs_with_finite_losses(
    toy_root, tmp_path, source_only, method, extra, columns
):
    cfg = tiny(
        toy_root,
        tmp_path,
        method={"name": method, **extra},
        run={"name": "r", "restore_from": str(source_only)},
    )
    metrics = adapt(cfg)
    folder = tmp_path / "r"
    hist = finite_history(folder)
    for col in columns:
        assert hist[col].notna().any(), col
    kd = method == "pixda" and extra.get("distillation", True)
    assert (hist["phase"] == "kd").any() == kd
    assert metrics == json.loads((folder / "metrics.json").read_text())
    assert (folder / "split.txt").read_text().count("\n") == 18  # 1 shot x 18 cities
    assert Config.from_yaml(folder / "config.yaml") == cfg


@pytest.mark.training
def test_the_oracle_fine_tunes_on_every_target_image_as_long_as_source_only(
    toy_root, tmp_path, source_only
):
    cfg = tiny(
        toy_root,
        tmp_path,
        method={"name": "oracle"},
        data={"num_shots": 1},
        pretrain={"early_stop": 5},  # the oracle's length: the source-only schedule's
        run={"name": "oracle", "restore_from": str(source_only)},
    )
    metrics = adapt(cfg)
    folder = tmp_path / "oracle"
    every = sorted((toy_root / "cityscapes" / "leftImg8bit" / "train").rglob("*.png"))
    assert (folder / "split.txt").read_text().split() == [
        str(p.relative_to(p.parents[1])) for p in every
    ]
    assert metrics["method"] == "oracle" and metrics["split"] == "all"
    assert metrics["shots"] == 3  # images per city, all of them
    assert metrics["step"] == 5 and metrics["toy"]["gap"] == 1.0
    assert "loss_seg_trg" in finite_history(folder)


@pytest.mark.training
def test_too_few_shots_for_a_batch_is_a_clear_error(toy_root, tmp_path, source_only):
    cfg = tiny(
        toy_root,
        tmp_path,
        adapt={"batch_size": 20},
        data={"num_shots": 1},
        run={"name": "big", "restore_from": str(source_only)},
    )
    with pytest.raises(ConfigError, match="18 images, fewer than one batch of --batch_size = 20"):
        adapt(cfg)


@pytest.mark.training
def test_cpu_bf16_autocast_trains_with_finite_losses(toy_root, tmp_path, source_only):
    cfg = tiny(
        toy_root,
        tmp_path,
        run={"name": "bf16", "restore_from": str(source_only), "cpu_bf16": True},
    )
    rt = setup_runtime(cfg.run)
    assert rt.precision == "bf16" and rt.autocast().fast_dtype == torch.bfloat16
    adapt(cfg)
    finite_history(tmp_path / "bf16")
    assert setup_runtime(cfg.override(run={"cpu_bf16": False}).run).precision == "fp32"


@pytest.mark.training
def test_resume_in_distillation_after_selection_kept_too_few(toy_root, tmp_path, source_only):
    """Selection keeps no source image, the main phase ends, distillation follows; a run
    resumed from a checkpoint of that phase (its first, without a teacher, or a later one)
    ends as the uninterrupted run did, with no source stream to rebuild."""
    cfg = tiny(toy_root, tmp_path, method={"tau": 1e6}, adapt={"early_stop": 30},
               run={"name": "kd", "restore_from": str(source_only), "ckpt_every": 1,
                    "keep_checkpoints": 0})  # fmt: skip
    final = adapt(cfg)
    folder = tmp_path / "kd"
    assert final["step"] == 7  # 4 steps, selection keeps nothing, 3 distillation steps
    history = pd.read_csv(folder / "history.csv")
    ckpts = folder / "checkpoints"
    for step in (4, 5):  # the phase's first checkpoint (no teacher saved) and a later one
        ck = torch.load(ckpts / f"step_{step}.pt", weights_only=True)
        assert ck["state"]["phase"] == "kd" and ("teacher" in ck) == (step == 5)
        (ckpts / "latest.pt").unlink()
        for later in range(step + 1, 8):
            (ckpts / f"step_{later}.pt").unlink(missing_ok=True)
        (ckpts / "latest.pt").write_bytes((ckpts / f"step_{step}.pt").read_bytes())
        (folder / "metrics.json").unlink()
        assert adapt(cfg, resume=True) == final
        pd.testing.assert_frame_equal(
            pd.read_csv(folder / "history.csv").drop(columns=["step_s", "data_wait"]),
            history.drop(columns=["step_s", "data_wait"]),
        )


@pytest.mark.training
@pytest.mark.parametrize("budget", [4, 5])
def test_pixda_selects_at_a_pass_end_only_with_iterations_left(
    toy_root, tmp_path, source_only, budget
):
    """The toy's 8 source images at batch 2: a pass is 4 steps. A budget of 4 ends on the pass's
    end: no round there (nothing would train on the images kept), distillation follows; a
    budget of 5 gets the round at step 4 (tau 0 keeps every image), a step on the kept images,
    then distillation. The demo's line for the run says the same, read from its files."""
    from pixda_core.demo import selection_lines

    cfg = tiny(toy_root, tmp_path, method={"tau": 0.0}, adapt={"early_stop": budget},
               run={"name": "r", "restore_from": str(source_only)})  # fmt: skip
    final = adapt(cfg)
    folder = tmp_path / "r"
    assert final["step"] == budget + 3  # kd_steps 3
    rows = pd.read_csv(folder / "selection.csv")
    end = f"main phase over: iteration budget ({budget}) spent"
    rounds = [[4, 1, 8, 8, ""]] if budget == 5 else []  # step, round, candidates, kept
    assert rows[["step", "round", "candidates", "kept", "event"]].fillna("").values.tolist() == [
        *rounds,
        [budget, len(rounds), 8, 8, end],
    ]
    assert (folder / "selection" / "round_1.csv").exists() == (budget == 5)
    assert 4 in pd.read_csv(folder / "validations.csv")["step"].values  # the pass's end
    hist = pd.read_csv(folder / "history.csv")
    assert hist.loc[hist["phase"] == "kd", "step"].min() > budget
    said = "selection round 1 at step 4 kept 8 of 8 source images (tau 0.00)"
    run = pd.DataFrame([{"method": "pixda", "path": folder, "shots": 1, "seed": 5}])
    assert selection_lines(run) == [
        f"PixDA (1-shot, seed 5): {said if rounds else 'no selection round'}; main phase over"
        f" at step {budget} (iteration budget ({budget}) spent); distillation 3 steps"
    ]


@pytest.mark.training
def test_a_pixda_run_extended_past_a_pass_end_makes_the_round_it_was_owed(
    toy_root, tmp_path, source_only
):
    """Selection without distillation (so a finished run may be extended): a budget of 4 ends
    on the pass's end without a round; resumed with a budget of 5 the run makes that round
    first and ends with the weights, metrics and rounds of a run started with 5."""

    def cfg(name, budget):
        return tiny(toy_root, tmp_path, method={"tau": 0.0, "distillation": False},
                    adapt={"early_stop": budget},
                    run={"name": name, "restore_from": str(source_only)})  # fmt: skip

    straight = adapt(cfg("five", 5))
    assert adapt(cfg("e", 4))["step"] == 4
    assert adapt(cfg("e", 5), resume=True) == {**straight, "run": "e"}
    ck = [load_checkpoint(tmp_path / n / "checkpoints" / "latest.pt") for n in ("e", "five")]
    assert all(torch.equal(ck[0]["model"][k], v) for k, v in ck[1]["model"].items())
    rows = [pd.read_csv(tmp_path / n / "selection.csv") for n in ("e", "five")]
    # (e's also says where its budget of 4 ended; that row, its first, fixed its columns: the
    # toy's truth columns of the round are not there)
    rounds = [r.loc[r["event"].isna(), rows[0].columns] for r in rows]
    pd.testing.assert_frame_equal(rounds[0].reset_index(drop=True), rounds[1])
    assert len(rounds[1]) == 1 and rows[0]["event"].dropna().str.contains(r"\(4\) spent").any()
