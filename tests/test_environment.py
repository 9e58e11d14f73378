"""pyproject.toml and environment.yml must name the same packages with the same ranges."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]


def _norm(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
    return m.group(1).lower().replace("_", "-"), m.group(2).replace(" ", "")


def test_environment_yml_matches_pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(map(_norm, meta["dependencies"] + meta["optional-dependencies"]["dev"]))
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = dict(_norm(r) for r in pip if not r.startswith("-e"))
    assert listed == wanted
    assert "python=3.11" in env["dependencies"] and "pip" in env["dependencies"]
    assert "-e ." in pip


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
