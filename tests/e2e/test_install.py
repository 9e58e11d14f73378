"""End to end: a wheel installed in a fresh venv runs a sweep (from SYNTHIA) outside the
checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import ROOT

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]


def run(*args, cwd, env, timeout=600) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip
    assert proc.returncode == 0, f"{args}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_a_wheel_in_a_fresh_venv_runs_a_sweep_outside_the_checkout(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIXDA_HOME")}
    dist = tmp_path / "dist"
    # (no build isolation: this environment has the build backend; the wheel is the same)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
        "-w", dist, ROOT, cwd=tmp_path, env=env)  # fmt: skip
    wheel = next(dist.glob("pixda-*.whl"))

    # a fresh venv; the dependencies (torch and the rest, gigabytes) are taken from this
    # environment's site-packages through a .pth file instead of being installed again
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path, env=env)
    py = venv / "bin" / "python"
    site = Path(run(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                    cwd=tmp_path, env=env).stdout.strip())  # fmt: skip
    (site / "kit_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(py, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", wheel, cwd=tmp_path,
        env=env)  # fmt: skip

    work = tmp_path / "work"  # the user's folder, nowhere near the checkout
    work.mkdir()
    where = run(py, "-c", "import pixda_core; print(pixda_core.__file__)", cwd=work, env=env)
    assert where.stdout.strip().startswith(str(site))
    pixda = venv / "bin" / "pixda"
    copied = run(pixda, "notebooks", "mine", cwd=work, env=env)
    assert sorted(p.name[:2] for p in (work / "mine").glob("*.ipynb")) == ["01", "02", "03", "04"]
    assert "wrote" in copied.stdout
    run(pixda, "toy", "--out", "data/toy", "--size", "64", "32", "--num-gta5", "6",
        "--num-synthia", "2", "--train-per-city", "2", "--val-per-city", "2", "--quiet",
        cwd=work, env=env)  # fmt: skip
    # from SYNTHIA: its runs report mIoU-16 and mIoU-13, in metrics.json and summary.csv
    sweep = run(
        pixda, "sweep", "--out", "results/tiny", "--shots", "1", "--methods", "source_only",
        "finetune", "--seeds", "0", "--iterations", "2", "--pretrain-iterations", "2",
        "--source", "synthia",
        "--set", "data.size=[64,32]", "--set", "data.val_size=[64,32]",
        "--set", "pretrain.batch_size=2", "--set", "adapt.batch_size=2",
        "--set", "run.keep_checkpoints=1", cwd=work, env=env, timeout=900,
    )  # fmt: skip
    assert "failed 0" in sweep.stdout
    # the notebooks' kernels talk over Unix sockets: no "running over TCP without
    # encryption" warning from each of them
    assert "over TCP" not in sweep.stdout + sweep.stderr
    out = work / "results" / "tiny"  # relative to where the user ran it
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary["method"]) == ["finetune", "source_only"]
    columns = ["method", "shots", "seed", "split", "source", "miou", "miou_13"]
    assert list(summary.columns[:7]) == columns and summary["miou_13"].notna().all()
    m = json.loads((out / "finetune_1shot_seed0" / "metrics.json").read_text())
    assert m["protocol"] == "16" and m["source"] == "synthia"
    assert 0 <= m["miou_13"] <= 1 and 0 <= m["miou"] <= 1
    assert (out / "analysis" / "per_class_iou.csv").is_file()  # notebook 04 from the wheel
    assert not (ROOT / "results" / "tiny").exists()
