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
from pixda_core.sweep_collect import _write_summary
from pixda_core.sweep_state import state_of
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


def configured_run(folder: Path, config: str | None, **metrics) -> Path:
    """A finished run (an FT 1-shot one unless ``metrics`` say otherwise) whose config.yaml
    is ``config`` (None: none, as an old run)."""
    fake_run(folder, **metrics)
    if config is None:
        (folder / "config.yaml").unlink()
    else:
        (folder / "config.yaml").write_text(config)
    return folder


@pytest.mark.unit
@pytest.mark.parametrize(
    ("config", "said"),
    [
        ("run: [1, 2\n", "is damaged (not valid YAML)"),
        ("- preset\n- toy\n", "is damaged (not a YAML mapping)"),
        ("", "is damaged (not a YAML mapping)"),
    ],
)
def test_a_damaged_config_yaml_is_named_with_what_to_do(tmp_path, config, said):
    run = configured_run(tmp_path / "ft", config)
    with pytest.raises(DataError) as raised:
        load_runs(tmp_path)
    message = str(raised.value)
    assert message.startswith(f"config file {run / 'config.yaml'} {said}; ")
    assert message.endswith(
        "restore it from the run's copy, or move the run folder out of the analysis"
    )


@pytest.mark.unit
def test_missing_run_folders_and_confusion_files_are_named(tmp_path):
    fake_run(tmp_path / "ft")
    with pytest.raises(DataError, match=f"^run folder {tmp_path / 'gone'} does not exist$"):
        load_runs([tmp_path / "ft", tmp_path / "gone"])
    with pytest.raises(DataError) as raised:
        A.confusion(tmp_path / "ft")
    assert str(raised.value) == (
        f"{tmp_path / 'ft' / 'metrics_confusion.npy'} does not exist "
        f"(is {tmp_path / 'ft'} a finished run folder?)"
    )


@pytest.mark.unit
def test_labels_say_sizes_switches_numbers_and_the_source_only_model(tmp_path):
    sizes = tmp_path / "sizes"
    size = "preset: toy\ndata:\n  size: [{}]\n  val_size: [{}]\n"
    configured_run(sizes / "small", size.format("64, 32", "64, 32"))
    configured_run(sizes / "large", size.format("96, 48", "96, 48"))
    configured_run(sizes / "mixed", size.format("64, 32", "96, 48"))
    by = load_runs(sizes).set_index("run")["setting_label"]
    # "64x32" says the val size too where it is the same; "val ..." where it is not
    assert by.to_dict() == {"small": "64x32", "large": "96x48", "mixed": "64x32, val 96x48"}

    other = tmp_path / "other"
    configured_run(
        other / "a", "preset: toy\nrun:\n  cpu_bf16: true\n  own_source_only: true\n"
        "adapt:\n  lr: 0.0025\n",
    )  # fmt: skip
    configured_run(other / "b", "preset: toy\nrun:\n  cpu_bf16: false\nadapt:\n  lr: 0.001\n")
    by = load_runs(other).set_index("run")["setting_label"]
    assert by["a"] == "cpu bf16 on, lr 0.0025, a source-only model per seed"
    assert by["b"] == "cpu bf16 off, lr 0.001, one source-only model"


@pytest.mark.unit
def test_model_files_are_named_by_what_stays_when_copied(tmp_path):
    init = "preset: toy\nmodel:\n  init: {}\n"
    configured_run(tmp_path / "here", init.format("/data/one/weights/r18.pth"))
    configured_run(tmp_path / "copied", init.format("/elsewhere/weights/r18.pth"))
    configured_run(tmp_path / "bare", init.format("r18.pth"))
    configured_run(tmp_path / "ours", init.format("/x/so_run/checkpoints/latest.pt"))
    by = load_runs(tmp_path).set_index("run")
    # the same file in a folder of the same name, wherever it lies: one setting
    assert by.loc["here", "fingerprint"] == by.loc["copied", "fingerprint"]
    assert by["fingerprint"].nunique() == 3
    assert by["setting_label"].to_dict() == {
        "here": "init weights/r18.pth",
        "copied": "init weights/r18.pth",
        "bare": "init r18.pth",
        "ours": "init so_run/latest.pt",  # a run's checkpoint: the run and the file
    }


