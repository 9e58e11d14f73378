"""PixDA's sample selection (pixda_core.methods.pixda: the score, the rule, a round;
pixda_core.train.selection: scoring the kept source images, the toy's truth)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from pixda_core import losses as L
from pixda_core.config import Config
from pixda_core.data.fda import fda_source_to_target
from pixda_core.methods import method_of
from pixda_core.methods.pixda import keep, next_tau, score_images
from pixda_core.train import adapt, setup_runtime
from pixda_core.train.job import Job
from pixda_core.train.rundir import RunFolder
from pixda_core.train.runtime import Runtime
from pixda_core.train.step import build_nets
from tests.helpers import tiny, toy_preset


def make_job(cfg: Config) -> Job:
    rt = setup_runtime(cfg.run)
    return Job(cfg, method_of(cfg), RunFolder.open(cfg, False), rt, cfg.run.restore_from)


def select(job: Job) -> None:
    """One selection round of a job, its streams open as in the training loop."""
    with job.open_streams():
        job.method.source_pass_end(job)


@pytest.mark.unit
def test_the_selection_rule_keeps_scores_above_tau_and_never_nan():
    scores = torch.tensor([0.1, 0.4, 0.41, float("nan"), 2.0])
    assert keep(scores, 0.4).tolist() == [False, False, True, False, True]
    assert next_tau(0.4, 0.4) == pytest.approx(0.8)


@pytest.mark.unit
def test_the_per_image_domain_bce_is_the_mean_bce_of_each_image():
    d = torch.randn(3, 1, 5, 7, generator=torch.Generator().manual_seed(0))
    per_image = L.domain_bce_per_image(d, L.SOURCE)
    assert per_image.shape == (3,)
    for i in range(3):
        assert per_image[i] == pytest.approx(L.domain_bce(d[i : i + 1], L.SOURCE).item(), rel=1e-6)
    # a discriminator sure of "target" everywhere scores high against "source"
    assert L.domain_bce_per_image(torch.full((1, 1, 2, 2), 8.0), L.SOURCE) > 7.9
    with pytest.raises(ValueError, match="SOURCE"):
        L.domain_bce_per_image(d, 3)


@pytest.mark.unit
def test_selection_scores_are_d2_on_g_per_image_and_fda_changes_them():
    cfg = toy_preset()
    nets = build_nets(cfg, method_of(cfg), cfg.adapt, Runtime(torch.device("cpu")))
    g, d2 = nets.g.eval(), nets.networks["d2"]
    gen = torch.Generator().manual_seed(1)
    src, trg = torch.rand(2, 3, 32, 64, generator=gen) * 255, torch.rand(2, 3, 32, 64) * 255
    rt = Runtime(torch.device("cpu"))
    plain = score_images(g, d2, src, (32, 64), rt)
    one = score_images(g, d2, src[1:], (32, 64), rt)  # each image scored on its own
    assert plain.shape == (2,) and plain[1] == pytest.approx(one[0].item(), rel=1e-5)
    styled = score_images(g, d2, src, (32, 64), rt, paired=trg, fda_beta=0.05)
    by_hand = score_images(g, d2, fda_source_to_target(src, trg, 0.05), (32, 64), rt)
    assert torch.equal(styled, by_hand) and not torch.equal(styled, plain)
    assert all(math.isfinite(v) and v > 0 for v in plain.tolist())


@pytest.mark.unit
def test_selection_against_the_truth_on_a_hand_made_round():
    from pixda_core.train.selection import TRUTH_COLUMNS, against_truth

    # four candidates: the two nearest the target look score highest and are kept
    got = against_truth([0.9, 0.8, 0.2, 0.1], [True, True, False, False], [0.1, 0.2, 0.8, 0.9])
    assert list(got) == list(TRUTH_COLUMNS)
    assert got["distance_rho"] == pytest.approx(-1.0)
    assert got["kept_distance"] == pytest.approx(0.15)
    assert got["dropped_distance"] == pytest.approx(0.85)
    # ranks, not values: a tie and a reversed pair; an unreadable image (NaN score) and one
    # without a distance are left out of everything
    got = against_truth(
        [0.5, 0.5, 0.7, 0.1, math.nan, 0.3],
        [True, True, True, False, False, False],
        [1.0, 0.0, 0.5, 1.0, 0.0, math.nan],
    )
    # scores 0.5 0.5 0.7 0.1 -> ranks 2.5 2.5 4 1; distances 1 0 0.5 1 -> ranks 3.5 1 2 3.5
    a, b = [2.5, 2.5, 4, 1], [3.5, 1, 2, 3.5]
    ma, mb = sum(a) / 4, sum(b) / 4
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    rho = cov / math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))
    assert got["distance_rho"] == pytest.approx(rho)
    assert got["kept_distance"] == pytest.approx(0.5)
    assert got["dropped_distance"] == pytest.approx(1.0)
    # nothing to correlate: every distance equal, or a side with no image
    flat = against_truth([0.1, 0.5, 0.9], [False, True, True], [1.0, 1.0, 1.0])
    assert math.isnan(flat["distance_rho"]) and flat["kept_distance"] == 1.0
    none_kept = against_truth([0.1, 0.5, 0.9], [False] * 3, [0.2, 0.5, 1.0])
    assert math.isnan(none_kept["kept_distance"]) and none_kept["dropped_distance"] > 0.5


@pytest.mark.training
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


@pytest.mark.training
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


@pytest.mark.training
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


@pytest.mark.training
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
