"""pixda: cross-domain few-shot semantic segmentation kit (PixDA)."""

__version__ = "0.1.0"
