"""Cityscapes (target domain), read exactly as it ships.

Expected layout::

    <root>/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png   RGB 2048x1024
    <root>/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png    uint8 ids 0..33

Names are relative to ``leftImg8bit/<split>/``, e.g.
``aachen/aachen_000000_000019_leftImg8bit.png``, as in the release's split files.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError
from ..labels import CITYSCAPES_LUT, CITYSCAPES_MAX_ID
from .cityscapes_files import LAYOUT, SPLITS, label_name, scan_split
from .common import Sample, SegmentationDataset, read_label_8bit, require_dir
from .splits import load_split


class Cityscapes(SegmentationDataset):
    """Cityscapes images and fine labels; label ids decoded to trainIds (255 = ignore).

    Args:
        root: the dataset folder (layout above).
        split: "train" or "val". For "val" only the image is resized: the label keeps its full
            resolution, where the metric is computed.
        size: (W, H) or None for native size.
        split_file: a few-shot split (one name per line, relative to ``leftImg8bit/<split>/``);
            it is validated (files exist, train cities, no path escaping the root). None scans
            the whole split.
        normalization: as for :class:`~pixda_core.data.gta5.GTA5`.
        warn_duplicates: warn when the split file lists an image more than once.
    """

    lut = CITYSCAPES_LUT
    max_id = CITYSCAPES_MAX_ID

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        size=(1024, 512),
        split_file: str | os.PathLike | None = None,
        normalization: str = "none",
        warn_duplicates: bool = True,
    ):
        super().__init__(size, normalization)
        if split not in SPLITS:
            raise DataError(f"Cityscapes split {split!r} is not one of {', '.join(SPLITS)}")
        self.root = Path(root)
        self.split = split
        self.keep_label_size = split == "val"
        if split_file is None:
            names = scan_split(self.root, split)
        else:
            require_dir(self.root, "Cityscapes root", LAYOUT)
            names = load_split(split_file, self.root, split, warn_duplicates).names
        img_base = self.root / "leftImg8bit" / split
        lab_base = self.root / "gtFine" / split
        self.samples = [Sample(n, img_base / n, lab_base / label_name(n)) for n in names]
        self.check_labels_exist(f"Cityscapes root {self.root} ({split})")

    @property
    def cities(self) -> list[str]:
        return [s.name.split("/", 1)[0] for s in self.samples]

    read_label = staticmethod(read_label_8bit)
