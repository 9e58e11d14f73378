"""End to end: two processes under torchrun agree and stop together."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pixda_core.checkpoint import load_checkpoint
from pixda_core.config import Config
from tests.helpers import tiny

pytestmark = pytest.mark.training


DDP_SCRIPT = """
import json, os, sys
from pixda_core.config import Config
from pixda_core.errors import Stopped
from pixda_core.train import adapt
try:
    m = adapt(Config.from_yaml(sys.argv[1]), resume=sys.argv[3] == "resume")
except Stopped as exc:
    m = {"stopped": str(exc)}
open(sys.argv[2] + f"/rank{os.environ['RANK']}.json", "w").write(json.dumps(m))
"""


def torchrun(tmp_path: Path, cfg: Config, resume: bool = False) -> subprocess.Popen:
    """``adapt(cfg)`` in two processes under torchrun (gloo, one thread each); each rank
    writes its metrics, or the stop it met, to ``<tmp_path>/rank<R>.json``."""
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    cfg_path = cfg.to_yaml(tmp_path / f"{cfg.run.name}.yaml")
    mode = "resume" if resume else "new"
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "2", str(script), str(cfg_path), str(tmp_path), mode]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)  # fmt: skip


def ranks(tmp_path: Path) -> list[dict]:
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]


def ddp_config(toy_root, out, source_only, name) -> Config:
    # a loss row every 4 steps: a stop after the first one falls inside the next interval,
    # whose sums (each process its own) the checkpoint must carry
    run = {"name": name, "restore_from": str(source_only), "log_every": 4}
    return tiny(toy_root, out, adapt={"batch_size": 1, "early_stop": 6}, method={"kd_steps": 2},
                run=run)  # fmt: skip


@pytest.mark.slow
def test_torchrun_two_processes_agree_and_stop_together_on_sigterm(
    toy_root, tmp_path, source_only
):
    """Two processes on the CPU (gloo) end with the same metrics; stopped by SIGTERM (to
    every process, as SLURM sends it; torchrun forwards it again) they stop at the same
    step with one checkpoint, and the resumed run ends as the one never stopped, its loss
    rows too (the losses both processes summed since the last row are in the checkpoint)."""
    whole = tmp_path / "whole"
    whole.mkdir()
    proc = torchrun(whole, ddp_config(toy_root, whole, source_only, "ddp"))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    r0, r1 = ranks(whole)
    assert r0 == r1 == json.loads((whole / "ddp" / "metrics.json").read_text())
    assert r0["step"] == 8 and math.isfinite(r0["miou"])
    hist = pd.read_csv(whole / "ddp" / "history.csv")
    assert list(hist["step"]) == [4, 6, 8]  # rank 0 alone writes (6: the main phase ends)

    cut = tmp_path / "cut"
    cut.mkdir()
    cfg = ddp_config(toy_root, cut, source_only, "ddp")
    proc = torchrun(cut, cfg)
    history, deadline = cut / "ddp" / "history.csv", time.time() + 300
    try:
        while not history.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)  # the first loss line: step 4
        os.killpg(proc.pid, signal.SIGTERM)  # the launcher and both ranks
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    stops = [
        re.search(r"stopped by SIGTERM at step (\d+)", r.get("stopped", "")) for r in ranks(cut)
    ]
    assert all(stops), (ranks(cut), err[-3000:])
    step = int(stops[0][1])
    assert int(stops[1][1]) == step and 4 < step < 8  # both ranks, the same step, mid-row
    assert load_checkpoint(cut / "ddp" / "checkpoints" / "latest.pt")["state"]["step"] == step

    proc = torchrun(cut, cfg, resume=True)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert ranks(cut) == [r0, r0]  # as the run never stopped
    pd.testing.assert_frame_equal(
        pd.read_csv(cut / "ddp" / "history.csv").drop(columns=["step_s", "data_wait"]),
        hist.drop(columns=["step_s", "data_wait"]),
    )
