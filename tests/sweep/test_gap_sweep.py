"""Sweeps over the toy's domain gap (pixda_core.gap_sweep, sweep --gaps), the gap figure and the
calibration figures read from such a folder."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pixda_core.data import toy
from tests.helpers import ROOT, TINY

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]  # the gap sweep: four runs


def _calibration():
    spec = importlib.util.spec_from_file_location(
        "toy_calibration", ROOT / "benchmarks" / "toy_calibration.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gap_sweep(toy_root, tmp_path_factory):
    """gaps 0 and 1 (the toy's own): source-only per seed and the oracle (fine-tuned from that
    seed's source-only model), seed 1, two steps each; run through the command line. (Figures
    over several seeds are checked on hand-made run tables: the sweep's code is the same for
    every seed.)"""
    import shutil

    base = tmp_path_factory.mktemp("gaps")
    data = base / "toy"
    shutil.copytree(toy_root, data)
    out = base / "sweep"
    sets = [
        f"{section}.{key}={json.dumps(value)}"
        for section, values in TINY.items()
        for key, value in values.items()
    ]
    cmd = [
        sys.executable, "-m", "pixda_core", "sweep", "--gaps", "0", "1",
        "--methods", "source_only", "oracle", "--shots", "1", "--seeds", "1",
        "--source-only-per-seed", "--data-root", str(data), "--out", str(out),
        "--iterations", "2", "--pretrain-iterations", "2",
        *[x for s in sets for x in ("--set", s)],
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=base)
    return data, out, proc


def test_a_sweep_over_gaps_writes_a_toy_and_a_sweep_per_gap(gap_sweep):
    data, out, proc = gap_sweep
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the toy at gap 0: the given one's settings, another gap; gap 1 is the given toy itself
    other = json.loads((data.parent / "toy_gap0" / "toy.json").read_text())
    assert other == {**json.loads((data / "toy.json").read_text()), "gap": 0.0}
    assert not (data.parent / "toy_gap1").exists()
    assert json.loads((out / "sweep.json").read_text())["gaps"] == [0.0, 1.0]
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary["gap"].unique()) == [0.0, 1.0]
    for gap, rows in summary.groupby("gap"):
        # a source-only model per seed, the oracle per seed
        got = sorted(zip(rows["method"], rows["seed"], strict=True))
        assert got == [("oracle", 1), ("source_only", 1)]
        sub = out / f"gap{gap:g}"
        metrics = json.loads((sub / "oracle_seed1" / "metrics.json").read_text())
        assert metrics["toy"] == {"version": toy.FORMAT_VERSION, "gap": gap, "seed": 3}
    oracle = json.loads((out / "gap0" / "oracle_seed1" / "metrics.json").read_text())
    assert oracle["split"] == "all" and oracle["shots"] == 3
    # each seed's oracle adapted from that seed's source-only model
    ft = (out / "gap1" / "oracle_seed1" / "config.yaml").read_text()
    assert "own_source_only: true" in ft and "seed: 1" in ft


def test_the_gap_figure_and_table(gap_sweep):
    _, out, proc = gap_sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    figure = out / "analysis" / "miou_vs_gap.png"
    assert (out / "analysis" / "miou_vs_gap.pdf").is_file()
    with Image.open(figure) as img:  # a real picture: large, and not one colour
        pixels = np.asarray(img.convert("L"))
    assert min(pixels.shape) > 300 and pixels.std() > 10
    table = (out / "analysis" / "stats_by_gap.md").read_text()
    assert "gap 0" in table and "gap 1" in table
    for title in ("source only", "oracle"):
        assert title in table
    by_gap = pd.read_csv(out / "analysis" / "stats_by_gap.csv")
    summary = pd.read_csv(out / "summary.csv")
    means = summary.groupby(["method", "gap"])["miou"].mean() * 100
    for r in by_gap.itertuples():
        assert r.mean == pytest.approx(means[(r.method, r.gap)])
        assert r.n == 1
    # the per-class analysis after it took one gap: the default 1
    nb = (out / "notebooks" / "04_per_class_error_visualization.ipynb").read_text()
    assert "uses the runs at gap 1 (of 2 gaps)" in nb


def test_status_and_collect_of_a_sweep_over_gaps(gap_sweep):
    _, out, proc = gap_sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = subprocess.run(
        [sys.executable, "-m", "pixda_core", "sweep", "--status", str(out)],
        capture_output=True,
        text=True,
    )
    assert status.returncode == 0, status.stderr
    assert "gap0/oracle_seed1" in status.stdout and "gap1/oracle_seed1" in status.stdout
    assert "[sweep] 4 done" in status.stdout  # 2 gaps x (a source-only model + the oracle)
    again = subprocess.run(
        [sys.executable, "-m", "pixda_core", "sweep", "--collect", str(out), "--no-analysis"],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stderr
    assert len(pd.read_csv(out / "summary.csv")) == 4
    # a plain sweep into the folder of a sweep over gaps is refused, naming it
    plain = subprocess.run(
        [sys.executable, "-m", "pixda_core", "sweep", "--out", str(out), "--shots", "1"],
        capture_output=True,
        text=True,
    )
    assert plain.returncode == 2 and "is a sweep over gaps" in plain.stderr
    assert "Traceback" not in plain.stderr


def test_calibration_figures_over_seeds():
    """The figures' arithmetic on a hand-made run table: two seeds at gaps 0 and 1, a
    source-only model and the oracle per seed."""
    cal = _calibration()
    miou = {  # (method, gap, seed) -> mIoU (0-1)
        ("source_only", 1.0, 0): 0.20, ("source_only", 1.0, 1): 0.24,
        ("oracle", 1.0, 0): 0.50, ("oracle", 1.0, 1): 0.40,
        ("source_only", 0.0, 0): 0.30, ("source_only", 0.0, 1): 0.28,
        ("oracle", 0.0, 0): 0.35, ("oracle", 0.0, 1): 0.37,
    }  # fmt: skip
    runs = pd.DataFrame(
        [{"method": m, "gap": g, "seed": s, "shots": 0 if m == "source_only" else 3, "miou": v}
         for (m, g, s), v in miou.items()]
    )  # fmt: skip
    table, notes = cal.calibration(runs, gap=1.0)
    by = table.set_index("figure")
    assert by.loc["source-only / oracle", "mean"] == pytest.approx((20 / 50 + 24 / 40) / 2)
    assert by.loc["source-only / oracle", "n"] == 2
    row = by.loc["oracle - source-only at gap 0 (points)"]
    assert row["mean"] == pytest.approx(((35 - 30) + (37 - 28)) / 2)
    assert row["low"] < row["mean"] < row["high"]
    # no 5-shot run here: that figure has no value (and is not inside its range)
    assert by.loc["oracle - FT 5-shot (points)", "n"] == 0
    assert not by.loc["oracle - FT 5-shot (points)", "inside"]
    # one source-only model for both seeds: its value used seed by seed, and said
    one = runs[~((runs["method"] == "source_only") & (runs["seed"] == 1))]
    table, notes = cal.calibration(one, gap=1.0)
    ratio = table.set_index("figure").loc["source-only / oracle", "mean"]
    assert ratio == pytest.approx((20 / 50 + 20 / 40) / 2)
    assert any("one source-only model (seed 0) for every seed" in n for n in notes)


def test_the_calibration_script_on_the_gap_sweep(gap_sweep):
    _, out, proc = gap_sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    cal = _calibration()
    from pixda_core.analysis import load_runs

    runs = load_runs(out)
    table, _ = cal.calibration(runs, gap=1.0)
    at1 = runs[runs["gap"] == 1.0].set_index("method")["miou"] * 100
    by = table.set_index("figure")
    ratio = at1["source_only"] / at1["oracle"]
    assert by.loc["source-only / oracle", "mean"] == pytest.approx(ratio)
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "toy_calibration.py"), str(out)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1  # not every figure inside its range
    assert "source-only / oracle" in done.stdout and (out / "calibration.md").is_file()


def test_the_toy_table_script_on_the_gap_sweep(gap_sweep):
    _, out, proc = gap_sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "toy_table.py"), str(out), "--gap", "1"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    text = (out / "toy_table.md").read_text()
    assert text == done.stdout.rstrip("\n") + "\n" or text.strip() == done.stdout.strip()
    table = text.split("\n\n")[0]
    assert "| oracle" in table and "all" in table.splitlines()[0]  # gap 1 only
    assert "mIoU against the domain gap" in text and "gap 0" in text
    assert "No PixDA selection round" in text
