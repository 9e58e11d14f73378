"""Training on the toy benchmark (CPU): every method and phase, selection, resume, run.py."""

from __future__ import annotations

import json
import math
import os
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

from pixda_core.checkpoint import load_checkpoint
from pixda_core.config import Config
from pixda_core.errors import ConfigError
from pixda_core.methods import method_of
from pixda_core.train import adapt, setup_runtime, train_source_only
from pixda_core.train.job import Job
from pixda_core.train.loop import selection_round
from pixda_core.train.rundir import RunFolder

pytestmark = pytest.mark.training

ROOT = Path(__file__).resolve().parents[1]


def tiny(toy_root: Path, out: Path, **sections) -> Config:
    """The toy preset shrunk to seconds: 64x32 images, batch 2, a handful of steps."""
    data = {
        "preset": "toy",
        "data": {"source_root": str(toy_root / "gta5"),
                 "target_root": str(toy_root / "cityscapes"),
                 "size": [64, 32], "val_size": [64, 32], "val_batch_size": 6},
        "pretrain": {"batch_size": 2, "max_iters": 40, "early_stop": 8, "lr": 1e-3},
        "adapt": {"batch_size": 2, "max_iters": 40, "early_stop": 6, "lr": 1e-3},
        "method": {"kd_steps": 3},
        "run": {"out_dir": str(out), "progress": False, "log_every": 2, "ckpt_every": 3,
                "seed": 5, "keep_checkpoints": 1},  # ~150 MB each: keep the disk use low
    }  # fmt: skip
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return Config.from_dict(data)


