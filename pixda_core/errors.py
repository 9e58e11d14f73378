"""User-facing errors and the command-line wrapper that reports them without a traceback.

A :class:`PixdaError` is a problem with the user's input (a path, a file, a value, a flag):
its message names the offending thing and what was expected. Command-line entry points run
through :func:`run_cli`, which prints such a message to stderr and exits with status 2; so is
a file system refusing a write (full disk, read-only or unwritable folder), named by its path.
Any other exception is a bug in the kit and keeps its traceback.
"""

from __future__ import annotations

import errno
import functools
import sys
from collections.abc import Callable


class PixdaError(Exception):
    """An error in the user's input; the message is shown as is, without a traceback."""


class DataError(PixdaError):
    """A dataset root, list file, image or label that is missing, malformed or corrupt."""


class ConfigError(PixdaError):
    """A configuration value, key or command-line flag that is not acceptable."""


class SlurmError(PixdaError):
    """A SLURM command (sinfo, sbatch) that could not reach the cluster or that it refused:
    SLURM's own message, what to check, and what of the sweep was written or submitted."""


class Stopped(Exception):
    """A run stopped by a signal (SIGTERM, SIGINT) at a step boundary, its checkpoint
    written; the exit status is 128 + the signal's number, as a shell reports it, which
    schedulers treat as a job to requeue or resume."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


USER_ERROR_EXIT = 2

_said: set[str] = set()


def say_once(message: str) -> None:
    """Print a note or warning to stderr, one line, once per process (a file read by several
    steps of one run is reported once)."""
    if message not in _said:
        _said.add(message)
        print(message, file=sys.stderr, flush=True)


#: write failures that come from the machine, not from the kit: reported without a traceback
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}


def user_message(exc: PixdaError) -> str:
    """The message of ``exc`` as the user should read it.

    An error raised in a DataLoader worker reaches the main process re-created with the
    worker's traceback pasted into its message ("Caught DataError in DataLoader worker
    process 0. Original Traceback ..."); only its last line, the original message, is kept.
    """
    text = str(exc)
    if "Original Traceback (most recent call last)" in text:
        last = [ln for ln in text.strip().splitlines() if ln.strip()][-1]
        text = last.split(": ", 1)[1] if last.startswith(("pixda_core.", "Pixda")) else last
    return text


def run_cli(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a command-line ``main`` so that user errors exit 2 with a one-line message."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return int(main(*args, **kwargs) or 0)
        except PixdaError as exc:
            print(f"error: {user_message(exc)}", file=sys.stderr)
            return USER_ERROR_EXIT
        except OSError as exc:
            if exc.errno not in ENVIRONMENT_ERRNOS:
                raise
            where = exc.filename or "a file"
            print(
                f"error: {where}: {exc.strerror}; what was written before is kept (free "
                "space or fix the permissions, then resume)",
                file=sys.stderr,
            )
            return USER_ERROR_EXIT
        except Stopped as exc:
            print(str(exc), file=sys.stderr)
            return 128 + exc.signum
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper
