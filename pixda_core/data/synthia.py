"""SYNTHIA RAND-CITYSCAPES (source domain), read exactly as it ships.

Expected layout::

    <root>/RGB/<7 digits>.png          RGB, 1280x760
    <root>/GT/LABELS/<7 digits>.png    16-bit three-channel PNG: R = class id, G = instance id

The labels are decoded with OpenCV (Pillow cannot read them); a label that is not 16-bit
three-channel is refused with a message naming the file.
"""

from __future__ import annotations

from ..labels import SYNTHIA_LUT, SYNTHIA_MAX_ID
from .common import FlatPairs, read_label_synthia

LAYOUT = "<root>/RGB/NNNNNNN.png with <root>/GT/LABELS/NNNNNNN.png (16-bit)"


class Synthia(FlatPairs):
    """SYNTHIA images and labels; class ids decoded to trainIds (255 = ignore).

    ``Synthia(root, size=(1024, 512), list_file=None, normalization="none")``;
    arguments as in :class:`~pixda_core.data.common.FlatPairs`.
    """

    title, image_dir, label_dir, layout = "SYNTHIA", "RGB", "GT/LABELS", LAYOUT
    lut = SYNTHIA_LUT
    max_id = SYNTHIA_MAX_ID
    read_label = staticmethod(read_label_synthia)
