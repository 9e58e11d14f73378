"""sweep --collect over a sweep folder that holds two runs of one method, shots and seed that
differ in length: they are never pooled, and --setting keeps one of them (issue 32); what
sweep refuses before it writes anything (runs not ended, --setting on a sweep over gaps, a
bad --sbatch, no --out), and a failed analysis notebook said."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path

import pandas as pd
import pytest

from pixda_core import notebook_run, sweep_cli
from pixda_core import stats as S
from pixda_core import workflow as wf
from pixda_core.analysis import load_runs, summary_table
from pixda_core.train import adapt
from tests.helpers import GRID, TINY, assert_user_error


@pytest.mark.notebooks
@pytest.mark.slow
def test_collect_never_pools_runs_of_different_lengths(sweep_copy, toy_root, tmp_path, capsys):
    out, _ = sweep_copy
    [so] = out.glob("source_only_*/checkpoints/latest.pt")
    # the sweep's FT 1-shot seed 0 ran GRID["iterations"] (5) steps; this one runs 2
    cfg = wf.make_config(
        "toy", str(toy_root), method="finetune", num_shots=1, seed=0, iterations=2,
        pretrain_iterations=GRID["pretrain_iterations"], out_dir=str(out), device="cpu",
        overrides={**TINY, "run": {**TINY["run"], "progress": False, "restore_from": str(so)}},
        run_name="finetune_1shot_seed0_short",
    )  # fmt: skip
    adapt(cfg)

    with pytest.raises(SystemExit):  # --setting goes with --collect only
        sweep_cli.main(["--setting", "abc"])
    capsys.readouterr()
    assert sweep_cli.main(["--collect", str(out), "--setting", "nope"]) == 2
    assert "setting 'nope': no run has it" in capsys.readouterr().err

    # notebook 04's tables over every run (what --collect without --setting writes; the
    # notebook itself runs below, with --setting): two rows for FT 1-shot, never one of two
    every = tmp_path / "every"
    frame = wf.analysis_runs([out])
    S.write_tables(frame, every)
    stats = pd.read_csv(every / "stats_miou.csv")
    ft1 = stats[(stats["method"] == "finetune") & (stats["shots"] == 1)]
    assert len(ft1) == 2 and set(ft1["n"]) == {1} and set(ft1["runs"]) == {1}
    assert ft1["fingerprint"].nunique() == 2
    assert sorted(ft1["setting_label"]) == ["2 it.", "5 it."]
    md = (every / "stats_miou.md").read_text()
    assert "| FT, 2 it." in md and "| FT, 5 it." in md
    assert "more run repeating" not in md  # nothing was averaged
    summary = summary_table(frame, settings=True)
    assert summary["fingerprint"].nunique() == 4  # source-only, FT x2 lengths, PixDA

    # --setting keeps one: notebook 04 over the 5-step runs and the model they started from
    by = load_runs(out).set_index("run")
    long = by.loc["finetune_1shot_seed0", "setting"]
    assert by.loc["finetune_1shot_seed0_short", "setting"] != long
    capsys.readouterr()
    assert sweep_cli.main(["--collect", str(out), "--setting", long]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "FAILED" not in printed and f"[sweep] summary: {out / 'summary.csv'}" in printed
    chosen = pd.read_csv(out / "analysis" / "summary.csv")
    assert sorted(chosen["run"]) == sorted(set(by.index) - {"finetune_1shot_seed0_short"})
    assert chosen["setting_label"].isna().all()  # nothing differs among them: nothing said
    stats = pd.read_csv(out / "analysis" / "stats_miou.csv")
    ft1 = stats[(stats["method"] == "finetune") & (stats["shots"] == 1)]
    assert list(ft1["fingerprint"]) == [by.loc["finetune_1shot_seed0", "fingerprint"]]
    assert "it." not in (out / "analysis" / "stats_miou.md").read_text()
    assert len(pd.read_csv(out / "summary.csv")) == 6  # the sweep's own: every run of its grid


def pixda_sweep(capsys, *argv) -> tuple[int, str, str]:
    """``pixda sweep`` in this process: (exit code, stdout, stderr); argparse's own errors
    exit through SystemExit."""
    capsys.readouterr()
    try:
        code = sweep_cli.main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    printed = capsys.readouterr()
    return code, printed.out, printed.err


def finished_run(folder: Path, early_stop: int = 4, miou: float = 0.3, **metrics) -> Path:
    """A finished FT 1-shot run (metrics.json, config.yaml saying its length), no training."""
    folder.mkdir(parents=True)
    base = {"miou": miou, "per_class_iou": {}, "pixel_accuracy": 0.5, "step": early_stop,
            "method": "finetune", "source": "gta5", "shots": 1, "seed": 0,
            "split": "seed 0"}  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps({**base, **metrics}))
    (folder / "config.yaml").write_text(
        f"preset: toy\nadapt:\n  early_stop: {early_stop}\nrun:\n  name: {folder.name}\n"
    )
    return folder


def sweep_folder(out: Path, **grid) -> Path:
    """A sweep folder's sweep.json (FT at 1 shot, seeds 0 and 1, unless ``grid`` says)."""
    out.mkdir(parents=True, exist_ok=True)
    grid = {"methods": ["finetune"], "shots": [1], "seeds": [0, 1], "source": "gta5",
            "preset": "toy", **grid}  # fmt: skip
    (out / "sweep.json").write_text(json.dumps(grid))
    return out


