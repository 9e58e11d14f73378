"""Networks: DeepLab-v2 (segmenter G) and the two discriminators, plus weight loading."""

from .deeplab import BACKBONES, DeepLabV2, deeplabv2, param_groups
from .discriminators import FCDiscriminator, PixelDiscriminator
from .pretrained import CheckpointError, LoadReport, load_pretrained

__all__ = [
    "BACKBONES",
    "DeepLabV2",
    "deeplabv2",
    "param_groups",
    "FCDiscriminator",
    "PixelDiscriminator",
    "CheckpointError",
    "LoadReport",
    "load_pretrained",
]
