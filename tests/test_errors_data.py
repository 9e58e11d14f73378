"""Bad data, as ``run.py`` users meet it: exit code 2, no traceback, the file or value named.

Problems visible from the folders (missing root, wrong layout, missing labels, split files,
shot counts) are found before anything is trained or written; problems inside a file (corrupt
image, size mismatch, ids outside the map, 8-bit SYNTHIA labels) stop the run at the first
batch that reads the file.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from .helpers import assert_user_error, cli, release_args

pytestmark = pytest.mark.data

SHOT = "jena/jena_000001_000019_leftImg8bit.png"
OTHER = "aachen/aachen_000000_000019_leftImg8bit.png"


def train(capsys, toy, out, weights, *extra):
    return cli(capsys, *release_args(toy, out), "--is_train", "--restore_from", weights, *extra)


def two_shot_split(tmp_path):
    path = tmp_path / "split.txt"
    path.write_text(f"{OTHER}\n{SHOT}\n")
    return path


def test_missing_root(toy_root, tmp_path, capsys, weights):
    missing = tmp_path / "nope" / "gta5"
    code, err = train(capsys, toy_root, tmp_path / "out", weights, "--source_dataroot", missing)
    assert_user_error(code, err, missing, "does not exist", "images/NNNNN.png")
    assert not (tmp_path / "out" / "e").exists()  # nothing written for a run that cannot start


def test_root_with_the_wrong_layout(toy_root, tmp_path, capsys, weights):
    code, err = train(capsys, toy_root, tmp_path, weights, "--source_dataset", "synthia")
    assert_user_error(code, err, "SYNTHIA RGB folder", toy_root / "gta5" / "RGB", "does not exist")


def test_target_root_with_the_wrong_layout(toy_root, tmp_path, capsys, weights):
    code, err = train(capsys, toy_root, tmp_path, weights, "--target_dataroot", toy_root / "gta5")
    assert_user_error(code, err, toy_root / "gta5" / "leftImg8bit", "does not exist")


def test_half_downloaded_dataset(toy_copy, tmp_path, capsys, weights):
    for name in ("00003.png", "00005.png"):
        (toy_copy / "gta5" / "labels" / name).unlink()
    code, err = train(capsys, toy_copy, tmp_path / "out", weights)
    assert_user_error(
        code,
        err,
        "2 of 8 labels are missing",
        toy_copy / "gta5" / "labels" / "00003.png",
        "is the download complete",
    )
    assert not (tmp_path / "out" / "e").exists()


def test_corrupt_image_read_by_a_worker(toy_copy, tmp_path, capsys, weights):
    path = toy_copy / "cityscapes" / "leftImg8bit" / "train" / SHOT
    path.write_bytes(path.read_bytes()[:300])
    code, err = train(
        capsys,
        toy_copy,
        tmp_path / "out",
        weights,
        "--method",
        "finetune",
        "--split_file",
        two_shot_split(tmp_path),
        "--num_workers",
        "1",
    )
    assert_user_error(code, err, f"image {path} cannot be decoded", "is the file complete")
    # the worker's traceback, pasted by the DataLoader into the message, is not shown
    assert "DataLoader worker" not in err
    assert (tmp_path / "out" / "e" / "config.yaml").exists()  # what was written is kept


def test_image_and_label_of_different_sizes(toy_copy, tmp_path, capsys, weights):
    for lab in (toy_copy / "gta5" / "labels").glob("*.png"):
        Image.open(lab).resize((30, 20), Image.NEAREST).save(lab)
    code, err = train(capsys, toy_copy, tmp_path, weights)
    assert_user_error(
        code,
        err,
        toy_copy / "gta5" / "images",
        "is 90x49 but its label",
        "is 30x20; the pair must match",
    )


def test_label_ids_outside_the_map(toy_copy, tmp_path, capsys, weights):
    lab = (
        toy_copy
        / "cityscapes"
        / "gtFine"
        / "train"
        / SHOT.replace("leftImg8bit.png", "gtFine_labelIds.png")
    )
    arr = np.array(Image.open(lab))
    arr[0, :2] = [200, 41]
    Image.fromarray(arr).save(lab)
    code, err = train(
        capsys,
        toy_copy,
        tmp_path,
        weights,
        "--method",
        "finetune",
        "--split_file",
        two_shot_split(tmp_path),
    )
    assert_user_error(code, err, f"label {lab} holds ids [41, 200]", "range 0..33")


def test_synthia_labels_saved_as_8bit(toy_copy, tmp_path, capsys, weights):
    for lab in (toy_copy / "synthia" / "GT" / "LABELS").glob("*.png"):
        Image.new("RGB", Image.open(lab).size, (3, 0, 0)).save(lab)
    code, err = train(
        capsys,
        toy_copy,
        tmp_path,
        weights,
        "--source_dataset",
        "synthia",
        "--source_dataroot",
        toy_copy / "synthia",
    )
    assert_user_error(
        code,
        err,
        toy_copy / "synthia" / "GT" / "LABELS",
        "is 8-bit with 3 channel",
        "16-bit three-channel",
    )


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


def test_split_file_that_does_not_exist(toy_root, tmp_path, capsys, weights):
    code, err = train(capsys, toy_root, tmp_path, weights, "--split_file", tmp_path / "no.txt")
    assert_user_error(code, err, f"split file {tmp_path / 'no.txt'} does not exist")


def test_more_shots_than_a_city_has(toy_root, tmp_path, capsys, weights):
    code, err = train(capsys, toy_root, tmp_path, weights, "--num_shots", "4")
    assert_user_error(code, err, "4-shot split asks for 4 images of 'aachen'", "has 3")


def test_a_toy_benchmark_of_an_older_generator(toy_copy, tmp_path, capsys, weights):
    """Never mixed with the current one: refused before anything is written, saying how to
    write it again."""
    import json

    manifest = toy_copy / "toy.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "version": 1}))
    code, err = train(capsys, toy_copy, tmp_path / "out", weights)
    assert_user_error(code, err, toy_copy, "format 1", "format 2", "--force")
    assert not (tmp_path / "out" / "e").exists()
