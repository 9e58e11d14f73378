"""``pixda`` / ``python -m pixda_core``: one command with a subcommand per job."""

from __future__ import annotations

import argparse
import sys

from .errors import run_cli

USAGE = """usage: pixda COMMAND [options]   (or: python -m pixda_core COMMAND ...)

commands:
  demo      the toy benchmark end to end (what `make demo` runs)
  toy       write the toy benchmark in the GTA5 / SYNTHIA / Cityscapes layouts
  check     check a dataset root (same as data_prep/check_dataset.py)
  split     draw a seeded N-shot Cityscapes split and write it in the release's format
  pretrain  train a source-only model (flags as run.py)
  adapt     adapt a source-only model with PixDA or a baseline (flags as run.py --is_train)
  evaluate  evaluate a run's checkpoint on the target val set (flags as run.py without it)
  sweep     notebook 03 for every (method, shots, seed) with papermill, then notebook 04
  bench     time a few steps of each method on this machine, for `sweep --plan`
  notebooks copy the numbered notebooks into a folder of yours, to explore and edit

`pixda COMMAND --help` describes each one."""


@run_cli
def split_main(argv=None) -> int:
    from .data.splits import draw_split, write_split

    p = argparse.ArgumentParser(
        prog="pixda split",
        description="Draw N images per Cityscapes "
        "training city (seeded) and write them as a split file.",
    )
    p.add_argument("--root", required=True, help="Cityscapes root (leftImg8bit/, gtFine/)")
    p.add_argument("--shots", type=int, required=True, help="images per training city")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="split file to write")
    args = p.parse_args(argv)
    names = draw_split(args.root, args.shots, args.seed)
    print(f"wrote {write_split(args.out, names)}: {len(names)} images ({args.shots} per city)")
    return 0


@run_cli
def notebooks_main(argv=None) -> int:
    from .workflow import copy_notebooks

    p = argparse.ArgumentParser(
        prog="pixda notebooks",
        description="Copy the numbered notebooks (01-04) into a folder of yours, to open in "
        "JupyterLab and edit; sweeps keep executing the kit's own pristine copies.",
    )
    p.add_argument("folder", help="where to put them (created if missing)")
    p.add_argument("--force", action="store_true", help="replace copies already there")
    args = p.parse_args(argv)
    for path in copy_notebooks(args.folder, args.force):
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "demo":
        from .demo import main as run
    elif command == "toy":
        from .data.toy import main as run
    elif command == "check":
        from .data.prep import main_check as run
    elif command == "split":
        run = split_main
    elif command == "sweep":
        from .sweep_cli import main as run
    elif command == "notebooks":
        run = notebooks_main
    elif command == "bench":
        from .steptimes import bench_main as run
    elif command in ("pretrain", "adapt", "evaluate"):
        from .train import cli as train_cli

        run = getattr(train_cli, f"{command}_main")
    else:
        print(f"error: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    return run(rest)
