"""Loading weights (pixda_core.models.pretrained): every format the kit reads, and every file it
refuses, in Python and through ``run.py``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import torchvision

from pixda_core.models import (
    CheckpointError,
    deeplabv2,
    load_pretrained,
)
from tests.helpers import assert_user_error, cli, train


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['PIXDA_TEST_MARKER']}",))


def _model():
    torch.manual_seed(0)
    return deeplabv2(num_classes=19, backbone="resnet18")


def _same(a, b, prefix):
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa if k.startswith(prefix))


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['PIXDA_TEST_MARKER']}",))


@pytest.fixture(scope="module")
def torchvision_r101(tmp_path_factory) -> Path:
    """A state dict in torchvision's ResNet-101 format (random values: nothing downloads)."""
    import torchvision

    path = tmp_path_factory.mktemp("tv") / "resnet101-63fe2227.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet101().state_dict(), path)
    return path


def paper_flags(root: Path, out: Path, *extra) -> list:
    """run.py's flags for the paper preset, shrunk to a step or two at 64x32 and one val image
    (the weights are what is tested: any root in the real layouts serves)."""
    return [
        "--source_dataset", "gta5", "--source_dataroot", root / "gta5",
        "--target_dataset", "cityscapes", "--target_dataroot", root / "cityscapes",
        "--name", "paper", "--checkpoints_dir", out, "--crop_size", "64,32", "--batch_size", "1",
        "--early_stop", "1", "--kd_steps", "1", "--num_workers", "0", "--quiet",
        "--set", "data.val_size=[128,64]", "--set", "data.val_limit=1", *extra,
    ]  # fmt: skip


@pytest.mark.training
def test_missing_weights_file(toy_root, tmp_path, capsys):
    missing = tmp_path / "so.pth"
    code, err = train(capsys, toy_root, tmp_path / "out", missing)
    assert_user_error(code, err, f"--restore_from {missing} does not exist")
    assert not (tmp_path / "out" / "e").exists()


@pytest.mark.training
def test_truncated_weights_file(toy_root, tmp_path, capsys, weights):
    cut = tmp_path / "cut.pth"
    data = weights.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    code, err = train(capsys, toy_root, tmp_path / "out", cut)
    assert_user_error(code, err, f"{cut} cannot be read as PyTorch weights", "complete .pth")
    assert not (tmp_path / "out" / "e").exists()


@pytest.mark.training
def test_weights_for_another_class_count(toy_root, tmp_path, capsys):
    other = tmp_path / "sixteen.pth"
    torch.save({"model": deeplabv2(16, "resnet18", multi_level=False).state_dict()}, other)
    code, err = train(capsys, toy_root, tmp_path / "out", other)
    assert_user_error(
        code,
        err,
        f"{other} (pixda checkpoint) does not fit the model's heads",
        "another class count or backbone (model: 19 classes)",
    )


@pytest.mark.training
def test_weights_for_another_backbone(toy_root, tmp_path, capsys):
    other = tmp_path / "r34.pth"
    torch.save({"model": deeplabv2(19, "resnet34", multi_level=False).state_dict()}, other)
    code, err = train(capsys, toy_root, tmp_path / "out", other)
    assert_user_error(
        code,
        err,
        f"{other} (pixda checkpoint) holds 96 tensors the model does not have",
        "layer1.2.",
        "another backbone (model: resnet18)",
    )
    r101 = tmp_path / "r101.pth"
    torch.save({"model": deeplabv2(19, "resnet101", multi_level=False).state_dict()}, r101)
    code, err = train(capsys, toy_root, tmp_path / "out", r101)
    assert_user_error(
        code,
        err,
        f"{r101} (pixda checkpoint) leaves",
        "backbone tensors uninitialised",
        "another backbone",
    )


@pytest.mark.training
def test_pickle_that_would_run_code(toy_root, tmp_path, capsys, monkeypatch):
    marker = tmp_path / "code_ran"
    monkeypatch.setenv("PIXDA_TEST_MARKER", str(marker))
    evil = tmp_path / "evil.pth"
    torch.save({"model": _RunsCode()}, evil)
    code, err = train(capsys, toy_root, tmp_path / "out", evil)
    assert_user_error(code, err, f"{evil} was refused", "could run code", "posix.system")
    assert not marker.exists()


@pytest.mark.unit
def test_release_init_file_with_scale_prefix(tmp_path):
    src = deeplabv2(num_classes=21, backbone="resnet18", multi_level=False)
    state = {f"Scale.{k}": v for k, v in src.state_dict().items() if "num_batches" not in k}
    state = {
        k.replace("Scale.layer6.", "Scale.layer5."): v for k, v in state.items()
    }  # 21 classes on layer4
    torch.save(state, tmp_path / "DeepLab_resnet_pretrained_init.pth")
    model = _model()
    heads_before = model.layer6.conv2d_list[0].weight.clone()
    report = load_pretrained(model, tmp_path / "DeepLab_resnet_pretrained_init.pth")
    assert report.format == "release init"
    assert _same(model, src, "layer4.") and _same(model, src, "conv1.")
    assert any(k.startswith("layer5.") and "shape" in why for k, why in report.skipped)
    assert torch.equal(model.layer6.conv2d_list[0].weight, heads_before)  # heads left at init


