"""Reading the text files a user or an editor writes (split files, list files, configs): UTF-8
with or without a byte-order mark, any line ending; a folder, a missing file, an unreadable or
binary one is an error that names the file and says what was expected."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DataError, PixdaError


def require_file(
    path: str | os.PathLike, what: str, expected: str, error: type[PixdaError] = DataError
) -> Path:
    """``path``, which must be a file: a folder or a missing path is an error naming it."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{what} {path} is a folder, not a file; expected {expected}")
    if not path.exists():
        raise error(f"{what} {path} does not exist")
    return path


def read_text(
    path: str | os.PathLike, what: str, expected: str, error: type[PixdaError] = DataError
) -> str:
    """The text of ``path`` (``what``: "split file", "config file", ...), a leading BOM
    dropped; ``expected`` says in the message what the file should hold."""
    path = require_file(path, what, expected, error)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"{what} {path} cannot be read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(
            f"{what} {path} is not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x}); "
            f"expected {expected}"
        ) from None
    if "\x00" in text:
        raise error(f"{what} {path} is binary (it holds NUL bytes), not text; expected {expected}")
    return text


def load_yaml(text: str):
    """``text`` read as YAML with the safe loader, libyaml's C parser where PyYAML has it (the
    pure-Python scanner slows down sharply on long flow mappings; the values are the same)."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
