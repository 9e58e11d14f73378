"""The kit's notebooks run by papermill: the pristine copies (never a user's edited one), each
in a kernel of its own that talks over Unix sockets, what it prints streamed to a log. Used by
sweeps (:mod:`pixda_core.sweep`), their executors and the demo."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

NB_SOURCE_ONLY = "02_source_only_pretraining.ipynb"
NB_ADAPT = "03_few_shot_adaptation.ipynb"
NB_ANALYSIS = "04_per_class_error_visualization.ipynb"


def execute(notebook: str, output: Path, parameters: dict, log=None) -> str | None:
    """Run one of the kit's notebooks (the pristine ones, never a user's edited copy) with
    papermill into ``output``, in the base folder that relative paths are taken from, what
    it prints streamed to the open file ``log``; None on success, else a one-line reason."""
    import papermill as pm

    from .paths import base_dir, notebooks_dir

    output.parent.mkdir(parents=True, exist_ok=True)
    with kernel_sockets() as config:
        try:
            pm.execute_notebook(
                str(notebooks_dir() / notebook),
                str(output),
                parameters=parameters,
                cwd=str(base_dir()),
                progress_bar=False,
                log_output=False,
                stdout_file=log,
                stderr_file=log,
                kernel_name="python3",
                config=config,
            )
        except pm.PapermillExecutionError as exc:
            return f"{exc.ename}: {exc.evalue}".splitlines()[0]
        except Exception as exc:  # a kernel that died, a notebook that cannot be read
            return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


@contextmanager
def kernel_sockets():
    """The kernel's configuration: on POSIX it talks over Unix sockets in a private temporary
    folder (IPC), not TCP on localhost, so no other user can connect and the kernel prints no
    "running over TCP without encryption" warning into every sweep log and the demo."""
    from traitlets.config import Config

    if os.name != "posix":
        yield Config()
        return
    # a Unix socket's path holds at most ~104 bytes: under /tmp when $TMPDIR is long
    where = None if len(tempfile.gettempdir()) < 60 else "/tmp"
    with tempfile.TemporaryDirectory(prefix="pixda-kernel-", dir=where) as folder:
        yield Config({"KernelManager": {"transport": "ipc", "ip": str(Path(folder) / "k")}})
