"""Sweeps (pixda_core.sweep, sweep_cli): runs, notebooks, summary, skipping, failures, locks, and
the sweep's own records."""

from __future__ import annotations

import fcntl
import json
import re
import subprocess
import sys
import time

import nbformat
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pixda_core.errors import DataError
from pixda_core.sweep import run_sweep
from pixda_core.sweep_cli import main as sweep_main
from pixda_core.sweep_grid import Grid
from pixda_core.sweep_state import read_grid, read_runs
from tests.helpers import CONTENT, FUZZ, GRID, ROOT, TINY, png_size, read_each


@pytest.mark.notebooks
def test_sweep_counts_a_failed_run_and_goes_on(sweep_copy, toy_root, capsys):
    from pixda_core.sweep_cli import main

    out, _ = sweep_copy
    sets = [f"--set={s}.{k}={v}" for s, kv in TINY.items() for k, v in kv.items()]
    flags = [
        "--out",
        str(out),
        "--data-root",
        str(toy_root),
        "--shots",
        "1",
        "3",
        "--methods",
        "finetune",
        "--pretrain-iterations",
        "6",
        "--no-analysis",
        *sets,
    ]
    # 1-shot is done already and skipped; the 3-shot run gets a bad value, which reaches the
    # notebook's config and fails there with the config's message
    code = main([*flags, "--iterations", "0"])
    assert code == 1
    fails = pd.read_csv(out / "failures.csv")
    assert list(fails["method"]) == ["finetune"] and list(fails["shots"]) == [3]
    assert "adapt.early_stop = 0: expected between 1 and" in fails["error"].iloc[0]
    executed = (out / "notebooks" / "03_finetune_3shot_seed0.ipynb").read_text()
    assert "ConfigError" in executed and "adapt.early_stop" in executed
    assert "failed 1" in capsys.readouterr().out


@pytest.mark.notebooks
def test_a_second_sweep_on_the_same_folder_waits_for_the_first(sweep_copy, toy_root):
    """While one sweep holds the folder's lock a second one says so and waits, writing
    nothing; once the lock is free it goes on (here: everything is done, so it skips)."""
    out, _ = sweep_copy
    summary = out / "summary.csv"
    before = summary.read_bytes()
    sets = [f"--set={s}.{k}={v}" for s, kv in TINY.items() for k, v in kv.items()]
    cmd = [
        sys.executable,
        "-m",
        "pixda_core",
        "sweep",
        "--out",
        str(out),
        "--data-root",
        str(toy_root),
        "--shots",
        "1",
        "2",
        "--methods",
        "source_only",
        "finetune",
        "pixda",
        "--iterations",
        "4",
        "--pretrain-iterations",
        "6",
        "--no-analysis",
        *sets,
    ]
    with open(out / ".sweep.lock", "w") as held:  # the first sweep, still running
        fcntl.flock(held, fcntl.LOCK_EX)
        second = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        line = second.stderr.readline()  # blocks until the second sweep reports
        assert f"another sweep is running in {out}; waiting for it" in line
        time.sleep(1.0)
        assert second.poll() is None, "the second sweep did not wait"
        assert summary.read_bytes() == before
    stdout, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr[-2000:]
    assert "ran 0, skipped 5" in stdout, stdout[-1000:]
    table = pd.read_csv(summary)
    assert len(table) == 5 and table["miou"].between(0, 1).all()


@pytest.mark.data
@FUZZ
@given(CONTENT, st.sampled_from(["runs.csv", "sweep.json"]))
def test_the_sweeps_records(content, name):
    read = read_runs if name == "runs.csv" else read_grid
    read_each(lambda path: read(path.parent), content, name)  # they read the sweep's folder


@pytest.mark.notebooks
def test_sweep_writes_runs_notebooks_and_summary(sweep):
    out, result = sweep
    assert result.failed == [] and len(result.ran) == 5  # 02 + 4 x 03
    names = {
        "finetune_1shot_seed0",
        "finetune_2shot_seed0",
        "pixda_1shot_seed0",
        "pixda_2shot_seed0",
    }
    for name in names:
        m = json.loads((out / name / "metrics.json").read_text())
        # FT 5 steps; PixDA 5 (or 4, where its round kept under a batch) + 2 distillation steps
        assert 0 <= m["miou"] <= 1 and m["step"] in ({5} if "finetune" in name else {6, 7})
        executed = nbformat.read(out / "notebooks" / f"03_{name}.ipynb", as_version=4)
        assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code")
        png_size(out / name / "training.png")
        png_size(out / name / "per_class_iou.png")
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns[:6]) == ["method", "shots", "seed", "split", "source", "miou"]
    # the toy root holds none of the published images: each split drawn with the run's seed
    assert set(summary["split"].dropna()) == {"seed 0"}
    assert "miou_13" not in summary and "iou_rider" in summary and len(summary.columns) == 29
    # what each run took, from its timing.json: on this machine's CPU
    assert list(summary.columns[-4:]) == ["device", "wall_s", "step_s", "peak_memory_gb"]
    assert summary["device"].str.startswith("CPU ").all()
    assert (summary["step_s"] > 0).all() and (summary["wall_s"] > summary["step_s"]).all()
    assert (summary["peak_memory_gb"] > 0.1).all()  # (the process's resident memory)
    timing = json.loads((out / "pixda_1shot_seed0" / "timing.json").read_text())
    steps = json.loads((out / "pixda_1shot_seed0" / "metrics.json").read_text())["step"]
    assert timing["steps"] == steps
    assert timing["step_s"] * steps == pytest.approx(timing["step_seconds"])
    assert sorted(zip(summary["method"], summary["shots"], strict=True)) == [
        ("finetune", 1),
        ("finetune", 2),
        ("pixda", 1),
        ("pixda", 2),
        ("source_only", 0),
    ]
    so = [p for p in out.iterdir() if p.name.startswith("source_only_gta5_toy_")]
    assert len(so) == 1 and (out / "notebooks" / "02_source_only_gta5_toy.ipynb").exists()


