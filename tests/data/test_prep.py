"""Preparing the real downloads (pixda_core.data.prep and the data_prep scripts)."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from pixda_core.data import GTA5, Cityscapes, Synthia
from pixda_core.data.prep import check_dataset, convert_labels, write_cache, write_lists
from tests.helpers import ROOT

pytestmark = pytest.mark.data


def _script(name, *args):
    return subprocess.run(
        [sys.executable, str(ROOT / "data_prep" / name), *map(str, args)],
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize("kind", ["gta5", "synthia", "cityscapes"])
def test_clean_roots_pass(toy_root, kind):
    report = check_dataset(kind, toy_root / kind, progress=False)
    assert report.ok, report.summary()
    assert sum(report.counts.values()) == {"gta5": 8, "synthia": 8, "cityscapes": 60}[kind]


def test_check_reports_every_problem_without_stopping(toy_copy):
    cs = toy_copy / "cityscapes"
    lab_dir = cs / "gtFine" / "train"
    (lab_dir / "erfurt" / "erfurt_000000_000019_gtFine_labelIds.png").unlink()  # half download
    corrupt = cs / "leftImg8bit" / "train" / "ulm" / "ulm_000002_000019_leftImg8bit.png"
    corrupt.write_bytes(corrupt.read_bytes()[:100])
    small = lab_dir / "jena" / "jena_000001_000019_gtFine_labelIds.png"
    Image.open(small).resize((10, 10)).save(small)
    odd = lab_dir / "ulm" / "ulm_000000_000019_gtFine_labelIds.png"
    arr = np.array(Image.open(odd))
    arr[0, 0] = 77
    Image.fromarray(arr).save(odd)
    for p in (cs / "leftImg8bit" / "train" / "weimar").iterdir():
        p.unlink()

    r = _script("check_dataset.py", "cityscapes", cs, "--quiet")
    assert r.returncode == 1, r.stderr
    out = r.stdout
    assert "missing label: 1" in out and "erfurt_000000_000019_gtFine_labelIds.png" in out
    assert "unreadable file: 1" in out and "ulm_000002_000019_leftImg8bit.png" in out
    assert "size mismatch: 1" in out and "jena_000001_000019" in out
    assert "ids out of range: 1" in out and "[77]" in out
    assert "empty city: 1" in out and "train/weimar" in out
    assert "label without image" in out  # weimar's labels are left behind
    assert "weimar 0" in out


def test_check_wrong_root_exit_2_no_traceback(tmp_path):
    r = _script("check_dataset.py", "synthia", tmp_path / "absent")
    assert r.returncode == 2
    assert f"SYNTHIA root {tmp_path / 'absent'} does not exist" in r.stderr
    assert "RGB/NNNNNNN.png" in r.stderr and "Traceback" not in r.stderr
    r = _script("check_dataset.py", "gta6", tmp_path)
    assert r.returncode == 2 and "invalid choice: 'gta6'" in r.stderr


def test_every_script_has_help(monkeypatch, capsys):
    # each script as `python data_prep/NAME --help` runs it, in this process (runpy): the
    # process boundary is tested by the check above
    for name in ("check_dataset.py", "make_lists.py", "convert_labels.py", "make_cache.py"):
        script = ROOT / "data_prep" / name
        monkeypatch.setattr(sys, "argv", [str(script), "--help"])
        with pytest.raises(SystemExit) as done:
            runpy.run_path(str(script), run_name="__main__")
        assert done.value.code in (0, None), name
        printed = capsys.readouterr().out
        assert "usage:" in printed and "gta5" in printed, name


def test_lists_are_read_back_by_the_loaders(toy_root, tmp_path):
    paths = write_lists("cityscapes", toy_root / "cityscapes", tmp_path)
    assert sorted(p.name for p in paths) == ["train.txt", "val.txt"]
    assert len((tmp_path / "train.txt").read_text().splitlines()) == 54
    (gta_list,) = write_lists("gta5", toy_root / "gta5", tmp_path)
    ds = GTA5(toy_root / "gta5", size=None, list_file=gta_list)
    assert [s.name for s in ds.samples] == [f"{i:05d}.png" for i in range(1, 9)]


def test_convert_writes_trainids_and_statistics(toy_root, tmp_path):
    out = convert_labels("synthia", toy_root / "synthia", tmp_path / "conv", progress=False)
    ds = Synthia(toy_root / "synthia", size=None)
    total = np.zeros(256, np.int64)
    for i in range(len(ds)):
        label = ds[i]["label"].numpy()
        written = np.array(Image.open(out / "GT" / "LABELS" / f"{i:07d}_labelTrainIds.png"))
        assert (written == label).all()
        total += np.bincount(label.ravel(), minlength=256)
    stats = json.loads((out / "class_stats.json").read_text())
    assert stats["images"] == 8 and stats["ignore_pixels"] == total[255]
    assert stats["classes"]["road"]["pixels"] == total[0]
    assert abs(sum(c["share"] for c in stats["classes"].values()) - 1) < 1e-9
    per_image = json.loads((out / "sample_class_stats.json").read_text())
    assert per_image["0000003.png"]["sky"] == int((ds[3]["label"] == 10).sum())


@pytest.mark.parametrize(
    "kind,make",
    [
        ("gta5", lambda r, s: GTA5(r, size=s)),
        ("synthia", lambda r, s: Synthia(r, size=s)),
        ("cityscapes", lambda r, s: Cityscapes(r, "val", size=s)),
    ],
)
def test_cache_gives_the_same_tensors(toy_root, tmp_path, kind, make):
    cache = write_cache(kind, toy_root / kind, tmp_path / "cache", size=(40, 20), progress=False)
    original, cached = make(toy_root / kind, (40, 20)), make(cache, (40, 20))
    assert len(original) == len(cached)
    for i in range(len(original)):
        a, b = original[i], cached[i]
        assert a["name"] == b["name"]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    if kind == "cityscapes":
        assert cached[0]["label"].shape == (48, 96)  # val labels stay at full resolution
