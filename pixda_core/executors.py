"""Where a sweep's notebooks run, through submitit: on this machine (its local executor, N
jobs at a time, one GPU each: the least busy) or on a SLURM cluster (one job array after the
source-only job, then a last job that collects the results).

Every task is one notebook executed with papermill by :class:`NotebookJob`, in a process of
its own. What the notebook prints goes to ``<sweep>/logs/<run>.log`` as it runs, and the job
writes ``<sweep>/logs/<run>.json`` (state, job id, host, GPUs, error, times) so that the sweep
can tell, at any later time, what happened to it. On a scheduler's time limit the job is
requeued (submitit's checkpointing) and the notebook resumes its run from the last checkpoint.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, redirect_stderr
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import submitit

from .errors import ConfigError, SlurmError

if TYPE_CHECKING:
    from .runspec import RunSpec

#: states of a task in squeue that mean it will still run
QUEUED = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED")


@dataclass(frozen=True)
class Task:
    """One notebook execution of a sweep: one run (:class:`~pixda_core.runspec.RunSpec`),
    its notebook (02 or 03) given the spec's parameters."""

    name: str  # the run's folder name
    spec: RunSpec  # the run
    output: str  # where the executed notebook goes
    log: str  # the notebook's output, streamed
    status: str  # the job's record: state, job id, host, GPUs, error
    expected_s: float | None = None  # the plan's time of its training steps (None: unmeasured)

    @property
    def notebook(self) -> str:
        return self.spec.notebook

    @property
    def params(self) -> dict:
        return self.spec.params()

    @property
    def call(self) -> NotebookCall:
        """What its job is given (plain values: no :class:`RunSpec`)."""
        return NotebookCall(self.name, self.notebook, self.output, self.params, self.log,
                            self.status)  # fmt: skip


@dataclass(frozen=True)
class NotebookCall:
    """What a job's process is handed: the notebook, its parameters and where its output,
    log and record go. Plain values only: unpickling a :class:`RunSpec` would import the
    training stack (torch included) into a process that only runs papermill, a second or two
    of CPU and some hundred MB per job."""

    name: str
    notebook: str
    output: str
    params: dict
    log: str
    status: str


@dataclass(frozen=True)
class SlurmOptions:
    """What a SLURM job of the sweep asks for (``sweep --executor slurm`` options)."""

    partition: str | None = None
    gpus_per_job: int = 0
    cpus_per_job: int = 4
    mem_gb: int | None = None
    time_min: int = 24 * 60
    account: str | None = None
    qos: str | None = None
    #: more sbatch options, e.g. {"constraint": "a100"}
    extra: dict = field(default_factory=dict)
    #: tasks of the array running at once (0: as many as the cluster gives)
    parallel: int = 0


@dataclass(frozen=True)
class Local:
    """A sweep's executor: its notebooks run here, ``jobs`` at a time (each on the least busy
    GPU, or on a share of the cores), each stopped after ``time_limit`` minutes (None: no
    limit)."""

    jobs: int = 1
    time_limit: int | None = None

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise ConfigError(f"--jobs {self.jobs}: expected at least 1")


@dataclass(frozen=True)
class Slurm:
    """A sweep's executor: its notebooks run as SLURM jobs asking for ``options``. With
    ``planned_time`` each job's ``--time`` comes from the sweep's plan (``options.time_min``
    where nothing was measured); else it is ``options.time_min`` (``--time-limit``).
    ``wait``: follow the jobs until they end, then report as a local sweep does."""

    options: SlurmOptions = field(default_factory=SlurmOptions)
    planned_time: bool = True
    wait: bool = False


def write_status(path: str | os.PathLike, **fields) -> None:
    """Update a task's status record (written whole, then moved into place)."""
    path = Path(path)
    record = read_status(path)
    record.update(fields)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)


