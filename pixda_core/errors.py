"""User-facing errors and the command-line wrapper that reports them without a traceback.

A :class:`PixdaError` is a problem with the user's input (a path, a file, a value, a flag):
its message names the offending thing and what was expected. Command-line entry points run
through :func:`run_cli`, which prints such a message to stderr and exits with status 2; any
other exception is a bug in the kit and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable


class PixdaError(Exception):
    """An error in the user's input; the message is shown as is, without a traceback."""


class DataError(PixdaError):
    """A dataset root, list file, image or label that is missing, malformed or corrupt."""


class ConfigError(PixdaError):
    """A configuration value, key or command-line flag that is not acceptable."""


USER_ERROR_EXIT = 2


def run_cli(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a command-line ``main`` so that user errors exit 2 with a one-line message."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return int(main(*args, **kwargs) or 0)
        except PixdaError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return USER_ERROR_EXIT
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper
