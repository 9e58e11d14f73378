"""One PixDA training step, timed: the kit's step against a release-style step, same process.

    python benchmarks/step.py --device cpu --size 256,128 --batch 2 --backbone resnet18
    python benchmarks/step.py --device cuda --size 1024,512 --batch 4 --backbone resnet101

Both steps are the kit's :func:`pixda_core.train.step.main_step` running PixDA's main step (G
on a source and a target batch with the pixel adversarial loss through D1, then D1 and D2 on
detached predictions, three optimiser steps). The release-style one swaps in (while it is
measured, by patching the kit's modules) what the public release does differently: FDA in
numpy, one image at a time, on the host; the class-balance weights by a Python loop over images
and classes; the CE factor not detached; fp32 and the default memory format. Inputs are random
images (0-255) and blocky random label maps with ignored pixels, never zeros. Times are medians
over ``--reps`` steps after ``--warmup`` steps, synchronised on CUDA. Prints a table; the last
line is ``speedup_vs_release: X.XX``.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import sys
import time
from collections.abc import Callable
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F

import pixda_core.losses
import pixda_core.train.step
from pixda_core.config import preset
from pixda_core.labels import IGNORE_INDEX
from pixda_core.methods import method_of
from pixda_core.train.runtime import Runtime
from pixda_core.train.step import LossSums, build_nets, main_step


# ------------------------------------------------------------------ the release's host pieces
def fda_numpy_per_image(src: torch.Tensor, trg: torch.Tensor, beta: float) -> torch.Tensor:
    """FDA as the release runs it: to the host, numpy FFTs one image at a time, back."""
    out = []
    for s, t in zip(src.float().cpu().numpy(), trg.float().cpu().numpy(), strict=True):
        fs, ft = np.fft.fft2(s, axes=(-2, -1)), np.fft.fft2(t, axes=(-2, -1))
        amp_s = np.fft.fftshift(np.abs(fs), axes=(-2, -1))
        amp_t = np.fft.fftshift(np.abs(ft), axes=(-2, -1))
        h, w = s.shape[-2:]
        b = int(np.floor(min(h, w) * beta))
        ch, cw = h // 2, w // 2
        amp_s[:, ch - b : ch + b + 1, cw - b : cw + b + 1] = amp_t[
            :, ch - b : ch + b + 1, cw - b : cw + b + 1
        ]
        amp_s = np.fft.ifftshift(amp_s, axes=(-2, -1))
        mixed = np.fft.ifft2(amp_s * np.exp(1j * np.angle(fs)), axes=(-2, -1))
        out.append(np.real(mixed).astype(np.float32))
    return torch.from_numpy(np.stack(out)).to(src.device)


def loop_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """1 - n_c / n_total per pixel, by Python loops over images and classes (as released)."""
    weights = torch.zeros(labels.shape, device=labels.device)
    for b in range(labels.shape[0]):
        lab = labels[b]
        total = lab.numel()
        for c in range(num_classes):
            mask = lab == c
            count = int(mask.sum().item())
            if count:
                weights[b][mask] = 1 - count / total
    return weights


def release_pixel_adversarial_loss(seg_logits, d_logits, labels, detach_weights=False):
    bce = F.binary_cross_entropy_with_logits(
        d_logits.float().squeeze(1),
        torch.zeros_like(labels, dtype=torch.float32),
        reduction="none",
    )
    ce = F.cross_entropy(seg_logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="none")
    return (bce * ce * loop_weights(labels, seg_logits.shape[1])).mean()


@contextlib.contextmanager
def release_pieces():
    """The kit's step with the release's host-side FDA and loop-based pixel weights."""
    with (
        mock.patch.object(pixda_core.train.step, "fda_source_to_target", fda_numpy_per_image),
        mock.patch.object(
            pixda_core.losses, "pixel_adversarial_loss", release_pixel_adversarial_loss
        ),
    ):
        yield


# ------------------------------------------------------------------------------ the benchmark
def random_batch(batch: int, w: int, h: int, device, g: torch.Generator) -> dict:
    image = torch.rand(batch, 3, h, w, generator=g) * 255
    coarse = torch.randint(0, 19, (batch, 1, max(h // 16, 1), max(w // 16, 1)), generator=g)
    label = F.interpolate(coarse.float(), size=(h, w), mode="nearest").long()[:, 0]
    label[torch.rand(batch, h, w, generator=g) < 0.05] = IGNORE_INDEX
    return {"image": image.to(device), "label": label.to(device)}


def build(args, release: bool) -> Callable[[dict, dict], None]:
    """The step to time: ``step(src, trg)``, the kit's PixDA main step at the given setting
    (release-style: fp32, default memory format; call it under :func:`release_pieces`)."""
    w, h = args.size
    cfg = preset("paper").override(
        model={"backbone": args.backbone, "multi_level": not args.single_level},
        data={"size": [w, h]},
        adapt={"batch_size": args.batch},
        run={
            "device": args.device,
            "precision": args.precision,
            "compile": args.compile and not release,
            "concat_forward": args.concat_forward and not release,
        },
    )
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    # the kit computes in --precision on either device (fp16 brings its gradient scaler)
    rt = Runtime(
        device, precision="fp32" if release else args.precision, channels_last=cuda and not release
    )
    nets, losses = build_nets(cfg, method_of(cfg), cfg.adapt, rt), LossSums()

    def step(src: dict, trg: dict) -> None:
        main_step(nets, src, trg, cfg, losses)

    return step


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(args, release: bool) -> dict:
    with release_pieces() if release else contextlib.nullcontext():
        return _measure(args, build(args, release))


def _measure(args, step) -> dict:
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    w, h = args.size

    def pair():
        return random_batch(args.batch, w, h, device, g), random_batch(args.batch, w, h, device, g)

    batches = [pair(), pair()]
    for i in range(args.warmup):
        step(*batches[i % 2])
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(args.reps):
        sync(device)
        t0 = time.perf_counter()
        step(*batches[i % 2])
        sync(device)
        times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
    else:  # the process's peak resident memory (Linux reports KiB)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step(*batches[0])
    sync(device)
    median = statistics.median(times)
    flops = counter.get_total_flops()
    return {
        "median_s": median,
        "min_s": min(times),
        "peak_gib": peak,
        "tflop": flops / 1e12,
        "tflops": flops / median / 1e12,
    }


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size {text!r} is not W,H") from None
    return w, h


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", type=parse_size, default=(1024, 512), help="W,H of the inputs")
    p.add_argument("--batch", type=int, default=4, help="source and target images per step")
    p.add_argument("--backbone", default="resnet101")
    p.add_argument(
        "--precision",
        choices=("bf16", "fp16", "fp32"),
        default="bf16",
        help="the kit step's precision, on CUDA or the CPU (fp16: autocast with the gradient "
        "scaler, as --amp fp16 trains); the release-style step is fp32",
    )
    p.add_argument("--single-level", action="store_true", help="no aux head on layer3")
    p.add_argument("--compile", action="store_true", help="torch.compile G and D1 (kit step)")
    p.add_argument(
        "--concat-forward",
        action="store_true",
        help="kit step: one G forward over source+target (run.concat_forward; "
        "changes BatchNorm batch statistics)",
    )
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="also profile N kit steps with torch.profiler and print the operators "
        "that take the most time",
    )
    p.add_argument("--trace", help="with --profile: write a Chrome/Perfetto trace to this file")
    p.add_argument(
        "--check-sync",
        action="store_true",
        help="CUDA: run 3 kit steps with torch.cuda.set_sync_debug_mode('error'), "
        "which fails on any host synchronisation inside the step",
    )
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--reps", type=int, default=6)
    p.add_argument("--skip-release", action="store_true", help="time the kit's step only")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA GPU is visible", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    threads = torch.get_num_threads()
    print(f"device: {name} ({args.device}, {threads} CPU threads); torch {torch.__version__}")
    w, h = args.size
    print(
        f"step: PixDA main step, {args.backbone}, {w}x{h}, batch {args.batch}+{args.batch}, "
        f"median of {args.reps} after {args.warmup} warm-up"
    )
    kit = measure(args, release=False)
    extras = ", compiled" * args.compile + ", concat forward" * args.concat_forward
    rows = [(f"kit ({args.precision}{extras})", kit)]
    if not args.skip_release:
        rows.append(("release-style (numpy FDA, loop weights, fp32)", measure(args, True)))
    mem = "peak GPU GiB" if args.device.startswith("cuda") else "process peak RSS GiB"
    print(f"\n| step | median s | min s | {mem} | TFLOP/step | TFLOP/s |")
    print("|---|---|---|---|---|---|")
    for label, r in rows:
        print(
            f"| {label} | {r['median_s']:.4f} | {r['min_s']:.4f} | {r['peak_gib']:.2f} | "
            f"{r['tflop']:.3f} | {r['tflops']:.2f} |"
        )
    if args.check_sync:
        check_sync(args)
    if args.profile:
        profile(args)
    if not args.skip_release:
        print(f"\nspeedup_vs_release: {rows[1][1]['median_s'] / kit['median_s']:.2f}")
    return 0


def check_sync(args) -> None:
    """Run kit steps with CUDA's sync debug mode set to error: a step that makes the host
    wait for the GPU (``.item()``, a boolean mask, ``nonzero``, a CPU copy) raises."""
    device = torch.device(args.device)
    if device.type != "cuda":
        print("\nhost synchronisation check: CUDA only, skipped")
        return
    step = build(args, release=False)
    g = torch.Generator().manual_seed(2)
    w, h = args.size
    src, trg = (random_batch(args.batch, w, h, device, g) for _ in range(2))
    for _ in range(max(args.warmup, 1)):  # cudnn.benchmark and lazy inits may sync once
        step(src, trg)
    torch.cuda.synchronize(device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            step(src, trg)
        verdict = "none in 3 steps"
    except RuntimeError as exc:
        verdict = f"FOUND: {str(exc).splitlines()[0]}"
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize(device)
    print(f"\nhost synchronisations inside the kit step: {verdict}")


def profile(args) -> None:
    """Operators by self time over ``args.profile`` kit steps (after warm-up)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    device = torch.device(args.device)
    step = build(args, release=False)
    g = torch.Generator().manual_seed(1)
    w, h = args.size
    src, trg = (random_batch(args.batch, w, h, device, g) for _ in range(2))
    for _ in range(max(args.warmup, 1)):
        step(src, trg)
    sync(device)
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch_profile(activities=activities) as prof:
        for _ in range(args.profile):
            step(src, trg)
        sync(device)
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    print(f"\nprofile: {args.profile} kit steps, operators by {key.replace('_', ' ')}")
    print(prof.key_averages().table(sort_by=key, row_limit=15, max_name_column_width=40))
    if args.trace:
        prof.export_chrome_trace(args.trace)
        print(f"trace: {args.trace}")


if __name__ == "__main__":
    sys.exit(main())
