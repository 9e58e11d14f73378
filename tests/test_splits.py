from collections import Counter

import pytest

from pixda_core.data import TRAIN_CITIES, draw_split, load_split, read_split, write_split
from pixda_core.errors import DataError

pytestmark = pytest.mark.data


def test_draw_n_per_city_stable_per_seed(toy_root):
    root = toy_root / "cityscapes"
    a = draw_split(root, 2, seed=0)
    assert len(a) == 36
    assert Counter(n.split("/")[0] for n in a) == {c: 2 for c in TRAIN_CITIES}
    assert len(set(a)) == 36
    assert draw_split(root, 2, seed=0) == a
    assert any(draw_split(root, 2, seed=s) != a for s in (1, 2, 3))
    assert set(draw_split(root, 3, seed=7)) == set(draw_split(root, 3, seed=0))  # all 3 of 3


def test_roundtrip_in_release_format(toy_root, tmp_path):
    names = draw_split(toy_root / "cityscapes", 1, seed=5)
    path = write_split(tmp_path / "run" / "split.txt", names)
    lines = path.read_text().splitlines()
    assert lines[0].startswith("aachen/aachen_") and lines[0].endswith("_000019_leftImg8bit.png")
    assert read_split(path) == names
    assert load_split(path, toy_root / "cityscapes").names == names


def test_more_shots_than_a_city_has(toy_root):
    with pytest.raises(
        DataError, match=r"4-shot split asks for 4 images of 'aachen' but .* has 3"
    ):
        draw_split(toy_root / "cityscapes", 4)
    with pytest.raises(DataError, match="shots must be a positive integer"):
        draw_split(toy_root / "cityscapes", 0)


def test_city_missing_from_root(toy_copy):
    import shutil

    shutil.rmtree(toy_copy / "cityscapes" / "leftImg8bit" / "train" / "ulm")
    with pytest.raises(DataError, match="images of 'ulm' but .* has 0"):
        draw_split(toy_copy / "cityscapes", 1)


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


def test_split_naming_missing_image_or_val_city(toy_root, tmp_path):
    p = tmp_path / "s.txt"
    p.write_text("aachen/aachen_000099_000019_leftImg8bit.png\n")
    with pytest.raises(DataError, match="1 image.* not found .*aachen_000099_000019"):
        load_split(p, toy_root / "cityscapes")
    p.write_text("lindau/lindau_000000_000019_leftImg8bit.png\n")
    with pytest.raises(DataError, match="'lindau', not a Cityscapes train city"):
        load_split(p, toy_root / "cityscapes")


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
