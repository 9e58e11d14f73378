"""Where a run computes: device, precision, and the process group under ``torchrun``.

One process without ``torchrun``; under ``torchrun --nproc_per_node N`` each process joins the
group (NCCL on CUDA, gloo on the CPU), takes GPU ``LOCAL_RANK`` and a 1/N share of every
batch stream, and only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from ..config import RunConfig
from ..errors import ConfigError

_warned_no_gpu = False


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    precision: str = "fp32"
    channels_last: bool = False

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        """bf16 autocast on the run's device when its precision is bf16; else a no-op."""
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

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
            print(msg, file=sys.stderr, flush=True)


def setup_runtime(cfg: RunConfig) -> Runtime:
    """Pick the device (say once when CUDA was wanted but is absent) and join ``torchrun``'s
    process group when launched by it."""
    global _warned_no_gpu
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    has_cuda = torch.cuda.is_available()
    if cfg.device == "cuda" and not has_cuda:
        raise ConfigError("run.device = 'cuda' but no CUDA GPU is visible; use 'auto' or 'cpu'")
    use_cuda = has_cuda and cfg.device in ("auto", "cuda")
    if cfg.device == "auto" and not has_cuda and not _warned_no_gpu and rank == 0:
        print("no GPU found: running on the CPU (fp32)", file=sys.stderr, flush=True)
        _warned_no_gpu = True
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        torch.backends.cudnn.benchmark = True
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Runtime(
        device=device,
        rank=rank,
        world=world,
        local_rank=local_rank,
        precision=cfg.precision if use_cuda or cfg.cpu_bf16 else "fp32",
        channels_last=cfg.channels_last and use_cuda,
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
