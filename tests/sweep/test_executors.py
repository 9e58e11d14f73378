"""Where a sweep's notebooks run (pixda_core.executors): threads, GPUs, SLURM's printed answers."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from pixda_core import executors
from pixda_core.executors import Local, read_status
from pixda_core.sweep import run_sweep
from pixda_core.sweep_grid import Grid
from tests.helpers import GRID, TINY, grid_results, take_source_only


def fake_tool(folder, monkeypatch, name: str, output: str, code: int = 0) -> None:
    """``name`` on PATH as a script printing ``output``: what a cluster's sinfo or sacct
    prints (the test cluster keeps no accounting and has no GPU, so these cases are read
    from printed text here; the real cluster's answers are in test_sweep_executors)."""
    script = folder / name
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}\nEOF\nexit {code}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.unit
@pytest.mark.parametrize(("cores", "jobs", "threads"), [(16, 2, "8"), (16, 3, "5"), (2, 4, "1")])
def test_notebooks_run_at_once_share_the_cores(monkeypatch, cores, jobs, threads):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    assert executors.cpu_share(jobs) == threads


@pytest.mark.unit
def test_a_thread_count_the_user_set_is_kept(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert executors.cpu_share(2) is None
    with executors.environment(OMP_NUM_THREADS=executors.cpu_share(2)):
        assert os.environ["OMP_NUM_THREADS"] == "3"
    assert os.environ["OMP_NUM_THREADS"] == "3"


@pytest.mark.unit
def test_the_environment_is_restored_after_the_block(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("PIXDA_TEST_VALUE", "before")
    with executors.environment(OMP_NUM_THREADS="2", PIXDA_TEST_VALUE="inside"):
        assert os.environ["OMP_NUM_THREADS"] == "2"
        assert os.environ["PIXDA_TEST_VALUE"] == "inside"
    assert "OMP_NUM_THREADS" not in os.environ
    assert os.environ["PIXDA_TEST_VALUE"] == "before"


@pytest.mark.unit
def test_a_jobs_process_is_handed_plain_values_and_never_loads_torch(tmp_path):
    """What a job's process unpickles (submitit's cloudpickle) is the notebook call alone: the
    process that runs papermill imports neither torch nor the training stack (its kernel
    does), a second or two of CPU and some hundred MB less per job."""
    import pickle
    import subprocess
    import sys

    import cloudpickle

    from pixda_core.sweep_grid import Grid, tasks_of

    grid = Grid(methods=("pixda",), shots=(1,), data_root=str(tmp_path), overrides=TINY)
    so, runs = tasks_of(grid, tmp_path / "out")
    call = runs[0].call
    assert call.params == runs[0].spec.params() and call.notebook == runs[0].spec.notebook
    blob = cloudpickle.dumps((executors.NotebookJob(), call))
    script = (
        "import pickle, sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] in ('torch', 'torchvision'):\n"
        "            raise ImportError(f'{name} imported by a job process')\n"
        "sys.meta_path.insert(0, Block())\n"
        "job, call = pickle.loads(sys.stdin.buffer.read())\n"
        "import pixda_core.notebook_run, papermill\n"
        "print(type(job).__name__, call.name)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], input=blob, capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stdout.decode().split() == ["NotebookJob", "pixda_1shot_seed0"]
    assert pickle.loads(blob)[1] == call


@pytest.mark.unit
def test_a_job_started_while_others_run_takes_the_least_busy_gpu(tmp_path, monkeypatch):
    """Two at once on two GPUs: the second run ends first, so the third takes its GPU (1),
    not the next in turn (0, still in use by the first)."""
    from pixda_core.sweep_grid import Grid, tasks_of

    grid = Grid(methods=("finetune",), shots=(1, 2, 3), data_root=str(tmp_path))
    _, tasks = tasks_of(grid, tmp_path / "out")
    (tmp_path / "out" / "logs").mkdir(parents=True)
    polls = {t.name: n for t, n in zip(tasks, (3, 1, 1), strict=True)}  # polls until done
    given = {}

    class Job:
        def __init__(self, name):
            self.name = name

        def done(self):
            polls[self.name] -= 1
            return polls[self.name] <= 0

    class FakeExecutor:  # submitit's local executor, its jobs ending in the order above
        def __init__(self, folder):
            self.gpus = None

        def update_parameters(self, **kw):
            self.gpus = kw["visible_gpus"]

        def submit(self, function, call):
            given[call.name] = self.gpus
            executors.write_status(call.status, state="done")
            return Job(call.name)

    monkeypatch.setattr(executors, "visible_gpus", lambda: [0, 1])
    monkeypatch.setattr(executors.submitit, "LocalExecutor", FakeExecutor)
    monkeypatch.setattr(executors.time, "sleep", lambda seconds: None)  # its polling pause
    results = executors.run_here(tasks, tmp_path / "out", jobs=2)
    assert results == {t.name: None for t in tasks}
    assert [given[t.name] for t in tasks] == [[0], [1], [1]]


@pytest.mark.unit
def test_how_a_slurm_job_ended_is_read_from_sacct(tmp_path, monkeypatch):
    lines = ["7_0|TIMEOUT|0:0", "7_1|OUT_OF_MEMORY|0:125", "7_2|NODE_FAIL|0:0",
             "7_3|FAILED|1:0", "7_4|COMPLETED|0:0", "7_5|CANCELLED by 0|0:15"]  # fmt: skip
    fake_tool(tmp_path, monkeypatch, "sacct", "\n".join(lines))
    ended = executors.slurm_ended([f"7_{i}" for i in range(6)])
    assert ended == {
        "7_0": "time limit reached",
        "7_1": "out of memory",
        "7_2": "node failure",
        "7_3": "failed, exit code 1",
        "7_5": "cancelled",
    }  # a job that completed is not one that failed


@pytest.mark.unit
def test_the_largest_node_of_a_partition_is_read_from_sinfo(tmp_path, monkeypatch):
    lines = ["cpu*|64|256000|(null)", "gpu|32|512000|gpu:a100:4(S:0-1)",
             "gpu|16+|128000|gpu:2,shard:8"]  # fmt: skip
    fake_tool(tmp_path, monkeypatch, "sinfo", "\n".join(lines))
    options = executors.SlurmOptions
    executors.check_slurm_request(options(partition="gpu", gpus_per_job=4, mem_gb=500))
    executors.check_slurm_request(options(cpus_per_job=64))  # the default partition: cpu
    for asked, said in [
        (options(partition="gpu", gpus_per_job=5), "--gpus-per-job 5: no node of partition "
         "gpu has 5 GPUs (the largest has 4); ask for at most 4, or choose another --partition"),
        (options(mem_gb=251), "--mem-gb 251: no node of partition cpu has 251 GB of memory "
         "(the largest has 256000 MB); ask for at most 250"),
        (options(gpus_per_job=1), "--gpus-per-job 1: no node of partition cpu has 1 GPU"),
    ]:  # fmt: skip
        with pytest.raises(executors.ConfigError) as err:
            executors.check_slurm_request(asked)
        assert said in str(err.value)


@pytest.mark.notebooks
@pytest.mark.slow
def test_a_notebook_in_this_process_gives_the_sweeps_summary(
    sweep, toy_root, tmp_path, monkeypatch
):
    """--jobs 1: the run in the sweep's own process, seeing every GPU, ends as the session's
    sweep, whose notebooks ran two at once (the demo's --jobs 2), each in a process of
    submitit's local executor with its share of the machine (here no GPU, one thread). (Two
    at once, each on its own GPU: tests/methods/test_plugin.py's sweep.)"""
    monkeypatch.setattr(executors, "visible_gpus", lambda: [0, 1])  # a machine with 2 GPUs
    out = tmp_path / "one"
    grid = Grid(data_root=str(toy_root), overrides=TINY,
                **{**GRID, "shots": (2,), "methods": ("source_only", "finetune")})  # fmt: skip
    take_source_only(sweep[0], out)  # its source-only model: the notebook starts at once
    run_sweep(grid, out, Local(jobs=1), analysis=False)
    ours, session = grid_results(out), grid_results(sweep[0], shots=(2,))
    assert list(ours["method"]) == ["finetune", "source_only"]
    session = session[session["method"].isin(ours["method"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(session, ours)
    assert read_status(out / "logs" / "finetune_2shot_seed0.json")["gpus"] == "0,1"
    assert read_status(sweep[0] / "logs" / "finetune_2shot_seed0.json")["gpus"] == ""  # none
