"""Preparing the real downloads: check a root, write list files, convert labels, resize cache.

The scripts in ``data_prep/`` are thin command-line wrappers over these functions. A check
never stops at the first problem: it decodes every pair and reports all that is missing or
broken. Conversion writes trainId PNGs once, offline, with per-class pixel statistics beside
them (as DAFormer does); the cache is a dataset root in the same layout at the training size,
which the same loaders read without resizing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from .. import labels as L
from ..errors import DataError, run_cli
from . import cityscapes_files as cs
from . import gta5, synthia
from .cityscapes import Cityscapes
from .common import Sample, decode_pair, parse_size, read_rgb, require_dir, write_list_file
from .splits import CITIES

KINDS = ("gta5", "synthia", "cityscapes")
_CLASSES = {"gta5": gta5.GTA5, "synthia": synthia.Synthia, "cityscapes": Cityscapes}


def _parallel_map(fn, items: list, desc: str, workers=None, progress=True) -> list:
    """``[fn(x) for x in items]`` on a thread pool (PNG decoding releases the GIL), with tqdm."""
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        return list(tqdm(pool.map(fn, items), total=len(items), desc=desc, disable=not progress))


def _train_histogram(train_ids: np.ndarray) -> np.ndarray:
    """Pixel counts of one trainId map: the 19 classes, then everything ignored, (20,)."""
    hist = np.bincount(train_ids.ravel(), minlength=256)
    return np.append(hist[: L.NUM_CLASSES], hist[L.NUM_CLASSES :].sum())


def _stack_histograms(rows: list) -> np.ndarray:
    return np.stack(rows) if rows else np.zeros((0, L.NUM_CLASSES + 1), np.int64)


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise DataError(f"dataset {kind!r} is not one of {', '.join(KINDS)}")
    return kind


@dataclass
class Layout:
    """What a root holds: samples per group (``all``, or ``split/city``), orphan labels."""

    kind: str
    root: Path
    groups: dict[str, list[Sample]]
    orphan_labels: list[Path] = field(default_factory=list)

    @property
    def samples(self) -> list[Sample]:
        return [s for group in self.groups.values() for s in group]


def scan_layout(kind: str, root: str | os.PathLike) -> Layout:
    """Find every image of a dataset root and the label it should have, without decoding."""
    kind, root = _kind(kind), Path(root)
    if kind == "cityscapes":
        require_dir(root, "Cityscapes root", cs.LAYOUT)
        groups: dict[str, list[Sample]] = {}
        orphans: list[Path] = []
        for split in cs.SPLITS:
            img_base, lab_base = root / "leftImg8bit" / split, root / "gtFine" / split
            require_dir(img_base, f"Cityscapes {split} image folder", cs.LAYOUT)
            require_dir(lab_base, f"Cityscapes {split} label folder", cs.LAYOUT)
            by_city = defaultdict(list)
            for p in sorted(img_base.glob(f"*/*{cs.IMAGE_SUFFIX}")):
                name = p.relative_to(img_base).as_posix()
                by_city[name.split("/")[0]].append(Sample(name, p, lab_base / cs.label_name(name)))
            for city in sorted(set(CITIES[split]) | set(by_city)):
                groups[f"{split}/{city}"] = by_city.get(city, [])
            images = {s.label for g in by_city.values() for s in g}
            orphans += [
                p for p in sorted(lab_base.glob(f"*/*{cs.LABEL_SUFFIX}")) if p not in images
            ]
        return Layout(kind, root, groups, orphans)
    if kind == "gta5":
        img_dir, lab_dir, layout, what = root / "images", root / "labels", gta5.LAYOUT, "GTA5"
    else:
        img_dir, lab_dir = root / "RGB", root / "GT" / "LABELS"
        layout, what = synthia.LAYOUT, "SYNTHIA"
    require_dir(root, f"{what} root", layout)
    require_dir(img_dir, f"{what} image folder", layout)
    require_dir(lab_dir, f"{what} label folder", layout)
    samples = [Sample(p.name, p, lab_dir / p.name) for p in sorted(img_dir.glob("*.png"))]
    names = {s.name for s in samples}
    orphans = [p for p in sorted(lab_dir.glob("*.png")) if p.name not in names]
    return Layout(kind, root, {"all": samples}, orphans)


# ------------------------------------------------------------------------------------ check


@dataclass
class CheckReport:
    kind: str
    root: Path
    counts: dict[str, int]
    problems: list[tuple[str, str]]  # (kind of problem, message naming the file)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        lines = [f"{self.kind} at {self.root}: {sum(self.counts.values())} images"]
        splits = defaultdict(dict)
        for group, n in self.counts.items():
            split, _, city = group.partition("/")
            splits[split][city or split] = n
        for split, cities in splits.items():
            if len(cities) > 1 or split != "all":
                per = ", ".join(f"{c} {n}" for c, n in cities.items())
                lines.append(f"  {split}: {sum(cities.values())} ({per})")
        if self.ok:
            lines.append("  no problems found")
        else:
            by_kind = defaultdict(list)
            for what, msg in self.problems:
                by_kind[what].append(msg)
            lines.append(f"  {len(self.problems)} problem(s):")
            for what, msgs in by_kind.items():
                lines.append(f"  - {what}: {len(msgs)}")
                lines += [f"      {m}" for m in msgs[:10]]
                if len(msgs) > 10:
                    lines.append(f"      ... and {len(msgs) - 10} more")
        return "\n".join(lines)


def _check_sample(sample: Sample, read_label, max_id: int) -> tuple[str, str] | None:
    if not sample.label.is_file():
        return "missing label", f"{sample.image} has no label {sample.label}"
    try:
        decode_pair(sample, read_label, max_id)
    except DataError as exc:
        msg = str(exc)
        what = (
            "size mismatch"
            if "the pair must match" in msg
            else "ids out of range"
            if "outside the dataset's range" in msg
            else "unreadable file"
        )
        return what, msg
    return None


def check_dataset(
    kind: str, root: str | os.PathLike, workers: int | None = None, progress: bool = True
) -> CheckReport:
    """Decode every pair of a root and report everything missing or broken (never stops early).

    Raises DataError only when the root itself is missing or not in the expected layout.
    """
    layout = scan_layout(kind, root)
    cls = _CLASSES[layout.kind]
    problems: list[tuple[str, str]] = []
    for group, samples in layout.groups.items():
        if not samples:
            problems.append(("empty city", f"{group}: no images under {layout.root}"))
    problems += [("label without image", str(p)) for p in layout.orphan_labels]
    results = _parallel_map(
        lambda s: _check_sample(s, cls.read_label, cls.max_id),
        layout.samples,
        f"checking {kind}",
        workers,
        progress,
    )
    problems += [res for res in results if res is not None]
    counts = {g: len(s) for g, s in layout.groups.items()}
    return CheckReport(layout.kind, layout.root, counts, problems)


# ----------------------------------------------------------------------- lists and statistics


def write_lists(kind: str, root: str | os.PathLike, out: str | os.PathLike) -> list[Path]:
    """Write list files in the release's format: ``<kind>.txt``, or ``train.txt``/``val.txt``."""
    layout, out = scan_layout(kind, root), Path(out)
    if kind == "cityscapes":
        by_split = defaultdict(list)
        for group, samples in layout.groups.items():
            by_split[group.split("/")[0]] += [s.name for s in samples]
        return [write_list_file(out / f"{split}.txt", sorted(n)) for split, n in by_split.items()]
    return [write_list_file(out / f"{kind}.txt", [s.name for s in layout.samples])]


