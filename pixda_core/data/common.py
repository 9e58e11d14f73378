"""What the three dataset loaders share: reading files, list files, resizing, normalisation.

Every read goes through a function here that turns a decoding failure into a
:class:`~pixda_core.errors.DataError` naming the file, so that no loader dies mid-epoch
without saying which file broke it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DataError
from ..textfiles import read_text

#: The release's per-channel mean, BGR order, subtracted from 0-255 images (no std division).
MEAN_BGR = (104.00699, 116.66877, 122.67891)
NORMALIZATIONS = ("none", "release")


def require_dir(path: Path, what: str, layout: str) -> None:
    """Raise a DataError naming ``path`` and the expected ``layout`` if it is not a folder."""
    if not path.exists():
        raise DataError(f"{what} {path} does not exist; expected the layout {layout}")
    if not path.is_dir():
        raise DataError(f"{what} {path} is not a folder; expected the layout {layout}")


def read_rgb(path: Path) -> Image.Image:
    """Decode an image file fully as RGB; a corrupt or unreadable file raises DataError."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"image {path} does not exist") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"image {path} cannot be decoded ({exc}); is the file complete?") from None


def read_label_8bit(path: Path) -> np.ndarray:
    """Read a single-channel 8-bit (L) or palettised (P) label PNG as raw ids, (H, W) uint8."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode not in ("L", "P"):
                raise DataError(
                    f"label {path} has mode {img.mode}; expected a single-channel 8-bit or "
                    "palettised PNG of label ids"
                )
            return np.array(img, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"label {path} does not exist") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"label {path} cannot be decoded ({exc}); is the file complete?") from None


def read_label_synthia(path: Path) -> np.ndarray:
    """Read a SYNTHIA 16-bit three-channel label PNG; returns the class ids, (H, W) uint16.

    Pillow cannot decode these files correctly, so OpenCV reads them unchanged; OpenCV's
    channel order is BGR, so the class (the file's R channel) is index 2.
    """
    if not path.is_file():
        raise DataError(f"label {path} does not exist")
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise DataError(f"label {path} cannot be decoded; is the file complete?")
    if arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[2] < 3:
        channels = 1 if arr.ndim == 2 else arr.shape[2]
        raise DataError(
            f"label {path} is {arr.dtype.itemsize * 8}-bit with {channels} channel(s); SYNTHIA "
            "labels must be the original 16-bit three-channel PNGs (class id in R, instance in G)"
        )
    return arr[:, :, 2]


def safe_relative(name: str, where: str) -> str:
    """Check that a list-file entry is a relative path that stays under its root."""
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or name.startswith("~"):
        raise DataError(
            f"{where}: {name!r} escapes the dataset root; entries must be relative paths"
        )
    return str(p)


def read_list_file(path: str | os.PathLike) -> list[str]:
    """Read a list file: one name per line, blank lines skipped. Empty files are an error."""
    path = Path(path)
    text = read_text(path, "list file", "one file name per line")
    names = [
        safe_relative(line.strip(), f"list file {path} line {i}")
        for i, line in enumerate(text.splitlines(), 1)
        if line.strip()
    ]
    if not names:
        raise DataError(f"list file {path} is empty; expected one file name per line")
    return names


def write_list_file(path: str | os.PathLike, names: Sequence[str]) -> Path:
    """Write one name per line (the release's list format)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{n}\n" for n in names))
    return path


def parse_size(size) -> tuple[int, int] | None:
    """Accept None, (W, H), or "W,H"; return (W, H) as ints or raise DataError."""
    if size is None:
        return None
    if isinstance(size, str):
        parts = size.replace("x", ",").split(",")
    else:
        parts = list(size)
    try:
        w, h = (int(p) for p in parts)
    except (TypeError, ValueError):
        raise DataError(f"size {size!r} is not W,H (two positive integers)") from None
    if w <= 0 or h <= 0:
        raise DataError(f"size {size!r} is not W,H (two positive integers)")
    return w, h


def release_normalize(images: torch.Tensor) -> torch.Tensor:
    """0-255 RGB -> BGR minus the release's mean (docs/method.md): what G takes. ``images`` is
    (3, H, W) or (B, 3, H, W), on any device; the training loop applies it on the device."""
    mean = torch.tensor(MEAN_BGR, device=images.device, dtype=images.dtype).view(3, 1, 1)
    return images.flip(-3) - mean


def to_tensor_image(img: Image.Image, normalization: str) -> torch.Tensor:
    """PIL RGB -> float32 (3, H, W): 0-255 RGB ("none") or :func:`release_normalize`'d."""
    arr = np.asarray(img, dtype=np.float32)
    image = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    return release_normalize(image) if normalization == "release" else image


@dataclass(frozen=True)
class Sample:
    """One image/label pair: its name (as in list files) and the two paths."""

    name: str
    image: Path
    label: Path


def decode_pair(sample: Sample, read_label, max_id: int) -> tuple[Image.Image, np.ndarray]:
    """Decode and cross-check one pair: (RGB image, (H, W) raw label ids).

    Raises DataError naming the file when either cannot be decoded, when their sizes differ, or
    when the label holds ids above ``max_id``.
    """
    img = read_rgb(sample.image)
    raw = read_label(sample.label)
    if (img.width, img.height) != (raw.shape[1], raw.shape[0]):
        raise DataError(
            f"image {sample.image} is {img.width}x{img.height} but its label "
            f"{sample.label} is {raw.shape[1]}x{raw.shape[0]}; the pair must match"
        )
    if raw.size and int(raw.max()) > max_id:
        bad = np.unique(raw[raw > max_id])
        raise DataError(
            f"label {sample.label} holds ids {bad[:10].tolist()} outside the dataset's "
            f"range 0..{max_id}"
        )
    return img, raw


class SegmentationDataset(Dataset):
    """Base class: resize like the release (bicubic image, nearest label), map ids to trainIds.

    Subclasses fill ``self.samples`` and define ``read_label`` (raw ids), ``lut`` (raw id ->
    trainId) and ``max_id`` (the largest id the dataset defines; larger ones are an error).

    Items are dicts: ``image`` float32 (3, H, W), ``label`` int64 (H, W) trainIds with 255 =
    ignore, ``name`` str, ``index`` (the item's index in the dataset).
    """

    lut: np.ndarray
    max_id: int
    #: Keep the label at its native resolution (Cityscapes val: evaluate at full resolution).
    keep_label_size: bool = False

    def __init__(self, size=None, normalization: str = "none"):
        self.size = parse_size(size)
        if normalization not in NORMALIZATIONS:
            raise DataError(
                f"normalization {normalization!r} is not one of {', '.join(NORMALIZATIONS)}"
            )
        self.normalization = normalization
        self.samples: list[Sample] = []

    @staticmethod
    def read_label(path: Path) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.samples)

    def load_pair(self, index: int) -> tuple[Image.Image, np.ndarray, Sample]:
        """Decode one pair at native resolution: (RGB image, (H, W) uint8 trainIds, sample)."""
        sample = self.samples[index]
        img, raw = decode_pair(sample, self.read_label, self.max_id)
        return img, self.lut[raw], sample

    def __getitem__(self, index: int) -> dict:
        img, train_ids, sample = self.load_pair(index)
        if self.size is not None:
            if img.size != self.size:
                img = img.resize(self.size, Image.BICUBIC)
            if not self.keep_label_size and train_ids.shape[::-1] != self.size:
                train_ids = np.asarray(Image.fromarray(train_ids).resize(self.size, Image.NEAREST))
        image = to_tensor_image(img, self.normalization)
        label = torch.from_numpy(train_ids.astype(np.int64))
        return {"image": image, "label": label, "name": sample.name, "index": index}

    def check_labels_exist(self, what: str) -> None:
        """Raise once, listing the images whose label file is missing (half downloads)."""
        missing = [s for s in self.samples if not s.label.is_file()]
        if missing:
            shown = ", ".join(str(s.label) for s in missing[:3])
            raise DataError(
                f"{what}: {len(missing)} of {len(self.samples)} labels are missing "
                f"(first: {shown}); is the download complete?"
            )

    def check_images_exist(self, what: str) -> None:
        missing = [s for s in self.samples if not s.image.is_file()]
        if missing:
            shown = ", ".join(str(s.image) for s in missing[:3])
            raise DataError(f"{what}: {len(missing)} listed images do not exist (first: {shown})")


class FlatPairs(SegmentationDataset):
    """A source dataset laid out as one image folder and one label folder of equal file names
    (GTA5, SYNTHIA). Subclasses set ``title``, ``image_dir``, ``label_dir``, ``layout``.

    Args:
        root: the dataset folder.
        size: (W, H) both image and label are resized to, or None for native size.
        list_file: one file name per line (the release's format); None scans the image folder.
        normalization: "none" (float 0-255 RGB) or "release" (BGR minus the release's mean).
    """

    title: str
    image_dir: str
    label_dir: str
    layout: str

    def __init__(
        self,
        root: str | os.PathLike,
        size=(1024, 512),
        list_file: str | os.PathLike | None = None,
        normalization: str = "none",
    ):
        super().__init__(size, normalization)
        self.root = Path(root)
        images, labels = self.root / self.image_dir, self.root / self.label_dir
        require_dir(self.root, f"{self.title} root", self.layout)
        require_dir(images, f"{self.title} {self.image_dir} folder", self.layout)
        require_dir(labels, f"{self.title} {self.label_dir} folder", self.layout)
        if list_file is None:
            names = sorted(p.name for p in images.glob("*.png"))
            if not names:
                raise DataError(
                    f"{self.title} root {self.root} has no {self.image_dir}/*.png; "
                    f"expected {self.layout}"
                )
        else:
            names = read_list_file(list_file)
        self.samples = [Sample(n, images / n, labels / n) for n in names]
        if list_file is not None:
            self.check_images_exist(f"{self.title} list {list_file}")
        self.check_labels_exist(f"{self.title} root {self.root}")


class SkipUnreadable(Dataset):
    """``data.on_error: skip``: a wrapper whose items never fail on an unreadable file.

    An item whose image or label raises :class:`DataError` is replaced (``replace=True``,
    training: the next readable item of the dataset takes its place, so batches keep their
    size) or dropped (``replace=False``, evaluation: the item is a marker that
    :func:`collate_skipping` leaves out of the batch). Either way the batch carries
    ``skipped``: one ``"index<TAB>name<TAB>message"`` string per file left out, for the loop
    to warn about and count.
    """

    def __init__(self, dataset: SegmentationDataset, replace: bool = True):
        self.dataset, self.replace = dataset, replace

    @property
    def samples(self) -> list[Sample]:
        return self.dataset.samples

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        n, skipped = len(self.dataset), []
        for k in range(n if self.replace else 1):
            j = (index + k) % n
            try:
                item = self.dataset[j]
            except DataError as exc:
                skipped.append(f"{j}\t{self.dataset.samples[j].name}\t{exc}")
                continue
            item["skipped"] = skipped
            return item
        if not self.replace:
            return {"skipped": skipped}
        raise DataError(f"none of the {n} images could be read (first: {skipped[0]})")


def skipping(dataset, on_error: str, replace: bool):
    """``(dataset, collate_fn)`` for a DataLoader under ``data.on_error``: the dataset itself
    and the default collation for "stop"; wrapped in :class:`SkipUnreadable` with
    :func:`collate_skipping` for "skip"."""
    if on_error != "skip":
        return dataset, None
    return SkipUnreadable(dataset, replace=replace), collate_skipping


def collate_skipping(items: list[dict]) -> dict:
    """Collate items of :class:`SkipUnreadable`: markers of dropped files are left out, and
    every file skipped for this batch is listed under ``skipped``."""
    from torch.utils.data import default_collate

    skipped = [s for item in items for s in item.pop("skipped", [])]
    kept = [item for item in items if item]
    batch = default_collate(kept) if kept else {}
    batch["skipped"] = skipped
    return batch