def read_status(path: str | os.PathLike) -> dict:
    """A task's record; none yet, or damaged: {} (the task then counts as never started)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return record if isinstance(record, dict) else {}


class NotebookJob(submitit.helpers.Checkpointable):
    """What a job runs: one task's notebook. Checkpointable: when a scheduler stops the job
    at its time limit, submitit requeues the same call, and the notebook resumes its run from
    the run's last checkpoint (the notebooks train with ``resume=True``)."""

    def __call__(self, task: NotebookCall) -> str:
        from .notebook_run import execute

        env = submitit.JobEnvironment() if "SUBMITIT_FOLDER" in os.environ else None
        write_status(
            task.status,
            state="running",
            executor="slurm" if "SLURM_JOB_ID" in os.environ else "local",
            job_id=env.job_id if env is not None else None,
            host=socket.gethostname(),
            gpus=seen_gpus(),
            started=time.time(),
            error=None,
        )
        with open(task.log, "a") as log:
            log.write(
                f"[sweep] {task.name}: {task.notebook} on {socket.gethostname()}, "
                f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(not set)')}\n"
            )
            log.flush()
            why = execute(task.notebook, Path(task.output), task.params, log=log)
        write_status(task.status, state="failed" if why else "done", error=why, ended=time.time())
        if why:
            raise RuntimeError(why)
        return "done"


# ------------------------------------------------------------------------------ this machine


def visible_gpus() -> list[int]:
    """The GPUs this machine lets the sweep use (CUDA_VISIBLE_DEVICES when set)."""
    import torch

    if not torch.cuda.is_available():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        return [int(x) for x in listed.split(",") if x.strip().isdigit()]
    return list(range(torch.cuda.device_count()))