@pytest.mark.unit
def test_release_checkpoint_with_module_prefix(tmp_path):
    src = _model()
    torch.nn.init.normal_(src.layer6.conv2d_list[1].weight)
    torch.save(
        {"model_state": {f"module.{k}": v for k, v in src.state_dict().items()}},
        tmp_path / "gta5_source_only_model.pth",
    )
    model = deeplabv2(backbone="resnet18")
    report = load_pretrained(model, tmp_path / "gta5_source_only_model.pth")
    assert report.format == "release checkpoint" and not report.missing
    assert _same(model, src, "")


@pytest.mark.unit
def test_torchvision_resnet_state_dict(tmp_path):
    tv = torchvision.models.resnet18(weights=None)
    torch.save(tv.state_dict(), tmp_path / "resnet18.pth")
    model = _model()
    report = load_pretrained(model, tmp_path / "resnet18.pth")
    assert report.format == "torchvision resnet"
    assert ("fc.weight", "not in the model") in report.skipped
    assert torch.equal(model.layer3[1].conv2.weight, tv.layer3[1].conv2.weight)
    assert all(k.startswith(("layer5.", "layer6.")) for k in report.missing)


@pytest.mark.unit
def test_own_checkpoint_and_refusals(tmp_path):
    src = _model()
    torch.save({"model": src.state_dict(), "step": 10}, tmp_path / "own.pth")
    model = deeplabv2(backbone="resnet18")
    assert load_pretrained(model, tmp_path / "own.pth").format == "pixda checkpoint"
    assert _same(model, src, "")

    other_classes = deeplabv2(num_classes=16, backbone="resnet18")
    with pytest.raises(
        CheckpointError,
        match=r"own.pth \(pixda checkpoint\) does not fit the model's heads: layer5",
    ):
        load_pretrained(other_classes, tmp_path / "own.pth")
    with pytest.raises(
        CheckpointError, match=r"leaves \d+ backbone tensors uninitialised \(first: "
    ):
        load_pretrained(deeplabv2(backbone="resnet34"), tmp_path / "own.pth")
    report = load_pretrained(other_classes, tmp_path / "own.pth", strict=False)
    assert any(k.startswith("layer6.") for k in report.missing)


@pytest.mark.unit
def test_unreadable_files(tmp_path):
    model = _model()
    with pytest.raises(CheckpointError, match="nope.pth does not exist"):
        load_pretrained(model, tmp_path / "nope.pth")
    torch.save({"model": model.state_dict()}, tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pth cannot be read"):
        load_pretrained(model, tmp_path / "cut.pth")
    (tmp_path / "notes.pth").write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match="notes.pth cannot be read as PyTorch weights"):
        load_pretrained(model, tmp_path / "notes.pth")


@pytest.mark.unit
def test_pickle_that_would_run_code_is_refused(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    monkeypatch.setenv("PIXDA_TEST_MARKER", str(marker))
    torch.save({"model": _Evil()}, tmp_path / "evil.pth")
    with pytest.raises(
        CheckpointError, match="evil.pth was refused: .* could run code .*GLOBAL posix.system"
    ):
        load_pretrained(_model(), tmp_path / "evil.pth")
    assert not marker.exists()


@pytest.mark.training
@pytest.mark.slow
def test_the_paper_preset_refuses_random_weights_and_takes_imagenet_ones(
    toy_root, torchvision_r101, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # an empty cache
    out = tmp_path / "out"
    code, err = cli(capsys, *paper_flags(toy_root, out), "--is_train", "--num_shots", "1")
    assert_user_error(code, err, "DeepLab_resnet_pretrained_init.pth", "resnet101-63fe2227.pth",
                      "--init", str(tmp_path / "torch_home" / "hub" / "checkpoints"))  # fmt: skip
    assert not out.exists() or list(out.iterdir()) == []  # nothing written

    # with --init a torchvision ResNet-101 state dict: the source-only model trains
    from pixda_core.train.cli import pretrain_main

    capsys.readouterr()
    code = pretrain_main([str(a) for a in paper_flags(toy_root, out, "--init",
                                                      torchvision_r101)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err[-2000:]
    assert f"initial weights {torchvision_r101}: format torchvision resnet" in err
    metrics = json.loads((out / "paper" / "metrics.json").read_text())
    assert metrics["step"] == 1 and metrics["method"] == "source_only"

    # the same file in torch's cache is found without --init, and the run says so
    cache = tmp_path / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    shutil.copyfile(torchvision_r101, cache / torchvision_r101.name)
    code, err = cli(capsys, *paper_flags(toy_root, tmp_path / "out2"), "--is_train",
                    "--num_shots", "1", "--method", "finetune", "--set",
                    "pretrain.batch_size=1", "--set", "pretrain.early_stop=1")  # fmt: skip
    assert code == 0, err[-2000:]
    assert f"--init not given: using torchvision's ImageNet resnet101 weights {cache}" in err


@pytest.mark.data
def test_a_folder_given_for_a_weights_file_is_named_as_a_folder(toy_root, tmp_path, capsys):
    code, err = train(capsys, toy_root, tmp_path / "out", tmp_path)
    assert_user_error(code, err, f"--restore_from {tmp_path} is a folder, not a file")
