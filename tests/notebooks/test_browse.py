"""Browsing predictions over every val image (pixda_core.browse)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pixda_core import analysis as A

pytestmark = pytest.mark.notebooks


def test_error_browser_reaches_every_val_image_on_demand(sweep):
    import ipywidgets as w

    from pixda_core import workflow as wf
    from pixda_core.browse import ErrorBrowser

    out, _ = sweep
    chosen = wf.pick_runs(A.load_runs(out))
    assert list(chosen) == ["source only", "FT 2-shot", "PixDA 2-shot"]
    browser = ErrorBrowser(chosen)
    assert browser.computed == 0  # nothing precomputed
    box = browser.widget()
    # the first picture costs one prediction, whatever the size of the val set
    assert browser.computed == 1
    (left, right), readout, picture = box.children[0].children, *box.children[1:]
    slider, method, compare = left.children
    classes = right.children[0]
    assert [type(c) for c in (slider, method, compare, classes, readout, picture)] == [
        w.IntSlider, w.Dropdown, w.Dropdown, w.SelectMultiple, w.HTML, w.Image,
    ]  # fmt: skip
    assert slider.max == len(browser) - 1 and len(browser) > 2
    first = picture.value
    slider.value = slider.max  # the last val image: one more prediction
    assert browser.computed == 2 and picture.value != first
    assert f"#{slider.max}</b> (val images #0-#{slider.max})" in readout.value
    assert "source only: mIoU over" in readout.value
    method.value = "PixDA 2-shot"
    compare.value = "FT 2-shot"  # two methods side by side: two more predictions
    assert browser.computed == 4 and "PixDA 2-shot: mIoU" in readout.value
    assert "FT 2-shot: mIoU" in readout.value
    slider.value = 0
    slider.value = slider.max  # cached: nothing recomputed
    assert browser.computed == 6
    shown = [browser.item(slider.max)[2]]
    shown += [browser.prediction(slider.max, m) for m in ("PixDA 2-shot", "FT 2-shot")]
    present = set(np.unique(np.concatenate([a.ravel() for a in shown])))
    absent = next(c for i, c in enumerate(A.CLASS_NAMES) if i not in present)
    classes.value = (absent,)
    assert f"{absent}: not in this image's ground truth" in readout.value
    compare.value = "PixDA 2-shot"  # the same method twice
    assert "compare: choose a method other than the first" in readout.value
    # notebook 04's choice of static rows: indices checked, or where the methods differ
    from pixda_core.errors import ConfigError

    assert browser.chosen_images([1, 0], 2, 3) == [1, 0]
    picked = browser.chosen_images("differ", 2, 3)
    assert len(picked) == 2 and set(picked) <= {0, 1, 2}
    with pytest.raises(ConfigError, match=r"error_images: \[99\] are not val indices"):
        browser.chosen_images([0, 99], 2, 3)
    with pytest.raises(ConfigError, match="error_images = 'different': a list of val indices"):
        browser.chosen_images("different", 2, 3)
    # the static rows are labelled by city and val index
    rows = browser.rows([1], ["PixDA 2-shot"])
    assert re.fullmatch(r"[a-z]+ #1", rows[0][0]) and list(rows[0][3]) == ["PixDA 2-shot"]
    assert rows[0][2].shape == rows[0][3]["PixDA 2-shot"].shape == (48, 96)  # full label size