def seen_gpus() -> str:
    """The GPUs a job sees, as CUDA_VISIBLE_DEVICES lists them ("" for none)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    return listed if listed is not None else ",".join(map(str, visible_gpus()))


def run_here(
    tasks: list[Task], folder: Path, jobs: int = 1, time_min: int | None = None, progress=None
) -> dict[str, str | None]:
    """Run ``tasks`` here, ``jobs`` at a time: with several at once (or a time limit) each
    is a process of submitit's local executor that sees one GPU of :func:`visible_gpus` (the
    one the fewest running jobs use: never a busy one while another is idle) or none; one at
    a time without a limit, they run in this process and see every GPU (what a sweep always
    did). Returns name -> None (done) or the error;
    ``progress(task, error)`` is called as each one ends."""
    if jobs == 1 and not time_min:
        results = {}
        for task in tasks:
            try:
                NotebookJob()(task.call)
                results[task.name] = None
            except RuntimeError as exc:
                results[task.name] = str(exc)
            if progress is not None:
                progress(task, results[task.name])
        return results
    gpus = visible_gpus()
    executor = submitit.LocalExecutor(folder=str(folder / "%j"))
    threads = cpu_share(jobs) if jobs > 1 and not gpus else None
    pending, running, results = list(tasks), [], {}  # running: (task, job, its GPU or None)

    def least_used() -> int:
        use = [sum(g == gpu for _, _, g in running) for gpu in gpus]
        return gpus[use.index(min(use))]

    while pending or running:
        while pending and len(running) < jobs:
            task = pending.pop(0)
            gpu = least_used() if gpus else None
            executor.update_parameters(
                timeout_min=time_min or 7 * 24 * 60,
                gpus_per_node=1 if gpus else 0,
                visible_gpus=[gpu] if gpus else [],
            )
            with environment(OMP_NUM_THREADS=threads):  # the job's process inherits it
                running.append((task, executor.submit(NotebookJob(), task.call), gpu))
        time.sleep(0.5)
        for task, job, gpu in [r for r in running if r[1].done()]:
            running.remove((task, job, gpu))
            record = read_status(task.status)
            error = None if record.get("state") == "done" else record.get("error")
            if record.get("state") != "done" and not error:
                error = _job_failure(job)
                write_status(task.status, state="failed", error=error, ended=time.time())
            results[task.name] = error
            if progress is not None:
                progress(task, error)
    return results


def cpu_share(jobs: int) -> str | None:
    """CPU threads for each of ``jobs`` notebooks run at once without GPUs, so that they share
    the cores instead of each starting a thread per core (which makes N at once slower than one
    after another); None where the user set OMP_NUM_THREADS."""
    if "OMP_NUM_THREADS" in os.environ:
        return None
    return str(max(1, len(os.sched_getaffinity(0)) // jobs))


@contextmanager
def environment(**values: str | None):
    """Set environment variables (those given as None are left alone) for the block."""
    before = {k: os.environ.get(k) for k, v in values.items() if v is not None}
    os.environ.update({k: v for k, v in values.items() if v is not None})
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _job_failure(job) -> str:
    """Why a job ended without its notebook finishing (killed, timed out, crashed)."""
    try:
        job.result()
    except Exception as exc:  # submitit wraps the job's own error with its traceback
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        return lines[-1] if lines else type(exc).__name__
    return "the job ended without a result"


# ------------------------------------------------------------------------------ SLURM


def slurm_executor(folder: Path, options: SlurmOptions, name: str):
    if shutil.which("sbatch") is None:
        raise ConfigError("--executor slurm: no sbatch on this machine (is SLURM installed here?)")
    executor = submitit.SlurmExecutor(folder=str(folder / "%j"), max_num_timeout=3)
    extra = {"kill-on-invalid-dep": "yes", **options.extra}
    params = {
        "job_name": name,
        "cpus_per_task": options.cpus_per_job,
        "time": options.time_min,
        "partition": options.partition,
        "gpus_per_node": options.gpus_per_job or None,
        "mem": f"{options.mem_gb}G" if options.mem_gb else None,
        "account": options.account,
        "qos": options.qos,
        "array_parallelism": options.parallel or 256,
        # the warning before the time limit, for submitit to requeue the job (90 s, less
        # for short limits)
        "signal_delay_s": min(90, max(10, options.time_min * 15)),
        "additional_parameters": extra,
    }
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return executor


def submit_to_slurm(
    tasks: list[Task],
    folder: Path,
    options: SlurmOptions,
    after: list[str] = (),
    name: str = "pixda",
) -> list[str]:
    """Submit ``tasks`` as one job array (a single task as a plain job), to start once the
    jobs ``after`` have succeeded; returns the job ids, in the order of ``tasks``."""
    if not tasks:
        return []
    executor = slurm_executor(folder, options, name)
    if after:
        executor.update_parameters(dependency="afterok:" + _ids(after))
    what = f"the array of {len(tasks)} runs" if len(tasks) > 1 else f"the job of {tasks[0].name}"
    with sbatch_refusal(folder, what, options), executor.batch():
        jobs = [executor.submit(NotebookJob(), task.call) for task in tasks]
    for task, job in zip(tasks, jobs, strict=True):
        write_status(task.status, state="pending", executor="slurm", job_id=job.job_id, error=None)
    return [job.job_id for job in jobs]


def submit_collect(
    function, args: tuple, folder: Path, options: SlurmOptions, after: list[str]
) -> str:
    """A last job, started when the jobs ``after`` have ended whatever their outcome."""
    executor = slurm_executor(folder, without_gpus(options), "pixda-collect")
    if after:
        executor.update_parameters(dependency="afterany:" + _ids(after))
    with sbatch_refusal(folder, "the collecting job", without_gpus(options)):
        return executor.submit(function, *args).job_id


@contextmanager
def sbatch_refusal(folder: Path, what: str, options: SlurmOptions):
    """sbatch refusing ``what`` (submitit's FailedJobError, after it printed sbatch's
    stderr) as a :class:`SlurmError`: SLURM's message and what to check, in one line; the
    submission file and pickles submitit left in ``folder`` for it are removed."""
    printed, said = io.StringIO(), None
    try:
        with redirect_stderr(printed):
            yield
    except submitit.core.utils.FailedJobError as exc:
        said = slurm_says(str(exc) or printed.getvalue())
    finally:
        if said is None:  # anything else submitit printed is the user's to see
            sys.stderr.write(printed.getvalue())
    if said is not None:
        for left in [*folder.glob(".submission_file_*.sh"), *folder.glob("*.pkl")]:
            left.unlink(missing_ok=True)  # (a submitted job's are in its own folder)
        raise SlurmError(f"sbatch refused {what}: {said}; {what_to_check(said, options)}")


def _ids(job_ids) -> str:
    """``5_0, 5_1, 7`` -> ``5:7``: a dependency on an array covers all its tasks."""
    return ":".join(sorted({j.split("_")[0] for j in job_ids}, key=int))


def without_gpus(options: SlurmOptions) -> SlurmOptions:
    """The collecting job draws figures and tables: no GPU."""
    return SlurmOptions(**{**asdict(options), "gpus_per_job": 0})


def slurm_jobs(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """job id -> (state, SLURM's reason) for the jobs still in the queue (PENDING with
    ``Dependency``, ``Resources``, ``PartitionConfig``, ...); one entry per array task. Jobs
    that have left the queue are not listed."""
    ids = sorted({j.split("_")[0] for j in job_ids if j})
    if not ids or shutil.which("squeue") is None:
        return {}
    out = subprocess.run(
        ["squeue", "-h", "-r", "-o", "%i %T %r", "-j", ",".join(ids)],
        capture_output=True,
        text=True,
    )
    jobs = {}
    for line in out.stdout.splitlines():
        job, state, reason = (line.strip().split(" ", 2) + ["", ""])[:3]
        if state in QUEUED:
            jobs[job] = (state, "" if reason == "None" else reason)
    return jobs


def slurm_queue(job_ids: list[str]) -> dict[str, str]:
    """job id -> its state (PENDING, RUNNING, ...) for the jobs still in the queue; one entry
    per array task. Jobs that have left the queue are not listed."""
    return {job: state for job, (state, _) in slurm_jobs(job_ids).items()}


#: how SLURM says a job ended, in words (sacct's and scontrol's job states)
ENDED = {
    "TIMEOUT": "time limit reached",
    "OUT_OF_MEMORY": "out of memory",
    "NODE_FAIL": "node failure",
    "CANCELLED": "cancelled",
    "PREEMPTED": "preempted",
    "BOOT_FAIL": "node failed to boot",
    "DEADLINE": "deadline reached",
    "FAILED": "failed",
}


def slurm_ended(job_ids: list[str]) -> dict[str, str]:
    """job id -> why it ended, in words (``time limit reached``, ``out of memory``, ``node
    failure``, ``cancelled``, ``failed, exit code 1``), for the jobs of ``job_ids`` that
    ended other than COMPLETED: from ``sacct`` where the cluster keeps accounting, else
    from ``scontrol`` (which knows a job for MinJobAge seconds after it ends)."""
    ids = [j for j in job_ids if j]
    if not ids:
        return {}
    found = {}
    if shutil.which("sacct"):
        out = subprocess.run(
            ["sacct", "-n", "-P", "-X", "-o", "JobID,State,ExitCode", "-j", ",".join(ids)],
            capture_output=True,
            text=True,
        )
        if out.returncode == 0:
            for line in out.stdout.splitlines():
                job, state, code = (line.split("|") + ["", ""])[:3]
                found[job] = (state.split(" ")[0], code)
    missing = [j for j in ids if j not in found]
    if missing and shutil.which("scontrol"):
        for job in missing:
            out = subprocess.run(
                ["scontrol", "-o", "show", "job", job], capture_output=True, text=True
            )
            fields = dict(f.partition("=")[::2] for f in out.stdout.split() if "=" in f)
            if out.returncode == 0 and "JobState" in fields:
                found[job] = (fields["JobState"], fields.get("ExitCode", ""))
    why = {}
    for job, (state, code) in found.items():
        if job in ids and state in ENDED:
            words = ENDED[state]
            if state == "FAILED" and code:
                words += f", exit code {code.partition(':')[0]}"
            why[job] = words
    return why


def slurm_partitions() -> tuple[dict[str, list[dict]], str | None] | None:
    """Each partition's nodes as ``sinfo`` shows them (``cpus``, ``mem_mb``, ``gpus`` each)
    and the default partition; None when this machine has no sinfo. A sinfo that fails
    (the controller unreachable, no configuration, munge refusing) is a :class:`SlurmError`
    with SLURM's message and what to check."""
    if shutil.which("sinfo") is None:
        return None
    argv = ["sinfo", "-h", "-N", "-o", "%P|%c|%m|%G"]
    out = subprocess.run(argv, capture_output=True, text=True)
    if out.returncode != 0:
        said = slurm_says(out.stderr or out.stdout)
        raise SlurmError(
            f"--executor slurm: sinfo could not list the cluster's partitions: {said}; "
            f"{what_to_check(said)}; refused before anything was written or submitted"
        )
    partitions, default = {}, None
    for line in out.stdout.splitlines():
        part, cpus, mem, gres = (line.strip().split("|") + ["", "", ""])[:4]
        if part.endswith("*"):
            part = default = part[:-1]
        gpus = 0
        for item in gres.split(","):  # gpu:4, gpu:a100:4, gpu:a100:4(S:0-1), (null)
            bits = item.partition("(")[0].split(":")
            if bits[0] == "gpu" and bits[-1].isdigit():
                gpus += int(bits[-1])
        node = {"cpus": _number(cpus), "mem_mb": _number(mem), "gpus": gpus}
        partitions.setdefault(part, []).append(node)
    return partitions, default


