"""FT: the source-only model fine-tuned on the target shots alone."""

from __future__ import annotations

from .base import SEG_TRG, Method


class Finetune(Method):
    name = "finetune"
    title = "FT"
    target = True
    losses = (SEG_TRG,)
