"""``make demo``: the whole kit on the embedded toy benchmark, on the CPU, in a few minutes.

1. the toy benchmark in ``data/toy`` (written when missing) and notebook 01 over it (checks,
   split, class frequencies, samples, FDA preview);
2. a small sweep (:mod:`pixda_core.sweep`): notebook 02 (source-only), notebook 03 for
   1- and 5-shot FT and PixDA, then notebook 04 (per-class figures and tables).

Executed notebooks, figures and ``summary.csv`` land in ``results/demo``. The demo shortens
training (source-only 300 iterations, adaptation 75 + 20 distillation) to stay within about
6 minutes on 2 cores; ``python -m pixda_core sweep`` with the ``toy`` preset's full length
reproduces any cell of it at full length.
"""

from __future__ import annotations

import argparse
import os
import time

import pandas as pd

from .data import toy
from .errors import DataError, run_cli

SHOTS = (1, 5)
METHODS = ("source_only", "finetune", "pixda")


def run(
    data_root: str | os.PathLike = "data/toy",
    out: str | os.PathLike = "results/demo",
    pretrain_iterations: int = 300,
    iterations: int = 75,
    overrides: dict | None = None,
    progress: bool = True,
    shots=SHOTS,
) -> dict:
    from .analysis import load_runs, per_class_table
    from .notebook_run import execute
    from .sweep import run_sweep
    from .workflow import resolve

    t0 = time.time()
    data_root, out = resolve(data_root), resolve(out)
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
    why = execute(
        "01_data_preparation.ipynb",
        out / "notebooks" / "01_data_preparation.ipynb",
        {"data_root": str(data_root), "out_dir": str(out / "data")},
    )
    if why:
        raise DataError(f"notebook 01 failed on {data_root}: {why}")
    print(
        f"[demo] sweep: source-only, then FT and PixDA at {' and '.join(map(str, shots))} shots",
        flush=True,
    )
    result = run_sweep(
        out / "sweep",
        data_root=str(data_root),
        preset="toy",
        pretrain_iterations=pretrain_iterations,
        iterations=iterations,
        overrides=overrides,
        shots=shots,
        methods=METHODS,
        seeds=(0,),
    )
    if result["failed"]:
        raise DataError(
            f"{len(result['failed'])} demo run(s) failed: see {out}/sweep/failures.csv"
            f" and the executed notebooks in {out}/sweep/notebooks"
        )
    runs = load_runs(out / "sweep")
    table = per_class_table(runs)
    print("\nper-class IoU on the toy target val set (%):")
    print(table.round(1).to_markdown())
    analysis = out / "sweep" / "analysis"
    print(f"\n[demo] done in {time.time() - t0:.0f} s")
    print(f"  data figures:       {out / 'data'} (class_frequency, samples, fda_preview)")
    print(
        f"  per-class figures:  {analysis} (per_class_iou, miou_vs_shots, "
        "gain_over_source_only, confusion_*, error_maps; PNG and PDF)"
    )
    print(f"  per-class table:    {analysis / 'per_class_iou'}.{{csv,md,tex}}")
    print(f"  summary:            {result['summary']}")
    print(f"  executed notebooks: {out / 'notebooks'}, {out / 'sweep' / 'notebooks'}")
    print(
        "any cell again, e.g. PixDA 5-shot seed 0, into another folder:\n"
        f"  python -m pixda_core sweep --shots 5 --methods pixda --seeds 0 --source gta5 "
        f"--preset toy --data-root {data_root} --pretrain-iterations {pretrain_iterations} "
        f"--iterations {iterations} --out results/demo_again"
    )
    return {"summary": result["summary"], "analysis": analysis, "table": pd.DataFrame(table)}


@run_cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="pixda demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data/toy", help="toy benchmark root (generated if missing)")
    p.add_argument("--out", default="results/demo", help="where notebooks, figures, tables go")
    p.add_argument("--pretrain-iterations", type=int, default=300)
    p.add_argument("--iterations", type=int, default=75, help="adaptation iterations")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    run(args.data, args.out, args.pretrain_iterations, args.iterations, progress=not args.quiet)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