@pytest.mark.unit
def test_a_run_adapted_from_a_given_model_knows_where_it_started(tmp_path):
    so = configured_run(tmp_path / "so", "preset: toy\n", method="source_only", shots=0,
                        split=None)  # fmt: skip
    restore = "preset: toy\nrun:\n  restore_from: {}\n"
    configured_run(tmp_path / "ft", restore.format(so / "checkpoints" / "latest.pt"))
    configured_run(tmp_path / "plain", "preset: toy\n")  # adapted from the one it trained
    configured_run(tmp_path / "v1", restore.format("/downloads/v1/so.pth"))
    configured_run(tmp_path / "v1_copy", restore.format("/mnt/v1/so.pth"))
    configured_run(tmp_path / "v2", restore.format("/downloads/v2/so.pth"))
    configured_run(tmp_path / "away", restore.format("/cluster/so_run/checkpoints/latest.pt"))
    runs = load_runs(tmp_path)
    by = runs.set_index("run")
    # the kit's own source-only run given as a file: its settings, as if trained for the run
    assert by.loc["ft", "origin"] == by.loc["so", "origin"] == by.loc["plain", "origin"]
    assert by.loc["ft", "fingerprint"] == by.loc["plain", "fingerprint"]
    # any other file (or a run folder not here): named by its folder and name
    assert by.loc["v1", "fingerprint"] == by.loc["v1_copy", "fingerprint"]
    assert by.loc["v1", "origin"] not in (by.loc["v2", "origin"], by.loc["so", "origin"])
    assert by.loc["v1", "setting_label"] == "source-only from v1/so.pth"
    assert by.loc["v2", "setting_label"] == "source-only from v2/so.pth"
    assert by.loc["away", "setting_label"] == "source-only from so_run/latest.pt"
    assert by.loc["ft", "setting_label"] == ""
    # the source-only run's metrics.json damaged: its config.yaml still says what it was
    (so / "metrics.json").write_text("{")
    again = load_runs(tmp_path / "ft").set_index("run")
    assert again.loc["ft", "origin"] == by.loc["so", "origin"]
    assert again.loc["ft", "fingerprint"] == by.loc["ft", "fingerprint"]


@pytest.mark.unit
def test_a_source_only_setting_chosen_keeps_the_runs_adapted_from_it(tmp_path):
    configured_run(tmp_path / "so", "preset: toy\n", method="source_only", shots=0, split=None)
    configured_run(tmp_path / "ft", "preset: toy\n")
    configured_run(tmp_path / "so7", "preset: toy\npretrain:\n  early_stop: 7\n",
                   method="source_only", shots=0, split=None)  # fmt: skip
    configured_run(tmp_path / "ft7", "preset: toy\npretrain:\n  early_stop: 7\n")
    runs = load_runs(tmp_path)
    by = runs.set_index("run")
    chosen = A.choose_setting(runs, by.loc["so", "fingerprint"])
    assert list(chosen["run"]) == ["so", "ft"]
    assert list(chosen["setting_label"]) == ["", ""]  # nothing differs among them
    chosen = A.choose_setting(runs, by.loc["ft7", "setting"][:4])  # a hash's start will do
    assert list(chosen["run"]) == ["so7", "ft7"]


@pytest.mark.unit
def test_a_method_run_with_other_options_of_its_own_gets_a_row_for_each(tmp_path):
    configured_run(tmp_path / "so", "preset: toy\n", method="source_only", shots=0, split=None)
    configured_run(tmp_path / "ft", "preset: toy\n")
    configured_run(tmp_path / "px_a", "preset: toy\nmethod:\n  tau: 0.1\n", method="pixda")
    configured_run(tmp_path / "px_b", "preset: toy\nmethod:\n  tau: 0.2\n", method="pixda")
    runs = load_runs(tmp_path)
    assert runs["setting"].nunique() == 2 and runs["fingerprint"].nunique() == 4
    assert A.comparison_notes(runs) == [
        "PixDA ran with different options of its own (method.tau): a row for each, each "
        "compared with the reference"
    ]
    table = A.per_class_table(runs)
    assert list(table.index) == ["source only", "FT (1-shot)", "PixDA (1-shot), tau 0.1",
                                 "PixDA (1-shot), tau 0.2"]  # fmt: skip


@pytest.mark.unit
def test_per_class_table_at_one_shot_count_and_gains_without_a_baseline():
    runs = runs_with_classes()
    two = pd.concat([runs, runs.iloc[[1]].assign(shots=2, run="ft2", miou=0.9)])
    table = A.per_class_table(two, shots=1)
    assert list(table.index) == ["source only", "FT (1-shot)", "PixDA (1-shot)"]
    assert table.loc["FT (1-shot)", "mIoU"] == pytest.approx(43.0)  # the 2-shot run left out
    adapted = runs[runs["method"] != "source_only"]
    with pytest.raises(DataError) as raised:
        A.gain_over(adapted)
    assert str(raised.value) == (
        "no 'source_only' run among the runs; cannot compute gains over it"
    )
    with pytest.raises(DataError, match="^no 'oracle' run among the runs"):
        A.gain_over(runs, baseline="oracle")
