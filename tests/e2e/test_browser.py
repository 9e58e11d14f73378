"""End to end: notebook 04's error browser in a real JupyterLab in headless Chromium."""

from __future__ import annotations

import ast
import io
import os
import shutil

import nbformat
import pytest
from PIL import Image

from tests.e2e import browser_lab

pytestmark = [
    pytest.mark.notebooks,
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(browser_lab.missing() is not None, reason=str(browser_lab.missing())),
]


NOTEBOOK = "04_per_class_error_visualization.ipynb"


def set_parameters(nb, **values) -> None:
    """Set literals of the notebook's ``parameters`` cell (one assignment each, rewritten as
    one line)."""
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    lines = cell.source.splitlines()
    for stmt in reversed(ast.parse(cell.source).body):
        name = stmt.targets[0].id
        if name in values:
            lines[stmt.lineno - 1 : stmt.end_lineno] = [f"{name} = {values.pop(name)!r}"]
    assert not values, f"not parameters of {NOTEBOOK}: {sorted(values)}"
    cell.source = "\n".join(lines)


class ErrorBrowserPage:
    """The error browser's widget on the page: its controls found by their descriptions."""

    def __init__(self, notebook: browser_lab.Notebook):
        self.nb, self.driver = notebook, notebook.driver

    def control(self, kind: str, label: str):
        """The ipywidgets control of CSS class ``kind`` (widget-slider, widget-dropdown,
        widget-select-multiple) described as ``label``."""
        from selenium.webdriver.common.by import By

        xpath = (
            f"//div[contains(@class, 'jupyter-widgets') and contains(@class, '{kind}')]"
            f"[label[normalize-space() = '{label}']]"
        )
        return self.driver.find_element(By.XPATH, xpath)

    def select(self, label: str, multiple: bool = False):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select

        kind = "widget-select-multiple" if multiple else "widget-dropdown"
        return Select(self.control(kind, label).find_element(By.TAG_NAME, "select"))

    def picture(self) -> bytes | None:
        return browser_lab.image_bytes(self.driver, "img.pixda-picture")

    def readout(self) -> str:
        return self.driver.execute_script(
            "return document.querySelector('.pixda-readout')?.textContent.trim() ?? ''"
        )

    def wait_for_new_picture(self, before: bytes | None, what: str, timeout: float = 60):
        """Wait until the picture is a PNG other than ``before`` (the kernel has redrawn it),
        failing as soon as the kernel or the page shows an error; the new PNG."""

        def changed(_):
            errors = self.nb.errors()
            assert errors == [], (what, errors)
            png = self.picture()
            return png if png and png != before else None

        png = self.nb.wait(changed, timeout, f"a new picture after {what}")
        assert self.nb.errors() == [], what
        with Image.open(io.BytesIO(png)) as im:
            assert im.format == "PNG" and min(im.size) > 100, (what, im.format, im.size)
        return png


def test_notebook_04_error_browser_in_jupyterlab(sweep, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from pixda_core.workflow import notebooks_dir

    out, _ = sweep
    root = tmp_path / "lab"
    root.mkdir()
    nb = nbformat.read(notebooks_dir() / NOTEBOOK, as_version=4)
    set_parameters(nb, runs=[str(out)], out_dir=str(root / "analysis"), interactive=True)
    nbformat.write(nb, root / NOTEBOOK)

    with (
        browser_lab.jupyter_lab(root, tmp_path / "server") as lab,
        browser_lab.chromium(tmp_path) as driver,
    ):
        notebook = browser_lab.Notebook(driver, lab, NOTEBOOK, tmp_path)
        notebook.open()
        ran = notebook.run_all()
        assert ran == {"ok": True}, f"run all: {ran}\n{notebook.diagnostics()}"
        assert notebook.errors() == []
        page = ErrorBrowserPage(notebook)
        picture = page.wait_for_new_picture(None, "run all")
        readout = page.readout()
        assert readout, "no readout"

        def step(what: str) -> str:
            """After a control moved: a new picture, a new readout; the readout."""
            nonlocal picture, readout
            before, picture = readout, page.wait_for_new_picture(picture, what)
            readout = page.readout()
            assert readout and readout != before, (what, readout)
            return readout

        # the slider: its handle takes the arrow keys once focused
        slider = page.control("widget-slider", "val image")
        slider.find_element(By.CSS_SELECTOR, ".noUi-handle").send_keys(Keys.ARROW_RIGHT)
        step("the val image slider")
        assert slider.find_element(By.CSS_SELECTOR, ".widget-readout").text == "1"

        # the method: another run than the first
        method = page.select("method")
        options = [o.get_attribute("value") for o in method.options]
        assert len(options) >= 2, options  # source only, FT 2-shot, PixDA 2-shot
        first = method.first_selected_option.get_attribute("value")
        other = next(o for o in options if o != first)
        method.select_by_value(other)
        assert other in step(f"method {other}")

        # compare: the first method beside it
        compare = page.select("compare")
        assert compare.first_selected_option.get_attribute("value") == "none"
        compare.select_by_value(first)
        shown = step(f"compare with {first}")
        assert first in shown and other in shown, shown

        # the class filter: one class
        page.select("classes", multiple=True).select_by_value("road")
        step("the classes filter")

        assert notebook.errors() == []
        # the widget as the user sees it (docs/img/error_browser.png is this screenshot:
        # PIXDA_SCREENSHOT=docs/img/error_browser.png makes the test save it there)
        widget = driver.find_element(
            By.XPATH,
            "//img[contains(@class, 'pixda-picture')]"
            "/ancestor::div[contains(@class, 'jp-OutputArea-output')][1]",
        )
        driver.set_window_size(1400, 2000)  # the whole widget in view: controls to picture
        driver.execute_script("arguments[0].scrollIntoView(true);", widget)
        shot = tmp_path / "error_browser.png"
        widget.screenshot(str(shot))
        with Image.open(shot) as im:
            assert im.width >= 600 and im.height >= 300, im.size  # controls, readout, picture
            colours = im.convert("RGB").getcolors(1 << 24)
            assert len(colours) > 50, len(colours)  # a picture, not a blank box
        if os.environ.get("PIXDA_SCREENSHOT"):
            shutil.copy(shot, os.environ["PIXDA_SCREENSHOT"])
