"""Step times measured on the user's own hardware, which a sweep's plan (``pixda sweep
--plan``) turns into hours: ``pixda bench`` times a few training steps of each method at a
preset's sizes on the device it finds and stores the medians; each run writes its own
``timing.json`` (mean step time, wall time, peak memory), and a plan prefers those of a sweep's
finished runs to the bench's.

The store is one CSV file, ``$PIXDA_STEP_TIMES`` when set, else
``$XDG_CACHE_HOME/pixda/step_times.csv`` (``~/.cache/pixda/step_times.csv``): one row per
(device, preset, method, precision), the latest measurement. A device is named as the run sees
it: the GPU's name (``NVIDIA H100 80GB HBM3``), or the CPU's model and the threads a process
uses (``CPU Intel(R) Xeon(R) ... , 2 threads``): a CPU sweep with ``--jobs 2`` on 2 cores runs
each notebook on one thread, so it is planned from a measurement at one thread.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import pandas as pd
import torch

from .errors import DataError, run_cli

COLUMNS = ["device", "preset", "method", "precision", "step_s", "steps", "measured", "by"]


def store_path() -> Path:
    """Where measured step times are kept (see the module's docstring)."""
    given = os.environ.get("PIXDA_STEP_TIMES")
    if given:
        return Path(given).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "pixda" / "step_times.csv"


def cpu_name(threads: int | None = None) -> str:
    """This machine's CPU as a device: its model, and the threads a process of the run uses."""
    model = "unknown model"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = " ".join(line.partition(":")[2].split())
                break
    except OSError:
        import platform

        model = platform.processor() or model
    threads = threads or torch.get_num_threads()
    return f"CPU {model}, {threads} thread{'s' if threads != 1 else ''}"


def device_name(device: torch.device | str) -> str:
    """A device as step times are stored for it: the GPU's name, or :func:`cpu_name`."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def peak_memory_gb(device: torch.device) -> tuple[float, str]:
    """The run's peak memory so far, and of what: GPU memory allocated on CUDA, the
    process's resident memory on the CPU (Linux reports it in KiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30, "GPU memory allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "process resident memory"


def read_store(path: Path | None = None) -> pd.DataFrame:
    """The stored step times (none yet: an empty table); a damaged file is an error naming it."""
    path = path or store_path()
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    try:
        frame = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(
            f"step-time store {path} is damaged ({' '.join(str(exc).split())}); delete it and "
            "measure again with `pixda bench`"
        ) from None
    missing = set(COLUMNS) - set(frame.columns)
    if missing:
        raise DataError(
            f"step-time store {path} lacks the columns {sorted(missing)}; delete it and measure "
            "again with `pixda bench`"
        )
    return frame[COLUMNS]


def write_store(rows: list[dict], path: Path | None = None) -> Path:
    """Add measurements, each replacing an earlier one of the same device, preset, method and
    precision; written whole, then moved into place."""
    path = path or store_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    old = read_store(path)
    new = pd.DataFrame(rows, columns=COLUMNS)
    frame = pd.concat([old, new], ignore_index=True) if len(old) else new
    frame = frame.drop_duplicates(["device", "preset", "method", "precision"], keep="last")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- a run's record


def read_timing(folder: Path) -> dict | None:
    """A run's ``timing.json`` (None: not written, or unreadable: timing is never a reason
    to refuse a run)."""
    try:
        record = json.loads((folder / "timing.json").read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


class RunClock:
    """A run's time and memory, for its ``timing.json``: the seconds its steps took (host
    time; on CUDA, over many steps, the step time) and how many, the wall time since the run
    (or this attempt of it) started, and the peak memory; a resumed run adds to what its
    record said at the checkpoint it resumed from."""

    def __init__(self, device: torch.device):
        self.device = device
        self.started = time.perf_counter()
        self.step_seconds = 0.0
        self.steps = 0
        self.before = {"steps": 0, "step_seconds": 0.0, "wall_s": 0.0, "peak_memory_gb": 0.0}

    def resumed(self, folder: Path) -> None:
        old = read_timing(folder) or {}
        for key in self.before:
            value = old.get(key)
            if isinstance(value, int | float) and value >= 0:
                self.before[key] = value

    def step(self, seconds: float) -> None:
        self.step_seconds += seconds
        self.steps += 1

    def record(self, precision: str, world: int) -> dict:
        steps = self.before["steps"] + self.steps
        seconds = self.before["step_seconds"] + self.step_seconds
        peak, of = peak_memory_gb(self.device)
        return {
            "device": device_name(self.device),
            "precision": precision,
            "world_size": world,
            "steps": steps,
            "step_seconds": seconds,
            "step_s": seconds / steps if steps else None,
            "wall_s": self.before["wall_s"] + time.perf_counter() - self.started,
            "peak_memory_gb": max(self.before["peak_memory_gb"], peak),
            "peak_memory_of": of,
        }

    def write(self, folder: Path, precision: str, world: int) -> None:
        path = folder / "timing.json"
        tmp = folder / f".timing.json.tmp{os.getpid()}"
        tmp.write_text(json.dumps(self.record(precision, world), indent=1) + "\n")
        os.replace(tmp, path)


# --------------------------------------------------------------------------------- pixda bench


def random_batch(batch: int, w: int, h: int, device, g: torch.Generator) -> dict:
    """A batch to time a step on: random images (0-255) and blocky random label maps with some
    ignored pixels (never all zeros, which some kernels take a shortcut on)."""
    import torch.nn.functional as F

    from .labels import IGNORE_INDEX, NUM_CLASSES

    image = torch.rand(batch, 3, h, w, generator=g) * 255
    coarse = torch.randint(0, NUM_CLASSES, (batch, 1, max(h // 16, 1), max(w // 16, 1)),
                           generator=g)  # fmt: skip
    label = F.interpolate(coarse.float(), size=(h, w), mode="nearest").long()[:, 0]
    label[torch.rand(batch, h, w, generator=g) < 0.05] = IGNORE_INDEX
    return {"image": image.to(device), "label": label.to(device)}


def time_steps(preset_name: str, method: str, device: str = "auto", steps: int = 5,
               warmup: int = 2) -> dict:  # fmt: skip
    """The median time of ``steps`` training steps of ``method`` (after ``warmup``) at the
    preset's sizes, batch, precision and options, on random batches: what a run's main phase
    steps cost (``source_only``: a source-only model's step)."""
    import statistics

    from .config import preset
    from .methods import SOURCE_ONLY, method_of
    from .train.runtime import setup_runtime
    from .train.step import LossSums, build_nets, main_step

    base = preset(preset_name)
    cfg = base.override(method={"name": "pixda" if method == SOURCE_ONLY else method},
                        run={"device": device})  # fmt: skip
    m = method_of(cfg, source_only=method == SOURCE_ONLY)
    optim = getattr(cfg, m.schedule)
    rt = setup_runtime(cfg.run)
    nets, losses = build_nets(cfg, m, optim, rt), LossSums()
    w, h = cfg.data.size
    g = torch.Generator().manual_seed(0)

    def batch():
        return random_batch(optim.batch_size, w, h, rt.device, g)

    def sync():
        if rt.device.type == "cuda":
            torch.cuda.synchronize(rt.device)

    batches = [(batch(), batch()) for _ in range(2)]
    times = []
    for i in range(warmup + steps):
        src, trg = batches[i % 2]
        sync()
        t0 = time.perf_counter()
        main_step(nets, src if m.source else None, trg if m.target else None, cfg, losses)
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {"device": device_name(rt.device), "preset": preset_name, "method": method,
            "precision": rt.precision, "step_s": median, "steps": steps}  # fmt: skip


@run_cli
def bench_main(argv=None) -> int:
    import argparse
    import datetime

    from .config import PRESETS
    from .errors import ConfigError
    from .methods import ADAPTATION, SOURCE_ONLY, method_class

    p = argparse.ArgumentParser(
        prog="pixda bench",
        description="Time a few training steps of each method at a preset's sizes on this "
        "machine's device, and store the medians for `pixda sweep --plan` (which turns them "
        "into the hours a grid takes). Run it where the sweep's jobs run (on a cluster: in a "
        "job on a node of the partition, e.g. `srun --gpus 1 pixda bench --preset paper`).",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default="toy")
    p.add_argument("--methods", nargs="+", default=[SOURCE_ONLY, *ADAPTATION],
                   help="built-in names or plug-ins (module:Class, file.py:Class)")  # fmt: skip
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--steps", type=int, default=5, help="timed steps per method (median)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--threads", type=int,
                   help="CPU threads (default: torch's; a CPU sweep with --jobs N on C cores "
                   "gives each notebook C/N)")  # fmt: skip
    p.add_argument("--store", help=f"the file to add them to (default: {store_path()})")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        raise ConfigError(f"--steps {args.steps} --warmup {args.warmup}: expected >= 1 and >= 0")
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads {args.threads}: expected at least 1")
        torch.set_num_threads(args.threads)
    for m in args.methods:
        if m != SOURCE_ONLY:
            method_class(m)  # an unknown one: one line naming it, before anything is timed
    store = Path(args.store).expanduser() if args.store else store_path()
    rows, when = [], datetime.datetime.now().isoformat(timespec="seconds")
    for m in args.methods:
        row = time_steps(args.preset, m, args.device, args.steps, args.warmup)
        rows.append({**row, "measured": when, "by": "pixda bench"})
        print(f"{row['device']}, {args.preset} preset, {m}: {row['step_s']:.3f} s/step "
              f"({row['precision']}, median of {args.steps})", flush=True)  # fmt: skip
    print(f"stored in {write_store(rows, store)}")
    return 0