@pytest.mark.notebooks
def test_sweep_analysis_figures_and_tables(sweep):
    out, _ = sweep
    a = out / "analysis"
    for name in ("per_class_iou", "miou_vs_shots", "gain_over_source_only", "error_maps"):
        w, h = png_size(a / f"{name}.png")
        assert w > 1000 and h > 500, name
        assert (a / f"{name}.pdf").stat().st_size > 1000
    for pdf in a.glob("*.pdf"):  # TrueType fonts, never Type 3 (paper checkers refuse it)
        kinds = set(re.findall(rb"/Subtype\s*/(\w+)", pdf.read_bytes()))
        assert b"Type3" not in kinds and kinds & {b"TrueType", b"CIDFontType2"}, (pdf, kinds)
    assert len(list(a.glob("confusion_*.png"))) == 3  # source only, FT 2-shot, PixDA 2-shot
    table = pd.read_csv(a / "per_class_iou.csv", index_col=0)
    assert list(table.columns[:3]) == ["mIoU", "road", "sidewalk"] and len(table) == 5
    assert "| source only" in (a / "per_class_iou.md").read_text()
    assert "\\begin{tabular}" in (a / "per_class_iou.tex").read_text()


@pytest.mark.notebooks
def test_sweep_skips_what_is_done(sweep_copy, toy_root):
    out, _ = sweep_copy
    before = (out / "pixda_1shot_seed0" / "metrics.json").stat().st_mtime_ns
    again = run_sweep(Grid(data_root=str(toy_root), overrides=TINY, **GRID), out, analysis=False)
    assert again.ran == [] and again.failed == [] and len(again.skipped) == 5
    assert (out / "pixda_1shot_seed0" / "metrics.json").stat().st_mtime_ns == before


@pytest.mark.data
@pytest.mark.parametrize(
    ("name", "content", "said"),
    [
        ("runs.csv", b"", "sweep record {p} is damaged"),
        ("runs.csv", b"a,b\n1,2\n", "sweep record {p} lacks the columns"),
        ("sweep.json", b'{"methods": [', "sweep record {p} is damaged (not valid JSON"),
        ("sweep.json", b"[]", "sweep record {p} is damaged (not an object with the lists methods"),
    ],
)
def test_the_sweeps_own_records_are_checked(tmp_path, name, content, said):
    path = tmp_path / name
    path.write_bytes(content)
    read = read_runs if name == "runs.csv" else read_grid
    with pytest.raises(DataError, match="delete it and re-run the sweep command") as raised:
        read(tmp_path)
    assert said.format(p=path) in str(raised.value)
    assert isinstance(read_runs(tmp_path / "nowhere"), pd.DataFrame)  # no record yet: none


@pytest.mark.data
def test_sweep_status_shows_no_progress_for_damaged_tables(tmp_path):
    from pixda_core.sweep_state import _progress

    run = tmp_path / "r"
    run.mkdir()
    (run / "history.csv").write_text("step,loss\n3,1.0\n")
    (run / "validations.csv").write_text("step,miou\n3,0.25\n")
    assert _progress(run) == (3, 25.0)
    (run / "history.csv").write_text("nostep\n1\n")
    (run / "validations.csv").write_bytes(b"step,miou\nx,\xff\n")
    assert _progress(run) == (None, None)


@pytest.mark.unit
@pytest.mark.parametrize("flag", ["--status", "--collect"])
def test_sweep_status_and_collect_on_a_missing_folder_exit_2_naming_it(tmp_path, capsys, flag):
    missing = tmp_path / "no_such_sweep"
    code = sweep_main([flag, str(missing)])
    err = capsys.readouterr().err
    assert code == 2 and f"error: {flag} {missing}: no such sweep folder" in err, err
    assert not missing.exists()
