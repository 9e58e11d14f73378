"""A JupyterLab server and a headless Chromium that drives it, for tests/test_browser.py.

The browser is Debian's (``chromium`` and ``chromium-driver``) driven through selenium with the
driver's path given, so that Selenium Manager never runs and nothing is fetched. JupyterLab runs
on 127.0.0.1 with the interpreter of the tests, exposing ``window.jupyterapp`` so that a test
runs commands and reads the notebook's model instead of clicking through menus.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

#: settings of the lab's own user-settings folder (the user's are never read): every cell kept
#: in the DOM (the default windowing leaves off-screen cells unrendered), no toast over the
#: notebook, no request for news or updates
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
        "doNotDisturbMode": True,
    },
}


def missing() -> str | None:
    """Why a browser test cannot run here, or None."""
    if CHROMIUM is None:
        return "no chromium (Debian: apt-get install chromium chromium-driver)"
    if CHROMEDRIVER is None:
        return "no chromedriver (Debian: apt-get install chromium-driver)"
    if importlib.util.find_spec("selenium") is None:
        return "no selenium (pip install -e '.[dev]')"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A JupyterLab server started by :func:`jupyter_lab`."""

    def __init__(self, proc: subprocess.Popen, port: int, token: str, log: Path):
        self.proc, self.port, self.token, self.log = proc, port, token, log

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def api(self, path: str, method: str = "GET") -> bytes:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def jupyter_lab(root: Path, work: Path, timeout: float = 90) -> Iterator[Lab]:
    """JupyterLab serving ``root``, its configuration, state and log under ``work``; stopped on
    exit (its kernels with it), whatever happened."""
    for name in ("config", "data", "runtime", "ipython", "workspaces"):
        (work / name).mkdir(parents=True, exist_ok=True)
    for plugin, values in LAB_SETTINGS.items():
        path = work / "settings" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = dict(
        os.environ,
        # nothing of the user's Jupyter or IPython set-up: the python3 kernel is then the
        # interpreter running the server (ipykernel's own kernel spec)
        JUPYTER_CONFIG_DIR=str(work / "config"),
        JUPYTER_DATA_DIR=str(work / "data"),
        JUPYTER_RUNTIME_DIR=str(work / "runtime"),
        IPYTHONDIR=str(work / "ipython"),
    )
    port, token = free_port(), secrets.token_hex(16)
    log = work / "lab.log"
    # fmt: off
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp
        f"--LabApp.user_settings_dir={work / 'settings'}",
        f"--LabApp.workspaces_dir={work / 'workspaces'}",
    ]
    # fmt: on
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    lab = Lab(proc, port, token, log)
    try:
        deadline = time.monotonic() + timeout
        while True:  # until the server answers (its REST API, with the token)
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited ({proc.returncode}):\n{lab.log_text()}")
            try:
                lab.api("status")
                break
            except (OSError, urllib.error.URLError) as exc:
                if time.monotonic() > deadline:
                    text = lab.log_text()
                    raise TimeoutError(f"jupyter lab silent for {timeout} s:\n{text}") from exc
                time.sleep(0.2)
        yield lab
    finally:
        _stop(lab)


def _stop(lab: Lab) -> None:
    """Stop the server this module started: through its API (it shuts its kernels down), else
    SIGTERM then SIGKILL; then any of its own child processes (kernels) still alive."""
    import psutil

    proc = lab.proc
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    if proc.poll() is None:
        with contextlib.suppress(OSError, urllib.error.URLError):
            lab.api("shutdown", method="POST")
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


@contextlib.contextmanager
def chromium(work: Path, size: tuple[int, int] = (1400, 1000)):
    """Debian's headless Chromium under selenium (a webdriver.Chrome); its console kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # tests run as root in CI
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        f"--window-size={size[0]},{size[1]}",
        f"--user-data-dir={work / 'profile'}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, log_output=str(work / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def console(driver) -> str:
    """The browser console's warnings and errors so far (for failure messages)."""
    entries = driver.get_log("browser")
    return "\n".join(e["message"] for e in entries if e["level"] in ("WARNING", "SEVERE"))


def image_bytes(driver, css: str) -> bytes | None:
    """The bytes of the first <img> matching ``css``, fetched by the page from its src (a
    blob:, data: or http: URL); None while there is none, or while its src is being replaced
    (ipywidgets revokes an Image's old blob: URL: fetching it fails)."""
    encoded = driver.execute_async_script(
        """
        const [css, done] = arguments;
        const img = document.querySelector(css);
        if (!img || !img.src) { done(null); return; }
        fetch(img.src).then(r => r.blob()).then(b => {
            const reader = new FileReader();
            reader.onload = () => done(reader.result.split(',', 2)[1]);
            reader.readAsDataURL(b);
        }).catch(() => done(null));
        """,
        css,
    )
    return None if encoded is None else base64.b64decode(encoded)


