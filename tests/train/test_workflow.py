"""What the notebooks call (pixda_core.workflow): the shared source-only model."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, assert_user_error, cli, hold_lock, release_args, tiny


@pytest.mark.training
@pytest.mark.slow
def test_runs_started_together_train_the_shared_source_only_model_once(toy_root, tmp_path):
    """A batch of jobs without --restore_from: while one trains the shared source-only model,
    another waits for it instead of training it a second time into the same folder."""
    from pixda_core.train import source_only_run
    from pixda_core.train.cli import build_parser, config_from_args

    args = release_args(toy_root, tmp_path, "second") + ["--is_train"]
    args += ["--set", "pretrain.batch_size=2", "--set", "pretrain.early_stop=2"]  # seconds
    cfg = config_from_args(build_parser("run.py", "run").parse_args(args), "adapt")
    shared = tmp_path / source_only_run(cfg).run.name
    held = hold_lock(shared)  # the first job, training it
    cmd = [sys.executable, str(ROOT / "run.py"), *args]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        for line in proc.stderr:
            if "waiting for it" in line:
                break
        assert f"another process is training {shared}; waiting for it" in line
        time.sleep(1.0)
        assert proc.poll() is None and not (shared / "metrics.json").exists()
    finally:
        held.close()
    rest = proc.stderr.read()
    assert proc.wait(timeout=600) == 0, rest[-3000:]
    assert "training a source-only model first" in rest  # the first job left it unfinished
    assert (shared / "metrics.json").exists() and (tmp_path / "second" / "metrics.json").exists()


@pytest.mark.unit
def test_relative_and_absolute_roots_share_one_source_only_model(tmp_path, monkeypatch):
    """run.py keeps the paths as typed, a sweep makes them absolute: one model, not two."""
    from pixda_core.config import preset
    from pixda_core.train.start import source_only_run

    monkeypatch.chdir(tmp_path)
    roots = {"source_root": "data/gta5", "target_root": "data/cityscapes"}
    typed = preset("toy").override(data=roots, run={"out_dir": "results"})
    absolute = preset("toy").override(
        data={k: str(tmp_path / v) for k, v in roots.items()},
        run={"out_dir": str(tmp_path / "results")},
    )
    other = preset("toy").override(data={**roots, "source_root": "elsewhere/gta5"})
    names = [source_only_run(c).run.name for c in (typed, absolute, other)]
    assert names[0] == names[1] != names[2]


@pytest.mark.data
def test_the_source_only_models_init_is_checked_before_the_adaptation_run_is_written(
    toy_root, tmp_path, capsys
):
    # no --restore_from: the shared source-only model is to be trained first, from --init
    missing = tmp_path / "no_such_init.pth"
    argv = [*release_args(toy_root, tmp_path / "out"), "--is_train", "--method", "finetune",
            "--init", str(missing)]  # fmt: skip
    code, err = cli(capsys, *argv)
    assert_user_error(code, err, "--init (config model.init)", str(missing))
    assert [p.name for p in (tmp_path / "out").iterdir()] == []  # neither run folder


@pytest.mark.training
def test_a_source_only_model_per_seed_when_asked(toy_root, tmp_path):
    """run.own_source_only: each seed adapts from a source-only model of its own seed; the
    preset's seed's model is the shared one (the same folder)."""
    from pixda_core.train import source_only_run

    shared = source_only_run(tiny(toy_root, tmp_path, run={"seed": 7}))
    own = {
        s: source_only_run(tiny(toy_root, tmp_path, run={"seed": s, "own_source_only": True}))
        for s in (0, 7)
    }
    assert shared.run.seed == 0 and own[7].run.seed == 7 and own[0].run.seed == 0
    assert own[0].run.name == shared.run.name  # the toy preset's seed is 0
    assert own[7].run.name != shared.run.name
