"""The README and the documentation site."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

README = ROOT / "README.md"


DOCS = ROOT / "docs"


if not (ROOT / "mkdocs.yml").is_file():  # an installed package without its checkout
    pytest.skip("no mkdocs.yml: not a checkout", allow_module_level=True)


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True,
        text=True,
        cwd=config.parent,
        env=env,
        timeout=300,
    )


def commands(markdown: str) -> list[str]:
    """The shell commands a page shows: its indented code lines, continuation lines joined,
    comments left out."""
    out, current = [], ""
    for line in markdown.splitlines():
        if line.startswith("    "):
            text = line.split(" #")[0].strip()
            current = f"{current} {text}" if current else text
            if not text.endswith("\\"):
                out.append(current)
                current = ""
    return [c for c in out if c and not c.startswith("#")]


@pytest.mark.unit
def test_the_readme_is_a_front_door():
    text = README.read_text()
    assert len(text.splitlines()) <= 160
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if not link.startswith("http")]
    assert any(link.endswith(".png") for link in local)
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"
    for picture in (link for link in local if link.endswith(".png")):
        assert (ROOT / picture).stat().st_size < 400_000, f"{picture}: keep the pictures small"


@pytest.mark.unit
def test_every_command_of_the_readme_is_in_the_docs():
    docs = "\n".join(p.read_text() for p in sorted(DOCS.glob("*.md")))

    def words(command: str) -> str:  # continuation lines may wrap differently
        return " ".join(command.replace("\\", " ").split())

    shown = {words(c) for c in commands(docs)}
    lost = [c for c in commands(README.read_text()) if words(c) not in shown]
    assert not lost, f"commands in the README that no docs page shows: {lost}"


@pytest.mark.tools
def test_the_site_builds_strictly(tmp_path):
    done = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stdout + done.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("pixda_core.train.adapt", "pixda_core.stats", "pixda_core.viz.plot_miou_vs_gap"):
        assert f'id="{name}"' in api, f"the API page has no {name}"


@pytest.mark.tools
def test_a_broken_link_fails_the_build(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(DOCS, copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    shutil.copytree(ROOT / "pixda_core", copy / "pixda_core")  # what the API page reads
    page = copy / "docs" / "toy.md"
    page.write_text(page.read_text() + "\nSee [the missing page](missing.md).\n")
    done = build(copy / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0
    assert "missing.md" in done.stdout + done.stderr


@pytest.mark.unit
def test_the_method_page_holds_the_presets_table():
    from pixda_core.config import preset_table

    table = preset_table("paper", "toy")
    assert table in (DOCS / "method.md").read_text(), (
        "docs/method.md's presets table differs from the presets; put this one in:\n" + table
    )
    assert "| `adapt.early_stop` | 30000 | 150 |" in table  # the published 30,000 iterations


@pytest.mark.unit
def test_references_to_pages_name_pages_of_the_checkout():
    """Code, --help, notebooks and docs point to pages a user has: method.md is docs/method.md
    (docs' own pages link it as method.md), and nothing names the team's notes outside it."""
    files = [ROOT / "run.py", *ROOT.glob("pixda_core/**/*.py"),
             *ROOT.glob("pixda_core/**/*.ipynb"), *ROOT.glob("notebooks/*.ipynb"),
             *ROOT.glob("benchmarks/*"), README, *DOCS.glob("*.md")]  # fmt: skip
    wrong = []
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for match in re.finditer(r"([\w./-]*)\b(method|datasets|performance|style)\.md", text):
            name = match[0]
            here = [ROOT / name] + ([DOCS / name] if path.parent == DOCS else [])
            if not any(page.is_file() for page in here):
                wrong.append(f"{path.relative_to(ROOT)}: {match[0]}")
        if "shared/docs" in text or "shared/data" in text:
            wrong.append(f"{path.relative_to(ROOT)}: names shared/docs or shared/data")
    assert not wrong, "references to pages that are not in the checkout:\n" + "\n".join(wrong)
