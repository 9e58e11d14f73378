"""Per-class analysis over run folders (pixda_core.analysis): loading runs, picks, notes, gains."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pixda_core import analysis as A
from pixda_core import workflow
from pixda_core.analysis import load_runs
from pixda_core.errors import ConfigError, DataError
from pixda_core.sweep import _write_summary, state_of
from pixda_core.train.rundir import finished, read_metrics
from tests.helpers import runs_with_classes


def fake_run(folder: Path, **metrics) -> Path:
    folder.mkdir(parents=True)
    base = {"miou": 20.0, "per_class_iou": {}, "pixel_accuracy": 0.5, "step": 4,
            "method": "finetune", "source": "gta5", "shots": 1, "seed": 0,
            "split": "seed 0"}  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps({**base, **metrics}))
    (folder / "config.yaml").write_text("run:\n  name: x\n")
    return folder / "metrics.json"


@pytest.mark.unit
def test_comparison_notes_say_what_is_not_like_for_like():
    runs = runs_with_classes()
    assert A.comparison_notes(runs) == []
    two = pd.concat([runs, runs.iloc[[1]].assign(shots=2, run="ft2")])
    [note] = A.comparison_notes(two)
    assert note.startswith("the methods ran different shot counts (FT 1, 2; PixDA 1)")
    fewer = runs.drop(index=runs.index[(runs["method"] == "pixda") & (runs["seed"] > 0)])
    [note] = A.comparison_notes(fewer)
    assert note.startswith("at 1-shot the methods ran different seeds (FT 0, 1, 2; PixDA 0)")
    mixed = runs.assign(source=["gta5"] * 4 + ["synthia"] * 3)
    assert A.comparison_notes(mixed)[0].startswith(
        "the runs come from different sources (gta5: 4 runs, synthia: 3 runs)"
    )
    # and the tables say it under them
    from pixda_core import stats as S

    rendered = S.render(S.comparison(two, "finetune"))
    assert "Not like for like: the methods ran different shot counts" in rendered


@pytest.mark.unit
def test_pick_runs_compares_like_for_like(capsys):
    runs = runs_with_classes()
    # FT also ran 2 shots: the largest shot count both ran is 1
    two = pd.concat([runs, runs.iloc[[1]].assign(shots=2, run="ft2", path="/runs/ft2")])
    chosen = workflow.pick_runs(two)
    assert list(chosen) == ["source only", "FT 1-shot", "PixDA 1-shot"]
    assert chosen["FT 1-shot"].name == "finetune_1shot_seed0"
    # PixDA lacks seed 0: both at the lowest seed they share
    no0 = runs.drop(index=runs.index[(runs["method"] == "pixda") & (runs["seed"] == 0)])
    chosen = workflow.pick_runs(no0)
    assert [p.name for p in chosen.values()][1:] == ["finetune_1shot_seed1", "pixda_1shot_seed1"]
    assert capsys.readouterr().out == ""
    # asked for a shot count one method lacks: said, and left out
    chosen = workflow.pick_runs(two, shots=2)
    assert list(chosen) == ["source only", "FT 2-shot"]
    assert "PixDA: no 2-shot run; left out" in capsys.readouterr().out


@pytest.mark.unit
def test_pick_runs_with_nothing_to_show_says_why():
    runs = runs_with_classes()
    adapted = runs[runs["method"] != "source_only"]
    with pytest.raises(ConfigError, match="no run to show: FT, PixDA: no 3-shot run; left out"):
        workflow.pick_runs(adapted, shots=3)


@pytest.mark.notebooks
def test_gain_and_tables_by_hand(tmp_path):
    def fake(name, method, shots, seed, road, sky):
        folder = tmp_path / name
        folder.mkdir()
        iou = {c: None for c in A.CLASS_NAMES} | {"road": road, "sky": sky}
        (folder / "metrics.json").write_text(
            json.dumps(
                {
                    "miou": (road + sky) / 2,
                    "protocol": "19",
                    "per_class_iou": iou,
                    "pixel_accuracy": 0.5,
                    "step": 1,
                    "method": method,
                    "source": "gta5",
                    "shots": shots,
                    "seed": seed,
                    "run": name,
                }
            )
        )

    fake("so", "source_only", 0, 0, 0.2, 0.5)
    fake("p0", "pixda", 1, 0, 0.4, 0.6)
    fake("p1", "pixda", 1, 1, 0.6, 0.6)
    runs = A.load_runs(tmp_path)
    assert list(runs["method"]) == ["source_only", "pixda", "pixda"]
    gain = A.gain_over(runs).set_index("class")["gain"]
    assert gain["road"] == pytest.approx(30.0) and gain["sky"] == pytest.approx(10.0)
    table = A.per_class_table(runs)
    assert table.loc["PixDA (1-shot)", "road"] == pytest.approx(50.0)
    assert table.loc["source only", "mIoU"] == pytest.approx(35.0)
    paths = A.write_table(table, tmp_path / "t", "per_class")
    assert [p.suffix for p in paths] == [".csv", ".md", ".tex"]
    assert "50.0" in paths[1].read_text() and "-" in paths[1].read_text()  # NaN shown as '-'


@pytest.mark.data
@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda p: p.write_text(p.read_text()[:40]), "is damaged (not valid JSON"),
        (lambda p: p.write_text(""), "is damaged (not valid JSON"),
        (lambda p: p.write_text("[1, 2]"), "is damaged (not a JSON object)"),
        (lambda p: p.write_text('{"miou": "x"}'), "has no valid 'miou' (got 'x')"),
        (lambda p: p.write_bytes(b"\xff\xfe"), "is not UTF-8 text"),
    ],
)
def test_a_damaged_metrics_json_is_named_and_never_counted_done(tmp_path, capsys, damage, said):
    out = tmp_path / "sweep"
    good = fake_run(out / "finetune_1shot_seed1", seed=1)
    path = fake_run(out / "finetune_1shot_seed0")
    assert finished(path.parent) and _write_summary(out, ["finetune"], [1], [0, 1], "gta5", "toy")
    damage(path)
    assert not finished(path.parent) and finished(good.parent)
    assert state_of(out, "finetune_1shot_seed0", {}, None) != "done"
    with pytest.raises(DataError, match=f"metrics file {path} .*--continue_train"):
        load_runs(out)
    with pytest.raises(DataError) as raised:
        read_metrics(path)
    assert said in str(raised.value)
    capsys.readouterr()
    assert _write_summary(out, ["finetune"], [1], [0, 1], "gta5", "toy") is None
    printed = capsys.readouterr().out
    assert f"summary.csv not written: metrics file {path}" in printed
    assert "the previous" in printed and not (out / "summary.csv").exists()  # never left stale


def settled_run(folder: Path, early_stop: int, miou: float, seed: int = 0, **metrics) -> Path:
    """A finished FT run whose config.yaml says its length (the toy preset otherwise)."""
    fake_run(folder, miou=miou, seed=seed, split=f"seed {seed}", **metrics)
    (folder / "config.yaml").write_text(
        f"preset: toy\nadapt:\n  early_stop: {early_stop}\nrun:\n  name: {folder.name}\n"
    )
    return folder


@pytest.mark.unit
def test_runs_of_different_lengths_are_never_pooled(tmp_path):
    from pixda_core import stats as S

    settled_run(tmp_path / "ft_short", 1, 0.10)
    settled_run(tmp_path / "ft_long", 3, 0.30)
    fake_run(tmp_path / "old", miou=0.5, seed=1)
    (tmp_path / "old" / "config.yaml").unlink()  # a run from before config.yaml: unknown
    runs = load_runs(tmp_path)
    by = runs.set_index("run")
    assert by.loc["ft_short", "fingerprint"] != by.loc["ft_long", "fingerprint"]
    assert by.loc["old", "fingerprint"] == A.UNKNOWN
    assert by.loc["ft_short", "setting_label"] == "1 it."
    assert by.loc["ft_long", "setting_label"] == "3 it."
    assert by.loc["old", "setting_label"] == "settings not recorded"
    comp = S.comparison(runs)
    assert sorted(comp["mean"].round(6)) == [10.0, 30.0, 50.0] and set(comp["n"]) == {1}
    md = S.render(comp)
    assert "| FT, 1 it. " in md and "| FT, 3 it. " in md
    assert "record no settings (no config.yaml)" in md
    assert "with the same settings (their configs checked)" not in md  # not all were checked
    table = A.per_class_table(runs)
    assert {"FT (1-shot), 1 it.", "FT (1-shot), 3 it."} <= set(table.index)
    long = A.long_per_class(runs)
    assert long["run"].nunique() == 3  # one_per_key kept the three apart
    one = A.choose_setting(runs, by.loc["ft_long", "fingerprint"])
    assert list(one["run"]) == ["ft_long"] and list(one["setting_label"]) == [""]
    with pytest.raises(ConfigError, match="setting 'nope': no run has it"):
        A.choose_setting(runs, "nope")


@pytest.mark.unit
def test_repeats_of_the_same_settings_are_averaged_and_said_so(tmp_path):
    from pixda_core import stats as S

    settled_run(tmp_path / "a", 3, 0.10)
    settled_run(tmp_path / "b", 3, 0.30)
    runs = load_runs(tmp_path)
    assert runs["fingerprint"].nunique() == 1 and set(runs["setting_label"]) == {""}
    md = S.render(S.comparison(runs))
    assert "20.0 (n=1)" in md
    assert "1 more run repeating a seed and split with the same settings" in md


@pytest.mark.unit
def test_a_source_only_model_of_other_settings_is_no_baseline(tmp_path):
    settled_run(tmp_path / "ft", 3, 0.30)
    fake_run(tmp_path / "so", method="source_only", shots=0, split=None)
    (tmp_path / "so" / "config.yaml").write_text("preset: toy\npretrain:\n  early_stop: 7\n")
    runs = load_runs(tmp_path)
    assert not A.has_baseline(runs)  # FT started from the preset's 500-iteration model
    with pytest.raises(DataError, match="no 'source_only' run of the settings"):
        A.gain_over(runs)
    [note] = [n for n in A.comparison_notes(runs) if "source only runs" in n]
    assert "pretrain.early_stop" in note
    (tmp_path / "so" / "config.yaml").write_text("preset: toy\n")
    assert A.has_baseline(load_runs(tmp_path))