def label_histograms(kind: str, samples: list[Sample], workers=None, progress=True) -> np.ndarray:
    """Per-image pixel counts per trainId, (N, 20): 19 classes then ignore. One bincount each."""
    cls = _CLASSES[_kind(kind)]

    def count(sample: Sample) -> np.ndarray:
        return _train_histogram(cls.lut[cls.read_label(sample.label)])

    return _stack_histograms(_parallel_map(count, samples, f"counting {kind}", workers, progress))


def class_frequencies(hists: np.ndarray) -> pd.DataFrame:
    """Per-class totals from :func:`label_histograms`: pixels, share of labelled pixels, and
    the number of images containing the class."""
    pixels = hists[:, : L.NUM_CLASSES].sum(0)
    labelled = max(int(pixels.sum()), 1)
    return pd.DataFrame(
        {
            "class": list(L.CLASS_NAMES),
            "pixels": pixels.astype(np.int64),
            "share": pixels / labelled,
            "images": (hists[:, : L.NUM_CLASSES] > 0).sum(0),
        }
    )


def convert_labels(
    kind: str, root: str | os.PathLike, out: str | os.PathLike, workers=None, progress=True
) -> Path:
    """Write every label once as a trainId PNG (``*_labelTrainIds.png``, 255 = ignore), keeping
    its path relative to the root, plus ``class_stats.json`` (per-class totals) and
    ``sample_class_stats.json`` (per-image pixel counts, for class-aware sampling)."""
    layout, out = scan_layout(kind, root), Path(out)
    cls = _CLASSES[layout.kind]
    samples = [s for s in layout.samples if s.label.is_file()]

    def convert(sample: Sample) -> np.ndarray:
        train_ids = cls.lut[cls.read_label(sample.label)]
        rel = sample.label.relative_to(layout.root)
        dst = out / rel.parent / (rel.stem.removesuffix("_gtFine_labelIds") + "_labelTrainIds.png")
        dst.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(train_ids).save(dst, compress_level=1)
        return _train_histogram(train_ids)

    hists = _stack_histograms(
        _parallel_map(convert, samples, f"converting {kind}", workers, progress)
    )
    freq = class_frequencies(hists)
    stats = {
        "dataset": kind,
        "root": str(layout.root),
        "images": len(samples),
        "ignore_pixels": int(hists[:, -1].sum()),
        "classes": freq.set_index("class")[["pixels", "share", "images"]].to_dict("index"),
    }
    (out / "class_stats.json").write_text(json.dumps(stats, indent=1) + "\n")
    per_image = {
        s.name: {L.CLASS_NAMES[c]: int(h[c]) for c in np.flatnonzero(h[: L.NUM_CLASSES])}
        for s, h in zip(samples, hists, strict=True)
    }
    (out / "sample_class_stats.json").write_text(json.dumps(per_image) + "\n")
    return out


