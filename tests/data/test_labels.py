"""Label tables (pixda_core.labels) against cityscapesscripts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.labels import labels as cs_labels

from pixda_core import labels as L

pytestmark = pytest.mark.unit


def test_train_classes_match_cityscapesscripts():
    official = sorted(
        (lab for lab in cs_labels if 0 <= lab.trainId < 255), key=lambda x: x.trainId
    )
    assert L.CLASS_NAMES == tuple(lab.name for lab in official)
    assert L.CLASS_NAMES[:3] == ("road", "sidewalk", "building")
    assert L.CLASS_NAMES[-1] == "bicycle" and len(L.CLASS_NAMES) == 19
    assert L.PALETTE.tolist() == [list(lab.color) for lab in official]


def test_cityscapes_lut_matches_every_official_label():
    for lab in cs_labels:
        if lab.id < 0:
            continue
        expected = lab.trainId if 0 <= lab.trainId < 255 else 255
        assert L.CITYSCAPES_LUT[lab.id] == expected, lab.name
    # the table in datasets.md
    pairs = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
             25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}  # fmt: skip
    assert {i: int(L.CITYSCAPES_LUT[i]) for i in range(256) if L.CITYSCAPES_LUT[i] != 255} == pairs
    assert (L.TRAINID_TO_CITYSCAPES_ID[list(pairs.values())] == list(pairs.keys())).all()


def test_synthia_table_and_protocols():
    lut = L.SYNTHIA_LUT
    assert [int(lut[i]) for i in (1, 2, 3, 4, 8, 10, 11, 12, 21, 22)] == [10, 2, 0, 1, 13, 11, 18,
                                                                           17, 3, 0]  # fmt: skip
    assert lut[0] == lut[13] == lut[14] == 255 == lut[23] == lut[65535]
    assert L.PROTOCOLS["13"] == (0, 1, 2, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)
    assert len(L.PROTOCOLS["16"]) == 16
    assert set(L.PROTOCOLS["19"]) - set(L.PROTOCOLS["16"]) == {9, 14, 16}
    with pytest.raises(ValueError, match="unknown protocol '7'"):
        L.protocol_classes("7")


def test_encode_numpy_and_torch_agree():
    raw = np.random.default_rng(0).integers(0, 40, size=(5, 7)).astype(np.uint8)
    expected = np.array(
        [[L.CITYSCAPES_ID_TO_TRAINID.get(int(v), 255) for v in row] for row in raw]
    )
    assert (L.encode(raw, L.CITYSCAPES_LUT) == expected).all()
    t = L.encode(torch.from_numpy(raw), L.CITYSCAPES_LUT)
    assert t.dtype == torch.int64 and (t.numpy() == expected).all()


def test_colorize_uses_palette_and_black_for_ignore():
    out = L.colorize(np.array([[0, 255], [18, 10]], dtype=np.uint8))
    assert out[0, 0].tolist() == L.PALETTE[0].tolist()
    assert out[0, 1].tolist() == [0, 0, 0]
    assert out[1, 0].tolist() == L.PALETTE[18].tolist()
