"""The benchmark scripts (benchmarks/) run and print what they promise."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pandas as pd
import pytest
import torch

from pixda_core.data.fda import fda_source_to_target
from pixda_core.losses import class_balance_weights, pixel_adversarial_loss
from tests.helpers import ROOT


def _load_script(name: str):
    """A benchmark script as a module (benchmarks/ is scripts, not part of the package)."""
    spec = importlib.util.spec_from_file_location(
        f"bench_{name}", ROOT / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_script("step")


@pytest.mark.unit
def test_release_style_pieces_match_the_kit():
    g = torch.Generator().manual_seed(1)
    batch = bench.random_batch(3, 48, 24, "cpu", g)
    labels = batch["label"]
    assert (labels == 255).any() and labels.unique().numel() > 5
    assert torch.allclose(bench.loop_weights(labels, 19), class_balance_weights(labels))
    src, trg = (
        torch.rand(3, 3, 24, 48, generator=g) * 255,
        torch.rand(3, 3, 24, 48, generator=g) * 255,
    )
    ours = fda_source_to_target(src, trg, 0.05)
    assert torch.allclose(bench.fda_numpy_per_image(src, trg, 0.05), ours, atol=1e-3)
    logits = torch.randn(3, 19, 24, 48, generator=g)
    d = torch.randn(3, 1, 24, 48, generator=g)
    theirs = bench.release_pixel_adversarial_loss(logits, d, labels)
    assert torch.allclose(theirs, pixel_adversarial_loss(logits, d, labels, detach_weights=False))


@pytest.mark.training
def test_step_benchmark_prints_its_table_and_speedup():
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "step.py"),
            "--device",
            "cpu",
            "--size",
            "64,32",
            "--batch",
            "1",
            "--backbone",
            "resnet18",
            "--warmup",
            "1",
            "--reps",
            "1",
            "--profile",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert any(line.startswith("| kit (bf16) |") for line in lines)
    assert any(line.startswith("| release-style") for line in lines)
    assert lines[-1].startswith("speedup_vs_release: ") and float(lines[-1].split()[-1]) > 0
    assert "operators by self cpu time total" in proc.stdout
    assert "aten::convolution_backward" in proc.stdout  # the profile covers the backward pass


@pytest.mark.data
def test_loader_benchmark_reads_originals_and_cache():
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "loader.py"),
            "--images",
            "6",
            "--workers",
            "0",
            "--size",
            "256,128",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("| ")][1:]  # no header
    assert [r.split("|")[1].strip() for r in rows] == ["original PNGs", "data_prep cache"]
    assert all(float(r.split("|")[3]) > 0 for r in rows)


@pytest.mark.training
@pytest.mark.slow
def test_ddp_benchmark_keeps_the_replicas_identical(tmp_path):
    """Two processes under torchrun (gloo): gradients are averaged, so after the timed steps
    both hold the same G weights."""
    import os

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(ROOT / "benchmarks" / "ddp_step.py"),
            "--size",
            "64,32",
            "--batch",
            "1",
            "--warmup",
            "1",
            "--steps",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "processes 2 x 1 threads (cpu)" in proc.stdout
    assert "max weight difference between processes 0\n" in proc.stdout, proc.stdout
    assert "stop vote (async): median " in proc.stdout  # the loop's agreement, timed apart


@pytest.mark.unit
def test_the_witness_tells_tensors_bytes_and_metrics_apart(tmp_path):
    """benchmarks/witness.py's digest and comparison: equal records are the same; a changed
    weight, a changed metric, a missing method and bytes that differ with equal tensors are
    each said."""
    witness = _load_script("witness")
    saved = {"state": {"step": 3}, "model": {"w": torch.ones(2, 2)}, "config": {"lr": 0.1},
             "optimizers": {"g": {"state": {0: {"momentum_buffer": torch.zeros(2)}}}}}  # fmt: skip
    tensors = witness._tensors(witness._digest(saved))
    assert set(tensors) == {"model", "optimizers"}  # numbers and strings left to the metrics
    rec = {"step": 3, "tensors": tensors, "file": "aa", "miou": 0.5, "per_class_iou": {}}
    assert witness.compare({"ft": rec}, {"ft": dict(rec)}) == []
    changed = {**saved, "model": {"w": torch.ones(2, 2).add_(1e-7)}}
    other = {**rec, "tensors": witness._tensors(witness._digest(changed)), "file": "bb"}
    assert witness.compare({"ft": rec}, {"ft": other}) == [
        "ft: tensors not the same",
        "ft: checkpoint bytes differ (tensors differ)",
    ]
    assert witness.compare({"ft": rec}, {"ft": {**rec, "file": "cc"}}) == [
        "ft: checkpoint bytes differ (tensors agree)"
    ]
    assert witness.compare({"ft": rec}, {"ft": {**rec, "miou": 0.51}}) == ["ft: miou not the same"]
    assert witness.compare({"ft": rec, "pixda": rec}, {"ft": rec}) == ["pixda: only in the first"]


@pytest.mark.unit
def test_the_toy_tables_pixel_weights_rank_each_runs_classes(tmp_path):
    toy_table = _load_script("toy_table")
    runs = []
    for seed, weight in ((0, [4.0, 2.0, 1.0]), (1, [1.0, 3.0, 2.0])):
        folder = tmp_path / f"pixda_1shot_seed{seed}"
        folder.mkdir()
        pd.DataFrame(
            {"class": ["pole", "car", "road"], "share": [0.01, 0.1, 0.5],
             "w": [1.0, 0.9, 0.8], "weight": weight}
        ).to_csv(folder / "pixel_weights.csv", index=False)  # fmt: skip
        runs.append({"method": "pixda", "shots": 1, "seed": seed, "path": str(folder)})
    runs.append({"method": "finetune", "shots": 1, "seed": 0, "path": str(tmp_path / "none")})
    text = toy_table.pixel_weights(pd.DataFrame(runs), rare=1)
    rows = [line for line in text.splitlines() if line.startswith("| 1 |")]
    # seed 0: the weight falls with the share (rho -1), pole the largest; seed 1: rho +0.5
    assert rows[0] == "| 1 | 0 | -1.00 | 4.00 | 1.00 | 0.80-1.00 | pole (4.0) |"
    assert rows[1].startswith("| 1 | 1 | +0.50 |") and rows[1].endswith("car (3.0) |")
    assert "rho over the 2 runs: -0.25 [" in text
    assert "No PixDA run" in toy_table.pixel_weights(pd.DataFrame(runs[2:]))
