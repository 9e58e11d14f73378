"""The four numbered notebooks (pixda_core.notebooks, notebook_run): committed without outputs,
run by papermill, their parameters and errors, and the git filter."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from pixda_core import workflow
from pixda_core.errors import ConfigError
from pixda_core.sweep import run_sweep
from pixda_core.sweep_grid import Grid
from pixda_core.workflow import notebooks_dir
from tests.helpers import GRID, ROOT, TINY, png_size


def papermill_cli(notebook: Path, out: Path, *params: tuple[str, str]):
    """``papermill NOTEBOOK OUT -p NAME VALUE ...`` as a user types it (``-p`` passes strings,
    numbers and True/False/None)."""
    argv = [sys.executable, "-m", "papermill", str(notebook), str(out), "-k", "python3"]
    for name, value in params:
        argv += ["-p", name, value]
    return subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=ROOT)


NOTEBOOKS = sorted(notebooks_dir().glob("0*.ipynb"))  # the kit's own, which sweeps execute


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


@pytest.mark.notebooks
def test_a_parameter_of_the_wrong_type_fails_in_the_notebook(sweep_copy, toy_root):
    out, _ = sweep_copy
    grid = Grid(methods=("joint",), shots=(2,), data_root=str(toy_root), iterations="four",
                pretrain_iterations=GRID["pretrain_iterations"], overrides=TINY)  # fmt: skip
    result = run_sweep(grid, out, analysis=False)
    assert [f[:3] for f in result.failed] == [("joint", 2, 0)]
    assert "adapt.early_stop = 'four': expected an integer" in result.failed[0][3]


@pytest.mark.notebooks
def test_each_list_parameter_takes_one_value_from_papermills_command_line(sweep, tmp_path):
    from pixda_core.notebook_run import NB_ANALYSIS
    from pixda_core.workflow import LIST_PARAMETERS, notebooks_dir

    out, _ = sweep
    nb = notebooks_dir() / NB_ANALYSIS
    one_run = ("runs", str(out / "finetune_2shot_seed0"))  # a string, not a list
    given = [one_run, ("classes", "road"), ("error_images", "1")]  # a string, an int
    assert {name for name, _ in given} == set(LIST_PARAMETERS)  # every list parameter
    ran = papermill_cli(nb, tmp_path / "o.ipynb", *given, ("out_dir", str(tmp_path / "a")),
                        ("interactive", "False"), ("num_images", "1"))  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    summary = pd.read_csv(tmp_path / "a" / "summary.csv")
    # the one run folder, not one "folder" per character of its path
    assert summary[["method", "shots"]].values.tolist() == [["finetune", 2]]
    assert "val images shown: [1]" in (tmp_path / "o.ipynb").read_text()

    # a value of the wrong type stops the notebook in its first code cell, naming it (what
    # `-p classes 3` passes: papermill's command line reads 3 as an int; in this process,
    # which the command line above has shown to be the same) ...
    import papermill

    params = {"runs": one_run[1], "classes": 3, "out_dir": str(tmp_path / "b")}
    with pytest.raises(papermill.PapermillExecutionError) as failed:
        papermill.execute_notebook(nb, tmp_path / "bad.ipynb", params, progress_bar=False)
    said = "notebook parameter classes = 3: expected a list of class names"
    assert said in str(failed.value), str(failed.value)[-3000:]
    assert not (tmp_path / "b").exists()  # stopped before writing anything
    # ... by the call that cell makes, which names each list parameter's kind (`-p
    # error_images road`: a word it does not take)
    with pytest.raises(ConfigError, match="error_images = 'road': expected a list of val image"):
        workflow.list_parameters(runs=one_run[1], classes=[], error_images="road")


@pytest.mark.tools
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_git_filter_strips_outputs_on_commit(tmp_path):
    """`make` installs nbstripout as the filter .gitattributes names: what `git add` stores
    has no outputs, the working file keeps them."""
    import nbformat

    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args):
        return subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, check=True
        ).stdout

    git("init", "-q")
    shutil.copy(ROOT / ".gitattributes", repo / ".gitattributes")
    subprocess.run(  # as make runs it: through python, not the script (whose #! may be stale)
        [sys.executable, "-m", "nbstripout", "--install", "--attributes", ".gitattributes"],
        cwd=repo,
        check=True,
    )
    assert git("config", "filter.nbstripout.clean").strip() == f'"{sys.executable}" -m nbstripout'
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    nb.cells[0].execution_count = 1
    nbformat.write(nb, repo / "explored.ipynb")
    git("add", "explored.ipynb")
    staged = nbformat.reads(git("show", ":explored.ipynb"), as_version=4)
    assert staged.cells[0].outputs == [] and staged.cells[0].execution_count is None
    assert staged.cells[0].source == "print(1)"
    assert nbformat.read(repo / "explored.ipynb", as_version=4).cells[0].outputs  # kept


@pytest.mark.unit
def test_copying_the_notebooks_keeps_yours_and_says_when_they_differ(tmp_path, capsys):
    import nbformat

    first = workflow.copy_notebooks(tmp_path)
    assert [p.name[:2] for p in first] == ["01", "02", "03", "04"]
    mine = nbformat.read(first[3], as_version=4)
    mine.cells[2].source += "\nprint('mine')"
    mine.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="x\n")]
    nbformat.write(mine, first[3])
    capsys.readouterr()
    assert workflow.copy_notebooks(tmp_path) == []  # nothing replaced
    said = capsys.readouterr().out
    assert "04_per_class_error_visualization.ipynb: its code differs from the kit's" in said
    assert "01_" not in said  # an unchanged copy is kept without a word
    assert "print('mine')" in first[3].read_text()
    assert workflow.copy_notebooks(tmp_path, force=True) == first
    assert "print('mine')" not in first[3].read_text()


@pytest.mark.notebooks
def test_there_are_four_numbered_notebooks():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04"]


@pytest.mark.notebooks
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


@pytest.mark.notebooks
def test_notebook_04_on_two_run_folders_after_a_jupyterlab_session(sweep, tmp_path, monkeypatch):
    """Notebook 04 over two run folders, as a sweep's analysis runs it (execute), after a
    user copied the notebooks, edited and ran them (outputs saved, parameters changed, a
    cell that fails): the kit's own notebook runs, not the user's copy."""
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
    runs = [str(out / "finetune_2shot_seed0"), str(out / "pixda_2shot_seed0")]
    params = {"runs": runs, "out_dir": str(tmp_path / "a"), "classes": ["road", "sky"],
              "num_images": 2, "interactive": False}  # fmt: skip
    executed = tmp_path / "04.ipynb"
    assert execute(NB_ANALYSIS, executed, params) is None
    ran = nbformat.read(executed, as_version=4)
    kit = nbformat.read(notebooks_dir() / NB_ANALYSIS, as_version=4)
    assert ran.cells[3].source == kit.cells[2].source  # (cell 2: papermill's parameters)
    assert "num_images = 3" in ran.cells[1].source

    a = tmp_path / "a"
    assert len(pd.read_csv(a / "summary.csv")) == 2
    assert not (a / "gain_over_source_only.png").exists()  # no source-only run given
    w, h = png_size(a / "error_maps.png")
    # two images, each a row of (image, truth, 2 predictions) over a row of 2 error maps:
    # 4 panels (2:1) wide, 4 high
    assert h > 600 and 1.3 * h < w < 2 * h


@pytest.mark.notebooks
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
