"""Folders built once for a whole test run and shared by its pytest-xdist workers (the
session fixtures of ``conftest.py``): the standard library and a file lock, nothing heavier,
so that a nested pytest can use them too."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock


def shared(tmp_path_factory, name: str, build: Callable[[Path], object]) -> tuple[Path, object]:
    """``build(folder)`` once for the whole run, under a lock, in a folder every worker sees
    (under pytest-xdist each worker has a base temp folder of its own, their parent is the
    run's): (the folder, what ``build`` returned, as JSON). Later callers, on any worker,
    wait for the first and read what it built. What is built here is read-only by
    convention: a test that changes it copies it first."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    folder = base / f"shared-{name}"
    record = base / f"shared-{name}.json"
    with FileLock(str(base / f"shared-{name}.lock")):
        if not record.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            record.write_text(json.dumps(build(folder), default=str))
    return folder, json.loads(record.read_text())


def copy_tree(src: Path, dst: Path, ignore=None) -> Path:
    """A private copy of a built folder; checkpoints (never changed in place: they are written
    to a temporary file and renamed) are hard links, so the copy costs no disk."""

    def copy(a, b):
        return os.link(a, b) if a.endswith(".pt") else shutil.copy2(a, b)

    return Path(shutil.copytree(src, dst, copy_function=copy, symlinks=True, ignore=ignore))
