"""End to end: sweeps on a real one-node SLURM cluster (Debian's slurm-wlm and munge, as root;
``.ci/run`` installs them; ``tests/e2e/slurm/cluster.sh`` starts it)."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from pixda_core import sweep as sweep_module
from pixda_core.executors import read_status, slurm_queue
from pixda_core.sweep_cli import main
from pixda_core.sweep_state import read_runs, status_table
from pixda_core.train.flags import nest_overrides, parse_set
from tests.helpers import GRID, ROOT, TINY, grid_results

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]


FLAGS = [
    "--shots", "2", "--methods", "source_only", "finetune", "pixda", "--seeds", "0",
    "--iterations", str(GRID["iterations"]), "--pretrain-iterations",
    str(GRID["pretrain_iterations"]), "--no-analysis",
    *(x for sec, kv in TINY.items() for k, v in kv.items()
      for x in ("--set", f"{sec}.{k}={v}".replace(" ", ""))),
]  # fmt: skip


CLUSTER = ROOT / "tests" / "e2e" / "slurm" / "cluster.sh"


def cluster(command: str, folder: Path) -> str:
    """``cluster.sh start|stop folder``; start returns the cluster's SLURM_CONF."""
    proc = subprocess.run(["bash", str(CLUSTER), command, str(folder)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().partition("=")[2]


def cluster_folder() -> Path:
    """A folder for a cluster (the test skipped where none can start)."""
    tools = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scancel")
    if os.geteuid() != 0 or not all(shutil.which(t) for t in tools):
        pytest.skip("the SLURM tests start a cluster as root from Debian's slurm-wlm and munge "
                    "(.ci/run installs them)")  # fmt: skip
    # munged runs as the munge user: its folder must be reachable, unlike pytest's (0700)
    folder = Path(tempfile.mkdtemp(prefix="pixda-slurm-"))
    folder.chmod(0o755)
    return folder


@pytest.fixture(scope="module")
def slurm():
    """A one-node SLURM cluster for this module; its daemons stopped after it."""
    folder = cluster_folder()
    before = os.environ.get("SLURM_CONF")
    try:
        os.environ["SLURM_CONF"] = cluster("start", folder)
        yield folder
    finally:
        cluster("stop", folder)
        shutil.rmtree(folder, ignore_errors=True)
        if before is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = before


@pytest.fixture
def own_slurm(monkeypatch):
    """A one-node cluster of the test's own, to stop and start again (the module's stays
    up); the daemons it started stopped after it, whatever the test left running."""
    folder = cluster_folder()
    try:
        monkeypatch.setenv("SLURM_CONF", cluster("start", folder))
        yield folder
    finally:
        cluster("stop", folder)
        shutil.rmtree(folder, ignore_errors=True)


def test_a_slurm_array_survives_a_cancelled_job_and_ends_with_the_local_summary(
    slurm, sweep, toy_root, tmp_path, capsys, monkeypatch
):
    """The grid as one array after the source-only job; one task cancelled mid-run with
    scancel, which signals every process of the job, its loader worker too: it stops at the
    end of its step with a checkpoint, and --status says SLURM cancelled it; the same
    command again resubmits just that run, which resumes from that step; the summary is the
    one of the sweep run here. (A checkpoint and a loss line every step, a loader worker:
    they change no number, and give the cancel something to resume from.) While the array
    waits for the source-only job, --status shows SLURM's reason: Dependency. Each job asks
    for the --time its plan gives (from step times stored for the node's CPU at the job's one
    thread), and --status shows each run's elapsed and expected time."""
    from pixda_core.executors import Slurm, SlurmOptions
    from pixda_core.steptimes import cpu_name, write_store
    from pixda_core.sweep_grid import Grid
    from pixda_core.sweep_plan import plan_sweep

    monkeypatch.setenv("PIXDA_STEP_TIMES", str(tmp_path / "step_times.csv"))
    times = {"source_only": 200.0, "finetune": 100.0, "pixda": 150.0}
    write_store([{"device": cpu_name(1), "preset": "toy", "method": m, "precision": "fp32",
                  "step_s": s, "steps": 5, "measured": "2026-12-01T10:00:00", "by": "test"}
                 for m, s in times.items()])  # fmt: skip
    out = tmp_path / "cluster"
    command = ["--out", str(out), "--data-root", str(toy_root), *FLAGS, "--set",
               "run.ckpt_every=1", "--set", "run.log_every=1", "--set", "data.num_workers=1",
               "--executor", "slurm", "--partition", "debug", "--cpus-per-job", "1"]  # fmt: skip
    capsys.readouterr()
    assert main(command) == 0  # submits and returns
    said = capsys.readouterr().out
    sets = nest_overrides([parse_set(f) for f in FLAGS if "=" in f])
    grid = Grid(methods=tuple(times), shots=(2,), data_root=str(toy_root),
                iterations=GRID["iterations"], pretrain_iterations=GRID["pretrain_iterations"],
                overrides=sets)  # fmt: skip
    plan = plan_sweep(grid, out, Slurm(SlurmOptions(cpus_per_job=1)))
    limits = {so: plan.time_limit_min(so) for so in (True, False)}
    assert limits[True] == math.ceil(6 * 200 / 60 * 1.5) + 10  # 6 steps of 200 s, x 1.5 + 10
    assert f"source-only job {limits[True]} min, array {limits[False]} min" in said
    asked = {p.read_text().split("#SBATCH --job-name=")[1].split()[0]:
             re.search(r"#SBATCH --time=(\d+)", p.read_text())[1]
             for p in (out / ".submitit").rglob("*_submission.sh")}  # fmt: skip
    assert asked["pixda-source-only"] == str(limits[True])
    assert asked["pixda-runs"] == str(limits[False])
    runs = pd.read_csv(out / "runs.csv", dtype=str).set_index("name")["job_id"]
    arrays = {runs[n].split("_")[0] for n in runs.index if not n.startswith("source_only")}
    assert len(arrays) == 1 and sum("_" in j for j in runs) == 2  # one array of 2 tasks
    victim = "pixda_2shot_seed0"  # the array's last task: it waits for a free CPU
    seen, why, deadline = set(), set(), time.time() + 300

    def look() -> None:
        table = status_table(out)
        seen.update(table["state"])
        why.update(table.loc[table["state"] == "pending", "why"])

    while not (out / victim / "checkpoints" / "step_2.pt").exists() and time.time() < deadline:
        look()
        time.sleep(0.1)
    assert slurm_queue([runs[victim]]).get(runs[victim]) == "RUNNING"
    subprocess.run(["scancel", runs[victim]], check=True)
    while slurm_queue(list(runs)) and time.time() < deadline:  # the rest ends, then collects
        look()
        time.sleep(0.2)
    row = status_table(out).set_index("run").loc[victim]
    assert row["state"] == "failed" and row["why"] == "cancelled"
    assert {"pending", "running", "done"} <= seen  # what --status showed on the way
    assert "Dependency" in why  # the array waiting for the source-only job
    assert not (out / victim / "metrics.json").exists()
    log = (out / "logs" / f"{victim}.log").read_text()
    assert "DataLoader worker" not in log  # the worker did not die under the loop
    said = read_status(out / "logs" / f"{victim}.json")["error"]  # the notebook's last word
    stopped = int(re.search(r"Stopped: stopped by SIGTERM at step (\d+): checkpoint", said)[1])
    assert f"SIGTERM: stopping after step {stopped}, with a checkpoint" in log

    capsys.readouterr()
    assert main([*command, "--wait"]) == 0
    assert "skipped 2" in capsys.readouterr().out  # the source-only model and FT
    log = (out / "logs" / f"{victim}.log").read_text()
    assert int(re.search(r"resumed \S+ at step (\d+)", log).group(1)) == stopped >= 2
    pd.testing.assert_frame_equal(grid_results(sweep[0], shots=(2,)), grid_results(out))
    assert main(["--status", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[sweep] 3 done" in printed
    table = status_table(out).set_index("run")
    assert table.loc[victim, "expected"] == f"{plan.expected_s(victim) / 60:.1f} min"
    assert table["elapsed"].str.endswith(" min").all() and "expected" in printed


def test_a_request_no_node_can_meet_is_refused_before_any_job_is_queued(
    slurm, toy_root, tmp_path, capsys
):
    # the node's CPUs as the cluster has them (cluster.sh's nproc, which follows
    # OMP_NUM_THREADS: 1 under the suite's workers)
    found = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True, check=True)
    cpus = int(found.stdout.split()[0])
    out = tmp_path / "never"
    command = ["--out", str(out), "--data-root", str(toy_root), *FLAGS, "--executor", "slurm"]
    for flags, said in [
        (["--cpus-per-job", str(cpus + 1)],
         f"--cpus-per-job {cpus + 1}: no node of partition debug has {cpus + 1} CPUs (the "
         f"largest has {cpus}); ask for at most {cpus}, or choose another --partition"),
        (["--cpus-per-job", "1", "--mem-gb", "2"],
         "--mem-gb 2: no node of partition debug has 2 GB of memory (the largest has 1000 MB)"),
        (["--cpus-per-job", "1", "--gpus-per-job", "1"],
         "--gpus-per-job 1: no node of partition debug has 1 GPU (the largest has 0)"),
        (["--cpus-per-job", "1", "--partition", "gpu"],
         "--partition gpu: no such partition on this cluster (sinfo lists: debug)"),
    ]:  # fmt: skip
        assert main([*command, *flags]) == 2
        assert f"error: {said}" in capsys.readouterr().err
        assert not out.exists()  # nothing written
        queue = subprocess.run(["squeue", "-h"], capture_output=True, text=True, check=True)
        assert queue.stdout.strip() == ""  # nothing queued


def test_a_job_sbatch_refuses_is_refused_before_anything_is_written(
    slurm, toy_root, tmp_path, capsys
):
    """A generic resource or a feature no node has passes sinfo's check (the test cluster
    has no GPU configured): sbatch --test-only refuses it before anything is written, in one
    line with SLURM's own message and what to check."""
    out = tmp_path / "never"
    command = ["--out", str(out), "--data-root", str(toy_root), *FLAGS, "--executor", "slurm",
               "--cpus-per-job", "1"]  # fmt: skip
    request = "default partition, --cpus-per-job 1, --time-limit 1440"
    for flags, said in [
        (["--sbatch", "gres=gpu:1"],
         f"sbatch refuses the jobs ({request}, --sbatch gres=gpu:1): Invalid generic resource "
         "(gres) specification; check --gpus-per-job and any --sbatch gres=...: the generic "
         "resources (GPUs) the partition's nodes have are what sinfo -o '%P %G' lists ((null): "
         "none configured); refused before anything was written or submitted"),
        (["--sbatch", "constraint=a100"],
         f"sbatch refuses the jobs ({request}, --sbatch constraint=a100): allocation failure: "
         "Invalid feature specification; check --sbatch constraint=...: the features of the "
         "partition's nodes are what sinfo -o '%P %f' lists"),
    ]:  # fmt: skip
        assert main([*command, *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --executor slurm: {said}") and err.count("\n") == 1
        assert not out.exists()  # nothing written
        queue = subprocess.run(["squeue", "-h"], capture_output=True, text=True, check=True)
        assert queue.stdout.strip() == ""  # nothing queued


def test_a_stopped_cluster_is_said_in_one_line_and_the_same_command_resumes(
    own_slurm, toy_root, tmp_path, capsys, monkeypatch
):
    """The cluster stopped after the source-only job was queued: sbatch's refusal of the
    array is one line naming SLURM's message, what to check and what was submitted, runs.csv
    holds that job, submitit's leftovers are gone; with the cluster stopped, a new sweep is
    refused by sinfo before anything is written; the cluster started again, the same
    command submits what is missing. (The jobs begin in an hour: no notebook runs.)"""
    conf = os.environ["SLURM_CONF"]
    check = ("check that slurmctld is running and reachable from this machine (scontrol ping) "
             f"and that SLURM_CONF ({conf}) is this cluster's configuration")  # fmt: skip
    out = tmp_path / "half"
    command = ["--out", str(out), "--data-root", str(toy_root), *FLAGS, "--executor", "slurm",
               "--cpus-per-job", "1", "--sbatch", "begin=now+1hour"]  # fmt: skip
    submit = sweep_module.submit_to_slurm

    def then_stop(tasks, *args, **kwargs):
        ids = submit(tasks, *args, **kwargs)
        cluster("stop", own_slurm)  # (its scancel cancels the job just queued)
        return ids

    monkeypatch.setattr(sweep_module, "submit_to_slurm", then_stop)
    assert main(command) == 2
    monkeypatch.setattr(sweep_module, "submit_to_slurm", submit)
    captured = capsys.readouterr()
    runs = read_runs(out)
    [source_only] = runs["name"]
    job = runs["job_id"][0]
    assert captured.err == (
        "error: --executor slurm: sbatch refused the array of 2 runs: Batch job submission "
        f"failed: Unable to contact slurm controller (connect failure); {check}; submitted "
        f"before it: job(s) {job}, recorded in {out / 'runs.csv'}; the same command, once SLURM "
        "takes jobs again, submits the rest (queued jobs are left alone, those SLURM lost are "
        "resubmitted)\n"
    )
    assert f"[sweep] source-only model {source_only}: job {job}" in captured.out
    assert sorted(p.name for p in (out / ".submitit").iterdir()) == [job]  # no leftovers

    never = tmp_path / "never"
    assert main([*command[:1], str(never), *command[2:]]) == 2
    assert capsys.readouterr().err == (
        "error: --executor slurm: sinfo could not list the cluster's partitions: "
        f"slurm_load_partitions: Unable to contact slurm controller (connect failure); {check}; "
        "refused before anything was written or submitted\n"
    )
    assert not never.exists()

    assert cluster("start", own_slurm) == conf
    assert main(command) == 0
    said = capsys.readouterr().out
    runs = read_runs(out).set_index("name")["job_id"]
    assert len(runs) == 3 and runs[source_only] != job  # cancelled by the stop: resubmitted
    assert "[sweep] submitted 4 job(s)" in said  # the source-only job, an array of 2, collect
    queue = slurm_queue(list(runs))
    assert sorted(queue) == sorted(runs) and set(queue.values()) == {"PENDING"}
