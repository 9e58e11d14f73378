"""``make demo``: the whole kit on the embedded toy benchmark, on the CPU, in a few minutes.

1. the toy benchmark in ``data/toy`` (written when missing) and notebook 01 over it (checks,
   split, class frequencies, samples, FDA preview);
2. a small sweep (:mod:`pixda_core.sweep`): notebook 02 (source-only), notebook 03 for
   1- and 5-shot FT and PixDA, then notebook 04 (per-class figures and tables).

Executed notebooks, figures and ``summary.csv`` land in ``results/demo``. To stay under 5
minutes on 2 cores the demo trains at a quarter of the toy preset's pixels (64x32 instead of
128x64: :data:`DEMO_OVERRIDES`), shortens source-only training to 120 iterations and
distillation to 10 steps (adaptation keeps 75 iterations, one source epoch, so PixDA makes
one selection round), runs notebook 01 beside the source-only notebook and the four
adaptation notebooks two at once, a core each. It prints the
``sweep`` command that reproduces any of its cells exactly; the same command without
``--iterations``, ``--pretrain-iterations`` and ``--set`` runs the toy preset's full length.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from .data import toy
from .errors import DataError, run_cli

SHOTS = (1, 5)
METHODS = ("source_only", "finetune", "pixda")
#: what the demo changes in the toy preset: a quarter of its pixels (training and validation
#: input; the metric stays at the labels' full size), 10 distillation steps instead of 20
DEMO_OVERRIDES = {"data": {"size": [64, 32], "val_size": [64, 32]}, "method": {"kd_steps": 10}}
PRETRAIN_ITERATIONS = 120
ITERATIONS = 75  # one source epoch at batch 4: PixDA's selection round happens
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


def run(
    data_root: str | os.PathLike = "data/toy",
    out: str | os.PathLike = "results/demo",
    pretrain_iterations: int = PRETRAIN_ITERATIONS,
    iterations: int = ITERATIONS,
    overrides: dict | None = None,
    progress: bool = True,
    shots=SHOTS,
    jobs: int = JOBS,
) -> dict:
    from .analysis import load_runs, per_class_table
    from .notebook_run import execute
    from .sweep import run_sweep
    from .workflow import resolve

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
            jobs=jobs,
        )
        why = first.result()
    if why:  # its checks name what is wrong with the data, which the sweep met too
        raise DataError(f"notebook 01 failed on {data_root}: {why}")
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
        f"--iterations {iterations} --jobs {jobs} {set_flags(overrides)} --out results/demo_again"
    )
    return {"summary": result["summary"], "analysis": analysis, "table": pd.DataFrame(table)}


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
