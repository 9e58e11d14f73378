"""Metrics (pixda_core.metrics) by hand and against the official Cityscapes evaluator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pixda_core import labels as L
from pixda_core.metrics import ConfusionMatrix

pytestmark = pytest.mark.unit


def test_iou_by_hand_and_missing_class_is_nan():
    cm = ConfusionMatrix(num_classes=4)
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 3, 3]])
    cm.update(pred, target)
    # class 0: tp 1, fp 1, fn 1 -> 1/3; class 1: tp 2, fp 1 -> 2/3; class 2: tp 1, fn 1 -> 1/2
    # class 3: predicted only on ignored pixels -> absent from both -> NaN
    iou = cm.iou()
    assert iou[:3] == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert np.isnan(iou[3])
    assert cm.pixel_accuracy() == pytest.approx(4 / 6)
    assert cm.class_accuracy()[:3] == pytest.approx([0.5, 1.0, 0.5])
    assert cm.precision()[:3] == pytest.approx([0.5, 2 / 3, 1.0])


def test_miou_protocols_leave_out_nan():
    cm = ConfusionMatrix()
    t = torch.arange(19).repeat(10)
    p = t.clone()
    p[:19] = (t[:19] + 1) % 19  # one error per class
    cm.update(p, t)
    iou = cm.iou()
    assert cm.miou("19") == pytest.approx(iou.mean())
    assert cm.miou("13") == pytest.approx(iou[list(L.PROTOCOLS["13"])].mean())
    cm2 = ConfusionMatrix()
    cm2.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    assert cm2.miou("19") == 1.0  # 17 classes missing: left out, not counted as 0


def test_frame_save_load(tmp_path):
    cm = ConfusionMatrix()
    g = torch.Generator().manual_seed(0)
    cm.update(
        torch.randint(0, 19, (4, 8, 8), generator=g), torch.randint(0, 19, (4, 8, 8), generator=g)
    )
    df = cm.to_frame()
    assert list(df.index[:2]) == ["road", "sidewalk"] and df["gt_pixels"].sum() == 256
    back = ConfusionMatrix.load(cm.save(tmp_path / "cm.npy"))
    assert torch.equal(back.mat, cm.mat)


def test_agrees_with_the_official_cityscapes_evaluator(tmp_path):
    np.in1d = np.isin  # numpy 2 removed in1d, which the evaluator still calls
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as ev

    rng = np.random.default_rng(0)
    ids = np.array(sorted(L.CITYSCAPES_ID_TO_TRAINID))
    cm = ConfusionMatrix()
    preds, gts = [], []
    for i in range(3):
        gt_ids = rng.choice(np.arange(34), size=(40, 60)).astype(np.uint8)  # ignored ids too
        gt_ids[gt_ids == 16] = 7  # tunnel etc. appear; keep one train class (16) absent everywhere
        train_gt = L.CITYSCAPES_LUT[gt_ids]
        pred_train = np.where(rng.random((40, 60)) < 0.6, train_gt, rng.integers(0, 19, (40, 60)))
        pred_train = np.where(pred_train == 255, rng.integers(0, 19, (40, 60)), pred_train)
        pred_train[pred_train == L.CITYSCAPES_LUT[31]] = 0  # never predict 'train' (id 31)
        gt_ids[gt_ids == 31] = 7
        train_gt = L.CITYSCAPES_LUT[gt_ids]
        cm.update(
            torch.from_numpy(pred_train.astype(np.int64)),
            torch.from_numpy(train_gt.astype(np.int64)),
        )
        p, g = tmp_path / f"pred_{i}.png", tmp_path / f"gt_{i}_gtFine_labelIds.png"
        Image.fromarray(L.TRAINID_TO_CITYSCAPES_ID[pred_train.astype(np.uint8)]).save(p)
        Image.fromarray(gt_ids).save(g)
        preds.append(str(p))
        gts.append(str(g))
    args = ev.args
    args.evalInstLevelScore, args.JSONOutput, args.quiet = False, False, True
    args.evalLabels = [lab.id for lab in ev.labels if lab.id >= 0]
    result = ev.evaluateImgLists(preds, gts, args)
    official = result["classScores"]
    ours = dict(zip(L.CLASS_NAMES, cm.iou(), strict=True))
    for name in L.CLASS_NAMES:
        if np.isnan(official[name]):
            assert np.isnan(ours[name]), name
        else:
            assert ours[name] == pytest.approx(official[name], abs=1e-12), name
    assert np.isnan(ours["train"])  # absent from both: missing, not 0
    assert cm.miou("19") == pytest.approx(
        np.nanmean([official[n] for n in L.CLASS_NAMES]), abs=1e-12
    )
    assert ids.size == 19
