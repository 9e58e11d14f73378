"""Source-only: G trained on the labelled source images alone (the model every adaptation
method starts from)."""

from __future__ import annotations

from .base import SEG_SRC, Method


class SourceOnly(Method):
    name = "source_only"
    title = "source only"
    source = True
    schedule = "pretrain"  # trained in full on its data
    losses = (SEG_SRC,)
