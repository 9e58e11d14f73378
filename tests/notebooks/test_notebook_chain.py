"""The JupyterLab path as a newcomer takes it: notebooks 01, 02, 03 and 04 in order, every
path at its default (only sizes and iterations shrunk, and notebook 01's split another one
than the default), in a folder of their own (issue 32); what each of them writes."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from pixda_core.notebook_run import NB_ADAPT, NB_ANALYSIS, NB_SOURCE_ONLY, execute
from tests.helpers import TINY, png_size


@pytest.mark.notebooks
@pytest.mark.slow
def test_notebooks_01_to_04_chain_with_their_defaults(toy_root, tmp_path, monkeypatch):
    home = tmp_path / "home"  # where relative paths go: nothing is written into the checkout
    shutil.copytree(toy_root, home / "data" / "toy")  # the default data_root, already there
    monkeypatch.setenv("PIXDA_HOME", str(home))
    small = {"overrides": TINY, "device": "cpu"}
    chain = [
        ("01_data_preparation.ipynb", {"num_shots": 2, "seed": 4}),
        (NB_SOURCE_ONLY, {"iterations": 2, **small}),
        (NB_ADAPT, {"iterations": 2, "pretrain_iterations": 2, **small}),
        (NB_ANALYSIS, {"interactive": False, "num_images": 1, "candidates": 2}),
    ]
    for notebook, parameters in chain:
        why = execute(notebook, tmp_path / "executed" / notebook, parameters)
        assert why is None, f"{notebook}: {why}"

    results = home / "results"
    prep = results / "01_data_preparation"  # notebook 01's default out_dir
    split = (prep / "split_2shot_seed4.txt").read_text().splitlines()
    assert len(split) == 36 and len({s.split("/")[0] for s in split}) == 18
    stats = pd.read_csv(prep / "class_stats.csv")
    assert set(stats["domain"]) == {"GTA5 (source)", "Cityscapes train (target)"}
    assert stats.groupby("domain")["share"].sum().round(9).eq(1).all()
    w, h = png_size(prep / "class_frequency.png")
    assert w > 1500 and h > 500
    assert (prep / "class_frequency.pdf").exists()
    w, h = png_size(prep / "fda_preview.png")
    assert w > 1000 and h > 600  # three rows of three images
    png_size(prep / "samples.png")

    run = results / "pixda_1shot_seed0"  # notebook 03's default run
    assert (run / "metrics.json").is_file()
    analysis = results / "04_analysis"  # notebook 04's default out_dir, over results/
    summary = pd.read_csv(analysis / "summary.csv")
    assert "pixda_1shot_seed0" in set(summary["run"])
    assert set(summary["method"]) == {"source_only", "pixda"}
    assert summary["setting_label"].isna().all()  # one setting: nothing to tell apart
    stats = pd.read_csv(analysis / "stats_miou.csv")
    assert set(stats["method"]) == {"source_only", "pixda"}
    for figure in ("per_class_iou", "miou_vs_shots", "gain_over_source_only", "error_maps"):
        assert (analysis / f"{figure}.png").is_file(), figure
    assert list(analysis.glob("confusion_*.png"))
    executed = (tmp_path / "executed" / NB_ANALYSIS).read_text()
    assert '"output_type": "error"' not in executed and json.loads(executed)