def _number(text: str) -> int:
    """sinfo's ``16`` or ``16+`` (nodes that differ) as 16; anything else 0."""
    text = text.rstrip("+")
    return int(text) if text.isdigit() else 0


def check_slurm(options: SlurmOptions) -> None:
    """What ``sweep --executor slurm`` checks before it writes or submits anything: the
    cluster answers (sinfo), some node can meet the request (:func:`check_slurm_request`),
    and sbatch takes a job of these options (:func:`check_sbatch_accepts`)."""
    check_slurm_request(options)
    check_sbatch_accepts(options)


def check_slurm_request(options: SlurmOptions) -> None:
    """Refuse, before anything is submitted, a request that no node of the partition can
    meet (it would wait in the queue for ever, PENDING with reason PartitionConfig or
    Resources): CPUs, memory or GPUs per job above the largest node's, naming the flag, the
    value and that largest; a partition that does not exist; a cluster sinfo cannot reach
    (:func:`slurm_partitions`)."""
    found = slurm_partitions()
    if found is None:
        return  # no sinfo here: sbatch judges the request (check_sbatch_accepts)
    partitions, default = found
    name = options.partition or default
    if name not in partitions:
        asked = f"--partition {options.partition}" if options.partition else "no --partition"
        what = "no such partition" if options.partition else "and no default partition"
        raise ConfigError(
            f"{asked}: {what} on this cluster (sinfo lists: {', '.join(partitions) or 'none'}); "
            "choose one with --partition"
        )
    nodes = partitions[name]
    for flag, asked, key, unit, scale in (
        ("--cpus-per-job", options.cpus_per_job, "cpus", "CPU", 1),
        ("--mem-gb", options.mem_gb, "mem_mb", "GB of memory", 1024),
        ("--gpus-per-job", options.gpus_per_job, "gpus", "GPU", 1),
    ):
        largest = max(n[key] for n in nodes)
        if not asked or asked * scale <= largest:
            continue
        most = largest // scale
        unit = unit if asked == 1 or scale > 1 else unit + "s"
        has = f"{largest} MB" if key == "mem_mb" else f"{largest}"
        default = " (the default)" if flag == "--cpus-per-job" and asked == 4 else ""
        fix = f"ask for at most {most}, or choose" if most else "choose"
        raise ConfigError(
            f"{flag} {asked}{default}: no node of partition {name} has {asked} {unit} (the "
            f"largest has {has}); {fix} another --partition"
        )


