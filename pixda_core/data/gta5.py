"""GTA5 (source domain), read exactly as it ships.

Expected layout::

    <root>/images/<5 digits>.png    RGB, 1914x1052 for most images
    <root>/labels/<5 digits>.png    palettised PNG of Cityscapes label ids (0..33)

Names (list-file entries and ``item["name"]``) are the file names, e.g. ``00001.png``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError
from ..labels import CITYSCAPES_LUT, CITYSCAPES_MAX_ID
from .common import (
    Augment,
    Sample,
    SegmentationDataset,
    read_label_8bit,
    read_list_file,
    require_dir,
)

LAYOUT = "<root>/images/NNNNN.png with <root>/labels/NNNNN.png"


class GTA5(SegmentationDataset):
    """GTA5 images and labels; labels decoded to trainIds (255 = ignore).

    Args:
        root: the dataset folder (layout above).
        size: (W, H) both image and label are resized to, or None for native size.
        list_file: one file name per line (the release's format); None scans ``images/``.
        normalization: "none" (float 0-255 RGB) or "release" (BGR minus the release's mean).
        augment: optional :class:`Augment` (random scale/crop/flip); off by default.
    """

    lut = CITYSCAPES_LUT
    max_id = CITYSCAPES_MAX_ID

    def __init__(
        self,
        root: str | os.PathLike,
        size=(1024, 512),
        list_file: str | os.PathLike | None = None,
        normalization: str = "none",
        augment: Augment | None = None,
    ):
        super().__init__(size, normalization, augment)
        self.root = Path(root)
        require_dir(self.root, "GTA5 root", LAYOUT)
        require_dir(self.root / "images", "GTA5 images folder", LAYOUT)
        require_dir(self.root / "labels", "GTA5 labels folder", LAYOUT)
        if list_file is None:
            names = sorted(p.name for p in (self.root / "images").glob("*.png"))
            if not names:
                raise DataError(f"GTA5 root {self.root} has no images/*.png; expected {LAYOUT}")
        else:
            names = read_list_file(list_file)
        self.samples = [
            Sample(n, self.root / "images" / n, self.root / "labels" / n) for n in names
        ]
        if list_file is not None:
            self.check_images_exist(f"GTA5 list {list_file}")
        self.check_labels_exist(f"GTA5 root {self.root}")

    read_label = staticmethod(read_label_8bit)