# ------------------------------------------------------------------------------------ cache


def _resize_label(kind: str, path: Path, size: tuple[int, int]):
    """Nearest-resize a label file in its own encoding; returns (array, is_16bit_bgr)."""
    if kind == "synthia":
        synthia.Synthia.read_label(path)  # refuses non-16-bit files with a clear message
        arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        chans = [
            np.asarray(Image.fromarray(arr[..., c]).resize(size, Image.NEAREST)) for c in range(3)
        ]
        return np.stack(chans, -1).astype(np.uint16), True
    with Image.open(path) as img:
        palette = img.getpalette() if img.mode == "P" else None
        small = img.resize(size, Image.NEAREST)
        if palette:
            small.putpalette(palette)
        return small, False


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def write_cache(
    kind: str,
    root: str | os.PathLike,
    out: str | os.PathLike,
    size=(1024, 512),
    workers=None,
    progress=True,
) -> Path:
    """Write a pre-resized copy of a root, in the same layout, at the training ``size``.

    Images are resized bicubic and labels nearest in their own encoding, exactly as the loaders
    do, so a loader reading the cache at the same size returns the same tensors without
    decoding full-size PNGs. Cityscapes val is linked (or copied) unchanged: its labels stay at
    full resolution for the metric, and the loader resizes only the image.
    """
    layout, out, size = scan_layout(kind, root), Path(out), parse_size(size)
    if out.resolve() == layout.root.resolve():
        raise DataError(f"cache folder {out} is the dataset root itself; choose another --out")

    def one(sample: Sample) -> None:
        dst_img = out / sample.image.relative_to(layout.root)
        dst_lab = out / sample.label.relative_to(layout.root)
        dst_img.parent.mkdir(parents=True, exist_ok=True)
        dst_lab.parent.mkdir(parents=True, exist_ok=True)
        if kind == "cityscapes" and dst_lab.relative_to(out).parts[1] == "val":
            _link_or_copy(sample.image, dst_img)
            _link_or_copy(sample.label, dst_lab)
            return
        img = read_rgb(sample.image)
        (img.resize(size, Image.BICUBIC) if img.size != size else img).save(
            dst_img, compress_level=1
        )
        lab, is16 = _resize_label(kind, sample.label, size)
        if is16:
            if not cv2.imwrite(str(dst_lab), lab):
                raise DataError(f"could not write {dst_lab}")
        else:
            lab.save(dst_lab, compress_level=1)

    samples = [s for s in layout.samples if s.label.is_file()]
    _parallel_map(one, samples, f"caching {kind}", workers, progress)
    (out / "cache.json").write_text(
        json.dumps({"dataset": kind, "source": str(layout.root), "size": list(size)}) + "\n"
    )
    return out