def check_sbatch_accepts(options: SlurmOptions) -> None:
    """Ask sbatch whether the cluster takes a job of these options, as submitit writes
    them, without submitting it (``sbatch --test-only``): a generic resource or feature no
    node has, an account, QoS or time limit the cluster refuses is said before anything is
    written, with SLURM's message and what to check."""
    with tempfile.TemporaryDirectory(prefix="pixda-sbatch-") as folder:
        executor = slurm_executor(Path(folder), options, "pixda-check")
        script = executor._make_submission_file_text("true", "check")  # as submit writes it
    out = subprocess.run(["sbatch", "--test-only"], input=script, capture_output=True, text=True)
    if out.returncode != 0:
        said = slurm_says(out.stderr or out.stdout)
        raise SlurmError(
            f"--executor slurm: sbatch refuses the jobs ({slurm_request(options)}): {said}; "
            f"{what_to_check(said, options)}; refused before anything was written or submitted"
        )


def slurm_says(printed: str) -> str:
    """SLURM's own message in what a command printed: its last line, without the
    command's ``sbatch: error:`` prefix."""
    lines = [line.strip() for line in printed.splitlines() if line.strip()]
    if not lines:
        return "(it printed nothing)"
    return re.sub(r"^[a-z]+: (error|fatal): ", "", lines[-1])