#: prepended to the scripts below: the notebook panel open on ``path`` (or null)
_PANEL = """
const panelOf = (path) => {
    const app = window.jupyterapp;
    if (!app) return null;
    for (const w of app.shell.widgets('main')) {
        if (w.context && w.context.path === path) return w;
    }
    return null;
};
"""

_READY = (
    _PANEL
    + """
const p = panelOf(arguments[0]);
return !!(p && p.context.isReady && p.content.widgets.length
          && p.sessionContext.session?.kernel?.status === 'idle');
"""
)

_RUN_ALL = (
    _PANEL
    + """
const p = panelOf(arguments[0]);
window.jupyterapp.shell.activateById(p.id);  // run-all-cells acts on the current notebook
window.__runAll = null;
window.jupyterapp.commands.execute('notebook:run-all-cells').then(
    (ok) => { window.__runAll = {ok}; },
    (e) => { window.__runAll = {ok: false, error: String(e)}; });
"""
)

_RUN_ALL_DONE = (
    _PANEL
    + """
const p = panelOf(arguments[0]);
const idle = p.sessionContext.session?.kernel?.status === 'idle';
return idle && window.__runAll ? window.__runAll : null;
"""
)

#: from now on, every error and every traceback on stderr that the kernel sends, whatever it
#: answers: a cell's, or a widget callback's (the kernel sends those as stderr of the comm
#: message, which JupyterLab shows in no cell, only in its log console)
_LISTEN = (
    _PANEL
    + """
if (window.__kernelErrors) return;
window.__kernelErrors = [];
panelOf(arguments[0]).sessionContext.iopubMessage.connect((_, msg) => {
    const type = msg.header.msg_type, c = msg.content;
    if (type === 'error') window.__kernelErrors.push(`${c.ename}: ${c.evalue}`);
    if (type === 'stream' && c.name === 'stderr' && c.text.includes('Traceback'))
        window.__kernelErrors.push(c.text.slice(-3000));
});
"""
)

#: what went wrong so far: the kernel's errors, and errors the page shows (outputs, the
#: widgets' own output areas included, and widgets that failed to render)
_ERRORS = """
const found = (window.__kernelErrors || []).map((e) => 'kernel: ' + e);
const shown = document.querySelectorAll(
    '[data-mime-type="application/vnd.jupyter.error"], .jupyter-widgets-error-widget');
for (const el of shown) found.push('shown: ' + el.textContent.slice(-2000));
for (const el of document.querySelectorAll('.jp-OutputArea-output')) {
    if (el.textContent.includes('Error displaying widget')) found.push('shown: ' + el.textContent);
}
return found;
"""


class Notebook:
    """A notebook of the lab's root folder, open in the browser."""

    def __init__(self, driver, lab: Lab, path: str, work: Path):
        self.driver, self.lab, self.path, self.work = driver, lab, path, work

    def open(self, timeout: float = 120) -> None:
        """Open it, wait until its kernel is idle, and start recording the kernel's errors."""
        self.driver.get(self.lab.url(f"lab/tree/{self.path}"))
        self.wait(lambda d: d.execute_script(_READY, self.path), timeout, "the notebook's kernel")
        self.driver.execute_script(_LISTEN, self.path)

    def run_all(self, timeout: float = 180) -> dict:
        """Run all cells, wait until they ran and the kernel is idle: {"ok": true} when no cell
        failed."""
        self.driver.execute_script(_RUN_ALL, self.path)
        return self.wait(
            lambda d: d.execute_script(_RUN_ALL_DONE, self.path), timeout, "run all cells"
        )

    def errors(self) -> list[str]:
        """Errors since :meth:`open`: the kernel's (cells, widget callbacks) and the page's."""
        return self.driver.execute_script(_ERRORS)

    def wait(self, condition, timeout: float, what: str):
        """WebDriverWait(condition), failing with what the page, the console and the lab's log
        say (and a screenshot under ``work``)."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.25).until(condition)
        except TimeoutException:
            raise AssertionError(f"waited {timeout} s for {what}\n{self.diagnostics()}") from None

    def diagnostics(self) -> str:
        """The page's errors, the browser console, the lab's log; a screenshot under ``work``.
        Never raises: the browser itself may be what failed."""
        shot = self.work / "failure.png"
        with contextlib.suppress(Exception):
            self.driver.save_screenshot(str(shot))
        said = {}
        for what, read in (
            ("page errors", self.errors),
            ("console", lambda: console(self.driver)),
        ):
            try:
                said[what] = read()
            except Exception as exc:
                said[what] = f"unreadable ({exc})"
        return (
            f"screenshot: {shot}\npage errors: {said['page errors']}\n"
            f"console:\n{str(said['console'])[-3000:]}\nlab log:\n{self.lab.log_text()[-4000:]}"
        )
