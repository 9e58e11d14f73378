"""End to end: ``make demo``'s job, shrunk (notebook 01, the small sweep, notebook 04)."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from pixda_core import demo
from tests.helpers import TINY, png_size, take_source_only

pytestmark = pytest.mark.notebooks


#: the test benchmark's pass over its 8 source images is 4 steps at TINY's batch 2: PixDA
#: selects at step 4, then trains one step more (as the demo: 75 steps, a round, 5 more)
ITERATIONS = 5


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline(toy_root, tmp_path, capsys):
    out = tmp_path / "demo"
    result = demo.run(
        toy_root,
        out,
        pretrain_iterations=4,
        iterations=ITERATIONS,
        overrides=TINY,
        progress=False,
        shots=(1,),
    )  # one shot count: the demo's grid is the same code at every count
    summary = pd.read_csv(result["summary"])
    assert sorted(zip(summary["method"], summary["shots"], strict=True)) == [
        ("finetune", 1),
        ("pixda", 1),
        ("source_only", 0),
    ]
    for name in ("class_frequency", "samples", "fda_preview"):
        png_size(out / "data" / f"{name}.png")
    for name in ("per_class_iou", "miou_vs_shots", "gain_over_source_only", "error_maps"):
        png_size(out / "sweep" / "analysis" / f"{name}.png")
    assert (out / "notebooks" / "01_data_preparation.ipynb").exists()
    printed = capsys.readouterr().out
    assert "per-class IoU on the toy target val set" in printed and "| PixDA (1-shot)" in printed
    assert str(result["summary"]) in printed and "python -m pixda_core sweep --shots 5" in printed
    # PixDA ran whole: its selection round and its distillation, as its selection.csv says
    rounds = pd.read_csv(out / "sweep" / "pixda_1shot_seed0" / "selection.csv")
    kept = rounds.loc[rounds["round"].eq(1) & rounds["event"].isna(), "kept"].item()
    said = re.search(
        rf"PixDA \(1-shot, seed 0\): selection round 1 at step 4 kept {kept} of 8 source images "
        r"\(tau 0\.40\); main phase over at step (\d) \(.+\); distillation 2 steps\n",
        printed,
    )
    assert said and int(said[1]) == (5 if kept >= 2 else 4), printed  # (fewer than a batch: 4)

    # the sweep command reproduces a cell of the demo exactly (CPU, same seed)
    from pixda_core.sweep import run_sweep

    take_source_only(out / "sweep", tmp_path / "again")  # the demo's, under the copy's name
    again = run_sweep(
        tmp_path / "again",
        shots=(1,),
        methods=("pixda",),
        seeds=(0,),
        data_root=str(toy_root),
        pretrain_iterations=4,
        iterations=ITERATIONS,
        overrides=TINY,
        analysis=False,
        jobs=demo.JOBS,  # as printed: the threads per notebook decide the last bits
    )
    cell = pd.read_csv(again["summary"]).iloc[0]
    assert cell["miou"] == summary.set_index(["method", "shots"]).loc[("pixda", 1), "miou"]


def test_demo_refuses_a_broken_root(toy_copy, tmp_path, capsys):
    (toy_copy / "gta5" / "labels" / "00002.png").unlink()
    assert demo.main(["--data", str(toy_copy), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "notebook 01 failed" in err and "failed its check" in err
