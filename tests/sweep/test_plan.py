"""A sweep's plan before it spends (pixda_core.sweep_plan, ``sweep --plan``) and the step times
it is made of (pixda_core.steptimes: ``pixda bench``, each run's timing.json)."""

from __future__ import annotations

import pandas as pd
import pytest

from pixda_core import steptimes, sweep_cli
from pixda_core.config import preset
from pixda_core.executors import Local
from pixda_core.methods import SOURCE_ONLY
from pixda_core.sweep_grid import Grid
from pixda_core.sweep_plan import plan_sweep, planned_device
from tests.helpers import GRID, TINY


@pytest.fixture
def store(tmp_path, monkeypatch):
    path = tmp_path / "step_times.csv"
    monkeypatch.setenv("PIXDA_STEP_TIMES", str(path))
    return path


def listing(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.mark.data
def test_the_plan_writes_nothing_and_adds_up_the_measured_step_times(
    toy_root, tmp_path, store, capsys
):
    device, _ = planned_device(Local())
    times = {SOURCE_ONLY: 0.5, "finetune": 0.25, "pixda": 2.0}
    steptimes.write_store([
        {"device": device, "preset": "toy", "method": m, "precision": "fp32", "step_s": s,
         "steps": 5, "measured": "2026-12-01T10:00:00", "by": "pixda bench"}
        for m, s in times.items()
    ], store)  # fmt: skip
    out = tmp_path / "sweep"
    argv = ["--out", str(out), "--data-root", str(toy_root), "--shots", "1", "5", "--seeds",
            "0", "1", "--iterations", "40", "--plan", "--methods", SOURCE_ONLY, "finetune",
            "pixda"]  # fmt: skip
    capsys.readouterr()
    assert sweep_cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert not out.exists() and list(tmp_path.iterdir()) == [store]  # nothing written

    grid = Grid(methods=(SOURCE_ONLY, "finetune", "pixda"), shots=(1, 5), seeds=(0, 1),
                data_root=toy_root, iterations=40)  # fmt: skip
    plan = plan_sweep(grid, out)
    toy = preset("toy")
    steps = {SOURCE_ONLY: toy.pretrain.early_stop, "finetune": 40,
             "pixda": 40 + toy.method.kd_steps}  # fmt: skip
    assert len(plan.runs) == 1 + 2 * 2 * 2 and plan.device == device
    for r in plan.runs:
        method = SOURCE_ONLY if r.spec.is_source_only else r.spec.method
        assert (r.steps, r.step_s, r.measured) == (steps[method], times[method], "pixda bench")
        assert r.after == (None if method == SOURCE_ONLY else plan.runs[0].name)
    total = sum(times[m] * steps[m] for m in [SOURCE_ONLY] + ["finetune", "pixda"] * 4)
    assert plan.total_s == pytest.approx(total)
    assert f"total: {total / 3600:.2f} CPU-hours of training steps on {device}" in printed
    assert "pixda_5shot_seed1" in printed and "nothing was written" in printed

    # a method measured nowhere: no total, and how to measure it, never a guessed figure
    capsys.readouterr()
    assert sweep_cli.main([*argv, "advent"]) == 0
    printed = capsys.readouterr().out
    assert "no step time measured on" in printed and "for advent (toy preset): no total" in printed
    assert "pixda bench --preset toy --methods advent" in printed and "total:" not in printed
    assert not out.exists()


@pytest.mark.notebooks
def test_finished_runs_record_their_times_and_a_second_plan_uses_them(sweep, toy_root, store):
    """The session's sweep (the demo's: two notebooks at once): each run's timing.json, its
    row of summary.csv, and the plan of a larger grid into the same folder with the same
    --jobs, made from the step times of those runs that ran on the device it plans for (the
    source-only model, trained alone, had every core: outside pytest-xdist, another device)."""
    from pixda_core.demo import JOBS

    out, _ = sweep
    summary = pd.read_csv(out / "summary.csv")
    assert summary[["wall_s", "step_s", "peak_memory_gb"]].notna().all().all()
    before = listing(out)
    grid = Grid(data_root=str(toy_root), overrides=TINY, **{**GRID, "seeds": (0, 1)})
    plan = plan_sweep(grid, out, Local(JOBS))
    assert listing(out) == before  # nothing written
    # the runs ran where the plan says they would
    assert plan.device == summary.loc[summary["method"] == "finetune", "device"].iloc[0]
    done = [r for r in plan.runs if r.done]
    assert len(done) == 5 and len(plan.todo) == 4  # seed 1: FT and PixDA at 1 and 2 shots
    here = summary[summary["device"] == plan.device]
    for r in plan.runs:
        method = SOURCE_ONLY if r.spec.is_source_only else r.spec.method
        times = here.loc[here["method"] == method, "step_s"]
        if not len(times):  # (nothing measured on that device, and nothing stored)
            assert r.step_s is None and r.measured is None and r.done, r.name
            continue
        assert r.step_s == pytest.approx(times.mean()), r.name
        n = len(times)
        assert r.measured == f"{n} finished run{'s' if n > 1 else ''} of this sweep"
    assert plan.total_s == pytest.approx(sum(r.steps * r.step_s for r in plan.todo))


@pytest.mark.training
def test_bench_times_each_method_and_keeps_the_latest(tmp_path, capsys):
    store = tmp_path / "times.csv"
    argv = ["--methods", "finetune", "pixda", "--steps", "1", "--warmup", "0", "--threads", "1",
            "--store", str(store)]  # fmt: skip
    assert steptimes.bench_main(argv) == 0
    table = pd.read_csv(store)
    assert list(table["method"]) == ["finetune", "pixda"] and (table["step_s"] > 0).all()
    assert set(table["device"]) == {steptimes.cpu_name(1)} and set(table["preset"]) == {"toy"}
    assert "pixda: " in capsys.readouterr().out
    assert steptimes.bench_main(argv[:1] + ["pixda", *argv[3:]]) == 0  # measured again
    again = pd.read_csv(store)
    assert len(again) == 2 and again.loc[again["method"] == "pixda", "measured"].item() >= (
        table.loc[table["method"] == "pixda", "measured"].item())  # fmt: skip
    assert steptimes.bench_main(["--methods", "nope", "--store", str(store)]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
