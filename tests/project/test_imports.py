"""The package's import graph: no cycle, training independent of the report layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pixda_core

pytestmark = pytest.mark.unit


ROOT = Path(pixda_core.__file__).parent


#: what reads and draws results; training must run without any of it
REPORT_LAYER = {"analysis", "viz", "stats", "browse", "diagnostics"}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports (``from .x import y`` counts as importing
    ``x.y`` when that is a module, else ``x``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:
                sub = f"{target}.{a.name}"
                found.add(sub if sub in known else target)
    return {m for m in found if m in known and m != name}


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    mods = modules(root)
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                out.append(sorted(part))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def without_packages(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """Imports of a package's ``__init__`` stand for the package's own modules importing their
    parent: drop the edges from a package to its own submodules and back (how Python packages
    re-export their parts), keep every other one."""
    return {
        v: {w for w in ws if not (w.startswith(v + ".") or v.startswith(w + "."))}
        for v, ws in edges.items()
    }


def test_no_import_cycle_in_the_package():
    found = cycles(without_packages(graph()))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_training_does_not_import_the_report_layer():
    edges = graph()
    report = {f"pixda_core.{m}" for m in REPORT_LAYER}
    bad = sorted(
        (v, w) for v, ws in edges.items() if v.startswith("pixda_core.train") for w in ws & report
    )
    assert not bad, "train/ imports the report layer: " + ", ".join(f"{v} -> {w}" for v, w in bad)


def test_the_checks_catch_what_they_look_for(tmp_path):
    """On a hand-made package: a lazy two-module cycle and a train/ import of viz are found;
    a package importing its own submodule is not a cycle."""
    pkg = tmp_path / "pixda_core"
    (pkg / "train").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "viz.py").write_text("def f():\n    from .browse import g\n")
    (pkg / "browse.py").write_text("from . import viz\n")
    (pkg / "train" / "__init__.py").write_text("from .loop import run\n")
    (pkg / "train" / "loop.py").write_text("from .. import train\nfrom ..viz import f\n")
    edges = graph(pkg)
    assert cycles(without_packages(edges)) == [["pixda_core.browse", "pixda_core.viz"]]
    assert "pixda_core.viz" in edges["pixda_core.train.loop"]
    assert edges["pixda_core.browse"] == {"pixda_core.viz"}
