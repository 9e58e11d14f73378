"""``make demo``: the whole kit on the embedded toy benchmark, on the CPU, in a few minutes.

1. the toy benchmark in ``data/toy`` (written when missing) and notebook 01 over it (checks,
   split, class frequencies, samples, FDA preview);
2. a small sweep (:mod:`pixda_core.sweep`): notebook 02 (source-only), notebook 03 for
   1- and 5-shot FT and PixDA, then notebook 04 (per-class figures and tables).

Executed notebooks, figures and ``summary.csv`` land in ``results/demo``. To stay under 5
minutes on 2 cores the demo trains at a quarter of the toy preset's pixels (64x32 instead of
128x64: :data:`DEMO_OVERRIDES`), shortens source-only training to 120 iterations,
adaptation to :data:`ITERATIONS` and distillation to 10 steps, runs notebook 01 beside the
source-only notebook and the four adaptation notebooks two at once, a core each.

PixDA is run whole: one pass over the toy's 300 source images is 75 steps at batch 4, and
PixDA selects at the end of a pass only while iterations remain in the budget (a budget
ending exactly on a pass's end gets no round there: docs/training.md). So the demo's 80
iterations are 75 steps, the selection round at step 75, 5 steps on the source images it
kept (a round that keeps fewer than a batch ends the main phase there), then distillation.
After the per-class table the demo prints each PixDA run's rounds and distillation, read
from its ``selection.csv`` and ``metrics.json``. It prints the ``sweep`` command that
reproduces any of its cells exactly; the same command without ``--iterations``,
``--pretrain-iterations`` and ``--set`` runs the toy preset's full length.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from .data import toy
from .errors import DataError, run_cli

if TYPE_CHECKING:
    from .sweep_collect import SweepResult

SHOTS = (1, 5)
METHODS = ("source_only", "finetune", "pixda")
#: what the demo changes in the toy preset: a quarter of its pixels (training and validation
#: input; the metric stays at the labels' full size), 10 distillation steps instead of 20
DEMO_OVERRIDES = {"data": {"size": [64, 32], "val_size": [64, 32]}, "method": {"kd_steps": 10}}
PRETRAIN_ITERATIONS = 120
#: adaptation iterations: one pass over the toy's 300 source images at batch 4 is 75 steps;
#: PixDA selects at a pass's end only with iterations left, so 75 would never select
ITERATIONS = 80
JOBS = 2


def set_flags(overrides: dict) -> str:
    """``overrides`` as the sweep's ``--set SECTION.KEY=VALUE`` flags (YAML values, quoted for
    the shell)."""
    import shlex

    import yaml

    def value(v) -> str:  # a flow-style YAML scalar or list, without the document end
        return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()

    return " ".join(
        "--set " + shlex.quote(f"{section}.{key}={value(v)}")
        for section, values in overrides.items()
        for key, v in values.items()
    )


def selection_lines(runs: pd.DataFrame) -> list[str]:
    """One line for each PixDA run of ``runs`` (:func:`~pixda_core.analysis.load_runs`): its
    selection rounds and its distillation, as the run wrote them: ``selection.csv`` holds a
    row per round and one where the main phase ended, ``metrics.json`` the final step (the
    distillation's steps are those after the main phase's end)."""
    from .analysis import METHOD_NAMES
    from .train.rundir import read_metrics, read_table

    lines = []
    for _, run in runs[runs["method"] == "pixda"].iterrows():
        folder = Path(run["path"])
        name = f"{METHOD_NAMES['pixda']} ({run['shots']}-shot, seed {run['seed']})"
        if not (folder / "selection.csv").is_file():  # method.selection off
            lines.append(f"{name}: no selection (method.selection is off)")
            continue
        table = read_table(folder / "selection.csv")
        event = table["event"].fillna("").astype(str)
        rounds = [
            f"selection round {int(r['round'])} at step {int(r['step'])} kept {int(r['kept'])} "
            f"of {int(r['candidates'])} source images (tau {float(r['tau']):.2f})"
            for _, r in table[event == ""].iterrows()
        ]
        end = table[event.str.startswith("main phase over")].iloc[-1]
        why = str(end["event"]).removeprefix("main phase over: ")
        kd = read_metrics(folder / "metrics.json")["step"] - int(end["step"])
        kd_said = f"distillation {kd} steps" if kd else "no distillation"
        lines.append(
            f"{name}: {'; '.join(rounds) or 'no selection round'}; main phase over at step "
            f"{int(end['step'])} ({why}); {kd_said}"
        )
    return lines


def run(
    data_root: str | os.PathLike = "data/toy",
    out: str | os.PathLike = "results/demo",
    pretrain_iterations: int = PRETRAIN_ITERATIONS,
    iterations: int = ITERATIONS,
    overrides: dict | None = None,
    progress: bool = True,
    shots=SHOTS,
    jobs: int = JOBS,
) -> SweepResult:
    """The demo into ``out``; what its sweep did (its summary, notebook 04 in
    ``<out>/sweep/analysis``)."""
    from .analysis import load_runs, per_class_table
    from .executors import Local
    from .notebook_run import execute
    from .paths import resolve
    from .sweep import run_sweep
    from .sweep_grid import Grid

    t0 = time.time()
    data_root, out = resolve(data_root), resolve(out)
    overrides = DEMO_OVERRIDES if overrides is None else overrides
    if not (data_root / "toy.json").is_file() and not data_root.exists():
        print(f"writing the toy benchmark to {data_root}")
        toy.generate(data_root, progress=progress)
    # one written by an older kit: its results would mix with the new ones
    toy.check_current(
        data_root,
        fix=f"Remove it and the demo's results ({data_root}, {out}; `make clean-demo` does "
        "both for the defaults), then run the demo again",
    )
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    print("[demo] notebook 01: checks, split, class frequencies, samples, FDA preview", flush=True)
    # notebook 01 (a kernel of its own, mostly on one core) beside the sweep's first notebook
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(
            execute,
            "01_data_preparation.ipynb",
            out / "notebooks" / "01_data_preparation.ipynb",
            {"data_root": str(data_root), "out_dir": str(out / "data")},
        )
        print(
            f"[demo] sweep: source-only, then FT and PixDA at {' and '.join(map(str, shots))} "
            "shots",
            flush=True,
        )
        grid = Grid(
            methods=METHODS,
            shots=shots,
            seeds=(0,),
            preset="toy",
            data_root=str(data_root),
            iterations=iterations,
            pretrain_iterations=pretrain_iterations,
            overrides=overrides,
        )
        result = run_sweep(grid, out / "sweep", Local(jobs))
        why = first.result()
    if why:  # its checks name what is wrong with the data, which the sweep met too
        raise DataError(f"notebook 01 failed on {data_root}: {why}")
    if result.failed:
        raise DataError(
            f"{len(result.failed)} demo run(s) failed: see {out}/sweep/failures.csv"
            f" and the executed notebooks in {out}/sweep/notebooks"
        )
    runs = load_runs(out / "sweep")
    table = per_class_table(runs)
    print("\nper-class IoU on the toy target val set (%):")
    print(table.round(1).to_markdown())
    print("\nPixDA's selection (each run's selection.csv) and distillation:")
    for line in selection_lines(runs):
        print(f"  {line}")
    analysis = out / "sweep" / "analysis"
    print(f"\n[demo] done in {time.time() - t0:.0f} s")
    print(f"  data figures:       {out / 'data'} (class_frequency, samples, fda_preview)")
    print(
        f"  per-class figures:  {analysis} (per_class_iou, miou_vs_shots, "
        "gain_over_source_only, confusion_*, error_maps; PNG and PDF)"
    )
    print(f"  per-class table:    {analysis / 'per_class_iou'}.{{csv,md,tex}}")
    print(f"  summary:            {result.summary}")
    print(f"  executed notebooks: {out / 'notebooks'}, {out / 'sweep' / 'notebooks'}")
    print(
        "any cell again, e.g. PixDA 5-shot seed 0, into another folder:\n"
        f"  python -m pixda_core sweep --shots 5 --methods pixda --seeds 0 --source gta5 "
        f"--preset toy --data-root {data_root} --pretrain-iterations {pretrain_iterations} "
        f"--iterations {iterations} --jobs {jobs} {set_flags(overrides)} --out results/demo_again"
    )
    return result


@run_cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="pixda demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data/toy", help="toy benchmark root (generated if missing)")
    p.add_argument("--out", default="results/demo", help="where notebooks, figures, tables go")
    p.add_argument("--pretrain-iterations", type=int, default=PRETRAIN_ITERATIONS)
    p.add_argument("--iterations", type=int, default=ITERATIONS, help="adaptation iterations")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    run(args.data, args.out, args.pretrain_iterations, args.iterations, progress=not args.quiet)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