@pytest.fixture(scope="module")
def source_only(toy_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("so")
    cfg = tiny(toy_root, out, run={"name": "so"})
    train_source_only(cfg)
    return out / "so" / "checkpoints" / "latest.pt"


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


@pytest.mark.slow
def test_source_only_loss_falls(toy_root, tmp_path):
    cfg = tiny(toy_root, tmp_path, pretrain={"early_stop": 40}, run={"name": "fall"})
    train_source_only(cfg)
    loss = pd.read_csv(tmp_path / "fall" / "history.csv")["loss_seg_src"].to_numpy()
    assert loss[-3:].mean() < 0.6 * loss[:3].mean()


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


def test_pixel_weights_change_the_adversarial_loss(toy_root, tmp_path, source_only):
    losses = []
    for i, weights in enumerate((True, False)):
        cfg = tiny(
            toy_root,
            tmp_path,
            method={"pixel_weights": weights, "selection": False, "distillation": False},
            adapt={"early_stop": 2},
            run={"name": f"w{i}", "restore_from": str(source_only)},
        )
        adapt(cfg)
        losses.append(pd.read_csv(tmp_path / f"w{i}" / "history.csv")["loss_adv"].iloc[0])
    # the plain loss is BCE against "source" of a fresh D1 (~log 2); the weighted one scales
    # each pixel by its CE and (1 - class share), so it moves away from it
    assert abs(losses[1] - math.log(2)) < 0.1
    assert losses[0] > 0 and abs(losses[0] - losses[1]) > 0.1 * losses[1]


# ------------------------------------------------------------------------------ selection


def make_job(cfg: Config) -> Job:
    rt = setup_runtime(cfg.run)
    return Job(cfg, method_of(cfg), RunFolder.open(cfg, False), rt, cfg.run.restore_from)


def select(job: Job) -> None:
    """One selection round of a job, its streams open as in the training loop."""
    with job.open_streams():
        selection_round(job)


def test_selection_keeps_all_none_and_fewer_than_a_batch(toy_root, tmp_path, source_only):
    base = {"restore_from": str(source_only)}
    job = make_job(
        tiny(toy_root, tmp_path, method={"tau": 0.0, "tau_step": 0.0}, run={"name": "all", **base})
    )
    select(job)
    assert len(job.state.kept) == 8 and not job.state.end_reason
    scores = pd.read_csv(tmp_path / "all" / "selection" / "round_1.csv")
    assert len(scores) == 8 and scores["kept"].all() and (scores["score"] > 0).all()

    # a threshold between the two highest scores keeps one image: fewer than a batch of 2
    s = np.sort(scores["score"].to_numpy())
    job = make_job(
        tiny(
            toy_root,
            tmp_path,
            method={"tau": float(s[-2] + s[-1]) / 2},
            run={"name": "one", **base},
        )
    )
    select(job)
    assert len(job.state.kept) == 1
    assert "fewer than one batch" in job.state.end_reason

    cfg = tiny(
        toy_root,
        tmp_path,
        method={"tau": 1e6, "distillation": False},
        adapt={"early_stop": 30},
        run={"name": "none", **base},
    )
    metrics = adapt(cfg)
    sel = pd.read_csv(tmp_path / "none" / "selection.csv")
    assert list(sel["kept"]) == [0, 0] and "kept 0 source images" in sel["event"].iloc[-1]
    assert metrics["step"] == 4  # one source epoch (8 images / batch 2), then done


def test_selection_scores_every_listed_image_with_a_small_or_large_batch(
    toy_root, tmp_path, source_only
):
    """A source list may name an image twice (oversampling): each entry is a candidate of its
    own; and the inference batch of the pass does not change the scores."""
    from pixda_core.data import write_list_file

    names = [f"{i:05d}.png" for i in range(1, 9)] + ["00003.png"]
    lst = write_list_file(tmp_path / "list.txt", names)
    rounds = {}
    for bs in (1, 16):
        cfg = tiny(
            toy_root,
            tmp_path,
            data={"source_list": str(lst), "select_batch_size": bs},
            method={"tau": 0.0, "tau_step": 0.0},
            run={"name": f"dup{bs}", "restore_from": str(source_only)},
        )
        job = make_job(cfg)
        select(job)
        rounds[bs] = pd.read_csv(tmp_path / f"dup{bs}" / "selection" / "round_1.csv")
        assert len(job.state.kept) == 9
    a, b = rounds[1], rounds[16]
    assert list(a["name"]) == names and (a["score"] > 0).all() and a["kept"].all()
    assert np.allclose(a["score"], b["score"], atol=1e-5)


def test_selection_shrinks_the_source_set_each_round(toy_root, tmp_path, source_only):
    cfg = tiny(
        toy_root,
        tmp_path,
        method={"tau": 0.0, "tau_step": 0.5, "kd_steps": 2},
        adapt={"early_stop": 30},
        run={"name": "rounds", "restore_from": str(source_only)},
    )
    adapt(cfg)
    sel = pd.read_csv(tmp_path / "rounds" / "selection.csv")
    rounds = sel[sel["event"].isna()]
    assert list(rounds["tau"]) == [0.5 * i for i in range(len(rounds))]
    assert (np.diff(rounds["kept"]) <= 0).all() and (rounds["kept"] <= rounds["candidates"]).all()
    assert list(rounds["candidates"])[1:] == list(rounds["kept"])[:-1]


def test_selection_rounds_are_checked_against_the_toys_true_distances(
    toy_root, tmp_path, source_only
):
    """On a toy source, each round's row of selection.csv says how the scores and the kept
    set compare with each image's true distance to the target look; the candidates' file
    carries the distances; and the values are those of against_truth on that file."""
    from pixda_core.data import toy
    from pixda_core.diagnostics import has_selection_truth, selection_truth
    from pixda_core.train.selection import TRUTH_COLUMNS, against_truth

    job = make_job(
        tiny(
            toy_root,
            tmp_path,
            method={"tau": 0.5, "tau_step": 0.0},
            run={"name": "truth", "restore_from": str(source_only)},
        )
    )
    select(job)
    row = pd.read_csv(tmp_path / "truth" / "selection.csv").iloc[0]
    cands = pd.read_csv(tmp_path / "truth" / "selection" / "round_1.csv")
    truth = toy.look_distances(toy_root / "gta5")
    assert list(cands["distance"]) == [truth[n] for n in cands["name"]]
    expected = against_truth(cands["score"], cands["kept"], cands["distance"])
    got = {c: row[c] for c in TRUTH_COLUMNS}
    assert got == pytest.approx(expected, nan_ok=True)
    assert has_selection_truth(tmp_path / "truth")
    frame = selection_truth(tmp_path / "truth")
    assert list(frame.columns) == ["round", "name", "score", "kept", "distance"]
    assert len(frame) == 8 and (frame["round"] == 1).all()


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


def test_a_run_reads_and_checks_its_split_file_once(toy_root, tmp_path, source_only, monkeypatch):
    """resolve_shots reads the split file, preflight checks what it read, the run writes it
    and metrics.json names it: one read of the file for all of them."""
    import pixda_core.data.splits as splits

    listed = tmp_path / "two.txt"
    names = splits.draw_split(toy_root / "cityscapes", 1, 3)
    splits.write_split(listed, names)
    reads = []
    real = splits.read_text

    def counted(path, *args, **kw):
        reads.append(Path(path))
        return real(path, *args, **kw)

    monkeypatch.setattr(splits, "read_text", counted)
    cfg = tiny(
        toy_root,
        tmp_path,
        method={"name": "finetune"},
        data={"split_file": str(listed)},
        run={"name": "ft", "restore_from": str(source_only)},
    )
    metrics = adapt(cfg)
    assert reads.count(listed) == 1
    assert metrics["split"] == "file two.txt" and metrics["shots"] == 1
    assert (tmp_path / "ft" / "split.txt").read_text().split() == names


def test_a_source_only_model_per_seed_when_asked(toy_root, tmp_path):
    """run.own_source_only: each seed adapts from a source-only model of its own seed; the
    preset's seed's model is the shared one (the same folder)."""
    from pixda_core.train import source_only_run

    shared = source_only_run(tiny(toy_root, tmp_path, run={"seed": 7}))
    own = {
        s: source_only_run(tiny(toy_root, tmp_path, run={"seed": s, "own_source_only": True}))
        for s in (0, 7)
    }
    assert shared.run.seed == 0 and own[7].run.seed == 7 and own[0].run.seed == 0
    assert own[0].run.name == shared.run.name  # the toy preset's seed is 0
    assert own[7].run.name != shared.run.name


# ------------------------------------------------------------------------------ run folders


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


# ------------------------------------------------------------------------------ command line


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


def release_flags(toy_root, out, name):
    return [
        "--source_dataset", "gta5", "--source_dataroot", toy_root / "gta5",
        "--target_dataset", "cityscapes", "--target_dataroot", toy_root / "cityscapes",
        "--name", name, "--preset", "toy", "--checkpoints_dir", out, "--crop_size", "64,32",
        "--batch_size", "2", "--max_iters", "20", "--early_stop", "4", "--kd_steps", "2",
        "--set", "pretrain.batch_size=2", "--set", "pretrain.early_stop=4",
        "--set", "run.ckpt_every=2", "--set", "data.val_batch_size=6", "--quiet",
    ]  # fmt: skip


@pytest.mark.slow
def test_release_command_lines_train_then_test(toy_root, tmp_path):
    flags = release_flags(toy_root, tmp_path, "toy_1shot")
    train = run_py(*flags, "--is_train", "--num_shots", "1")
    assert "no --restore_from given: training a source-only model first" in train.stderr
    shared = [p for p in tmp_path.iterdir() if p.name.startswith("source_only_gta5_toy_")]
    assert len(shared) == 1 and (shared[0] / "metrics.json").exists()
    folder = tmp_path / "toy_1shot"
    final = json.loads((folder / "metrics.json").read_text())
    assert final["step"] == 6  # 4 adversarial + 2 distillation

    again = run_py(
        *release_flags(toy_root, tmp_path, "toy_1shot_b"),
        "--is_train",
        "--num_shots",
        "1",
        "--method",
        "joint",
    )
    assert f"source-only model: reusing {shared[0]}" in again.stderr

    test = run_py(*flags, "--which_iter", "4")
    m = json.loads((folder / "metrics_step_4.json").read_text())
    assert m["step"] == 4 and (folder / "metrics_step_4_confusion.npy").exists()
    assert "mIoU-19" in test.stdout
    latest = run_py(*flags)  # test mode without --which_iter: the latest checkpoint
    assert json.loads((folder / "metrics_step_6.json").read_text())["miou"] == final["miou"]
    assert "step 6" in latest.stdout

    bad = run_py(*flags, "--which_iter", "5", check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--which_iter 5" in bad.stderr and "steps kept: 2, 4, 6" in bad.stderr


# ------------------------------------------------------------------------------ resume


# ------------------------------------------------------------------------------ torchrun


DDP_SCRIPT = """
import json, os, sys
from pixda_core.config import Config
from pixda_core.errors import Stopped
from pixda_core.train import adapt
try:
    m = adapt(Config.from_yaml(sys.argv[1]), resume=sys.argv[3] == "resume")
except Stopped as exc:
    m = {"stopped": str(exc)}
open(sys.argv[2] + f"/rank{os.environ['RANK']}.json", "w").write(json.dumps(m))
"""


def torchrun(tmp_path: Path, cfg: Config, resume: bool = False) -> subprocess.Popen:
    """``adapt(cfg)`` in two processes under torchrun (gloo, one thread each); each rank
    writes its metrics, or the stop it met, to ``<tmp_path>/rank<R>.json``."""
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    cfg_path = cfg.to_yaml(tmp_path / f"{cfg.run.name}.yaml")
    mode = "resume" if resume else "new"
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "2", str(script), str(cfg_path), str(tmp_path), mode]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)  # fmt: skip


