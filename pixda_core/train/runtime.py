"""Where a run computes: device, precision, and the process group under ``torchrun``.

One process without ``torchrun``; under ``torchrun --nproc_per_node N`` each process joins the
group (NCCL on CUDA, gloo on the CPU), takes GPU ``LOCAL_RANK`` and a 1/N share of every
batch stream, and only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from ..config import RunConfig
from ..errors import ConfigError, say_once


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    precision: str = "fp32"
    channels_last: bool = False
    #: under torchrun: a gloo group on which the processes agree to stop (CPU tensors)
    stop_group: object = None

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        """Autocast to the run's precision (bf16 or fp16) on its device; fp32: a no-op."""
        if self.precision in AUTOCAST:
            return torch.autocast(self.device.type, dtype=AUTOCAST[self.precision])
        return contextlib.nullcontext()

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """fp16 needs a gradient scaler (its range is too small for small gradients); bf16
        and fp32 do not."""
        return torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """Move a batch of images to the device (non-blocking) in the chosen memory format."""
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def labels(self, y: torch.Tensor) -> torch.Tensor:
        return y.to(self.device, non_blocking=True)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_(self, t: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(t)
        return t

    def log(self, msg: str) -> None:
        if self.is_main:
            print(msg, file=log_stream(), flush=True)

    def warn(self, msg: str) -> None:
        """A warning: stderr, in a terminal and in a notebook alike."""
        if self.is_main:
            print(msg, file=sys.stderr, flush=True)


def log_stream():
    """Where progress and log lines go: stdout inside a Jupyter kernel (JupyterLab shows
    stderr as an error box), stderr in a terminal (stdout stays the command's output).
    Warnings and errors go to stderr everywhere."""
    ipython = sys.modules.get("IPython")  # imported by every kernel, by no command of ours
    shell = ipython.get_ipython() if ipython is not None else None
    return sys.stdout if shell is not None and "IPKernelApp" in shell.config else sys.stderr


AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def choose_precision(
    asked: str, device_type: str, capability: tuple[int, int] | None = None, cpu_bf16=False
) -> str:
    """The precision a run computes in (``run.precision``, ``--amp``): "auto" is bf16 on GPUs
    of compute capability 8.0 and up (A100, H100, RTX 30xx and later), fp16 with a gradient
    scaler on older ones (V100, T4, RTX 20xx), fp32 on the CPU (bf16 with ``cpu_bf16``); an
    explicit "bf16", "fp16" or "fp32" is used as asked."""
    if asked != "auto":
        return asked
    if device_type == "cuda":
        return "bf16" if capability is not None and capability >= (8, 0) else "fp16"
    return "bf16" if cpu_bf16 else "fp32"


def describe_precision(precision: str, device: torch.device, capability=None) -> str:
    """E.g. "running on GPU 0 (compute capability 9.0) in bf16 autocast"."""
    where = "the CPU" if device.type == "cpu" else f"GPU {device.index}"
    if capability is not None:
        where += f" (compute capability {capability[0]}.{capability[1]})"
    what = {
        "bf16": "bf16 autocast",
        "fp16": "fp16 autocast with a gradient scaler",
        "fp32": "fp32",
    }[precision]
    return f"running on {where} in {what}"


def setup_runtime(cfg: RunConfig) -> Runtime:
    """Pick the device (say once when CUDA was wanted but is absent) and the precision (say
    which), set up deterministic mode when asked, and join ``torchrun``'s process group when
    launched by it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    has_cuda = torch.cuda.is_available()
    if cfg.device == "cuda" and not has_cuda:
        raise ConfigError("run.device = 'cuda' but no CUDA GPU is visible; use 'auto' or 'cpu'")
    use_cuda = has_cuda and cfg.device in ("auto", "cuda")
    if cfg.deterministic:
        # cuBLAS reads its workspace setting when it starts: before any CUDA matrix product
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # a global switch: set either way, so that a run does not inherit an earlier run's (the
    # first call takes seconds: made only when something changes)
    if cfg.deterministic != torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(cfg.deterministic, warn_only=True)
    capability = None
    if use_cuda:  # (cuDNN's switches load cuDNN, seconds of start-up: on CUDA only)
        torch.backends.cudnn.deterministic = cfg.deterministic
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        torch.backends.cudnn.benchmark = not cfg.deterministic
        capability = torch.cuda.get_device_capability(device)
    else:
        device = torch.device("cpu")
    precision = choose_precision(cfg.precision, device.type, capability, cfg.cpu_bf16)
    if rank == 0:
        said = describe_precision(precision, device, capability)
        say_once(f"no GPU found: {said}" if cfg.device == "auto" and not has_cuda else said)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    stop_group = dist.new_group(backend="gloo") if world > 1 else None
    return Runtime(
        device=device,
        rank=rank,
        world=world,
        local_rank=local_rank,
        precision=precision,
        channels_last=cfg.channels_last and use_cuda,
        stop_group=stop_group,
    )


class StopVote:
    """Under torchrun, whether any process has been asked to stop, agreed by all, off the
    step's critical path: each call casts this process's flag in an asynchronous all-reduce
    on the CPU gloo group (no device synchronisation) and reads the vote the previous call
    cast, which has long arrived while the step ran. Every process calls it once after every
    step, so all read the same vote after the same step: they stop together, one step after
    the signal. ``blocking=True``: the vote is cast and read at once (waits for the slowest
    process every step; kept for comparison, benchmarks/ddp_step.py). One process: the flag
    itself, at once."""

    def __init__(self, rt: Runtime, blocking: bool = False):
        self.rt, self.blocking = rt, blocking
        self.pending: tuple | None = None  # (work, flag) of the vote cast by the last call

    def __call__(self, asked: bool) -> bool:
        if not self.rt.distributed:
            return asked
        flag = torch.tensor([float(asked)])
        if self.blocking:
            dist.all_reduce(flag, group=self.rt.stop_group)
            return bool(flag.item() > 0)
        work = dist.all_reduce(flag, group=self.rt.stop_group, async_op=True)
        previous, self.pending = self.pending, (work, flag)
        return self._read(previous)

    def close(self) -> bool:
        """Read the vote still in flight (at the end of the steps: none is left behind for
        the process group's end); True when it says stop."""
        previous, self.pending = self.pending, None
        return self._read(previous)

    @staticmethod
    def _read(vote: tuple | None) -> bool:
        if vote is None:
            return False
        work, flag = vote
        work.wait()
        return bool(flag.item() > 0)


#: a second signal this soon after the first is the same stop, forwarded (torchrun passes
#: SLURM's SIGTERM on to workers that SLURM signalled already): it does not stop at once
SAME_STOP_S = 2.0


@contextlib.contextmanager
def stop_on_signals(asked: Callable[[int], None]):
    """While the block runs, SIGTERM and SIGINT (a scheduler's warning, torchrun stopping its
    workers, Ctrl-C) call ``asked(signum)`` instead of ending the process, so the training
    loop can finish its step and checkpoint; a second signal, :data:`SAME_STOP_S` or more
    after the first, stops it at once. The handler only records (the loop says so); signal
    handlers belong to the main thread: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    first: list[float] = []

    def handler(signum, frame):
        if first and time.monotonic() - first[0] >= SAME_STOP_S:
            raise KeyboardInterrupt
        if not first:
            first.append(time.monotonic())
            asked(signum)

    before = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in before.items():
            signal.signal(s, h)


def worker_ignores_stops(worker_id: int) -> None:
    """``worker_init_fn`` of every loader: a DataLoader worker ignores SIGINT and SIGTERM, so
    that a stop sent to every process (Ctrl-C in a terminal, to the foreground process
    group; SLURM's ``scancel`` or time limit, to every process of the job) reaches the
    training loop, which stops at the step's end and checkpoints, instead of killing the
    workers under it (the run would end with their error). The loader still ends its
    workers: on shutdown they leave their loop when told to, and one whose parent has died
    exits by itself (PyTorch's watchdog); SIGKILL, a scheduler's last word, ends them all."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def ran_on(rt: Runtime) -> dict:
    """What a run's numbers came from, for ``metrics.json``: device (with the GPU's name),
    precision, processes, and the versions of the kit, Python, PyTorch, torchvision, CUDA."""
    import platform

    import torchvision

    from .. import __version__

    device = str(rt.device)
    if rt.device.type == "cuda":
        device += f" ({torch.cuda.get_device_name(rt.device)})"
    return {
        "device": device,
        "precision": rt.precision,
        "world_size": rt.world,
        "versions": {
            "pixda": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "cuda": torch.version.cuda,
        },
    }


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