def slurm_request(options: SlurmOptions) -> str:
    """What a job asks for, as the sweep's flags: ``--partition debug, --cpus-per-job 4,
    ..., --sbatch constraint=a100``."""
    flags = [f"--partition {options.partition}" if options.partition else "default partition"]
    flags.append(f"--cpus-per-job {options.cpus_per_job}")
    flags += [f"--mem-gb {options.mem_gb}"] if options.mem_gb else []
    flags += [f"--gpus-per-job {options.gpus_per_job}"] if options.gpus_per_job else []
    flags.append(f"--time-limit {options.time_min}")
    flags += [f"--account {options.account}"] if options.account else []
    flags += [f"--qos {options.qos}"] if options.qos else []
    flags += [f"--sbatch {key}={value}" for key, value in options.extra.items()]
    return ", ".join(flags)


#: what to check, by words of SLURM's message (lower case); the first that matches
SLURM_CHECKS = (
    (("contact slurm controller", "connect failure", "configuration source", "slurm.conf"),
     "check that slurmctld is running and reachable from this machine (scontrol ping) and "
     "that {conf} is this cluster's configuration"),
    (("munge", "credential", "authentication", "zero bytes"),
     "check that munged runs on this machine with the cluster's key (munge -n | unmunge)"),
    (("generic resource", "gres"),
     "check --gpus-per-job and any --sbatch gres=...: the generic resources (GPUs) the "
     "partition's nodes have are what sinfo -o '%P %G' lists ((null): none configured)"),
    (("feature",),
     "check --sbatch constraint=...: the features of the partition's nodes are what "
     "sinfo -o '%P %f' lists"),
    (("policy",),
     "check --account, --qos, --time-limit and the job's size against your account's limits "
     "(sacctmgr show assoc)"),
    (("account",), "check --account: one you may use on this partition (sacctmgr show assoc)"),
    (("qos",), "check --qos: one your account may use (sacctmgr show assoc)"),
    (("time limit",), "check --time-limit: at most the partition's (sinfo -o '%P %l')"),
    (("partition",), "check --partition: one that sinfo lists"),
    (("memory",), "check --mem-gb: at most the nodes' memory (sinfo -N -o '%P %m')"),
    (("node configuration",),
     "check --cpus-per-job, --mem-gb, --gpus-per-job and the --sbatch options against the "
     "partition's nodes (sinfo -N -o '%P %c %m %G %f')"),
)  # fmt: skip


def what_to_check(said: str, options: SlurmOptions | None = None) -> str:
    """What the user should check, for SLURM's message ``said``."""
    conf = os.environ.get("SLURM_CONF")
    conf = f"SLURM_CONF ({conf})" if conf else "SLURM_CONF (not set: SLURM's default one)"
    for words, check in SLURM_CHECKS:
        if any(word in said.lower() for word in words):
            return check.format(conf=conf)
    if options is None:
        return SLURM_CHECKS[0][1].format(conf=conf)
    return (
        f"check the request ({slurm_request(options)}) against what the partition allows "
        "(scontrol show partition)"
    )


def slurm_cancel(job_id: str) -> None:
    subprocess.run(["scancel", job_id], check=False, capture_output=True)
