"""Reliability, second pass (the README's table of bad inputs): a failed start never blocks the
corrected command, every file read back is checked, what is recorded is what ran, text is read
as editors write it, and the messages say the real problem. Each case runs the real entry point
(``run.py``'s, in this process) and checks what the user sees."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
import torch

from pixda_core.analysis import load_runs
from pixda_core.checkpoint import load_checkpoint
from pixda_core.data import draw_split, load_split, read_split, write_split
from pixda_core.errors import DataError
from pixda_core.sweep import _write_summary, read_grid, read_runs, state_of
from pixda_core.sweep_cli import main as sweep_main
from pixda_core.train.rundir import finished, read_metrics

from .helpers import assert_user_error, cli, release_args


def train(capsys, toy, out, weights, *extra, name="e"):
    argv = [*release_args(toy, out, name), "--is_train", "--restore_from", weights, *extra]
    return cli(capsys, *argv)


def per_city(toy: Path, k: int) -> list[str]:
    """k target train images of every city of the toy benchmark."""
    base = toy / "cityscapes" / "leftImg8bit" / "train"
    cities = defaultdict(list)
    for p in sorted(base.glob("*/*.png")):
        cities[p.parent.name].append(f"{p.parent.name}/{p.name}")
    return [n for names in cities.values() for n in names[:k]]


# ------------------------------------------------------------------ check before writing


@pytest.mark.data
@pytest.mark.parametrize("size", ["16,8", "31,64", "64,31"])
def test_a_crop_too_small_for_the_image_discriminator_is_refused_before_anything_is_written(
    toy_root, tmp_path, capsys, weights, size
):
    code, err = train(capsys, toy_root, tmp_path, weights, "--crop_size", size)
    assert_user_error(
        code, err, f"--crop_size {size}", "the image discriminator (D2) of PixDA",
        "at least 32 pixels wide and 32 high",
    )  # fmt: skip
    assert not (tmp_path / "e").exists()


@pytest.mark.data
def test_a_method_without_the_image_discriminator_takes_a_small_crop(toy_root, capsys):
    from pixda_core.config import preset
    from pixda_core.methods import TABLE
    from pixda_core.train.start import check_sizes

    small = preset("toy").override(data={"size": [16, 8]})
    for method in ("finetune", "joint", "source_only"):
        check_sizes(small, TABLE[method])  # no discriminator that halves its input
    with pytest.raises(Exception, match="at least 32 pixels wide"):
        check_sizes(small, TABLE["adaptsegnet"])


@pytest.mark.unit
def test_the_segmenter_takes_the_smallest_size_the_config_accepts():
    import torch

    from pixda_core.models import deeplabv2

    for backbone in ("resnet18", "resnet101"):
        with torch.device("meta"):
            g = deeplabv2(19, backbone, multi_level=True)
            out = g(torch.empty(1, 3, 8, 8))
        assert all(o.shape[-2:] == (2, 2) for o in out)  # 8 pixels: a 2x2 map (stride 8, ceil)


@pytest.mark.unit
@pytest.mark.parametrize("size", [31, 32, 33, 64, 100])
def test_the_discriminator_size_rule_is_the_network_itself(size):
    import torch

    from pixda_core.models import FCDiscriminator
    from pixda_core.models.discriminators import output_size

    d = FCDiscriminator(19)
    expected = output_size(d, size, 0), output_size(d, 2 * size, 1)
    if min(expected) < 1:
        with pytest.raises(RuntimeError):
            d(torch.zeros(1, 19, size, 2 * size))
    else:
        assert tuple(d(torch.zeros(1, 19, size, 2 * size)).shape[-2:]) == expected


@pytest.mark.training
def test_a_start_that_failed_before_its_first_checkpoint_does_not_block_the_fix(
    toy_root, tmp_path, capsys, weights
):
    one = write_split(tmp_path / "one.txt", per_city(toy_root, 1)[:1])  # 1 image < a batch of 2
    for name, extra in (("new", []), ("resumed", ["--continue_train"])):
        code, err = train(capsys, toy_root, tmp_path, weights, "--split_file", one,
                          "--method", "finetune", name=name)  # fmt: skip
        assert_user_error(code, err, "fewer than one batch")
        assert (tmp_path / name / "config.yaml").exists()  # it had started: its folder is there
        # the corrected command, as a new run or resumed
        code, err = train(capsys, toy_root, tmp_path, weights, "--method", "finetune", *extra,
                          name=name)  # fmt: skip
        assert code == 0, err[-3000:]
        assert "has no checkpoint (its last start ended before the first one)" in err
        metrics = read_metrics(tmp_path / name / "metrics.json")
        assert metrics["method"] == "finetune" and metrics["split"] == "seed 0"


@pytest.mark.data
@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_seeds_outside_numpys_range_are_refused(toy_root, tmp_path, capsys, weights, seed):
    code, err = train(capsys, toy_root, tmp_path, weights, "--seed", seed)
    assert_user_error(code, err, f"--seed (config run.seed) = {seed}", "from 0 to 4294967295")
    assert not (tmp_path / "e").exists()
    with pytest.raises(SystemExit) as stop:
        sweep_main(["--seeds", "0", seed, "--out", str(tmp_path / "s")])
    assert stop.value.code == 2 and f"--seeds {seed}" in capsys.readouterr().err


@pytest.mark.data
def test_a_folder_given_for_a_weights_file_is_named_as_a_folder(toy_root, tmp_path, capsys):
    code, err = train(capsys, toy_root, tmp_path / "out", tmp_path)
    assert_user_error(code, err, f"--restore_from {tmp_path} is a folder, not a file")


# ------------------------------------------------------------ what is recorded is what ran


@pytest.mark.unit
def test_the_published_splits_have_their_shots():
    from pixda_core.data.splits import published_split, split_shots

    for shots in range(1, 6):  # the 5-shot file lists a zurich image twice: 5 entries
        assert split_shots(read_split(published_split(shots))) == shots


@pytest.mark.training
def test_a_split_file_decides_the_shots_recorded(toy_root, tmp_path, capsys, weights):
    two = write_split(tmp_path / "two.txt", per_city(toy_root, 2))
    config = tmp_path / "c.yaml"  # given in a config file (the API and notebooks alike)
    config.write_text(f"data:\n  split_file: {two}\n")
    code, err = train(capsys, toy_root, tmp_path, weights, "--config", config,
                      "--method", "finetune")  # fmt: skip
    assert code == 0, err[-3000:]
    metrics = read_metrics(tmp_path / "e" / "metrics.json")
    assert metrics["shots"] == 2 and metrics["split"] == "file two.txt"
    ran = metrics["ran_on"]  # and what it ran on
    assert ran["device"] == "cpu" and ran["precision"] == "fp32" and ran["world_size"] == 1
    assert ran["versions"]["torch"] == torch.__version__ and ran["versions"]["pixda"] == "0.1.0"
    code, err = train(capsys, toy_root, tmp_path, weights, "--split_file", two,
                      "--num_shots", "3", name="f")  # fmt: skip
    assert_user_error(code, err, f"--split_file {two} has 2 image(s) per city",
                      "--num_shots (config data.num_shots) is 3")  # fmt: skip
    assert not (tmp_path / "f").exists()


# ------------------------------------------------------------------ text as editors write it


@pytest.mark.data
def test_split_files_with_a_bom_crlf_and_blank_lines_are_read(toy_root, tmp_path):
    names = draw_split(toy_root / "cityscapes", 1)
    path = tmp_path / "s.txt"
    path.write_bytes(("\ufeff" + "\r\n".join(names) + "\r\n\r\n  \r\n").encode("utf-8"))
    assert load_split(path, toy_root / "cityscapes").names == names


@pytest.mark.data
@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"\x80\x04\x95binary", "is not UTF-8 text (byte 0 is 0x80)"),
        (b"a\x00b", "is binary (it holds NUL bytes)"),
        (b"", "is empty; expected a YAML mapping of sections"),
        (b"just a string\n", "holds a str, not a YAML mapping of sections"),
        (b"data: [unclosed\n", "is not valid YAML at line 2"),
        (b"\xef\xbb\xbfdata:\n  nonsense_key: 1\n", "nonsense_key"),
    ],
)
def test_a_damaged_config_yaml_in_a_run_folder_is_named(
    toy_root, tmp_path, capsys, weights, content, said
):
    folder = tmp_path / "e"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "latest.pt").write_bytes(b"")  # a run that had checkpointed
    (folder / "config.yaml").write_bytes(content)
    code, err = train(capsys, toy_root, tmp_path, weights, "--continue_train")
    fix = "restore that file, or start the run afresh under another --name"
    assert_user_error(code, err, f"cannot resume {folder}", f"config file {folder}", said, fix)


# ------------------------------------------------------------- every file read back is checked


def fake_run(folder: Path, **metrics) -> Path:
    folder.mkdir(parents=True)
    base = {"miou": 20.0, "per_class_iou": {}, "pixel_accuracy": 0.5, "step": 4,
            "method": "finetune", "source": "gta5", "shots": 1, "seed": 0,
            "split": "seed 0"}  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps({**base, **metrics}))
    (folder / "config.yaml").write_text("run:\n  name: x\n")
    return folder / "metrics.json"


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


@pytest.mark.training
def test_a_finished_run_with_a_truncated_metrics_json_is_evaluated_again_on_resume(
    toy_root, tmp_path, capsys, weights
):
    code, err = train(capsys, toy_root, tmp_path, weights, "--method", "finetune")
    assert code == 0, err[-3000:]
    path = tmp_path / "e" / "metrics.json"
    before = read_metrics(path)
    path.write_text(path.read_text()[:50])
    code, err = train(capsys, toy_root, tmp_path, weights, "--method", "finetune",
                      "--continue_train")  # fmt: skip
    assert code == 0, err[-3000:]
    assert read_metrics(path) == before


@pytest.mark.data
@pytest.mark.parametrize(
    ("name", "content", "said"),
    [
        ("runs.csv", b"", "sweep record {p} is damaged"),
        ("runs.csv", b"a,b\n1,2\n", "sweep record {p} lacks the columns"),
        ("sweep.json", b'{"methods": [', "sweep record {p} is damaged (not valid JSON"),
        ("sweep.json", b"[]", "sweep record {p} is damaged (not an object with the lists methods"),
    ],
)
def test_the_sweeps_own_records_are_checked(tmp_path, name, content, said):
    path = tmp_path / name
    path.write_bytes(content)
    read = read_runs if name == "runs.csv" else read_grid
    with pytest.raises(DataError, match="delete it and re-run the sweep command") as raised:
        read(tmp_path)
    assert said.format(p=path) in str(raised.value)
    assert isinstance(read_runs(tmp_path / "nowhere"), pd.DataFrame)  # no record yet: none


@pytest.mark.training
@pytest.mark.parametrize(
    "content", [b"\x00\x01garbage\n\x00,", b"a,b\n1,2\n", b"step,loss\n2,0.5\n\x00\x00\n"]
)
def test_a_damaged_run_table_is_named_on_resume(toy_root, tmp_path, capsys, weights, content):
    flags = ["--method", "finetune", "--early_stop", "4", "--max_iters", "20"]
    code, err = train(capsys, toy_root, tmp_path, weights, *flags)
    assert code == 0, err[-3000:]
    (tmp_path / "e" / "metrics.json").unlink()  # a run that has more to do
    table = tmp_path / "e" / "history.csv"
    table.write_bytes(content)
    code, err = train(capsys, toy_root, tmp_path, weights, *flags, "--continue_train")
    assert_user_error(code, err, f"run table {table} is damaged",
                      "move the file away and resume with --continue_train")  # fmt: skip
    table.rename(tmp_path / "history.bad")  # as the message says
    code, err = train(capsys, toy_root, tmp_path, weights, *flags, "--continue_train")
    assert code == 0, err[-3000:]
    assert read_metrics(tmp_path / "e" / "metrics.json")["step"] == 4


@pytest.mark.data
def test_sweep_status_shows_no_progress_for_damaged_tables(tmp_path):
    from pixda_core.sweep import _progress

    run = tmp_path / "r"
    run.mkdir()
    (run / "history.csv").write_text("step,loss\n3,1.0\n")
    (run / "validations.csv").write_text("step,miou\n3,0.25\n")
    assert _progress(run) == (3, 25.0)
    (run / "history.csv").write_text("nostep\n1\n")
    (run / "validations.csv").write_bytes(b"step,miou\nx,\xff\n")
    assert _progress(run) == (None, None)


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


@pytest.mark.training
def test_a_finished_run_resumed_with_a_larger_early_stop_trains_on_as_one_longer_run(
    toy_root, tmp_path, capsys, weights
):
    ft = ("--method", "finetune")
    code, err = train(capsys, toy_root, tmp_path, weights, *ft)  # early_stop 2
    assert code == 0, err[-3000:]
    two = read_metrics(tmp_path / "e" / "metrics.json")
    # longer, and with other logistics (intervals, progress); what it computes is unchanged
    longer = ("--early_stop", "4", "--set", "run.log_every=1", "--set", "run.ckpt_every=1")
    code, err = train(capsys, toy_root, tmp_path, weights, *ft, "--continue_train", *longer)
    assert code == 0, err[-3000:]
    assert "with changed settings: adapt.early_stop: 2 -> 4; run.log_every: 10 -> 1" in err
    code, err = train(capsys, toy_root, tmp_path, weights, *ft, "--early_stop", "4", name="four")
    assert code == 0, err[-3000:]
    extended, four = (read_metrics(tmp_path / n / "metrics.json") for n in ("e", "four"))
    assert extended["step"] == four["step"] == 4
    for key in ("miou", "per_class_iou", "pixel_accuracy"):
        assert extended[key] == four[key], key
    ck = [load_checkpoint(tmp_path / n / "checkpoints" / "latest.pt") for n in ("e", "four")]
    assert all(torch.equal(ck[0]["model"][k], v) for k, v in ck[1]["model"].items())
    assert read_metrics(tmp_path / "e" / "metrics_step_2.json") == two  # kept, not lost
    assert "early_stop: 4" in (tmp_path / "e" / "config.yaml").read_text()

    # what changes the computation stays refused, saying what to do instead
    for flags, said in [
        (
            ("--early_stop", "3"),
            "adapt.early_stop: 4 -> 3 (a resume may raise it, never lower it)",
        ),
        (("--early_stop", "4", "--lr", "0.01"), "adapt.lr: 0.0025 -> 0.01"),
    ]:
        code, err = train(capsys, toy_root, tmp_path, weights, *ft, "--continue_train", *flags)
        assert_user_error(code, err, said, "start a new run under another --name")


@pytest.mark.training
def test_a_run_whose_distillation_began_cannot_be_extended(toy_root, tmp_path, capsys, weights):
    code, err = train(capsys, toy_root, tmp_path, weights, "--method", "pixda")
    assert code == 0, err[-3000:]
    code, err = train(capsys, toy_root, tmp_path, weights, "--method", "pixda",
                      "--continue_train", "--early_stop", "3")  # fmt: skip
    said = f"cannot extend {tmp_path / 'e'} to adapt.early_stop 3: its main phase ended at step 2"
    assert_user_error(code, err, said, "its distillation has begun")
    assert read_metrics(tmp_path / "e" / "metrics.json")["step"] == 3  # left as it was
    assert "early_stop: 2" in (tmp_path / "e" / "config.yaml").read_text()


@pytest.mark.data
def test_a_name_longer_than_the_file_system_allows_is_refused_before_writing(
    toy_root, tmp_path, capsys, weights
):
    out = tmp_path / "out"
    code, err = train(capsys, toy_root, out, weights, "--method", "finetune", name="n" * 256)
    assert_user_error(code, err, "--name (config run.name)", "at most 255 bytes", "(256 bytes)")
    assert not out.exists()  # nothing written, not even the output folder
    code, err = train(capsys, toy_root, out, weights, "--method", "finetune", name="é" * 128)
    assert_user_error(code, err, "--name", "(256 bytes)")  # bytes, not characters


@pytest.mark.unit
@pytest.mark.parametrize("flag", ["--status", "--collect"])
def test_sweep_status_and_collect_on_a_missing_folder_exit_2_naming_it(tmp_path, capsys, flag):
    missing = tmp_path / "no_such_sweep"
    code = sweep_main([flag, str(missing)])
    err = capsys.readouterr().err
    assert code == 2 and f"error: {flag} {missing}: no such sweep folder" in err, err
    assert not missing.exists()


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
