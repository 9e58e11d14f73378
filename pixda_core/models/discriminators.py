"""PixDA's two discriminators (docs/method.md)."""

from __future__ import annotations

from torch import nn


class PixelDiscriminator(nn.Module):
    """D1: one logit per pixel at the input's resolution.

    conv3x3(C->ndf) - LeakyReLU(0.2) - conv3x3(ndf->2 ndf) - LeakyReLU(0.2) - conv1x1(2 ndf->1).
    Shape: (B, C, H, W) softmax maps -> (B, 1, H, W).
    """

    #: how messages name it
    description = "the pixel discriminator"

    def __init__(self, num_classes: int = 19, ndf: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(num_classes, ndf, 3, 1, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 3, 1, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, 1, 1),
        )

    def forward(self, x):
        return self.net(x)


class FCDiscriminator(nn.Module):
    """D2, the AdaptSegNet/ADVENT image discriminator: five conv4x4 stride 2 pad 1,
    channels C->ndf->2ndf->4ndf->8ndf->1, LeakyReLU(0.2) between them.
    Shape: (B, C, H, W) -> (B, 1, ~H/32, ~W/32)."""

    description = "the image discriminator"

    def __init__(self, num_classes: int = 19, ndf: int = 64):
        super().__init__()
        chans = [num_classes, ndf, ndf * 2, ndf * 4, ndf * 8]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:], strict=True):
            layers += [nn.Conv2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv2d(chans[-1], 1, 4, 2, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


def output_size(net: nn.Module, size: int, dim: int) -> int:
    """The size along ``dim`` (0: height, 1: width) of the output of ``net``, a discriminator
    of convolutions in sequence, for an input of ``size`` pixels (PyTorch's Conv2d formula
    applied layer by layer, no tensor made); below 1 where the input is too small for it."""
    for layer in net.modules():
        if isinstance(layer, nn.Conv2d):
            k, s = layer.kernel_size[dim], layer.stride[dim]
            p, d = layer.padding[dim], layer.dilation[dim]
            size = (size + 2 * p - d * (k - 1) - 1) // s + 1
            if size < 1:
                return size
    return size
