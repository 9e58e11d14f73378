"""Lock files that keep two processes out of one run folder or one sweep folder.

``filelock`` takes an OS lock on the file (``flock`` on POSIX, ``msvcrt`` on Windows), so the
lock goes with the process that holds it, even when that process is killed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout


@contextmanager
def held(path: Path, when_busy: Callable[[], None]) -> Iterator[None]:
    """Hold the lock file ``path`` while the block runs. When another process holds it,
    ``when_busy()`` is called first: it raises to refuse, or returns to wait for the lock."""
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        when_busy()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
