"""A method defined in this file (:class:`EntropyJudge`, under 40 lines) run as a user's would
be: through run.py (stopped by SIGTERM and resumed), under torchrun, and in a local sweep
beside a method that an installed package announces through its entry point and the notebook
cell of docs/add-a-method.md saved as a file, with notebook 04's analysis. (Jobs import this
file by its path: its top level imports only the kit, torch and pytest.)"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from pixda_core import losses as L
from pixda_core.methods import Method, domain_discriminator_loss

pytestmark = pytest.mark.slow


class EntropyJudge(Method):
    """Entropy minimisation on the target (as MinEnt), plus a 1x1-conv domain judge on G's
    softmax output: a method with a loss of its own and a network of its own."""

    name = "entropy_judge"
    title = "entropy + judge"
    source = True
    target = True
    losses = ("loss_seg_src", "loss_seg_trg", "loss_ent", "loss_judge")
    options = ("method.fda",)
    weight = 0.01

    def networks(self, num_classes):
        return {"judge": nn.Conv2d(num_classes, 1, 1)}

    def target_loss(self, step, logits, labels):
        p = logits.softmax(1)
        ent = -(p * torch.log(p + 1e-8)).sum(1).mean()
        fool = L.domain_bce(step.judge_for_g("judge", p), L.SOURCE)
        step.record("loss_ent", ent)
        return self.weight * ent + 0.001 * fool

    def network_loss(self, step, name, pred_src, pred_trg):
        return domain_discriminator_loss(step, name, pred_src.softmax(1), pred_trg.softmax(1))


SPEC = f"{Path(__file__).resolve()}:EntropyJudge"
COLUMNS = ["step", "phase", "lr", *EntropyJudge.losses, "step_s", "data_wait"]


@pytest.mark.training
def test_a_plugin_through_run_py_stopped_by_sigterm_and_resumed(
    toy_root, tmp_path, weights, capsys
):
    from tests.helpers import ROOT, cli, release_args

    def flags(name):
        return [*release_args(toy_root, tmp_path, name), "--is_train", "--restore_from",
                str(weights), "--method", SPEC, "--early_stop", "6", "--set",
                "run.log_every=1", "--set", "run.ckpt_every=100"]  # fmt: skip

    def run(name, *extra):
        return subprocess.Popen([sys.executable, str(ROOT / "run.py"), *flags(name), *extra],
                                stderr=subprocess.PIPE, text=True)  # fmt: skip

    cut = run("cut")
    history = tmp_path / "cut" / "history.csv"
    deadline = time.time() + 300
    while (
        not history.exists() or len(history.read_text().splitlines()) < 3
    ) and time.time() < deadline:
        time.sleep(0.02)
    cut.send_signal(signal.SIGTERM)
    assert cut.wait(timeout=120) == 128 + signal.SIGTERM
    said = re.search(r"stopped by SIGTERM at step (\d+)", cut.stderr.read())
    assert said and 2 <= int(said[1]) < 6
    again = run("cut", "--continue_train")
    code, err = cli(capsys, *flags("straight"))  # the run never stopped, in this process
    assert code == 0, err[-3000:]
    assert again.wait(timeout=600) == 0, again.stderr.read()[-3000:]

    a, b = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("straight", "cut"))
    assert a["method"] == "entropy_judge" and a["step"] == 6
    assert {k: v for k, v in a.items() if k not in ("ran_on", "run")} == {
        k: v for k, v in b.items() if k not in ("ran_on", "run")
    }  # as the run never stopped
    hist = [pd.read_csv(tmp_path / n / "history.csv") for n in ("straight", "cut")]
    assert list(hist[0].columns) == COLUMNS and hist[0]["loss_ent"].notna().all()
    pd.testing.assert_frame_equal(*(h.drop(columns=["step_s", "data_wait"]) for h in hist))
    from pixda_core.checkpoint import load_checkpoint

    ck = load_checkpoint(tmp_path / "cut" / "checkpoints" / "latest.pt")
    assert ck["method"] == "entropy_judge" and set(ck["optimizers"]) == {"g", "judge"}
    assert set(ck["judge"]) == {"weight", "bias"}


DDP_SCRIPT = """
import json, os, sys
from pixda_core.config import Config
from pixda_core.train import adapt
m = adapt(Config.from_yaml(sys.argv[1]))
open(sys.argv[2] + f"/rank{os.environ['RANK']}.json", "w").write(json.dumps(m))
"""


@pytest.mark.training
def test_a_plugin_under_torchrun_with_two_processes(toy_root, tmp_path, source_only):
    from tests.helpers import tiny

    run = {"name": "ddp", "restore_from": str(source_only)}
    cfg = tiny(toy_root, tmp_path, adapt={"batch_size": 1, "early_stop": 4},
               method={"name": SPEC}, run=run)  # fmt: skip
    (tmp_path / "ddp.py").write_text(DDP_SCRIPT)
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "2", str(tmp_path / "ddp.py"), str(cfg.to_yaml(tmp_path / "ddp.yaml")),
            str(tmp_path)]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0 == r1 and r0["method"] == "entropy_judge" and r0["step"] == 4
    assert list(pd.read_csv(tmp_path / "ddp" / "history.csv").columns) == COLUMNS


#: a package that adds a method through its entry point, as one installed with pip would
PACKAGE = {
    "pixda_smooth/__init__.py": '''
        from pixda_core.methods import Method

        class Smooth(Method):
            """FT with label smoothing towards the uniform distribution."""
            name, title, target = "smooth_ft", "FT, smoothed", True
            losses = ("loss_seg_trg", "loss_smooth")

            def target_loss(self, step, logits, labels):
                smooth = -logits.log_softmax(1).mean()
                step.record("loss_smooth", smooth)
                return 0.1 * smooth
    ''',
    "pixda_smooth-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: pixda-smooth\n"
    "Version: 0.1\n",
    "pixda_smooth-0.1.dist-info/entry_points.txt": "[pixda_core.methods]\n"
    "smooth_ft = pixda_smooth:Smooth\n",
}


@pytest.mark.notebooks
def test_a_sweep_of_a_plugin_file_and_a_plugin_package(sweep, toy_root, tmp_path, monkeypatch):
    from pixda_core.executors import Local, read_status
    from pixda_core.sweep import run_sweep
    from pixda_core.sweep_grid import Grid
    from tests.helpers import GRID, TINY, take_source_only

    site = tmp_path / "site"
    for name, text in PACKAGE.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(site)  # here, and in every job (notebook kernels inherit it)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    )
    # the docs' notebook cell (docs/add-a-method.md), saved as a file, as the page says
    from tests.helpers import ROOT

    page = (ROOT / "docs" / "add-a-method.md").read_text()
    cell = page.split("```python\n")[1].split("```")[0]
    assert "class EntropyMin(Method)" in cell and len(cell.splitlines()) < 40
    (tmp_path / "my_methods.py").write_text(cell)
    monkeypatch.chdir(tmp_path)  # the spec's relative path: the sweep makes it absolute
    out = tmp_path / "plugins"  # a sweep of its own, with the session sweep's source-only model
    take_source_only(sweep[0], out)
    methods = (SPEC, "smooth_ft", "my_methods.py:EntropyMin")
    its = {k: GRID[k] for k in ("iterations", "pretrain_iterations")}
    from pixda_core import executors

    monkeypatch.setattr(executors, "visible_gpus", lambda: [0, 1])  # a machine with 2 GPUs
    grid = Grid(methods=methods, shots=(1,), data_root=str(toy_root), overrides=TINY, **its)
    result = run_sweep(grid, out, Local(jobs=2))
    assert result.failed == [], result.failed
    # two at once, each on its own GPU (the least busy): runs that overlapped had different ones
    records = [read_status(out / "logs" / f"{m}_1shot_seed0.json")
               for m in ("entropy_judge", "smooth_ft", "entropy_min")]  # fmt: skip
    assert {r["gpus"] for r in records} == {"0", "1"}
    for i, a in enumerate(records):
        for b in records[i + 1 :]:
            if a["started"] < b["ended"] and b["started"] < a["ended"]:
                assert a["gpus"] != b["gpus"], (a, b)
    summary = pd.read_csv(result.summary)
    assert {"entropy_judge", "smooth_ft", "entropy_min"} <= set(summary["method"])
    for name in ("entropy_judge", "smooth_ft", "entropy_min"):
        assert (out / f"{name}_1shot_seed0" / "metrics.json").is_file()
    assert "loss_smooth" in pd.read_csv(out / "smooth_ft_1shot_seed0" / "history.csv").columns
    assert "loss_ent" in pd.read_csv(out / "entropy_min_1shot_seed0" / "history.csv").columns
    tables = "".join(p.read_text() for p in (out / "analysis").glob("*.md"))
    for title in ("entropy + judge", "FT, smoothed", "MinEnt"):
        assert title in tables
    recorded = json.loads((out / "sweep.json").read_text())["methods"][-3:]
    assert recorded == [SPEC, "smooth_ft", f"{tmp_path / 'my_methods.py'}:EntropyMin"]