def ranks(tmp_path: Path) -> list[dict]:
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]


VOTE_SCRIPT = """
import json, sys
import torch.distributed as dist
from pixda_core.config import RunConfig
from pixda_core.train.runtime import StopVote, setup_runtime
rt = setup_runtime(RunConfig(device="cpu"))
vote = StopVote(rt)
cast = [vote(rt.rank == 1 and i >= 2) for i in range(5)] + [vote.close()]
now = StopVote(rt, blocking=True)
blocking = [now(rt.rank == 0 and i == 1) for i in range(3)]
json.dump({"async": cast, "blocking": blocking}, open(f"{sys.argv[1]}/vote{rt.rank}.json", "w"))
dist.destroy_process_group()
"""


def test_the_stop_vote_is_read_one_step_after_it_is_cast(tmp_path):
    """Rank 1 asked to stop after its third step: with the asynchronous vote both ranks read
    it after their fourth (the step never waits for the other's flag), and the vote still
    in flight at the end is read by close(); the blocking vote is read at once."""
    script = tmp_path / "vote.py"
    script.write_text(VOTE_SCRIPT)
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "2", str(script), str(tmp_path)]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        seen = json.loads((tmp_path / f"vote{rank}.json").read_text())
        assert seen["async"] == [False, False, False, True, True, True]
        assert seen["blocking"] == [False, True, False]


