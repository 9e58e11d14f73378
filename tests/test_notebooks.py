"""The numbered notebooks under papermill, the sweep, and the analysis helpers."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import papermill as pm
import pytest
from PIL import Image

from pixda_core import analysis as A
from pixda_core.sweep import run_sweep
from pixda_core.workflow import notebooks_dir

from .helpers import TINY

pytestmark = pytest.mark.notebooks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(notebooks_dir().glob("0*.ipynb"))  # the kit's own, which sweeps execute


def png_size(path: Path) -> tuple[int, int]:
    assert path.stat().st_size > 5_000, path
    with Image.open(path) as im:
        return im.size


def test_there_are_four_numbered_notebooks():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04"]


def committed(path: Path) -> str:
    """The notebook as it is (or will be) committed: the git index's copy, which the
    nbstripout filter cleaned on `git add`; the file itself outside a git checkout."""
    git = shutil.which("git")
    if git is not None:
        rel = path.relative_to(ROOT).as_posix()
        shown = subprocess.run(
            [git, "show", f":{rel}"], cwd=ROOT, capture_output=True, text=True, check=False
        )
        if shown.returncode == 0:
            return shown.stdout
    return path.read_text()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_source_notebooks_have_no_outputs_and_one_literal_parameters_cell(path):
    # no outputs in what is committed: running a notebook in JupyterLab (outputs saved into
    # the working file, which the git filter strips on `git add`) does not fail the suite
    stored = nbformat.reads(committed(path), as_version=4)
    assert all(
        not c.outputs and c.execution_count is None for c in stored.cells if c.cell_type == "code"
    )
    # the parameters cell of the file that sweeps execute
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0] is code[0]
    for stmt in ast.parse(tagged[0].source).body:  # literals only: papermill can replace them
        assert isinstance(stmt, ast.Assign), ast.dump(stmt)
        ast.literal_eval(stmt.value)


def test_notebook_01_data_preparation(toy_root, tmp_path):
    out = tmp_path / "01"
    pm.execute_notebook(
        str(NOTEBOOKS[0]),
        str(tmp_path / "01.ipynb"),
        progress_bar=False,
        parameters={"data_root": str(toy_root), "num_shots": 2, "seed": 4, "out_dir": str(out)},
    )
    split = (out / "split_2shot_seed4.txt").read_text().splitlines()
    assert len(split) == 36 and len({s.split("/")[0] for s in split}) == 18
    stats = pd.read_csv(out / "class_stats.csv")
    assert set(stats["domain"]) == {"GTA5 (source)", "Cityscapes train (target)"}
    assert stats.groupby("domain")["share"].sum().round(9).eq(1).all()
    w, h = png_size(out / "class_frequency.png")
    assert w > 1500 and h > 500
    assert (out / "class_frequency.pdf").exists()
    w, h = png_size(out / "fda_preview.png")
    assert w > 1000 and h > 600  # three rows of three images
    png_size(out / "samples.png")


def test_sweep_writes_runs_notebooks_and_summary(sweep):
    out, result = sweep
    assert result["failed"] == [] and len(result["ran"]) == 5  # 02 + 4 x 03
    names = {
        "finetune_1shot_seed0",
        "finetune_2shot_seed0",
        "pixda_1shot_seed0",
        "pixda_2shot_seed0",
    }
    for name in names:
        m = json.loads((out / name / "metrics.json").read_text())
        assert 0 <= m["miou"] <= 1 and m["step"] in (4, 6)  # PixDA: + 2 distillation steps
        executed = nbformat.read(out / "notebooks" / f"03_{name}.ipynb", as_version=4)
        assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code")
        png_size(out / name / "training.png")
        png_size(out / name / "per_class_iou.png")
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns[:6]) == ["method", "shots", "seed", "split", "source", "miou"]
    # the toy root holds none of the published images: each split drawn with the run's seed
    assert set(summary["split"].dropna()) == {"seed 0"}
    assert "miou_13" not in summary and "iou_rider" in summary and len(summary.columns) == 25
    assert sorted(zip(summary["method"], summary["shots"], strict=True)) == [
        ("finetune", 1),
        ("finetune", 2),
        ("pixda", 1),
        ("pixda", 2),
        ("source_only", 0),
    ]
    so = [p for p in out.iterdir() if p.name.startswith("source_only_gta5_toy_")]
    assert len(so) == 1 and (out / "notebooks" / "02_source_only_gta5_toy.ipynb").exists()


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


def test_sweep_skips_what_is_done(sweep, toy_root):
    out, _ = sweep
    before = (out / "pixda_1shot_seed0" / "metrics.json").stat().st_mtime_ns
    again = run_sweep(
        out,
        shots=(1, 2),
        methods=("source_only", "finetune", "pixda"),
        seeds=(0,),
        data_root=str(toy_root),
        iterations=4,
        pretrain_iterations=6,
        overrides=TINY,
        analysis=False,
    )
    assert again["ran"] == [] and again["failed"] == [] and len(again["skipped"]) == 5
    assert (out / "pixda_1shot_seed0" / "metrics.json").stat().st_mtime_ns == before


def test_notebook_04_on_two_run_folders(sweep, tmp_path):
    out, _ = sweep
    runs = [str(out / "finetune_2shot_seed0"), str(out / "pixda_2shot_seed0")]
    pm.execute_notebook(
        str(NOTEBOOKS[3]),
        str(tmp_path / "04.ipynb"),
        progress_bar=False,
        parameters={
            "runs": runs,
            "out_dir": str(tmp_path / "a"),
            "classes": ["road", "sky"],
            "num_images": 2,
            "interactive": False,
        },
    )
    a = tmp_path / "a"
    assert len(pd.read_csv(a / "summary.csv")) == 2
    assert not (a / "gain_over_source_only.png").exists()  # no source-only run given
    w, h = png_size(a / "error_maps.png")
    # two images, each a row of (image, truth, 2 predictions) over a row of 2 error maps:
    # 4 panels (2:1) wide, 4 high
    assert h > 600 and 1.3 * h < w < 2 * h


@pytest.mark.slow
def test_synthia_source_reports_miou_16_and_13(toy_root, tmp_path):
    result = run_sweep(
        tmp_path / "syn",
        shots=(1,),
        methods=("source_only", "finetune"),
        seeds=(0,),
        source="synthia",
        data_root=str(toy_root),
        iterations=2,
        pretrain_iterations=4,
        overrides=TINY,
        analysis=False,
    )
    assert result["failed"] == []
    m = json.loads((tmp_path / "syn" / "finetune_1shot_seed0" / "metrics.json").read_text())
    assert m["protocol"] == "16" and m["source"] == "synthia"
    assert 0 <= m["miou_13"] <= 1 and 0 <= m["miou"] <= 1
    summary = pd.read_csv(tmp_path / "syn" / "summary.csv")
    assert list(summary.columns[:7]) == [
        "method",
        "shots",
        "seed",
        "split",
        "source",
        "miou",
        "miou_13",
    ]
    assert summary["miou_13"].notna().all()


# ------------------------------------------------------------------------------ analysis


def test_gain_and_tables_by_hand(tmp_path):
    def fake(name, method, shots, seed, road, sky):
        folder = tmp_path / name
        folder.mkdir()
        iou = {c: None for c in A.CLASS_NAMES} | {"road": road, "sky": sky}
        (folder / "metrics.json").write_text(
            json.dumps(
                {
                    "miou": (road + sky) / 2,
                    "protocol": "19",
                    "per_class_iou": iou,
                    "pixel_accuracy": 0.5,
                    "step": 1,
                    "method": method,
                    "source": "gta5",
                    "shots": shots,
                    "seed": seed,
                    "run": name,
                }
            )
        )

    fake("so", "source_only", 0, 0, 0.2, 0.5)
    fake("p0", "pixda", 1, 0, 0.4, 0.6)
    fake("p1", "pixda", 1, 1, 0.6, 0.6)
    runs = A.load_runs(tmp_path)
    assert list(runs["method"]) == ["source_only", "pixda", "pixda"]
    gain = A.gain_over(runs).set_index("class")["gain"]
    assert gain["road"] == pytest.approx(30.0) and gain["sky"] == pytest.approx(10.0)
    table = A.per_class_table(runs)
    assert table.loc["PixDA (1-shot)", "road"] == pytest.approx(50.0)
    assert table.loc["source only", "mIoU"] == pytest.approx(35.0)
    paths = A.write_table(table, tmp_path / "t", "per_class")
    assert [p.suffix for p in paths] == [".csv", ".md", ".tex"]
    assert "50.0" in paths[1].read_text() and "-" in paths[1].read_text()  # NaN shown as '-'


def test_error_browser_reaches_every_val_image_on_demand(sweep):
    import ipywidgets as w

    from pixda_core import workflow as wf
    from pixda_core.browse import ErrorBrowser

    out, _ = sweep
    chosen = wf.pick_runs(A.load_runs(out))
    assert list(chosen) == ["source only", "FT 2-shot", "PixDA 2-shot"]
    browser = ErrorBrowser(chosen)
    assert browser.computed == 0  # nothing precomputed
    box = browser.widget()
    # the first picture costs one prediction, whatever the size of the val set
    assert browser.computed == 1
    (left, right), readout, picture = box.children[0].children, *box.children[1:]
    slider, method, compare = left.children
    classes = right.children[0]
    assert [type(c) for c in (slider, method, compare, classes, readout, picture)] == [
        w.IntSlider, w.Dropdown, w.Dropdown, w.SelectMultiple, w.HTML, w.Image,
    ]  # fmt: skip
    assert slider.max == len(browser) - 1 and len(browser) > 2
    first = picture.value
    slider.value = slider.max  # the last val image: one more prediction
    assert browser.computed == 2 and picture.value != first
    assert f"#{slider.max}</b> (val images #0-#{slider.max})" in readout.value
    assert "source only: mIoU over" in readout.value
    method.value = "PixDA 2-shot"
    compare.value = "FT 2-shot"  # two methods side by side: two more predictions
    assert browser.computed == 4 and "PixDA 2-shot: mIoU" in readout.value
    assert "FT 2-shot: mIoU" in readout.value
    slider.value = 0
    slider.value = slider.max  # cached: nothing recomputed
    assert browser.computed == 6
    shown = [browser.item(slider.max)[2]]
    shown += [browser.prediction(slider.max, m) for m in ("PixDA 2-shot", "FT 2-shot")]
    present = set(np.unique(np.concatenate([a.ravel() for a in shown])))
    absent = next(c for i, c in enumerate(A.CLASS_NAMES) if i not in present)
    classes.value = (absent,)
    assert f"{absent}: not in this image's ground truth" in readout.value
    compare.value = "PixDA 2-shot"  # the same method twice
    assert "compare: choose a method other than the first" in readout.value
    # notebook 04's choice of static rows: indices checked, or where the methods differ
    from pixda_core.errors import ConfigError

    assert browser.chosen_images([1, 0], 2, 3) == [1, 0]
    picked = browser.chosen_images("differ", 2, 3)
    assert len(picked) == 2 and set(picked) <= {0, 1, 2}
    with pytest.raises(ConfigError, match=r"error_images: \[99\] are not val indices"):
        browser.chosen_images([0, 99], 2, 3)
    with pytest.raises(ConfigError, match="error_images = 'different': a list of val indices"):
        browser.chosen_images("different", 2, 3)
    # the static rows are labelled by city and val index
    rows = browser.rows([1], ["PixDA 2-shot"])
    assert re.fullmatch(r"[a-z]+ #1", rows[0][0]) and list(rows[0][3]) == ["PixDA 2-shot"]
    assert rows[0][2].shape == rows[0][3]["PixDA 2-shot"].shape == (48, 96)  # full label size


def test_a_sweep_after_a_jupyterlab_session_runs_the_kits_notebooks(sweep, tmp_path, monkeypatch):
    """A user copies the notebooks, edits and runs them (outputs saved, parameters changed,
    a cell that fails); a later sweep's analysis still runs the kit's own notebook 04."""
    from pixda_core.notebook_run import NB_ANALYSIS, execute
    from pixda_core.workflow import CHECKOUT, PACKAGE, copy_notebooks

    # the kit's notebooks are package data, not a folder a user opens (the checkout's
    # notebooks/ holds the user's copies)
    assert notebooks_dir() == PACKAGE / "notebooks"
    assert CHECKOUT is None or notebooks_dir() != CHECKOUT / "notebooks"
    monkeypatch.setenv("PIXDA_HOME", str(tmp_path))
    copies = copy_notebooks("notebooks")
    assert [p.parent for p in copies] == [tmp_path / "notebooks"] * 4
    mine = nbformat.read(copies[3], as_version=4)
    mine.cells[1].source = mine.cells[1].source.replace("num_images = 3", "num_images = 30")
    mine.cells[2].source = "raise RuntimeError('the copy ran')\n" + mine.cells[2].source
    mine.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="explored\n")]
    nbformat.write(mine, copies[3])

    out, _ = sweep
    executed = tmp_path / "04.ipynb"
    params = {"runs": [str(out)], "out_dir": str(tmp_path / "a"), "interactive": False}
    assert execute(NB_ANALYSIS, executed, params) is None
    ran = nbformat.read(executed, as_version=4)
    kit = nbformat.read(notebooks_dir() / NB_ANALYSIS, as_version=4)
    assert ran.cells[3].source == kit.cells[2].source  # (cell 2: papermill's parameters)
    assert "num_images = 3" in ran.cells[1].source
    assert (tmp_path / "a" / "error_maps.png").is_file()


def test_training_lines_in_a_notebook_go_to_stdout(sweep):
    """JupyterLab shows stderr in a pink error box: log lines are on stdout in a kernel."""
    out, _ = sweep
    nb = nbformat.read(out / "notebooks" / "03_pixda_1shot_seed0.ipynb", as_version=4)
    streams = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
               if o.output_type == "stream"]  # fmt: skip
    stdout = "".join(o.text for o in streams if o.name == "stdout")
    stderr = "".join(o.text for o in streams if o.name == "stderr")
    assert re.search(r"step \d+ \[main\] seg_src", stdout), stdout[-2000:]
    assert "source-only model: reusing" in stdout
    assert "step " not in stderr and "reusing" not in stderr
