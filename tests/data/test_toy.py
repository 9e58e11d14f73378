"""The embedded toy benchmark (pixda_core.data.toy): layouts, encodings, the gap, refusals."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pixda_core import labels as L
from pixda_core.data import GTA5, Cityscapes, Synthia, toy
from pixda_core.errors import DataError
from tests.helpers import SPEC, assert_user_error, train

pytestmark = pytest.mark.data


def _city_scene_index(name: str) -> int:
    from pixda_core.data.splits import TRAIN_CITIES, VAL_CITIES

    city, rest = name.split("/")
    seq = int(rest.split("_")[1])
    cities = TRAIN_CITIES if city in TRAIN_CITIES else VAL_CITIES
    return cities.index(city) * 10000 + seq


def _class_shares(domain: str, n: int = 24) -> np.ndarray:
    hist = np.zeros(256)
    for i in range(n):
        _, classes, _ = toy.make_scene(domain, i, 0, (128, 64))
        hist += np.bincount(toy.DRAW_TO_TRAINID[classes].ravel(), minlength=256)
    return hist[:19] / hist[:19].sum()


def _mean_colour_per_class(domain: str, gap: float) -> np.ndarray:
    sums, counts = np.zeros((19, 3)), np.zeros(19)
    for i in range(8):
        image, classes, _ = toy.make_scene(domain, i, 0, (128, 64), gap)
        t = toy.DRAW_TO_TRAINID[classes].ravel()
        keep = t < 19
        np.add.at(sums, t[keep], image.reshape(-1, 3)[keep])
        counts += np.bincount(t[keep], minlength=19)
    return sums / np.maximum(counts, 1)[:, None]


def test_a_toy_benchmark_of_an_older_generator(toy_copy, tmp_path, capsys, weights):
    """Never mixed with the current one: refused before anything is written, saying how to
    write it again."""
    import json

    manifest = toy_copy / "toy.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "version": 1}))
    code, err = train(capsys, toy_copy, tmp_path / "out", weights)
    assert_user_error(code, err, toy_copy, "format 1", "format 2", "--force")
    assert not (tmp_path / "out" / "e").exists()


def test_scene_is_deterministic_per_seed():
    a = toy.make_scene("gta5", 4, seed=1, size=(96, 48))
    b = toy.make_scene("gta5", 4, seed=1, size=(96, 48))
    c = toy.make_scene("gta5", 4, seed=2, size=(96, 48))
    assert all((x == y).all() for x, y in zip(a, b, strict=True))
    assert not (a[1] == c[1]).all()


def test_sizes_follow_the_real_ratios():
    assert toy.domain_size("cityscapes", (2048, 1024)) == (2048, 1024)
    assert toy.domain_size("gta5", (2048, 1024)) == (1914, 1052)
    assert toy.domain_size("synthia", (2048, 1024)) == (1280, 760)
    assert toy.domain_size("gta5", (256, 128)) == (239, 132)


def test_written_layouts_and_encodings(toy_root):
    assert json.loads((toy_root / "toy.json").read_text()) == SPEC.to_dict()
    gta_label = Image.open(toy_root / "gta5" / "labels" / "00001.png")
    assert gta_label.mode == "P"  # palettised, as GTA5 ships
    raw = cv2.imread(
        str(toy_root / "synthia" / "GT" / "LABELS" / "0000000.png"), cv2.IMREAD_UNCHANGED
    )
    assert raw.dtype == np.uint16 and raw.ndim == 3 and raw.shape[2] == 3
    _, classes, instances = toy.make_scene("synthia", 0, SPEC.seed, SPEC.size, SPEC.gap)
    assert (raw[..., 2] == toy.DRAW_TO_SYNTHIA_ID[classes]).all()  # class in R (BGR index 2)
    assert (raw[..., 1] == instances).all() and instances.max() > 0  # instance ids in G
    cities = sorted(p.name for p in (toy_root / "cityscapes" / "leftImg8bit" / "train").iterdir())
    assert len(cities) == 18 and cities[0] == "aachen"
    val = sorted(p.name for p in (toy_root / "cityscapes" / "gtFine" / "val").iterdir())
    assert val == ["frankfurt", "lindau", "munster"]
    assert (
        toy_root
        / "cityscapes"
        / "gtFine"
        / "val"
        / "lindau"
        / "lindau_000001_000019_gtFine_labelIds.png"
    ).is_file()


@pytest.mark.parametrize(
    "domain,make,index,name",
    [
        ("gta5", lambda r: GTA5(r / "gta5", size=None), 2, "00003.png"),
        ("synthia", lambda r: Synthia(r / "synthia", size=None), 5, "0000005.png"),
        ("cityscapes/train", lambda r: Cityscapes(r / "cityscapes", "train", size=None),
         4, "bochum/bochum_000001_000019_leftImg8bit.png"),
        ("cityscapes/val", lambda r: Cityscapes(r / "cityscapes", "val", size=None),
         3, "lindau/lindau_000001_000019_leftImg8bit.png"),
    ],
)  # fmt: skip
def test_loaders_decode_exactly_what_the_generator_drew(toy_root, domain, make, index, name):
    ds = make(toy_root)
    item = ds[index]
    assert item["name"] == name
    scene_index = index if "/" not in domain else _city_scene_index(name)
    image, classes, _ = toy.make_scene(domain, scene_index, SPEC.seed, SPEC.size, SPEC.gap)
    expected = toy.DRAW_TO_TRAINID[classes]
    assert item["label"].dtype.is_floating_point is False
    assert (item["label"].numpy() == expected).all()
    assert (item["image"].permute(1, 2, 0).numpy() == image).all()
    present = set(np.unique(expected)) - {255}
    assert len(present) >= 6  # a real street scene, not a blank


def test_lane_marks_ego_and_void_decode_as_the_real_datasets_would():
    assert toy.DRAW_TO_TRAINID[toy.LANE] == 0  # road
    assert toy.DRAW_TO_SYNTHIA_ID[toy.LANE] == 22 and L.SYNTHIA_LUT[22] == 0
    assert L.CITYSCAPES_LUT[toy.DRAW_TO_CITYSCAPES_ID[toy.EGO]] == 255
    assert L.CITYSCAPES_LUT[toy.DRAW_TO_CITYSCAPES_ID[toy.VOID]] == 255
    # every drawn class round-trips through each encoding to the same trainId
    assert (L.CITYSCAPES_LUT[toy.DRAW_TO_CITYSCAPES_ID] == toy.DRAW_TO_TRAINID).all()
    syn = L.SYNTHIA_LUT[toy.DRAW_TO_SYNTHIA_ID]
    assert (syn[:20] == toy.DRAW_TO_TRAINID[:20]).all() and (syn[20:] == 255).all()


@pytest.mark.parametrize("domain", ["gta5", "synthia", "cityscapes/train"])
def test_street_scene_imbalance(domain):
    share = _class_shares(domain)
    big = [L.CLASS_NAMES.index(c) for c in ("road", "building", "vegetation", "sky")]
    rare = [L.CLASS_NAMES.index(c) for c in ("pole", "traffic light", "traffic sign", "rider")]
    assert share[big].min() > 0.08
    assert share[rare].max() < 0.02  # real Cityscapes: pole ~1.2%, the others well under 1%
    assert share[rare].max() * 8 < share[big].min()
    assert share[big].sum() > 0.6


def test_gap_controls_the_appearance_shift():
    def shift(gap):
        a = _mean_colour_per_class("gta5", gap)
        b = _mean_colour_per_class("cityscapes/train", gap)
        common = [0, 1, 2, 8, 10, 13]
        return np.abs(a[common] - b[common]).mean()

    none, default = shift(0.0), shift(1.0)
    assert none < 12  # same look: only layout and instance colours differ
    assert default > 2.5 * none and default > 20  # looks, not colours: a smaller shift


def test_generate_refuses_a_folder_with_other_settings(toy_copy):
    with pytest.raises(DataError, match="other settings"):
        toy.generate(toy_copy, toy.ToySpec(seed=99), progress=False)
    assert toy.generate(toy_copy, SPEC, progress=False) == toy_copy  # same spec: up to date


def test_cli_rejects_bad_size_without_traceback(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pixda_core",
            "toy",
            "--out",
            str(tmp_path / "t"),
            "--size",
            "4",
            "3000",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert "--size 4 3000" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "t").exists()


def test_source_looks_part_way_to_the_target_are_recorded_and_read_back(toy_root):
    spec = toy.ToySpec()
    distances = [toy.scene_look("gta5", i, 0, 1.0, spec.mixed_share)[2] for i in range(300)]
    mixed = [d for d in distances if d < 1.0]
    assert abs(len(mixed) / 300 - 1 / 3) < 0.08  # a third, drawn per image
    assert min(mixed) >= 0.0 and 0.3 < np.mean(mixed) < 0.7  # uniform over the way there
    # a mixed image's look lies on the way from the source's to the target's (before the
    # per-image weather), as far from the target's as recorded
    src, trg = toy.scaled_look("gta5", 1.0), toy.scaled_look("cityscapes", 1.0)
    t = 1 - mixed[0]
    assert toy._lerp(src, trg, t).blur == pytest.approx(t * trg.blur)
    assert toy._lerp(src, trg, t).noise == pytest.approx(src.noise + t * (trg.noise - src.noise))
    # the toy folder records every source image's distance; the reader gives one source's
    table = pd.read_csv(toy_root / toy.LOOKS_FILE)
    assert set(table["dataset"]) == {"gta5", "synthia"} and len(table) == 16
    read = toy.look_distances(toy_root / "gta5")
    assert sorted(read) == sorted(p.name for p in (toy_root / "gta5" / "images").iterdir())
    expected = {
        name: toy.scene_look(d, j, SPEC.seed, SPEC.gap, SPEC.mixed_share)[2]
        for d, j, name in toy.iter_scenes(SPEC)
        if d == "gta5"
    }
    assert read == pytest.approx(expected)
    assert toy.look_distances(toy_root / "cityscapes") == {}  # no source images there
    assert toy.look_distances(toy_root.parent) is None  # not a toy dataset root


def test_a_damaged_look_table_is_named(toy_copy):
    (toy_copy / toy.LOOKS_FILE).write_text("dataset,name\ngta5,00001.png\n")
    with pytest.raises(DataError, match=f"{toy.LOOKS_FILE}.*damaged.*--force"):
        toy.look_distances(toy_copy / "gta5")


def test_cities_differ_in_look_and_layout_and_gap_zero_has_one_look():
    looks = [toy.city_look(c, 0, 1.0) for c in range(18)]
    assert len({round(x.brightness, 3) for x in looks}) == 18
    assert np.std([x.contrast for x in looks]) > 0.03
    layouts = [toy.city_layout(c, 0) for c in range(18)]
    assert np.std([x.cars for x in layouts]) > 0.5
    # at gap 0 every city, and the target images, take the neutral look: only the weather
    # that every domain shares varies
    assert all(toy.city_look(c, 0, 0.0) == toy.NEUTRAL_LOOK for c in range(18))
    assert toy.scaled_look("gta5", 0.0) == toy.NEUTRAL_LOOK


def test_a_toy_of_an_older_generator_is_refused_saying_how(toy_copy, tmp_path):
    manifest = toy_copy / "toy.json"
    old = {**json.loads(manifest.read_text()), "version": 1}
    manifest.write_text(json.dumps(old))
    with pytest.raises(DataError, match=r"format 1 .*format 2.*--force"):
        toy.generate(toy_copy, SPEC, progress=False)
    with pytest.raises(DataError, match="format 1"):
        toy.check_current(toy_copy / "cityscapes")  # a dataset root of it, too
    assert toy.check_current(tmp_path) is None  # not a toy benchmark: nothing to say


#: small enough to write in about a second, long enough to be killed part-way
KILL_SPEC = toy.ToySpec(
    seed=5, size=(32, 16), num_gta5=300, num_synthia=6, train_per_city=1, val_per_city=1
)


def _toy_args(out, spec: toy.ToySpec = KILL_SPEC) -> list[str]:
    return [
        "--out", str(out), "--seed", str(spec.seed), "--size", *map(str, spec.size),
        "--num-gta5", str(spec.num_gta5), "--num-synthia", str(spec.num_synthia),
        "--train-per-city", str(spec.train_per_city), "--val-per-city", str(spec.val_per_city),
        "--quiet",
    ]  # fmt: skip


def _hashes(root) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def kill_reference(tmp_path_factory):
    """KILL_SPEC's toy written in one go: what an interrupted run must end up with."""
    return _hashes(toy.generate(tmp_path_factory.mktemp("ref") / "toy", KILL_SPEC, False))


