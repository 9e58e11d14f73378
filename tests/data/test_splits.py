"""Few-shot splits (pixda_core.data.splits): drawing, reading, the published files, and what
``run.py`` says of a bad split."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch

from pixda_core.data import TRAIN_CITIES, draw_split, load_split, read_split, write_split
from pixda_core.data.splits import PUBLISHED, choose_split, published_split
from pixda_core.errors import DataError
from pixda_core.train.rundir import read_metrics
from tests.helpers import OTHER, assert_user_error, cli, per_city, release_args, train


@pytest.fixture(scope="module")
def published_root(toy_root, tmp_path_factory) -> Path:
    """A toy Cityscapes root whose train images carry the names of all published splits
    (each a copy of a toy image of the same city)."""
    root = tmp_path_factory.mktemp("published") / "toy"
    shutil.copytree(toy_root, root)
    train, labels = (root / "cityscapes" / d / "train" for d in ("leftImg8bit", "gtFine"))
    toy_train = toy_root / "cityscapes" / "leftImg8bit" / "train"
    toy_labels = toy_root / "cityscapes" / "gtFine" / "train"
    for n in range(1, 6):
        for name in read_split(published_split(n)):
            city, file = name.split("/")
            image = sorted((toy_train / city).glob("*.png"))[0]
            label = toy_labels / city / image.name.replace("leftImg8bit", "gtFine_labelIds")
            shutil.copyfile(image, train / name)
            shutil.copyfile(label, labels / city / file.replace("leftImg8bit", "gtFine_labelIds"))
    return root


@pytest.mark.data
@pytest.mark.parametrize(
    "content, words",
    [
        ("", ["is empty; expected one"]),
        ("\n  \n", ["is empty"]),
        (f"{OTHER}\njena_000001.png\n", ["line 2: 'jena_000001.png' is not of the form"]),
        ("aachen/aachen_000099_000019_leftImg8bit.png\n",
         ["1 image(s) not found", "aachen_000099_000019"]),
        (f"../{OTHER}\n", ["line 1", "escapes the dataset root"]),
        (f"/etc/{OTHER}\n", ["line 1", "escapes the dataset root"]),
        ("lindau/lindau_000000_000019_leftImg8bit.png\n", ["'lindau', not a Cityscapes train"]),
    ],
    ids=["empty", "blank-lines", "malformed", "missing-image", "dot-dot", "absolute", "val-city"],
)  # fmt: skip
def test_bad_split_files(toy_root, tmp_path, capsys, weights, content, words):
    split = tmp_path / "split.txt"
    split.write_text(content)
    code, err = train(capsys, toy_root, tmp_path / "out", weights, "--split_file", split)
    assert_user_error(code, err, f"split file {split}", *words)
    assert not (tmp_path / "out" / "e").exists()


@pytest.mark.data
def test_split_file_that_does_not_exist(toy_root, tmp_path, capsys, weights):
    code, err = train(capsys, toy_root, tmp_path, weights, "--split_file", tmp_path / "no.txt")
    assert_user_error(code, err, f"split file {tmp_path / 'no.txt'} does not exist")


@pytest.mark.data
def test_more_shots_than_a_city_has(toy_root, tmp_path, capsys, weights):
    code, err = train(capsys, toy_root, tmp_path, weights, "--num_shots", "4")
    assert_user_error(code, err, "4-shot split asks for 4 images of 'aachen'", "has 3")


@pytest.mark.unit
def test_the_published_splits_ship_with_their_licence():
    assert (PUBLISHED / "LICENSE").read_text().startswith("MIT License")
    assert "Copyright (c) 2021 Antonio Tavera" in (PUBLISHED / "LICENSE").read_text()
    for n in range(1, 6):
        names = read_split(published_split(n))
        cities = Counter(name.split("/")[0] for name in names)
        assert len(names) == 18 * n and len(cities) == 18 and set(cities.values()) == {n}
    five = read_split(published_split(5))
    assert [k for k, c in Counter(five).items() if c > 1] == [
        "zurich/zurich_000112_000019_leftImg8bit.png"
    ]
    assert published_split(6) is None


@pytest.mark.data
def test_the_published_split_is_chosen_where_its_images_are(published_root, toy_root):
    cs = published_root / "cityscapes"
    one = choose_split(cs, 1, run_seed=3)
    assert one.names == read_split(published_split(1)) and "published 1-shot" in one.how
    five = choose_split(cs, 5)
    assert five.names == read_split(published_split(5)) and len(five.names) == 90
    assert "zurich_000112_000019_leftImg8bit.png 2 times, kept as published" in five.how
    drawn = choose_split(cs, 1, split_seed=7)  # a seeded draw when asked for
    assert "drawn with seed 7" in drawn.how and drawn.names != one.names
    toy_only = choose_split(toy_root / "cityscapes", 1, run_seed=3)  # no published images
    assert "drawn with seed 3" in toy_only.how and "not in" in toy_only.how
    assert choose_split(cs, 6, run_seed=3).how.startswith("6 per city drawn with seed 3")


@pytest.mark.training
def test_a_1_shot_and_a_5_shot_run_use_the_published_splits(published_root, tmp_path, capsys,
                                                            weights):  # fmt: skip
    for shots in (1, 5):
        code, err = cli(
            capsys, *release_args(published_root, tmp_path, f"s{shots}"), "--is_train",
            "--restore_from", weights, "--method", "finetune", "--num_shots", shots,
            "--early_stop", "2", "--set", "data.val_batch_size=6",
        )  # fmt: skip
        assert code == 0, err[-2000:]
        assert f"target shots: the published {shots}-shot split" in err
        written = read_split(tmp_path / f"s{shots}" / "split.txt")
        assert written == read_split(published_split(shots))
    assert "kept as published" in err  # the 5-shot duplicate, said once


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


@pytest.mark.data
def test_split_files_with_a_bom_crlf_and_blank_lines_are_read(toy_root, tmp_path):
    names = draw_split(toy_root / "cityscapes", 1)
    path = tmp_path / "s.txt"
    path.write_bytes(("\ufeff" + "\r\n".join(names) + "\r\n\r\n  \r\n").encode("utf-8"))
    assert load_split(path, toy_root / "cityscapes").names == names


@pytest.mark.data
def test_draw_n_per_city_stable_per_seed(toy_root):
    root = toy_root / "cityscapes"
    a = draw_split(root, 2, seed=0)
    assert len(a) == 36
    assert Counter(n.split("/")[0] for n in a) == {c: 2 for c in TRAIN_CITIES}
    assert len(set(a)) == 36
    assert draw_split(root, 2, seed=0) == a
    assert any(draw_split(root, 2, seed=s) != a for s in (1, 2, 3))
    assert set(draw_split(root, 3, seed=7)) == set(draw_split(root, 3, seed=0))  # all 3 of 3


@pytest.mark.data
def test_roundtrip_in_release_format(toy_root, tmp_path):
    names = draw_split(toy_root / "cityscapes", 1, seed=5)
    path = write_split(tmp_path / "run" / "split.txt", names)
    lines = path.read_text().splitlines()
    assert lines[0].startswith("aachen/aachen_") and lines[0].endswith("_000019_leftImg8bit.png")
    assert read_split(path) == names
    assert load_split(path, toy_root / "cityscapes").names == names


@pytest.mark.data
def test_more_shots_than_a_city_has_stops_run_py(toy_root):
    with pytest.raises(
        DataError, match=r"4-shot split asks for 4 images of 'aachen' but .* has 3"
    ):
        draw_split(toy_root / "cityscapes", 4)
    with pytest.raises(DataError, match="shots must be a positive integer"):
        draw_split(toy_root / "cityscapes", 0)


@pytest.mark.data
def test_city_missing_from_root(toy_copy):
    import shutil

    shutil.rmtree(toy_copy / "cityscapes" / "leftImg8bit" / "train" / "ulm")
    with pytest.raises(DataError, match="images of 'ulm' but .* has 0"):
        draw_split(toy_copy / "cityscapes", 1)


@pytest.mark.data
def test_malformed_and_empty_split_files(tmp_path):
    p = tmp_path / "s.txt"
    p.write_text("aachen/aachen_000000_000019_leftImg8bit.png\naachen_000001.png\n")
    with pytest.raises(
        DataError, match=r"s.txt line 2: 'aachen_000001.png' is not of the form city/"
    ):
        read_split(p)
    p.write_text("")
    with pytest.raises(DataError, match="s.txt is empty"):
        read_split(p)
    p.write_text("../aachen/aachen_000000_000019_leftImg8bit.png\n")
    with pytest.raises(DataError, match="line 1: .* escapes the dataset root"):
        read_split(p)
    with pytest.raises(DataError, match="split file .*missing.txt does not exist"):
        read_split(tmp_path / "missing.txt")


@pytest.mark.data
def test_split_naming_missing_image_or_val_city(toy_root, tmp_path):
    p = tmp_path / "s.txt"
    p.write_text("aachen/aachen_000099_000019_leftImg8bit.png\n")
    with pytest.raises(DataError, match="1 image.* not found .*aachen_000099_000019"):
        load_split(p, toy_root / "cityscapes")
    p.write_text("lindau/lindau_000000_000019_leftImg8bit.png\n")
    with pytest.raises(DataError, match="'lindau', not a Cityscapes train city"):
        load_split(p, toy_root / "cityscapes")


@pytest.mark.data
def test_duplicates_are_reported_once_in_one_line_not_fatal(toy_root, tmp_path, capsys):
    names = draw_split(toy_root / "cityscapes", 1)
    p = write_split(tmp_path / "s.txt", names + names[3:4])
    for _ in range(3):  # read by several steps of a run: said once
        split = load_split(p, toy_root / "cityscapes")
    err = capsys.readouterr().err
    assert err == (
        f"warning: split file {p} lists some images more than once: {names[3]} (x2) (kept: "
        "each is drawn as often as it is listed)\n"
    )
    assert split.duplicates == {names[3]: 2} and len(split.names) == 19
