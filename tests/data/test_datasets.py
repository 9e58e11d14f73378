"""The three loaders (pixda_core.data: gta5, synthia, cityscapes, common) on the toy in the real
layouts, and what ``run.py`` says of a broken dataset root."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pixda_core.data import GTA5, MEAN_BGR, Cityscapes, Synthia, write_list_file
from pixda_core.errors import DataError
from tests.helpers import OTHER, SHOT, assert_user_error, train

pytestmark = pytest.mark.data


def two_shot_split(tmp_path):
    path = tmp_path / "split.txt"
    path.write_text(f"{OTHER}\n{SHOT}\n")
    return path


def test_items_at_training_size(toy_root):
    size = (64, 32)
    for ds in (
        GTA5(toy_root / "gta5", size=size),
        Synthia(toy_root / "synthia", size=size),
        Cityscapes(toy_root / "cityscapes", "train", size=size),
    ):
        item = ds[1]
        assert item["image"].shape == (3, 32, 64) and item["image"].dtype == torch.float32
        assert item["label"].shape == (32, 64) and item["label"].dtype == torch.int64
        assert 0 <= item["image"].min() and item["image"].max() <= 255
        values = set(item["label"].unique().tolist())
        assert values <= set(range(19)) | {255} and len(values) > 4


def test_resize_is_bicubic_image_and_nearest_label(toy_root):
    native = GTA5(toy_root / "gta5", size=None)
    small = GTA5(toy_root / "gta5", size=(48, 24))
    img, train_ids, _ = native.load_pair(0)
    expected_img = np.asarray(img.resize((48, 24), Image.BICUBIC), dtype=np.float32)
    expected_lab = np.asarray(Image.fromarray(train_ids).resize((48, 24), Image.NEAREST))
    item = small[0]
    assert (item["image"].permute(1, 2, 0).numpy() == expected_img).all()
    assert (item["label"].numpy() == expected_lab).all()


def test_val_keeps_full_resolution_label(toy_root):
    val = Cityscapes(toy_root / "cityscapes", "val", size=(48, 24))
    item = val[0]
    assert item["image"].shape == (3, 24, 48)
    assert item["label"].shape == (48, 96)  # the toy val label at its native size
    assert len(val) == 6 and sorted(set(val.cities)) == ["frankfurt", "lindau", "munster"]


def test_release_normalization_is_bgr_minus_mean(toy_root):
    plain = GTA5(toy_root / "gta5", size=(32, 16))[0]["image"]
    release = GTA5(toy_root / "gta5", size=(32, 16), normalization="release")[0]["image"]
    expected = plain.flip(0) - torch.tensor(MEAN_BGR, dtype=torch.float32)[:, None, None]
    assert torch.allclose(release, expected)


def test_list_file_selects_and_orders_images(toy_root, tmp_path):
    lst = write_list_file(tmp_path / "gta5.txt", ["00004.png", "00002.png"])
    ds = GTA5(toy_root / "gta5", size=None, list_file=lst)
    assert [ds[i]["name"] for i in range(len(ds))] == ["00004.png", "00002.png"]


def test_split_file_restricts_cityscapes(toy_root, tmp_path):
    names = [
        "aachen/aachen_000002_000019_leftImg8bit.png",
        "zurich/zurich_000000_000019_leftImg8bit.png",
    ]
    (tmp_path / "s.txt").write_text("\n".join(names) + "\n")
    ds = Cityscapes(toy_root / "cityscapes", "train", size=None, split_file=tmp_path / "s.txt")
    assert [s.name for s in ds.samples] == names


def test_missing_root_names_path_and_layout(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'nope'} does not exist.*images/NNNNN.png"):
        GTA5(tmp_path / "nope")


def test_wrong_layout(toy_root):
    with pytest.raises(DataError, match="SYNTHIA RGB folder .* does not exist"):
        Synthia(toy_root / "gta5")
    with pytest.raises(DataError, match="leftImg8bit/train"):
        Cityscapes(toy_root / "synthia")


def test_half_downloaded_labels(toy_copy):
    (toy_copy / "gta5" / "labels" / "00003.png").unlink()
    (toy_copy / "gta5" / "labels" / "00005.png").unlink()
    with pytest.raises(DataError, match=r"2 of 8 labels are missing .*00003.png"):
        GTA5(toy_copy / "gta5")


def test_corrupt_image_is_named(toy_copy):
    path = (
        toy_copy
        / "cityscapes"
        / "leftImg8bit"
        / "train"
        / "jena"
        / "jena_000001_000019_leftImg8bit.png"
    )
    path.write_bytes(path.read_bytes()[:200])
    ds = Cityscapes(toy_copy / "cityscapes", "train", size=(32, 16))
    index = [s.image for s in ds.samples].index(path)
    ds[index - 1]  # the neighbours still load
    with pytest.raises(DataError, match=f"image {path} cannot be decoded"):
        ds[index]


def test_image_label_size_mismatch_is_named(toy_copy):
    lab = toy_copy / "gta5" / "labels" / "00002.png"
    Image.open(lab).resize((30, 20), Image.NEAREST).save(lab)
    with pytest.raises(DataError, match=r"00002.png is 90x49 but its label .*00002.png is 30x20"):
        GTA5(toy_copy / "gta5", size=(32, 16))[1]


def test_label_ids_outside_the_map(toy_copy):
    lab = (
        toy_copy
        / "cityscapes"
        / "gtFine"
        / "val"
        / "munster"
        / "munster_000000_000019_gtFine_labelIds.png"
    )
    arr = np.array(Image.open(lab))
    arr[0, :3] = [40, 200, 40]
    Image.fromarray(arr).save(lab)
    ds = Cityscapes(toy_copy / "cityscapes", "val", size=None)
    with pytest.raises(
        DataError, match=r"munster_000000_000019_gtFine_labelIds.png holds ids \[40, 200\]"
    ):
        ds[[s.label for s in ds.samples].index(lab)]


def test_synthia_label_saved_as_8bit(toy_copy):
    lab = toy_copy / "synthia" / "GT" / "LABELS" / "0000001.png"
    Image.new("RGB", (60, 36)).save(lab)
    with pytest.raises(
        DataError, match=r"0000001.png is 8-bit with 3 channel\(s\); SYNTHIA labels must be"
    ):
        Synthia(toy_copy / "synthia", size=None)[1]


def test_list_file_escaping_root_and_empty(toy_root, tmp_path):
    (tmp_path / "bad.txt").write_text("00001.png\n../../etc/passwd\n")
    with pytest.raises(
        DataError, match=r"bad.txt line 2: '../../etc/passwd' escapes the dataset root"
    ):
        GTA5(toy_root / "gta5", list_file=tmp_path / "bad.txt")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(DataError, match="empty.txt is empty"):
        GTA5(toy_root / "gta5", list_file=tmp_path / "empty.txt")
    (tmp_path / "ghost.txt").write_text("99999.png\n")
    with pytest.raises(DataError, match="1 listed images do not exist.*99999.png"):
        GTA5(toy_root / "gta5", list_file=tmp_path / "ghost.txt")


def test_bad_options():
    with pytest.raises(DataError, match="normalization 'imagenet' is not one of none, release"):
        GTA5("x", normalization="imagenet")
    with pytest.raises(DataError, match=r"size '1024x' is not W,H"):
        GTA5("x", size="1024x")
    with pytest.raises(DataError, match="split 'test' is not one of train, val"):
        Cityscapes("x", split="test")


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


def test_label_ids_outside_the_map_stop_run_py(toy_copy, tmp_path, capsys, weights):
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


def test_one_normalisation_for_single_images_and_batches():
    from pixda_core.data.common import release_normalize

    x = torch.rand(2, 3, 4, 5) * 255
    out = release_normalize(x)
    mean = torch.tensor(MEAN_BGR).view(1, 3, 1, 1)
    assert torch.allclose(out, x.flip(1) - mean)
    assert torch.equal(release_normalize(x[0]), out[0])