def test_a_killed_toy_run_is_finished_by_the_same_command(tmp_path, kill_reference):
    out = tmp_path / "toy"
    partial = toy.partial_dir(out)
    command = [sys.executable, "-m", "pixda_core", "toy", *_toy_args(out)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (
        (partial / "gta5" / "images").is_dir()
        and len(os.listdir(partial / "gta5" / "images")) >= 10
    ):
        assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "no scene written in 60 s"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()  # nothing half-written where the toy is read from
    assert len(os.listdir(partial / "gta5" / "images")) < KILL_SPEC.num_gta5

    r = subprocess.run(command, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"toy benchmark written: {out}" in r.stdout
    assert _hashes(out) == kill_reference  # the same files, byte for byte, as in one go
    assert not partial.exists()


def test_what_a_killed_run_left_is_finished_or_started_afresh(tmp_path, kill_reference):
    """As a kill leaves it: the spec recorded, the scenes before it written, the last one
    cut short; a run of another spec left its own partial folder."""
    out = tmp_path / "toy"
    partial = toy.partial_dir(out)
    for spec in (KILL_SPEC, replace(KILL_SPEC, seed=6, num_gta5=20)):
        partial.mkdir()
        (partial / toy.PARTIAL_FILE).write_text(json.dumps(spec.to_dict()))
        for sub in ("gta5/images", "gta5/labels", "synthia/RGB", "synthia/GT/LABELS"):
            (partial / sub).mkdir(parents=True)
        scenes = list(toy.iter_scenes(spec))
        for domain, index, name in scenes[:12]:
            drawn = toy.make_scene(domain, index, spec.seed, spec.size, spec.gap)
            toy.write_scene(partial, domain, name, *drawn)
        last = toy.scene_paths(partial, *scenes[11][::2])[1]
        last.write_bytes(last.read_bytes()[:40])  # killed while writing it
        assert toy.generate(out, KILL_SPEC, progress=False) == out
        assert _hashes(out) == kill_reference
        assert not partial.exists()
        toy.remove_toy(out)


def test_a_toy_left_unfinished_in_place_is_named_and_replaced_with_force(
    tmp_path, capsys, kill_reference
):
    """What the generator left at --out when it wrote there directly (before the partial
    folder): the source folders, some scenes, no toy.json."""
    out = tmp_path / "toy"
    for sub in ("gta5/images", "gta5/labels", "synthia/RGB", "synthia/GT/LABELS"):
        (out / sub).mkdir(parents=True)
    for domain, index, name in list(toy.iter_scenes(KILL_SPEC))[:5]:
        toy.write_scene(out, domain, name, *toy.make_scene(domain, index, 5, (32, 16)))
    capsys.readouterr()
    code = toy.main(_toy_args(out))
    assert_user_error(code, capsys.readouterr().err, out, "unfinished toy benchmark", "--force")
    assert len(list((out / "gta5" / "images").iterdir())) == 5  # left as it was
    assert toy.main([*_toy_args(out), "--force"]) == 0
    assert _hashes(out) == kill_reference


def test_a_folder_that_is_not_a_toy_is_refused_even_with_force(tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "gta5" / "images").mkdir(parents=True)
    (out / "notes.txt").write_text("keep me")
    for flags in ([], ["--force"]):
        capsys.readouterr()
        code = toy.main([*_toy_args(out), *flags])
        err = capsys.readouterr().err
        assert_user_error(code, err, out, "not a toy benchmark", "gta5, notes.txt", "--force")
        assert len(err.strip().splitlines()) == 1
    assert (out / "notes.txt").read_text() == "keep me"
    assert not toy.partial_dir(out).exists()
