"""Notebook parameters that are wrong, and sweeps that collide: the config's message in the
executed notebook, a failed run in the sweep's accounting, and a second sweep on the same
folder waiting for the first instead of racing it."""

from __future__ import annotations

import fcntl
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pixda_core.sweep import run_sweep

from .helpers import TINY

pytestmark = pytest.mark.notebooks

ROOT = Path(__file__).resolve().parents[1]


def test_sweep_counts_a_failed_run_and_goes_on(sweep, toy_root, capsys):
    from pixda_core.sweep_cli import main

    out, _ = sweep
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


def test_a_parameter_of_the_wrong_type_fails_in_the_notebook(sweep, toy_root):
    out, _ = sweep
    result = run_sweep(
        out,
        shots=(2,),
        methods=("joint",),
        seeds=(0,),
        data_root=str(toy_root),
        iterations="four",
        pretrain_iterations=6,
        overrides=TINY,
        analysis=False,
    )
    assert [f[:3] for f in result["failed"]] == [("joint", 2, 0)]
    assert "adapt.early_stop = 'four': expected an integer" in result["failed"][0][3]


def papermill_cli(notebook: Path, out: Path, *params: tuple[str, str]):
    """``papermill NOTEBOOK OUT -p NAME VALUE ...`` as a user types it (``-p`` passes strings,
    numbers and True/False/None)."""
    argv = [sys.executable, "-m", "papermill", str(notebook), str(out), "-k", "python3"]
    for name, value in params:
        argv += ["-p", name, value]
    return subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=ROOT)


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

    # a value of the wrong type stops the notebook in its first code cell, naming it
    for name, value, said in [
        ("classes", "3", "notebook parameter classes = 3: expected a list of class names"),
        ("error_images", "road", "error_images = 'road': expected a list of val image indices"),
    ]:
        b = ("out_dir", str(tmp_path / "b"))
        ran = papermill_cli(nb, tmp_path / "bad.ipynb", one_run, (name, value), b)
        assert ran.returncode != 0
        assert said in ran.stderr, ran.stderr[-3000:]
        assert not (tmp_path / "b").exists()  # stopped before writing anything


def test_a_second_sweep_on_the_same_folder_waits_for_the_first(sweep, toy_root):
    """While one sweep holds the folder's lock a second one says so and waits, writing
    nothing; once the lock is free it goes on (here: everything is done, so it skips)."""
    out, _ = sweep
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
