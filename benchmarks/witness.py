"""What every built-in method computes, recorded so a refactor can be checked against it.

Tiny ``--deterministic`` CPU runs through ``run.py`` (a toy benchmark at 64x32, a source-only
model of 4 iterations, then each method for 6 iterations, PixDA with a selection round at
step 4 and 2 distillation steps), in the checkout given (default: this one). For each run it
records the SHA-256 of every tensor its last checkpoint holds (G, the discriminators, the
teacher, the optimisers' states, by name), the file's own SHA-256 and the metrics::

    python benchmarks/witness.py record before.json                  # this checkout
    python benchmarks/witness.py record after.json --checkout ../new  # another one
    python benchmarks/witness.py compare before.json after.json       # exit 1 on a difference
    python benchmarks/witness.py against main                          # a commit vs this tree

``against REV`` puts REV in a temporary git worktree and records both in one go, in the same
folders, so paths written into the checkpoints agree too. Runs of one machine and software
stack only: other CPUs round differently. The checkout is imported through PYTHONPATH, ahead
of the venv's editable install.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
METHODS = ("finetune", "joint", "adaptsegnet", "advent", "pixda", "oracle")
SIZE = ["--set", "data.size=[64,32]", "--set", "data.val_size=[64,32]"]


def _run(checkout: Path, args: list[str], cwd: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True)  # fmt: skip
    if proc.returncode != 0:
        sys.exit(f"witness: {' '.join(args[:3])} failed in {checkout}:\n{proc.stderr[-3000:]}")


def _digest(value) -> str | dict | list | None:
    import torch

    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        return hashlib.sha256(str(t.dtype).encode() + t.numpy().tobytes()).hexdigest()[:16]
    if isinstance(value, dict):
        return {str(k): _digest(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [_digest(v) for v in value]
    return None  # numbers, strings: the config and counters, compared through the metrics


def _tensors(value) -> dict:
    """Only the entries that hold tensors somewhere below them."""
    if isinstance(value, dict):
        kept = {k: _tensors(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        kept = [_tensors(v) for v in value]
        return kept if any(v not in (None, {}, []) for v in kept) else None
    return value


def record(checkout: Path, work: Path) -> dict:
    """Run every method in ``work`` with the code of ``checkout``; their fingerprints."""
    from pixda_core.checkpoint import load_checkpoint  # weights_only, the kit's format

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    pixda = ["-m", "pixda_core"]
    _run(checkout, [*pixda, "toy", "--out", "toy", "--size", "64", "32", "--num-gta5", "8",
                    "--num-synthia", "2", "--train-per-city", "1", "--val-per-city", "2",
                    "--quiet"], work)  # fmt: skip
    common = [str(checkout / "run.py"), "--source_dataset", "gta5", "--source_dataroot",
              "toy/gta5", "--target_dataset", "cityscapes", "--target_dataroot",
              "toy/cityscapes", "--preset", "toy", "--deterministic", "--batch_size", "2",
              "--checkpoints_dir", "runs", *SIZE, "--set", "run.progress=false",
              "--set", "pretrain.early_stop=4", "--set", "pretrain.max_iters=40"]  # fmt: skip
    out = {}
    for method in METHODS:
        _run(checkout, [*common, "--name", method, "--is_train", "--method", method,
                        "--num_shots", "1", "--early_stop", "6", "--max_iters", "40",
                        "--kd_steps", "2"], work)  # fmt: skip
    runs = sorted(p for p in (work / "runs").iterdir() if (p / "metrics.json").is_file())
    for run in runs:
        latest = run / "checkpoints" / "latest.pt"
        saved = load_checkpoint(latest)
        metrics = json.loads((run / "metrics.json").read_text())
        out[run.name if not run.name.startswith("source_only") else "source_only"] = {
            "step": saved["state"]["step"] if "state" in saved else None,
            "tensors": _tensors(_digest(saved)),
            "file": hashlib.sha256(latest.read_bytes()).hexdigest()[:16],
            "miou": metrics["miou"],
            "per_class_iou": metrics["per_class_iou"],
        }
    return out


def compare(a: dict, b: dict) -> list[str]:
    """What differs between two records (empty: the same)."""
    diffs = [f"{m}: only in the first" for m in a if m not in b]
    diffs += [f"{m}: only in the second" for m in b if m not in a]
    for m in sorted(set(a) & set(b)):
        for key in ("step", "tensors", "miou", "per_class_iou"):
            if a[m][key] != b[m][key]:
                diffs.append(f"{m}: {key} not the same")
        if a[m]["file"] != b[m]["file"]:
            same = "agree" if a[m]["tensors"] == b[m]["tensors"] else "differ"
            diffs.append(f"{m}: checkpoint bytes differ (tensors {same})")
    return diffs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("record", help="record this checkout's (or --checkout's) runs")
    r.add_argument("out", type=Path)
    r.add_argument("--checkout", type=Path, default=HERE)
    r.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "pixda-witness")
    c = sub.add_parser("compare", help="compare two records; exit 1 when they differ")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    g = sub.add_parser("against", help="record a commit (in a git worktree) and this tree")
    g.add_argument("rev")
    g.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "pixda-witness")
    args = p.parse_args(argv)

    if args.command == "record":
        args.out.write_text(json.dumps(record(args.checkout.resolve(), args.work), indent=1))
        print(f"witness: {args.out}")
        return 0
    if args.command == "compare":
        diffs = compare(*(json.loads(path.read_text()) for path in (args.a, args.b)))
    else:
        tree = Path(tempfile.mkdtemp(prefix="pixda-witness-tree-"))
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), args.rev],
                       cwd=HERE, check=True)  # fmt: skip
        try:
            before = record(tree, args.work)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=HERE)
        after = record(HERE, args.work)
        diffs = compare(before, after)
        for name, rec in after.items():
            print(f"{name:24s} step {rec['step']}  mIoU {rec['miou']:.6f}  file {rec['file']}")
    for line in diffs:
        print(line)
    print("witness: the same" if not diffs else f"witness: {len(diffs)} differences")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
