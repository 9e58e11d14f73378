"""End to end: ``make demo``'s job, shrunk (notebook 01, the small sweep, notebook 04): the
session's demo (conftest), which the sweep and notebook tests read as the session's sweep."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from pixda_core import demo as demo_module
from tests.helpers import GRID, TINY, png_size, take_source_only

pytestmark = pytest.mark.notebooks


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline(demo, toy_root, tmp_path):
    """The session's demo (conftest.demo: notebook 01, the sweep at 1 and 2 shots, notebook
    04), its files and what it printed; then the sweep command it prints reproduces a cell."""
    out, result, printed = demo
    summary = pd.read_csv(result.summary)
    assert result.failed == [] and result.summary == out / "sweep" / "summary.csv"
    assert sorted(zip(summary["method"], summary["shots"], strict=True)) == [
        ("finetune", 1),
        ("finetune", 2),
        ("pixda", 1),
        ("pixda", 2),
        ("source_only", 0),
    ]
    for name in ("class_frequency", "samples", "fda_preview"):
        png_size(out / "data" / f"{name}.png")
    for name in ("per_class_iou", "miou_vs_shots", "gain_over_source_only", "error_maps"):
        png_size(out / "sweep" / "analysis" / f"{name}.png")
    assert (out / "notebooks" / "01_data_preparation.ipynb").exists()
    assert "per-class IoU on the toy target val set" in printed and "| PixDA (1-shot)" in printed
    assert str(result.summary) in printed and "python -m pixda_core sweep --shots 5" in printed
    # PixDA ran whole: its selection round and its distillation, as its selection.csv says
    for shots in GRID["shots"]:
        rounds = pd.read_csv(out / "sweep" / f"pixda_{shots}shot_seed0" / "selection.csv")
        kept = rounds.loc[rounds["round"].eq(1) & rounds["event"].isna(), "kept"].item()
        said = re.search(
            rf"PixDA \({shots}-shot, seed 0\): selection round 1 at step 4 kept {kept} of 8 "
            r"source images \(tau 0\.40\); main phase over at step (\d) \(.+\); distillation 2 "
            r"steps\n",
            printed,
        )
        assert said and int(said[1]) == (5 if kept >= 2 else 4), printed  # (under a batch: 4)

    # the sweep command reproduces a cell of the demo exactly (CPU, same seed)
    from pixda_core.executors import Local
    from pixda_core.sweep import run_sweep
    from pixda_core.sweep_grid import Grid

    take_source_only(out / "sweep", tmp_path / "again")  # the demo's, under the copy's name
    grid = Grid(
        methods=("pixda",),
        shots=(1,),
        data_root=str(toy_root),
        iterations=GRID["iterations"],
        pretrain_iterations=GRID["pretrain_iterations"],
        overrides=TINY,
    )
    # with the demo's jobs, as printed: the threads per notebook decide the last bits
    again = run_sweep(grid, tmp_path / "again", Local(demo_module.JOBS), analysis=False)
    cell = pd.read_csv(again.summary).iloc[0]
    assert cell["miou"] == summary.set_index(["method", "shots"]).loc[("pixda", 1), "miou"]


def test_demo_refuses_a_broken_root(toy_copy, tmp_path, capsys):
    (toy_copy / "gta5" / "labels" / "00002.png").unlink()
    assert (
        demo_module.main(["--data", str(toy_copy), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    )
    err = capsys.readouterr().err
    assert "notebook 01 failed" in err and "failed its check" in err
