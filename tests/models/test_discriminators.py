"""PixDA's discriminators (pixda_core.models.discriminators): layers, size rule."""

from __future__ import annotations

import pytest
import torch

from pixda_core.models import (
    FCDiscriminator,
    PixelDiscriminator,
)


@pytest.mark.unit
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


@pytest.mark.unit
@pytest.mark.parametrize("size", [31, 32, 33, 64, 100])
def test_the_discriminator_size_rule_is_the_network_itself(size):
    import torch

    from pixda_core.models import FCDiscriminator
    from pixda_core.models.discriminators import output_size

    d = FCDiscriminator(19)
    expected = output_size(d, size, 0), output_size(d, 2 * size, 1)
    if min(expected) < 1:
        with pytest.raises(RuntimeError):
            d(torch.zeros(1, 19, size, 2 * size))
    else:
        assert tuple(d(torch.zeros(1, 19, size, 2 * size)).shape[-2:]) == expected
