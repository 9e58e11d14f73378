"""DeepLab-v2 (pixda_core.models.deeplab): shapes, structure, parameter groups, the release SGD."""

from __future__ import annotations

import copy
import math
from collections import Counter

import pytest
import torch

from pixda_core.config import preset
from pixda_core.methods import method_of
from pixda_core.models import (
    deeplabv2,
    param_groups,
)
from pixda_core.train.runtime import Runtime
from pixda_core.train.step import build_nets


def _expected(n: int) -> int:
    n = (n + 6 - 7) // 2 + 1  # stem conv, stride 2
    n = math.ceil((n + 2 - 3) / 2) + 1  # max-pool, ceil mode
    return (n - 1) // 2 + 1  # layer2's stride; layer3/4 keep stride 1 (dilated)


def _release_groups(model, lr):
    """The release's optimiser groups, as its DeepLab builds them: for conv1, bn1 and
    layer1-4, every module inside (itself included) yields all its trainable parameters;
    then the heads' parameters at 10x."""

    def backbone():
        for part in (model.conv1, model.bn1, model.layer1, model.layer2, model.layer3,
                     model.layer4):  # fmt: skip
            for module in part.modules():
                for p in module.parameters():
                    if p.requires_grad:
                        yield p

    def heads():
        for head in (model.layer5, model.layer6):
            yield from head.parameters()

    return [{"params": backbone(), "lr": lr}, {"params": heads(), "lr": 10 * lr}]


@pytest.mark.unit
@pytest.mark.parametrize("backbone", ["resnet18", "resnet34", "resnet50", "resnet101"])
def test_output_stride_and_shapes(backbone):
    # shapes only: on the meta device nothing is allocated or computed (ResNet-101 in a second)
    with torch.device("meta"):
        model = deeplabv2(num_classes=7, backbone=backbone).eval()
    for h, w in ((65, 129), (64, 64)):
        with torch.no_grad():
            aux, main = model(torch.randn(1, 3, h, w, device="meta"))
        assert main.shape == aux.shape == (1, 7, _expected(h), _expected(w))
    assert _expected(512) == 65 and _expected(1024) == 129  # the release's 65x129 at 1024x512


@pytest.mark.unit
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


@pytest.mark.unit
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


@pytest.mark.unit
def test_release_sgd_repeats_backbone_parameters_as_the_release_does():
    model = deeplabv2(19, "resnet18", multi_level=True)
    groups = param_groups(model, 1e-3, release=True)
    times = Counter(id(p) for p in groups[0]["params"])
    names = {id(p): n for n, p in model.named_parameters()}
    by_name = {names[i]: k for i, k in times.items()}
    assert by_name["conv1.weight"] == 1  # conv1 is listed as itself
    assert by_name["layer1.0.conv1.weight"] == 3  # layer1, layer1.0, layer1.0.conv1
    assert by_name["layer2.0.downsample.0.weight"] == 4  # ... and the downsample Sequential
    assert len(groups[1]["params"]) == len(set(map(id, groups[1]["params"])))  # heads once
    assert set(times) == {id(p) for p in param_groups(model, 1e-3)[0]["params"]}


@pytest.mark.unit
def test_release_sgd_step_equals_the_release_update():
    cfg = preset("toy").override(
        model={"multi_level": True},
        adapt={"release_sgd": True},
        method={"name": "finetune"},
        run={"seed": 4},
    )
    nets = build_nets(cfg, method_of(cfg), cfg.adapt, Runtime(torch.device("cpu")))
    reference = copy.deepcopy(nets.g)
    o = cfg.adapt
    with pytest.warns(UserWarning, match="duplicate parameters"):  # torch says so; we don't
        release = torch.optim.SGD(
            _release_groups(reference, o.lr), lr=o.lr, momentum=o.momentum,
            weight_decay=o.weight_decay,
        )  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):  # the second step also exercises the shared momentum buffers
        grads = {n: torch.randn(p.shape, generator=gen) for n, p in nets.g.named_parameters()}
        for model in (nets.g, reference):
            for n, p in model.named_parameters():
                p.grad = grads[n].clone() if p.requires_grad else None
        nets.optimizers["g"].step()
        release.step()
    ours, theirs = nets.g.state_dict(), reference.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    # and it is not the plain optimiser: a block's weight moved about three times as far
    plain = build_nets(cfg.override(adapt={"release_sgd": False}), method_of(cfg), cfg.adapt,
                       Runtime(torch.device("cpu")))  # fmt: skip
    assert not torch.equal(plain.g.state_dict()["layer1.0.conv1.weight"],
                           ours["layer1.0.conv1.weight"])  # fmt: skip


@pytest.mark.unit
def test_the_segmenter_takes_the_smallest_size_the_config_accepts():
    import torch

    from pixda_core.models import deeplabv2

    for backbone in ("resnet18", "resnet101"):
        with torch.device("meta"):
            g = deeplabv2(19, backbone, multi_level=True)
            out = g(torch.empty(1, 3, 8, 8))
        assert all(o.shape[-2:] == (2, 2) for o in out)  # 8 pixels: a 2x2 map (stride 8, ceil)
