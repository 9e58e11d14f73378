"""TensorBoard logs of a run (pixda_core.train.tensorboard)."""

from __future__ import annotations

import pytest

from tests.helpers import cli, release_args


@pytest.mark.training
def test_tensorboard_logs_losses_learning_rates_per_class_iou_and_predictions(
    toy_root, tmp_path, capsys, weights
):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    code, err = cli(capsys, *release_args(toy_root, tmp_path), "--is_train", "--restore_from",
                    weights, "--early_stop", "4", "--set", "run.tensorboard=true",
                    "--set", "run.log_every=2")  # fmt: skip
    assert code == 0, err[-2000:]
    logs = EventAccumulator(str(tmp_path / "e" / "tensorboard"), size_guidance={"images": 0})
    logs.Reload()
    scalars, images = set(logs.Tags()["scalars"]), set(logs.Tags()["images"])
    assert {"train/loss_seg_src", "train/loss_adv", "train/loss_d1", "lr/g", "lr/d1", "lr/d2",
            "val/miou", "val_iou/road"} <= scalars  # fmt: skip
    assert [e.step for e in logs.Scalars("train/loss_seg_trg")][:2] == [2, 4]
    lr = [e.value for e in logs.Scalars("lr/g")]
    assert lr == sorted(lr, reverse=True) and lr[0] < 0.001  # the poly schedule
    assert len(images) == 3 and all(t.startswith("val_predictions/") for t in images)
    shot = logs.Images(sorted(images)[0])[-1]
    assert shot.width == 3 * 64 and shot.height == 32  # image | prediction | ground truth
