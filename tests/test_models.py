import math
import os

import pytest
import torch
import torchvision

from pixda_core.models import (
    CheckpointError,
    FCDiscriminator,
    PixelDiscriminator,
    deeplabv2,
    load_pretrained,
    param_groups,
)

pytestmark = pytest.mark.unit


def _expected(n: int) -> int:
    n = (n + 6 - 7) // 2 + 1  # stem conv, stride 2
    n = math.ceil((n + 2 - 3) / 2) + 1  # max-pool, ceil mode
    return (n - 1) // 2 + 1  # layer2's stride; layer3/4 keep stride 1 (dilated)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet34", "resnet50", "resnet101"])
def test_output_stride_and_shapes(backbone):
    model = deeplabv2(num_classes=7, backbone=backbone).eval()
    for h, w in ((65, 129), (64, 64)):
        with torch.no_grad():
            aux, main = model(torch.randn(1, 3, h, w))
        assert main.shape == aux.shape == (1, 7, _expected(h), _expected(w))
    assert _expected(512) == 65 and _expected(1024) == 129  # the release's 65x129 at 1024x512


def test_structure_as_in_the_method():
    model = deeplabv2(backbone="resnet101")
    assert model.layer3[0].conv2.dilation == (2, 2) and model.layer3[0].conv1.stride == (1, 1)
    assert model.layer4[0].conv2.dilation == (4, 4) and model.layer2[0].conv1.stride == (2, 2)
    for head, cin in ((model.layer5, 1024), (model.layer6, 2048)):
        convs = head.conv2d_list
        assert [c.dilation[0] for c in convs] == [6, 12, 18, 24]
        assert all(
            c.bias is not None and c.in_channels == cin and c.out_channels == 19 for c in convs
        )
        assert 0.008 < convs[0].weight.std().item() < 0.012
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.weight.requires_grad and not m.bias.requires_grad for m in bns)
    model.train()
    assert all(m.training for m in bns)  # frozen affine, still batch statistics
    single = deeplabv2(backbone="resnet18", multi_level=False)
    aux, main = single(torch.randn(2, 3, 33, 33))
    assert aux is None and main.shape[1] == 19


def test_param_groups_complete_without_duplicates():
    model = deeplabv2(backbone="resnet50")
    groups = param_groups(model, lr=1e-3)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert set(ids) == trainable
    heads = {id(p) for h in (model.layer5, model.layer6) for p in h.parameters()}
    assert {id(p) for p in groups[1]["params"]} == heads
    assert groups[0]["lr"] == 1e-3 and groups[1]["lr"] == pytest.approx(1e-2)
    torch.optim.SGD(groups, lr=1e-3, momentum=0.9)  # accepted as is


def test_discriminators_layer_for_layer():
    d1 = PixelDiscriminator(19)
    convs = [m for m in d1.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0]) for c in convs] == [
        (19, 64, 3), (64, 128, 3), (128, 1, 1)]  # fmt: skip
    assert d1(torch.randn(2, 19, 17, 23)).shape == (2, 1, 17, 23)
    d2 = FCDiscriminator(19)
    convs = [m for m in d2.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (19, 64), (64, 128), (128, 256), (256, 512), (512, 1)]  # fmt: skip
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)
    assert d2(torch.randn(1, 19, 64, 128)).shape == (1, 1, 2, 4)
    acts = [m for m in d2.modules() if isinstance(m, torch.nn.LeakyReLU)]
    assert len(acts) == 4 and all(a.negative_slope == 0.2 for a in acts)


# ------------------------------------------------------------------------------ weights


def _model():
    torch.manual_seed(0)
    return deeplabv2(num_classes=19, backbone="resnet18")


def _same(a, b, prefix):
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa if k.startswith(prefix))


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


def test_torchvision_resnet_state_dict(tmp_path):
    tv = torchvision.models.resnet18(weights=None)
    torch.save(tv.state_dict(), tmp_path / "resnet18.pth")
    model = _model()
    report = load_pretrained(model, tmp_path / "resnet18.pth")
    assert report.format == "torchvision resnet"
    assert ("fc.weight", "not in the model") in report.skipped
    assert torch.equal(model.layer3[1].conv2.weight, tv.layer3[1].conv2.weight)
    assert all(k.startswith(("layer5.", "layer6.")) for k in report.missing)


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


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['PIXDA_TEST_MARKER']}",))


def test_pickle_that_would_run_code_is_refused(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    monkeypatch.setenv("PIXDA_TEST_MARKER", str(marker))
    torch.save({"model": _Evil()}, tmp_path / "evil.pth")
    with pytest.raises(
        CheckpointError, match="evil.pth was refused: .* could run code .*GLOBAL posix.system"
    ):
        load_pretrained(_model(), tmp_path / "evil.pth")
    assert not marker.exists()
