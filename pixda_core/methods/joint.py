"""Joint: G on the source images (FDA-styled towards the target batch) and the target shots
together, with no adversarial term."""

from __future__ import annotations

from .base import SEG_SRC, SEG_TRG, Method


class Joint(Method):
    name = "joint"
    title = "joint"
    source = True
    target = True
    losses = (SEG_SRC, SEG_TRG)
    options = ("method.fda", "method.fda_beta")
