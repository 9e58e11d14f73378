"""DeepLab-v2 with a dilated ResNet backbone, as in the PixDA release (docs/method.md).

Caffe-style ResNet: the stride sits on the first 1x1 convolution of a bottleneck, the stem's
max-pool rounds up (``ceil_mode``), layer3 and layer4 keep stride 1 with dilation 2 and 4
(output stride 8). Two ASPP heads (each a sum of four dilated 3x3 convolutions with bias): the
auxiliary one on layer3, the main one on layer4. Parameter names follow the release
(``conv1``, ``layer1``..``layer4``, ``layer5`` = aux head, ``layer6`` = main head) and
torchvision, so both kinds of weights load by name.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(
            inplanes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, 1, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride, bias=False)  # Caffe: stride here
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, 1, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ASPP(nn.Module):
    """DeepLab-v2 classifier: the sum of four 3x3 convolutions with dilation 6/12/18/24."""

    def __init__(self, in_channels: int, num_classes: int, rates=(6, 12, 18, 24)):
        super().__init__()
        self.conv2d_list = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=r, dilation=r, bias=True) for r in rates
        )
        for conv in self.conv2d_list:
            nn.init.normal_(conv.weight, 0.0, 0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x):
        out = self.conv2d_list[0](x)
        for conv in self.conv2d_list[1:]:
            out = out + conv(x)
        return out


_SPECS = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
}
BACKBONES = tuple(_SPECS)


class DeepLabV2(nn.Module):
    """Shape: x (B, 3, H, W) -> (aux logits or None, main logits), each (B, C, H', W') with
    H' = ceil(ceil(ceil(H / 2) / 2) / 2) (+1 where the stem's rounding adds one), ~H/8."""

    def __init__(
        self, num_classes: int = 19, backbone: str = "resnet101", multi_level: bool = True
    ):
        super().__init__()
        if backbone not in _SPECS:
            raise ValueError(f"backbone {backbone!r} is not one of {', '.join(BACKBONES)}")
        block, layers = _SPECS[backbone]
        self.num_classes, self.backbone_name, self.multi_level = num_classes, backbone, multi_level
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], dilation=2)
        self.layer4 = self._make_layer(block, 512, layers[3], dilation=4)
        self.layer5 = ASPP(256 * block.expansion, num_classes) if multi_level else None
        self.layer6 = ASPP(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):  # frozen affine, still in train mode
                m.weight.requires_grad_(False)
                m.bias.requires_grad_(False)

    def _make_layer(self, block, planes, blocks, stride=1, dilation=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, dilation, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, 1, dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    @property
    def heads(self) -> list[nn.Module]:
        return [h for h in (self.layer5, self.layer6) if h is not None]

    def forward(self, x: torch.Tensor):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        feat3 = self.layer3(x)
        aux = self.layer5(feat3) if self.layer5 is not None else None
        return aux, self.layer6(self.layer4(feat3))


def deeplabv2(num_classes: int = 19, backbone: str = "resnet101", multi_level: bool = True):
    """DeepLab-v2 as in docs/method.md; heads initialised N(0, 0.01), BatchNorm affine frozen."""
    return DeepLabV2(num_classes, backbone, multi_level)


def param_groups(model: nn.Module, lr: float, release: bool = False) -> list[dict]:
    """Optimiser groups: backbone at ``lr``, both heads at ``10 * lr``.

    By default every trainable parameter is listed exactly once. ``release=True`` lists the
    backbone as the public release does: for each of conv1, bn1, layer1..layer4, every module
    inside it (itself included) contributes all of its trainable parameters, so a parameter
    appears once per module that encloses it (conv1's weight once, a block's convolution 3
    times, a downsample convolution 4 times) and SGD applies its update that many times."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    head_ids = {id(p) for h in model.heads for p in h.parameters()}
    if release:
        parts = (model.conv1, model.bn1, model.layer1, model.layer2, model.layer3, model.layer4)
        backbone = [
            p
            for part in parts
            for module in part.modules()
            for p in module.parameters()
            if p.requires_grad
        ]
        heads = [p for h in model.heads for p in h.parameters()]
        return [{"params": backbone, "lr": lr}, {"params": heads, "lr": 10 * lr}]
    trainable = [p for p in model.parameters() if p.requires_grad]
    backbone = [p for p in trainable if id(p) not in head_ids]
    heads = [p for p in trainable if id(p) in head_ids]
    return [{"params": backbone, "lr": lr}, {"params": heads, "lr": 10 * lr}]
