"""A sweep's plan, before anything runs (``pixda sweep ... --plan``): the runs of the grid with
the source-only models they share, the jobs and what each waits for, and the time each run's
training steps take on the device the jobs will use, from step times measured there
(:mod:`pixda_core.steptimes`: ``pixda bench``, refined by the sweep's own finished runs). Where
nothing was measured for that device the plan says so and how to measure it; it never shows a
guess as a figure. Making the plan writes nothing.

The time of a run is its training steps (``early_stop`` plus a last phase's, e.g. PixDA's
distillation) times the mean step time measured for its method; validation, selection passes
and start-up come on top (a finished run's ``timing.json`` has its wall time beside its step
time: the plan's figure is the part that grows with the steps).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch

from .executors import Local, Slurm
from .methods import SOURCE_ONLY
from .runspec import RunSpec
from .steptimes import cpu_name, device_name, read_store, read_timing, store_path
from .train.rundir import finished

if TYPE_CHECKING:
    from .sweep_grid import Grid

#: SLURM's --time from a plan: the planned time times this, plus MARGIN_MIN minutes
MARGIN_FACTOR = 1.5
MARGIN_MIN = 10


@dataclass(frozen=True)
class PlannedRun:
    """One run of the plan: its spec, the source-only model it starts from, its steps and the
    step time it is planned with (None: not measured), and where that time comes from."""

    name: str
    spec: RunSpec
    after: str | None  # the source-only model's run name (None: it is one)
    steps: int
    step_s: float | None
    measured: str | None
    done: bool

    @property
    def seconds(self) -> float | None:
        return None if self.step_s is None else self.steps * self.step_s


@dataclass(frozen=True)
class SweepPlan:
    device: str  # the device the runs are planned on
    device_said: str  # how that device was chosen
    executor: Local | Slurm
    runs: tuple[PlannedRun, ...]

    @property
    def on_slurm(self) -> bool:
        return isinstance(self.executor, Slurm)

    @property
    def jobs(self) -> int:
        """Notebooks at once here (on SLURM: 1, each job runs one)."""
        return 1 if self.on_slurm else self.executor.jobs

    @property
    def todo(self) -> list[PlannedRun]:
        return [r for r in self.runs if not r.done]

    @property
    def unmeasured(self) -> list[str]:
        """The methods left to run that no measurement covers on this device."""
        return sorted({_method(r) for r in self.todo if r.step_s is None})

    @property
    def total_s(self) -> float | None:
        """The seconds of the runs left to do, on one device each; None where one of them
        has no measured step time."""
        if self.unmeasured:
            return None
        return sum(r.seconds for r in self.todo)

    def time_limit_min(self, source_only: bool) -> int | None:
        """SLURM's --time for the source-only job (``source_only``) or the array: the longest
        planned run of it x MARGIN_FACTOR + MARGIN_MIN minutes; None: not measured."""
        runs = [r for r in self.todo if (r.after is None) == source_only]
        if not runs or any(r.seconds is None for r in runs):
            return None
        return math.ceil(max(r.seconds for r in runs) / 60 * MARGIN_FACTOR) + MARGIN_MIN

    def expected_s(self, name: str) -> float | None:
        for r in self.runs:
            if r.name == name:
                return r.seconds
        return None


def _method(run: PlannedRun) -> str:
    return SOURCE_ONLY if run.spec.is_source_only else run.spec.method


def planned_device(executor: Local | Slurm, preset: str = "toy") -> tuple[str, str]:
    """The device the sweep's runs will use, as step times are stored for it, and how it was
    chosen: here, this machine's GPU (or its CPU, at the threads each of the executor's jobs
    gets); on SLURM, the GPU (or the CPU at ``--cpus-per-job`` threads) that step times were
    last measured on for the preset (the nodes are not this machine)."""
    if isinstance(executor, Local):
        if torch.cuda.is_available():
            return device_name("cuda:0"), "this machine's GPU"
        from .executors import cpu_share

        jobs = executor.jobs
        threads = int(cpu_share(jobs) or os.environ["OMP_NUM_THREADS"]) if jobs > 1 else None
        return cpu_name(threads), "this machine's CPU (no GPU here)"
    store = read_store()
    store = store[store["preset"] == preset]
    cpus_per_job = executor.options.cpus_per_job
    if executor.options.gpus_per_job:
        kind = store[~store["device"].str.startswith("CPU ")]
        what = "a GPU of the cluster's nodes"
    else:
        suffix = f", {cpus_per_job} thread{'s' if cpus_per_job != 1 else ''}"
        kind = store[store["device"].str.startswith("CPU ") & store["device"].str.endswith(suffix)]
        what = f"a CPU of the cluster's nodes at {cpus_per_job} threads (--cpus-per-job)"
    if not len(kind):
        return what, f"{what}: nothing measured yet"
    latest = kind.sort_values("measured").iloc[-1]
    said = f"the device step times were last measured on for the {preset} preset"
    if kind["device"].nunique() > 1:
        said += f" (of {kind['device'].nunique()} measured)"
    return latest["device"], said


def plan_sweep(grid: Grid, out: Path, executor: Local | Slurm | None = None) -> SweepPlan:
    """The plan of ``grid`` into ``out`` on ``executor`` (:class:`~pixda_core.executors.Local`
    by default); writes nothing."""
    executor = executor or Local()
    device, said = planned_device(executor, grid.preset)
    stored = read_store()
    stored = stored[(stored["device"] == device) & (stored["preset"] == grid.preset)]
    bench = stored.sort_values("measured").groupby("method")["step_s"].last().to_dict()
    own = _finished_step_times(out, device)
    so_specs, specs = grid.specs(out)
    runs, so_names = [], {}
    for spec in so_specs:
        cfg = spec.config(generate_toy=False)
        so_names[spec.seed] = cfg.run.name
        runs.append(_planned(spec, cfg, None, out, bench, own))
    for spec in specs:
        cfg = spec.config(generate_toy=False)
        seed = spec.seed if grid.source_only_per_seed else None
        runs.append(_planned(spec, cfg, so_names[seed], out, bench, own))
    return SweepPlan(device, said, executor, tuple(runs))


def _planned(spec, cfg, after, out: Path, bench: dict, own: dict) -> PlannedRun:
    name = cfg.run.name
    method = SOURCE_ONLY if spec.is_source_only else cfg.method.name
    if method in own:
        step_s, n = own[method]
        measured = f"{n} finished run{'s' if n > 1 else ''} of this sweep"
    elif method in bench:
        step_s, measured = float(bench[method]), "pixda bench"
    else:
        step_s, measured = None, None
    done = finished(out / name)
    return PlannedRun(name, spec, after, spec.steps(cfg), step_s, measured, done)


def _finished_step_times(out: Path, device: str) -> dict[str, tuple[float, int]]:
    """method -> (mean step time, runs) over the finished runs under ``out`` that ran on
    ``device`` (their timing.json)."""
    from .train.rundir import read_metrics

    seen: dict[str, list[float]] = {}
    if not out.is_dir():
        return {}
    for folder in sorted(p for p in out.iterdir() if p.is_dir()):
        if not finished(folder):
            continue
        timing = read_timing(folder)
        if not timing or timing.get("device") != device or not timing.get("step_s"):
            continue
        method = read_metrics(folder / "metrics.json")["method"]
        seen.setdefault(method, []).append(float(timing["step_s"]))
    return {m: (sum(v) / len(v), len(v)) for m, v in seen.items()}


# ------------------------------------------------------------------------------ in words


def render(plan: SweepPlan, out: Path) -> str:
    """The plan as ``--plan`` prints it."""
    hours = "CPU-hours" if plan.device.startswith("CPU ") else "GPU-hours"
    rows = []
    for r in plan.runs:
        rows.append({
            "run": r.name,
            "starts from": r.after or "-",
            "steps": r.steps,
            "s/step": "-" if r.step_s is None else f"{r.step_s:.3f}",
            "time": "done" if r.done else ("not measured" if r.seconds is None
                                           else _duration(r.seconds)),
            "step time from": r.measured or "-",
        })  # fmt: skip
    lines = [
        f"[plan] {len(plan.runs)} runs in {out}: {len(plan.todo)} to run, "
        f"{len(plan.runs) - len(plan.todo)} done",
        f"[plan] device: {plan.device} ({plan.device_said})",
        pd.DataFrame(rows).to_string(index=False),
        "[plan] jobs: " + _jobs(plan),
    ]
    if plan.unmeasured:
        lines.append(
            f"[plan] no step time measured on {plan.device} for {', '.join(plan.unmeasured)} "
            f"({plan.runs[0].spec.preset} preset): no total. Measure on that device with "
            f"`pixda bench --preset {plan.runs[0].spec.preset} --methods "
            f"{' '.join(plan.unmeasured)}{_threads_hint(plan)}` (stored in "
            f"{store_path()}), or run some of the grid: its finished runs' times are used"
        )
    else:
        total = plan.total_s
        lines.append(
            f"[plan] total: {total / 3600:.2f} {hours} of training steps on {plan.device} "
            f"({_duration(total)}; validation, selection passes and start-up come on top)"
        )
        if not plan.on_slurm and plan.jobs > 1:
            lines.append(f"[plan] {plan.jobs} at a time: about {_duration(total / plan.jobs)} "
                         "of wall time, at best")  # fmt: skip
        if plan.on_slurm:
            for which, so in (("source-only job", True), ("array", False)):
                limit = plan.time_limit_min(so)
                if limit is not None:
                    lines.append(
                        f"[plan] SLURM --time of the {which}: {limit} min (its longest run x "
                        f"{MARGIN_FACTOR:g} + {MARGIN_MIN} min; a job that overruns is "
                        "requeued and resumes)"
                    )
    lines.append("[plan] nothing was written; run the same command without --plan to start")
    return "\n".join(lines)


def _jobs(plan: SweepPlan) -> str:
    so = [r for r in plan.todo if r.after is None]
    runs = [r for r in plan.todo if r.after is not None]
    if plan.on_slurm:
        parts = []
        if so:
            parts.append(f"{len(so)} source-only job(s)")
        if runs:
            parts.append(f"an array of {len(runs)} task(s)" + (" after them (afterok)"
                                                                if so else ""))  # fmt: skip
        if parts:
            parts.append("then a job that collects the results")
        return ", ".join(parts) or "none (everything is done)"
    if not plan.todo:
        return "none (everything is done)"
    at_once = f"{plan.jobs} at a time" if plan.jobs > 1 else "one after another"
    first = f"the source-only model{'s' if len(so) > 1 else ''} first, then " if so else ""
    return f"here, {first}{len(runs)} run(s) {at_once}, then notebook 04"


def _threads_hint(plan: SweepPlan) -> str:
    if plan.device.startswith("CPU ") and ", " in plan.device:
        threads = plan.device.rsplit(", ", 1)[1].split()[0]
        return f" --threads {threads}"
    return ""


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
