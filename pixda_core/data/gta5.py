"""GTA5 (source domain), read exactly as it ships.

Expected layout::

    <root>/images/<5 digits>.png    RGB, 1914x1052 for most images
    <root>/labels/<5 digits>.png    palettised PNG of Cityscapes label ids (0..33)

Names (list-file entries and ``item["name"]``) are the file names, e.g. ``00001.png``.
"""

from __future__ import annotations

from ..labels import CITYSCAPES_LUT, CITYSCAPES_MAX_ID
from .common import FlatPairs, read_label_8bit

LAYOUT = "<root>/images/NNNNN.png with <root>/labels/NNNNN.png"


class GTA5(FlatPairs):
    """GTA5 images and labels; labels decoded to trainIds (255 = ignore).

    ``GTA5(root, size=(1024, 512), list_file=None, normalization="none")``;
    arguments as in :class:`~pixda_core.data.common.FlatPairs`.
    """

    title, image_dir, label_dir, layout = "GTA5", "images", "labels", LAYOUT
    lut = CITYSCAPES_LUT
    max_id = CITYSCAPES_MAX_ID
    read_label = staticmethod(read_label_8bit)
