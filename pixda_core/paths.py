"""Where things are: the package, the checkout it runs from, the folder relative paths are
taken from, the kit's notebooks. The standard library only, so that a sweep's job process
(:mod:`pixda_core.notebook_run`) finds its notebook without importing torch."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
#: the checkout the package runs from (an editable install), None for an installed wheel
CHECKOUT = PACKAGE.parent if (PACKAGE.parent / "pyproject.toml").is_file() else None


def base_dir() -> Path:
    """Where relative paths are taken from: ``$PIXDA_HOME`` when set; the checkout when the
    working folder is inside it; else the working folder."""
    home = os.environ.get("PIXDA_HOME")
    if home:
        return Path(home).expanduser().resolve()
    cwd = Path.cwd().resolve()
    if CHECKOUT is not None and (cwd == CHECKOUT or CHECKOUT in cwd.parents):
        return CHECKOUT
    return cwd


def resolve(path: str | os.PathLike) -> Path:
    """An absolute path; relative ones are taken from :func:`base_dir`."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else base_dir() / p


def notebooks_dir() -> Path:
    """The kit's own numbered notebooks (package data), which sweeps execute: pristine
    copies, never a user's; ``pixda notebooks DIR`` copies them to explore and edit."""
    return PACKAGE / "notebooks"
