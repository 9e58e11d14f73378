"""PixDA's own pieces (pixda_core.methods.pixda): the distillation teacher. (Its selection:
tests/train/test_selection.py; its steps: tests/train/test_step.py and test_loop.py.)"""

from __future__ import annotations

import pytest
import torch

from pixda_core.methods.pixda import make_teacher
from pixda_core.train.step import build_segmenter
from tests.helpers import toy_preset

pytestmark = pytest.mark.unit


def test_the_teacher_is_a_frozen_eval_copy_or_the_saved_one():
    cfg = toy_preset()
    g = build_segmenter(cfg)
    teacher = make_teacher(g)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert teacher is not g and all(
        torch.equal(a, b)
        for a, b in zip(g.state_dict().values(), teacher.state_dict().values(), strict=True)
    )
    saved = {k: v + 1 if v.is_floating_point() else v for k, v in g.state_dict().items()}
    resumed = make_teacher(g, saved)
    assert torch.equal(resumed.state_dict()["conv1.weight"], saved["conv1.weight"])
    assert g.training  # G itself is untouched
