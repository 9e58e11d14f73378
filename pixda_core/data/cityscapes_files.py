"""Cityscapes file names and folders: what both the dataset and the few-shot splits read.

Layout::

    <root>/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png   RGB 2048x1024
    <root>/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png    uint8 ids 0..33

Names are relative to ``leftImg8bit/<split>/``, e.g.
``aachen/aachen_000000_000019_leftImg8bit.png``, as in the release's split files.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .common import require_dir

LAYOUT = (
    "<root>/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png with "
    "<root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png"
)
SPLITS = ("train", "val")
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"


def label_name(name: str) -> str:
    """``city/x_leftImg8bit.png`` -> ``city/x_gtFine_labelIds.png``."""
    return name[: -len(IMAGE_SUFFIX)] + LABEL_SUFFIX


def scan_split(root: Path, split: str) -> list[str]:
    """All image names of ``split``, sorted, relative to ``leftImg8bit/<split>/``."""
    base = root / "leftImg8bit" / split
    require_dir(root, "Cityscapes root", LAYOUT)
    require_dir(base, f"Cityscapes {split} image folder", LAYOUT)
    require_dir(root / "gtFine" / split, f"Cityscapes {split} label folder", LAYOUT)
    names = sorted(p.relative_to(base).as_posix() for p in base.glob(f"*/*{IMAGE_SUFFIX}"))
    if not names:
        raise DataError(
            f"Cityscapes folder {base} holds no <city>/*{IMAGE_SUFFIX}; expected {LAYOUT}"
        )
    return names
