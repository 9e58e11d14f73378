"""Checks before a run starts (pixda_core.train.start)."""

from __future__ import annotations

import re

import pytest
import torch

from pixda_core.config import preset
from pixda_core.models import deeplabv2
from tests.helpers import assert_user_error, cli, release_args, train


@pytest.mark.training
@pytest.mark.parametrize("kind", ["torchvision", "release init"])
def test_restore_from_an_init_file_is_refused_naming_init(toy_root, tmp_path, capsys, kind):
    import torchvision

    path = tmp_path / "init.pth"
    if kind == "torchvision":
        torch.save(torchvision.models.resnet18().state_dict(), path)
    else:  # the release's DeepLab init: "Scale." prefix, a 21-class head as layer5
        state = deeplabv2(21, "resnet18", multi_level=False).state_dict()
        torch.save({f"Scale.{k.replace('layer6', 'layer5')}": v for k, v in state.items()}, path)
    code, err = cli(capsys, *release_args(toy_root, tmp_path / "out"), "--is_train",
                    "--restore_from", path)  # fmt: skip
    assert_user_error(code, err, f"--restore_from {path} is an initialisation",
                      "pass it as --init")  # fmt: skip
    assert not (tmp_path / "out" / "e").exists()


@pytest.mark.data
@pytest.mark.parametrize("size", ["16,8", "31,64", "64,31"])
def test_a_crop_too_small_for_the_image_discriminator_is_refused_before_anything_is_written(
    toy_root, tmp_path, capsys, weights, size
):
    code, err = train(capsys, toy_root, tmp_path, weights, "--crop_size", size)
    assert_user_error(
        code, err, f"--crop_size {size}", "the image discriminator (D2) of PixDA",
        "at least 32 pixels wide and 32 high",
    )  # fmt: skip
    assert not (tmp_path / "e").exists()


@pytest.mark.data
def test_a_method_without_the_image_discriminator_takes_a_small_crop(toy_root, capsys):
    from pixda_core.methods import method_class
    from pixda_core.train.start import check_sizes

    small = preset("toy").override(data={"size": [16, 8]})
    for method in ("finetune", "joint", "source_only"):
        check_sizes(small, method_class(method)(small))  # no discriminator that halves its input
    for method, what in (
        ("adaptsegnet", "(D2) of AdaptSegNet-style"),
        ("advent", "(D) of AdvEnt"),
    ):
        with pytest.raises(
            Exception,
            match=rf"image discriminator {re.escape(what)}: it needs at least 32 pixels wide",
        ):
            check_sizes(small, method_class(method)(small))


@pytest.mark.training
def test_start_up_reads_the_weights_and_builds_the_datasets_once(
    toy_root, tmp_path, weights, monkeypatch
):
    """adapt() hands what its checks read to training: the initial weights' file is read
    once, the source set and the target val set are built once (the target shots' set is
    the run's own split)."""
    import importlib

    from pixda_core.data import Cityscapes
    from pixda_core.models import pretrained
    from pixda_core.train import adapt, inputs, job, start

    evaluate = importlib.import_module(
        "pixda_core.train.evaluate"
    )  # (the module, not the function)
    from tests.helpers import tiny

    reads, sources, vals = [], [], []
    read = pretrained.read_weights
    for module in (pretrained, start):
        monkeypatch.setattr(module, "read_weights", lambda p: reads.append(p) or read(p))
    make = inputs.source_dataset
    for module in (start, job):
        monkeypatch.setattr(module, "source_dataset", lambda c: sources.append(c) or make(c))

    class Val(Cityscapes):
        def __init__(self, root, split, *args, **kwargs):
            vals.append(split)
            super().__init__(root, split, *args, **kwargs)

    for module in (start, evaluate):
        monkeypatch.setattr(module, "Cityscapes", Val)
    run = {"name": "once", "restore_from": str(weights)}
    cfg = tiny(toy_root, tmp_path, adapt={"early_stop": 1}, method={"name": "joint"}, run=run)
    assert adapt(cfg)["step"] == 1
    assert [str(p) for p in reads] == [str(weights)]
    assert len(sources) == 1 and vals.count("val") == 1