@pytest.mark.unit
def test_sweep_without_out_or_with_a_bad_sbatch_option_writes_nothing(tmp_path, capsys):
    code, _, err = pixda_sweep(capsys)
    assert_user_error(code, err, "--out is required (or --status OUT / --collect OUT)")
    out = tmp_path / "s"
    for item in ("constraint", "=a100"):
        code, _, err = pixda_sweep(capsys, "--out", out, "--sbatch", "gpus=1", "--sbatch", item)
        assert_user_error(code, err, f"--sbatch {item!r} is not KEY=VALUE (e.g. constraint=a100)")
        assert err.count("\n") == 1 and not out.exists()


@pytest.mark.unit
def test_collect_refuses_while_runs_have_not_ended(tmp_path, capsys):
    out = sweep_folder(tmp_path / "s")
    finished_run(out / "finetune_1shot_seed0")
    (out / "runs.csv").write_text(
        "name,method,shots,seed,executor,job_id\n"
        "finetune_1shot_seed0,finetune,1,0,local,\n"
        "finetune_1shot_seed1,finetune,1,1,local,\n"
    )
    (out / "logs").mkdir()
    (out / "logs" / "finetune_1shot_seed1.json").write_text(
        json.dumps({"executor": "local", "state": "running"})
    )
    with open(out / ".sweep.lock", "w") as held:  # the sweep running its notebooks
        fcntl.flock(held, fcntl.LOCK_EX)
        code, _, err = pixda_sweep(capsys, "--collect", out)
    assert_user_error(
        code, err, f"1 run(s) of {out} have not ended yet (finetune_1shot_seed1); collect once "
        "they have",
    )  # fmt: skip
    assert err.count("\n") == 1 and not (out / "summary.csv").exists()
    # once it has ended (failed here: its record says running, no sweep holds the folder)
    code, printed, err = pixda_sweep(capsys, "--collect", out, "--no-analysis")
    assert code == 1 and "failed: finetune shots=1 seed=1: did not finish" in err
    assert len(pd.read_csv(out / "summary.csv")) == 1


@pytest.mark.unit
def test_collect_setting_on_a_sweep_over_gaps_is_refused(tmp_path, capsys):
    out = sweep_folder(tmp_path / "g", gaps=[0.5], data_root=str(tmp_path / "toy"))
    sweep_folder(out / "gap0.5")
    finished_run(out / "gap0.5" / "finetune_1shot_seed0")
    setting = load_runs(out)["setting"].iloc[0]
    code, _, err = pixda_sweep(capsys, "--collect", out, "--setting", setting)
    assert_user_error(code, err, "--setting: a sweep over gaps keeps each gap apart already")
    assert not (out / "summary.csv").exists() and not (out / "gap0.5" / "summary.csv").exists()


@pytest.mark.unit
def test_collect_setting_says_a_failed_analysis_notebook(tmp_path, capsys, monkeypatch):
    out = sweep_folder(tmp_path / "s", seeds=[0])
    finished_run(out / "finetune_1shot_seed0", early_stop=4)
    finished_run(out / "finetune_1shot_seed0_short", early_stop=2)
    setting = load_runs(out).set_index("run").loc["finetune_1shot_seed0_short", "setting"]
    calls = []

    def fails(notebook, output, parameters, log=None):
        calls.append((notebook, output, parameters))
        return "ConfigError: the kernel said no"

    monkeypatch.setattr(notebook_run, "execute", fails)
    code, printed, err = pixda_sweep(capsys, "--collect", out, "--setting", setting)
    # notebook 04 once (not also over every setting), for this setting, into OUT/analysis
    assert calls == [
        (
            notebook_run.NB_ANALYSIS,
            out / "notebooks" / notebook_run.NB_ANALYSIS,
            {"runs": [str(out)], "out_dir": str(out / "analysis"), "interactive": False,
             "setting": setting},
        )
    ]  # fmt: skip
    assert code == 1
    assert "[sweep] analysis notebook FAILED: ConfigError: the kernel said no" in printed
    assert f"[sweep] summary: {out / 'summary.csv'}" in printed
    said = "[sweep] failed: analysis shots=None seed=None: ConfigError: the kernel said no"
    assert err == said + "\n"
    assert len(pd.read_csv(out / "summary.csv")) == 2  # the summary is the grid's, every run
