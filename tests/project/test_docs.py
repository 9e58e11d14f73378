"""The README and the documentation site."""

from __future__ import annotations

import importlib.util
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


def home_page(readme: str) -> str:
    """docs/index.md, the site's home page: the README with its links into docs/ made relative
    to docs/ (``python -m tests.project.test_docs`` writes it)."""
    return readme.replace("](docs/", "](")


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
def test_the_home_page_is_the_readme():
    assert (DOCS / "index.md").read_text() == home_page(README.read_text()), (
        "docs/index.md differs from the README: write it with .venv/bin/python -m "
        "tests.project.test_docs"
    )


@pytest.mark.unit
def test_no_page_states_the_suites_size():
    """The number of tests changes with every commit: no page states it as a fact (a table's
    statistical tests, "Holm over the table's 8 tests", are not the suite's)."""
    found = [f"{p.name}: {m[0]}" for p in [README, *DOCS.glob("*.md")]
             for m in re.finditer(r"(?<!table's )\b\d[\d,]* (tests|passed)\b",
                                  p.read_text())]  # fmt: skip
    assert not found, found


@pytest.mark.unit
def test_the_calibration_ranges_are_the_scripts():
    """The README's and toy.md's calibration tables quote benchmarks/toy_calibration.py's
    ranges (TARGETS), as the script prints them."""
    spec = importlib.util.spec_from_file_location(
        "toy_calibration", ROOT / "benchmarks" / "toy_calibration.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for page in (README, DOCS / "toy.md"):
        rows = {}
        for line in page.read_text().splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.startswith("|") and len(cells) > 2:
                rows[cells[0]] = cells[1:]
        for what, (low, high) in script.TARGETS.values():
            row = next((cells for name, cells in rows.items() if name.startswith(what)), None)
            assert row is not None, f"{page.name}: no calibration row {what!r}"
            assert script._range(low, high) in row, (
                f"{page.name}: {what!r} says {row}, the script {script._range(low, high)!r}"
            )


def layout_paths() -> set[str]:
    """The paths docs/layout.md's tree names: a line's names (comma-separated, before two
    spaces) under the folders it is indented below."""
    text = (DOCS / "layout.md").read_text()
    paths, parents = set(), []
    for line in text.splitlines():
        if not line.startswith("    ") or len(line) - len(line.lstrip()) > 12:
            continue  # prose, or a description's continuation line
        depth = (len(line) - len(line.lstrip()) - 4) // 2
        names = line.strip().split("  ")[0]
        parents = parents[:depth]
        for name in (n.strip() for n in names.split(",")):
            paths.add("/".join([*parents, name.rstrip("/")]))
        if names.endswith("/"):
            parents.append(names.rstrip("/"))
    return paths


@pytest.mark.unit
def test_the_layout_names_every_module():
    """Every module of the package is on docs/layout.md, where it lies (a subpackage's
    ``__init__.py`` is its folder); every .py the page names exists."""
    named = layout_paths()
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "pixda_core").rglob("*.py")
               if p.name != "__init__.py" or p.parent.name == "pixda_core"}  # fmt: skip
    missing = sorted(modules - named)
    assert not missing, f"modules docs/layout.md does not name: {missing}"
    stale = sorted(n for n in named if n.endswith(".py") and not (ROOT / n).is_file())
    assert not stale, f"docs/layout.md names modules that do not exist: {stale}"


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


if __name__ == "__main__":  # write the home page from the README
    (DOCS / "index.md").write_text(home_page(README.read_text()))
    print(f"wrote {DOCS / 'index.md'}")
