"""Where a run computes (pixda_core.train.runtime): precision, the torchrun stop vote."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from pixda_core.train.runtime import Runtime, choose_precision

VOTE_SCRIPT = """
import json, sys
import torch.distributed as dist
from pixda_core.config import RunConfig
from pixda_core.train.runtime import StopVote, setup_runtime
rt = setup_runtime(RunConfig(device="cpu"))
vote = StopVote(rt)
cast = [vote(rt.rank == 1 and i >= 2) for i in range(5)] + [vote.close()]
now = StopVote(rt, blocking=True)
blocking = [now(rt.rank == 0 and i == 1) for i in range(3)]
json.dump({"async": cast, "blocking": blocking}, open(f"{sys.argv[1]}/vote{rt.rank}.json", "w"))
dist.destroy_process_group()
"""


@pytest.mark.unit
@pytest.mark.parametrize(
    "asked, device, capability, cpu_bf16, chosen",
    [
        ("auto", "cuda", (9, 0), False, "bf16"),  # H100
        ("auto", "cuda", (8, 0), False, "bf16"),  # A100
        ("auto", "cuda", (7, 5), False, "fp16"),  # T4, RTX 20xx
        ("auto", "cuda", (7, 0), False, "fp16"),  # V100
        ("auto", "cpu", None, False, "fp32"),
        ("auto", "cpu", None, True, "bf16"),
        ("fp32", "cuda", (9, 0), False, "fp32"),
        ("bf16", "cuda", (7, 5), False, "bf16"),  # asked for: used as asked
        ("fp16", "cpu", None, False, "fp16"),
    ],
)
def test_auto_precision_fits_the_card(asked, device, capability, cpu_bf16, chosen):
    assert choose_precision(asked, device, capability, cpu_bf16) == chosen
    rt = Runtime(torch.device("cpu"), precision=chosen)
    assert (rt.grad_scaler() is not None) == (chosen == "fp16")


@pytest.mark.training
def test_the_stop_vote_is_read_one_step_after_it_is_cast(tmp_path):
    """Rank 1 asked to stop after its third step: with the asynchronous vote both ranks read
    it after their fourth (the step never waits for the other's flag), and the vote still
    in flight at the end is read by close(); the blocking vote is read at once."""
    script = tmp_path / "vote.py"
    script.write_text(VOTE_SCRIPT)
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "2", str(script), str(tmp_path)]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        seen = json.loads((tmp_path / f"vote{rank}.json").read_text())
        assert seen["async"] == [False, False, False, True, True, True]
        assert seen["blocking"] == [False, True, False]
