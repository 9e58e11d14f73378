"""The oracle: FT on every target training image instead of the shots, trained as long as the
source-only model (the ``pretrain`` schedule: an oracle is fully trained on its data). The
reference a few-shot method is measured against; tables show it, like source-only, without a
shot count."""

from __future__ import annotations

from .base import SEG_TRG, Method


class Oracle(Method):
    name = "oracle"
    title = "oracle"
    target = True
    all_target = True
    schedule = "pretrain"
    losses = (SEG_TRG,)
