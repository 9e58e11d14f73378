"""Label tables: the 19 Cityscapes train classes, the id -> trainId maps, and the protocols.

Names, colours and the Cityscapes id -> trainId map come from ``cityscapesscripts`` (the
official package), not from a hand-copied table. SYNTHIA's class ids have no official Python
table, so that one is declared here, from the dataset's documentation (docs/real-benchmark.md).

Every encoding is a single lookup-vector indexing operation (``lut[label]``): no loop over
classes, on numpy arrays or torch tensors alike.
"""

from __future__ import annotations

import numpy as np
import torch
from cityscapesscripts.helpers.labels import labels as _CS_LABELS

IGNORE_INDEX = 255
NUM_CLASSES = 19

# The 19 evaluated classes, in trainId order, straight from cityscapesscripts.
_TRAIN_LABELS = sorted(
    (lab for lab in _CS_LABELS if 0 <= lab.trainId < IGNORE_INDEX), key=lambda lab: lab.trainId
)
assert [lab.trainId for lab in _TRAIN_LABELS] == list(range(NUM_CLASSES))

CLASS_NAMES: tuple[str, ...] = tuple(lab.name for lab in _TRAIN_LABELS)
#: (19, 3) uint8 RGB palette, trainId order.
PALETTE = np.array([lab.color for lab in _TRAIN_LABELS], dtype=np.uint8)

#: Largest Cityscapes label id with a meaning (license plate is -1, stored as nothing in PNGs).
CITYSCAPES_MAX_ID = max(lab.id for lab in _CS_LABELS)  # 33

#: SYNTHIA RAND-CITYSCAPES class id -> trainId (docs/real-benchmark.md). Ids not listed (0 void,
#: 13 parking slot, 14 road work) are ignored.
SYNTHIA_ID_TO_TRAINID: dict[int, int] = {
    1: 10,  # sky
    2: 2,  # building
    3: 0,  # road
    4: 1,  # sidewalk
    5: 4,  # fence
    6: 8,  # vegetation
    7: 5,  # pole
    8: 13,  # car
    9: 7,  # traffic sign
    10: 11,  # pedestrian -> person
    11: 18,  # bicycle
    12: 17,  # motorcycle
    15: 6,  # traffic light
    16: 9,  # terrain
    17: 12,  # rider
    18: 14,  # truck
    19: 15,  # bus
    20: 16,  # train
    21: 3,  # wall
    22: 0,  # lane marking -> road
}
SYNTHIA_MAX_ID = 22

#: Evaluation protocols as trainId lists: 19 for GTA5, 16 and 13 for SYNTHIA.
PROTOCOLS: dict[str, tuple[int, ...]] = {
    "19": tuple(range(NUM_CLASSES)),
    "16": tuple(
        i for i in range(NUM_CLASSES) if CLASS_NAMES[i] not in ("terrain", "truck", "train")
    ),
}
PROTOCOLS["13"] = tuple(
    i for i in PROTOCOLS["16"] if CLASS_NAMES[i] not in ("wall", "fence", "pole")
)


def _build_lut(mapping: dict[int, int], size: int) -> np.ndarray:
    lut = np.full(size, IGNORE_INDEX, dtype=np.uint8)
    keys = np.fromiter(mapping.keys(), dtype=np.int64)
    lut[keys] = np.fromiter(mapping.values(), dtype=np.int64)
    return lut


#: Cityscapes/GTA5 label id -> trainId, indexable by any uint8 value.
CITYSCAPES_ID_TO_TRAINID: dict[int, int] = {
    lab.id: lab.trainId for lab in _CS_LABELS if 0 <= lab.trainId < IGNORE_INDEX and lab.id >= 0
}
CITYSCAPES_LUT = _build_lut(CITYSCAPES_ID_TO_TRAINID, 256)
#: SYNTHIA class id -> trainId, indexable by any uint16 value.
SYNTHIA_LUT = _build_lut(SYNTHIA_ID_TO_TRAINID, 65536)
#: trainId -> Cityscapes label id (for writing predictions the official evaluator reads);
#: ignore (255) maps to 0, "unlabeled".
TRAINID_TO_CITYSCAPES_ID = np.zeros(256, dtype=np.uint8)
TRAINID_TO_CITYSCAPES_ID[list(CITYSCAPES_ID_TO_TRAINID.values())] = list(
    CITYSCAPES_ID_TO_TRAINID.keys()
)


def encode(label, lut: np.ndarray):
    """Map raw label ids to trainIds with one indexing operation.

    ``label`` is a numpy array or torch tensor of non-negative integer ids of any shape; the
    result has the same shape, dtype uint8 (numpy) or int64 (torch).
    """
    if isinstance(label, torch.Tensor):
        return torch.as_tensor(lut, device=label.device).long()[label.long()]
    return lut[label]


def protocol_classes(protocol: str) -> tuple[int, ...]:
    """The trainIds evaluated under ``protocol`` ("19", "16" or "13")."""
    try:
        return PROTOCOLS[str(protocol)]
    except KeyError:
        raise ValueError(
            f"unknown protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}"
        ) from None


def colorize(train_ids: np.ndarray) -> np.ndarray:
    """(H, W) trainIds -> (H, W, 3) uint8 RGB with the Cityscapes palette; ignore is black."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[:NUM_CLASSES] = PALETTE
    return palette[np.asarray(train_ids)]


def class_ids(classes) -> list[int]:
    """trainIds of ``classes`` (names or ids); a name that is no Cityscapes class is an error
    naming it."""
    from .errors import ConfigError

    ids = []
    for c in classes or ():
        if isinstance(c, str):
            if c not in CLASS_NAMES:
                raise ConfigError(f"class {c!r} is not one of the 19: {', '.join(CLASS_NAMES)}")
            ids.append(CLASS_NAMES.index(c))
        elif isinstance(c, (int, np.integer)) and 0 <= c < NUM_CLASSES:
            ids.append(int(c))
        else:
            raise ConfigError(f"class {c!r}: a class name or a trainId 0-{NUM_CLASSES - 1}")
    return ids
