"""SYNTHIA RAND-CITYSCAPES (source domain), read exactly as it ships.

Expected layout::

    <root>/RGB/<7 digits>.png          RGB, 1280x760
    <root>/GT/LABELS/<7 digits>.png    16-bit three-channel PNG: R = class id, G = instance id

The labels are decoded with OpenCV (Pillow cannot read them); a label that is not 16-bit
three-channel is refused with a message naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError
from ..labels import SYNTHIA_LUT, SYNTHIA_MAX_ID
from .common import (
    Augment,
    Sample,
    SegmentationDataset,
    read_label_synthia,
    read_list_file,
    require_dir,
)

LAYOUT = "<root>/RGB/NNNNNNN.png with <root>/GT/LABELS/NNNNNNN.png (16-bit)"


class Synthia(SegmentationDataset):
    """SYNTHIA images and labels; class ids decoded to trainIds (255 = ignore).

    Arguments as for :class:`~pixda_core.data.gta5.GTA5`.
    """

    lut = SYNTHIA_LUT
    max_id = SYNTHIA_MAX_ID

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
        require_dir(self.root, "SYNTHIA root", LAYOUT)
        require_dir(self.root / "RGB", "SYNTHIA RGB folder", LAYOUT)
        require_dir(self.root / "GT" / "LABELS", "SYNTHIA GT/LABELS folder", LAYOUT)
        if list_file is None:
            names = sorted(p.name for p in (self.root / "RGB").glob("*.png"))
            if not names:
                raise DataError(f"SYNTHIA root {self.root} has no RGB/*.png; expected {LAYOUT}")
        else:
            names = read_list_file(list_file)
        self.samples = [
            Sample(n, self.root / "RGB" / n, self.root / "GT" / "LABELS" / n) for n in names
        ]
        if list_file is not None:
            self.check_images_exist(f"SYNTHIA list {list_file}")
        self.check_labels_exist(f"SYNTHIA root {self.root}")

    read_label = staticmethod(read_label_synthia)