def ddp_config(toy_root, out, source_only, name) -> Config:
    run = {"name": name, "restore_from": str(source_only)}
    return tiny(toy_root, out, adapt={"batch_size": 1, "early_stop": 6}, method={"kd_steps": 2},
                run=run)  # fmt: skip


@pytest.mark.slow
def test_torchrun_two_processes_agree_and_stop_together_on_sigterm(
    toy_root, tmp_path, source_only
):
    """Two processes on the CPU (gloo) end with the same metrics; stopped by SIGTERM (to
    every process, as SLURM sends it; torchrun forwards it again) they stop at the same
    step with one checkpoint, and the resumed run ends as the one never stopped."""
    whole = tmp_path / "whole"
    whole.mkdir()
    proc = torchrun(whole, ddp_config(toy_root, whole, source_only, "ddp"))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    r0, r1 = ranks(whole)
    assert r0 == r1 == json.loads((whole / "ddp" / "metrics.json").read_text())
    assert r0["step"] == 8 and math.isfinite(r0["miou"])
    hist = pd.read_csv(whole / "ddp" / "history.csv")
    assert list(hist["step"]) == [2, 4, 6, 8]  # rank 0 alone writes

    cut = tmp_path / "cut"
    cut.mkdir()
    cfg = ddp_config(toy_root, cut, source_only, "ddp")
    proc = torchrun(cut, cfg)
    history, deadline = cut / "ddp" / "history.csv", time.time() + 300
    try:
        while not history.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)  # the first loss line: step 2
        os.killpg(proc.pid, signal.SIGTERM)  # the launcher and both ranks
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    stops = [
        re.search(r"stopped by SIGTERM at step (\d+)", r.get("stopped", "")) for r in ranks(cut)
    ]
    assert all(stops), (ranks(cut), err[-3000:])
    step = int(stops[0][1])
    assert int(stops[1][1]) == step and 2 <= step < 8  # both ranks, the same step
    assert load_checkpoint(cut / "ddp" / "checkpoints" / "latest.pt")["state"]["step"] == step

    proc = torchrun(cut, cfg, resume=True)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert ranks(cut) == [r0, r0]  # as the run never stopped
    pd.testing.assert_frame_equal(
        pd.read_csv(cut / "ddp" / "history.csv").drop(columns=["step_s", "data_wait"]),
        hist.drop(columns=["step_s", "data_wait"]),
    )


def test_saved_predictions_score_the_same_with_the_official_evaluator(toy_root, source_only):
    np.in1d = np.isin  # numpy 2 removed in1d, which the evaluator still calls
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as ev

    from pixda_core.train.cli import evaluate_run

    folder = source_only.parents[1]
    cfg = Config.from_yaml(folder / "config.yaml")
    ours = evaluate_run(cfg, which_iter=8, save_predictions=True)
    preds = sorted((folder / "predictions_step_8" / "labelIds").glob("*/*_pred_labelIds.png"))
    gts = sorted((toy_root / "cityscapes" / "gtFine" / "val").glob("*/*_gtFine_labelIds.png"))
    assert len(preds) == len(gts) == 6
    assert len(list((folder / "predictions_step_8" / "color").glob("*/*.png"))) == 6
    args = ev.args
    args.evalInstLevelScore, args.JSONOutput, args.quiet = False, False, True
    args.evalLabels = [lab.id for lab in ev.labels if lab.id >= 0]
    official = ev.evaluateImgLists([str(p) for p in preds], [str(g) for g in gts], args)
    for name, value in ours["per_class_iou"].items():
        theirs = official["classScores"][name]
        if value is None:
            assert np.isnan(theirs), name
        else:
            assert value == pytest.approx(theirs, abs=1e-9), name


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