# ---------------------------------------------------------------------- command-line entries


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("dataset", choices=KINDS, help="which layout the root is in")
    p.add_argument("root", help="the dataset folder as downloaded and unpacked")
    p.add_argument(
        "--workers", type=int, default=None, help="decoding threads (default: all cores)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


@run_cli
def main_check(argv=None) -> int:
    p = _parser(
        "check_dataset.py",
        "Check a GTA5, SYNTHIA or Cityscapes root: counts per split and city, missing labels, "
        "unreadable files, image/label size mismatches, label ids out of range. Exit 0 when "
        "clean, 1 when problems were found, 2 when the root is not in the expected layout.",
    )
    args = p.parse_args(argv)
    report = check_dataset(args.dataset, args.root, args.workers, progress=not args.quiet)
    print(report.summary())
    return 0 if report.ok else 1


@run_cli
def main_lists(argv=None) -> int:
    p = _parser("make_lists.py", "Write list files (one name per line, the release's format).")
    p.add_argument("--out", required=True, help="folder for the list files")
    args = p.parse_args(argv)
    for path in write_lists(args.dataset, args.root, args.out):
        print(f"wrote {path} ({len(path.read_text().splitlines())} names)")
    return 0


@run_cli
def main_convert(argv=None) -> int:
    p = _parser(
        "convert_labels.py",
        "Convert labels once to trainId PNGs (255 = ignore) and write per-class pixel "
        "statistics (class_stats.json, sample_class_stats.json) beside them.",
    )
    p.add_argument("--out", required=True, help="output folder (mirrors the label folders)")
    args = p.parse_args(argv)
    out = convert_labels(args.dataset, args.root, args.out, args.workers, not args.quiet)
    print(f"wrote trainId labels and statistics to {out}")
    return 0


@run_cli
def main_cache(argv=None) -> int:
    p = _parser(
        "make_cache.py",
        "Write a pre-resized copy of a root in the same layout at the training size; point the "
        "loaders at it with the same size to skip full-size PNG decoding.",
    )
    p.add_argument("--out", required=True, help="cache folder (a new dataset root)")
    p.add_argument("--size", default="1024,512", help="W,H (default: 1024,512)")
    args = p.parse_args(argv)
    out = write_cache(args.dataset, args.root, args.out, args.size, args.workers, not args.quiet)
    print(f"wrote the {args.dataset} cache at {args.size} to {out}")
    return 0
