"""Throughput of the PixDA training step under torchrun (DistributedDataParallel), against one
process on the same cores, and a check that the replicas stay identical.

    OMP_NUM_THREADS=2 python benchmarks/ddp_step.py                       # 1 process x 2 threads
    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 benchmarks/ddp_step.py
    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 benchmarks/ddp_step.py \
        --stop-vote blocking     # the stop agreement as it was: a blocking all-reduce per step

Each process runs the kit's :func:`~pixda_core.train.step.main_step` (PixDA main step: G,
D1, D2, three optimisers) on its own random batches (as DDP shards the data), ``--batch`` source
and target images per process. Rank 0 prints the median step time, the images per second of
all processes together (source + target), and the largest difference between the processes'
G weights after the timed steps (0 when gradients are averaged correctly). After each step the
processes agree on stopping as the training loop does (:class:`~pixda_core.train.runtime.
StopVote`; ``--stop-vote async``, the kit's, ``blocking``, the one it replaced, or ``none``);
the time of that call is reported apart (median per step). On the CPU the
backend is gloo, on CUDA NCCL (``setup_runtime`` picks it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F

from pixda_core.config import preset
from pixda_core.methods import method_of
from pixda_core.train.runtime import StopVote, setup_runtime
from pixda_core.train.step import LossSums, build_nets, main_step


def random_batch(b: int, w: int, h: int, g: torch.Generator) -> dict:
    coarse = torch.randint(0, 19, (b, 1, max(h // 16, 1), max(w // 16, 1)), generator=g)
    label = F.interpolate(coarse.float(), size=(h, w), mode="nearest").long()[:, 0]
    return {"image": torch.rand(b, 3, h, w, generator=g) * 255, "label": label}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="256,128", help="W,H of the inputs")
    p.add_argument("--batch", type=int, default=2, help="source and target images per process")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--stop-vote", default="async", choices=("async", "blocking", "none"))
    args = p.parse_args(argv)
    w, h = (int(x) for x in args.size.split(","))
    cfg = preset("toy").override(
        model={"backbone": args.backbone},
        data={"size": [w, h]},
        adapt={"batch_size": args.batch},
        run={"device": args.device, "seed": 0},
    )
    rt = setup_runtime(cfg.run)
    nets, losses = build_nets(cfg, method_of(cfg), cfg.adapt, rt), LossSums()

    def step(src: dict, trg: dict) -> None:
        main_step(nets, src, trg, cfg, losses)

    g = torch.Generator().manual_seed(100 + rt.rank)  # each process its own data
    batches = [
        (random_batch(args.batch, w, h, g), random_batch(args.batch, w, h, g)) for _ in range(2)
    ]
    vote = StopVote(rt, blocking=args.stop_vote == "blocking")
    for i in range(args.warmup):
        step(*batches[i % 2])
    times, votes = [], []
    rt.barrier()
    for i in range(args.steps):
        # no barrier between steps: a slower process makes the others wait where the
        # training loop would, in the gradients' all-reduce and in a blocking vote
        t0 = time.perf_counter()
        step(*batches[i % 2])
        t1 = time.perf_counter()
        if args.stop_vote != "none":
            vote(False)
        if rt.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        votes.append(time.perf_counter() - t1)
    vote.close()
    weights = torch.cat([p.detach().flatten().float() for p in nets.g.parameters()])
    diff = torch.zeros(1, device=weights.device)
    if rt.distributed:
        reference = weights.clone()
        dist.broadcast(reference, 0)
        diff[0] = (weights - reference).abs().max()
        dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    median = statistics.median(times)
    if rt.is_main:
        imgs = rt.world * 2 * args.batch / median
        print(
            f"processes {rt.world} x {torch.get_num_threads()} threads ({rt.device}), "
            f"{args.backbone} {w}x{h}, batch {args.batch}+{args.batch} per process"
        )
        print(
            f"median step {median:.4f} s (min {min(times):.4f}), {imgs:.2f} images/s in all, "
            f"max weight difference between processes {diff.item():.3g}"
        )
        print(
            f"stop vote ({args.stop_vote}): median {statistics.median(votes) * 1e3:.3f} ms "
            f"per step (max {max(votes) * 1e3:.3f} ms)"
        )
    if rt.distributed:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
