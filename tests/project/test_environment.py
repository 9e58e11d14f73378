"""environment.yml, pyproject.toml and the suite's own distribution over workers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib

import pytest
import yaml

from tests.helpers import ROOT


def _norm(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
    return m.group(1).lower().replace("_", "-"), m.group(2).replace(" ", "")


@pytest.mark.unit
def test_environment_yml_matches_pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(map(_norm, meta["dependencies"] + meta["optional-dependencies"]["dev"]))
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = dict(_norm(r) for r in pip if not r.startswith("-e"))
    assert listed == wanted
    assert "python=3.11" in env["dependencies"] and "pip" in env["dependencies"]
    assert "-e ." in pip


@pytest.mark.unit
def test_required_packages_are_declared():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_norm(r)[0] for r in meta["dependencies"]}
    assert {
        "torch",
        "torchvision",
        "opencv-python-headless",
        "cityscapesscripts",
        "papermill",
        "seaborn",
        "jupyterlab",
        "ipywidgets",
        "tqdm",
        "pyyaml",
    } <= names


@pytest.mark.tools
def test_loadfile_keeps_a_test_file_on_one_worker(tmp_path):
    """``make test`` runs ``-n 3 --dist loadfile``: each test file on one worker, so its module
    fixtures (a sweep over gaps: minutes) are built once. (``--dist loadgroup``, used before,
    stopped grouping under pytest 9.2 without a word: pytest-xdist issue 1386.)"""
    import subprocess
    import sys

    # each file's tests use a fixture built by the suite's shared(): once for the whole run
    built = tmp_path / "built.txt"
    (tmp_path / "conftest.py").write_text(
        "import os, time, pytest\nfrom tests.shared import shared\n"
        "def build(folder):\n"
        f"    open({str(built)!r}, 'a').write(os.environ['PYTEST_XDIST_WORKER'] + '\\n')\n"
        "    time.sleep(1)\n    return 42\n"
        "@pytest.fixture(scope='session')\n"
        "def thing(tmp_path_factory):\n    return shared(tmp_path_factory, 'thing', build)[1]\n"
    )
    for name in ("a", "b"):
        body = "".join(f"def test_{i}(thing): assert thing == 42\n" for i in range(4))
        (tmp_path / f"test_{name}.py").write_text(body)
    argv = [sys.executable, "-m", "pytest", "-n", "3", "--dist", "loadfile", "-v", "-p",
            "no:cacheprovider", str(tmp_path)]  # fmt: skip
    make = (ROOT / "Makefile").read_text()
    assert f"-m pytest -q {' '.join(argv[3:7])} " in make  # what make test runs
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:]
    ran = re.findall(r"\[(gw\d)\] .*PASSED (test_\w)\.py", proc.stdout)
    assert len(ran) == 8
    workers = {f: {w for w, g in ran if g == f} for f in ("test_a", "test_b")}
    assert all(len(w) == 1 for w in workers.values()), proc.stdout  # a file: one worker
    assert len({w for w, _ in ran}) == 2  # two workers ran tests ...
    assert len(built.read_text().splitlines()) == 1  # ... and the shared fixture was built once


@pytest.mark.tools
@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_installs_again_after_the_checkout_moved(tmp_path):
    """The venv's stamp holds the checkout's path: `make` in the same place does nothing,
    `make` after a move installs again (editable install, git filter through `python -m`,
    since a moved venv's scripts name the old path). Dry runs: nothing is installed."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    stamp = tmp_path / "venv" / ".installed"
    stamp.parent.mkdir()
    os.utime(tmp_path / "pyproject.toml", (1_000_000_000, 1_000_000_000))

    def dry(*targets: str) -> str:
        proc = subprocess.run(["make", "-n", "VENV=venv", *targets], cwd=tmp_path,
                              capture_output=True, text=True, check=True)  # fmt: skip
        return proc.stdout

    stamp.write_text(f"{tmp_path}\n")
    assert "pip install" not in dry()  # installed here: nothing to do
    assert "pip install" not in dry("lab")
    stamp.write_text("/where/the/checkout/was\n")
    moved = dry()
    assert 'pip install --quiet -e ".[dev]"' in moved
    assert "venv/bin/python -m nbstripout --install --attributes .gitattributes" in moved
    assert f'echo "{tmp_path}" > venv/.installed' in moved
    lab, docs = dry("lab"), dry("docs")
    assert "pip install" in lab and "venv/bin/python -m jupyterlab" in lab
    assert "venv/bin/python -m mkdocs serve" in docs
