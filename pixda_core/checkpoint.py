"""Training checkpoints: one dict per file, written atomically, read without running code.

A checkpoint holds everything a run needs to continue exactly: model, optimiser and scheduler
states, the step and phase, the selection state, the RNG states and the config. It is written
to a temporary file in the same folder and moved into place with ``os.replace``, so a crash or a
full disk while writing leaves the previous checkpoint intact; it is read with
``torch.load(weights_only=True)``, so a file from elsewhere cannot run code.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import torch

from .models.pretrained import CheckpointError, read_weights

FORMAT = "pixda-checkpoint-1"
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


def floating_tensors(obj) -> list[torch.Tensor]:
    """The floating-point tensors anywhere in ``obj`` (nested dicts, lists, tuples: a state
    dict, an optimiser's state, a whole checkpoint)."""
    if isinstance(obj, torch.Tensor):
        return [obj] if obj.is_floating_point() else []
    if isinstance(obj, dict):
        obj = obj.values()
    elif not isinstance(obj, list | tuple):
        return []
    return [t for item in obj for t in floating_tensors(item)]


def nonfinite_parts(parts: dict[str, list[torch.Tensor]]) -> list[str]:
    """The names of ``parts`` holding a NaN or an inf. One fused reduction per part (the
    largest magnitude, which a NaN or an inf anywhere makes non-finite) and one read back
    for all of them, whatever the number of tensors."""
    named = {name: ts for name, ts in parts.items() if ts}
    if not named:
        return []
    largest = torch.stack(  # on the device the tensors are on; one read back
        [
            torch.nn.utils.get_total_norm(ts, norm_type=float("inf"), foreach=True)
            for ts in named.values()
        ]
    )
    return [
        name for name, ok in zip(named, torch.isfinite(largest).tolist(), strict=True) if not ok
    ]


def finite_checkpoint(ck: dict) -> bool:
    """Does a checkpoint (as read) hold only finite values (weights, buffers, optimiser
    states, pending loss sums)?"""
    return not nonfinite_parts(
        {"all": floating_tensors({k: v for k, v in ck.items() if k != "rng"})}
    )


def newest_clean(folder: str | os.PathLike) -> tuple[int, Path] | None:
    """The newest ``step_N.pt`` in ``folder`` that reads and holds only finite values, checked
    now (step, path); None when there is none."""
    for step, path in reversed(step_checkpoints(folder).items()):
        try:
            ck = load_checkpoint(path)
        except CheckpointError:
            continue
        if finite_checkpoint(ck):
            return step, path
    return None


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save({"format": FORMAT, **state}, tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError | RuntimeError) and not isinstance(exc, NotImplementedError):
            # torch.save reports a failed write as RuntimeError ("... file write failed")
            raise CheckpointError(
                f"could not write the checkpoint {path} ({exc}); the checkpoints written "
                f"before it in {path.parent} are intact: free space, then resume"
            ) from None
        raise
    return path


def load_model_state(model: torch.nn.Module, state: dict, path: str | os.PathLike) -> None:
    """``model.load_state_dict(state)``, with a clear error when ``path``'s weights are for
    another model (backbone or class count)."""
    target = getattr(model, "module", model)
    own = target.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        first = shapes[:1] or missing[:1] or unexpected[:1]
        detail = (
            f"{first[0]}: {tuple(state[first[0]].shape)} != {tuple(own[first[0]].shape)}"
            if shapes
            else f"first key not matched: {first[0]}"
        )
        head = own.get("layer6.conv2d_list.0.weight")
        note = f" (model: {head.shape[0]} classes)" if head is not None else ""
        raise CheckpointError(
            f"{path} does not fit the model ({len(shapes)} tensors of another shape, "
            f"{len(missing)} missing, {len(unexpected)} unknown; {detail}); it is for another "
            f"backbone or class count{note}"
        )
    target.load_state_dict(state)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; clear errors for anything else."""
    obj = read_weights(path)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a pixda training checkpoint (no format {FORMAT!r}); to start from "
            "weights only, pass it as the source-only model (--restore_from)"
        )
    return obj


def step_checkpoints(folder: str | os.PathLike) -> dict[int, Path]:
    """``step_N.pt`` files in ``folder`` by step."""
    folder = Path(folder)
    found = {}
    if folder.is_dir():
        for p in folder.iterdir():
            m = _STEP_FILE.match(p.name)
            if m:
                found[int(m.group(1))] = p
    return dict(sorted(found.items()))


def prune_checkpoints(folder: str | os.PathLike, keep: int) -> None:
    """Delete all but the newest ``keep`` step checkpoints (``keep`` 0 keeps all)."""
    if keep <= 0:
        return
    steps = step_checkpoints(folder)
    for step in list(steps)[:-keep]:
        steps[step].unlink(missing_ok=True)


def rng_state() -> dict:
    """Python, numpy and torch RNG states as tensors and plain values (weights_only safe)."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    keys = state["numpy"]["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy"]["pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_step_checkpoint(state: dict, folder: str | os.PathLike, step: int, keep: int) -> Path:
    """Write ``step_<step>.pt`` into ``folder``, point ``latest.pt`` at it (a hard link where
    the file system has them, else a second copy, either moved into place atomically) and
    keep the newest ``keep`` step checkpoints (0: all)."""
    folder = Path(folder)
    path = save_checkpoint(state, folder / f"step_{step}.pt")
    latest = folder / "latest.pt"
    tmp = latest.with_name(".latest.pt.link")
    tmp.unlink(missing_ok=True)
    try:
        tmp.hardlink_to(path)
    except OSError:  # no hard links on this file system: write a second copy
        save_checkpoint(state, tmp)
    tmp.replace(latest)
    prune_checkpoints(folder, keep)
    return path


def newest_readable(folder: str | os.PathLike, what: str, warn) -> tuple[Path, dict] | None:
    """The newest checkpoint of ``folder`` that can be read: ``latest.pt``, or when that is
    damaged (truncated, say), the newest ``step_N.pt`` that is not (``warn`` says so). None
    when there is none yet; an error naming ``what`` when there are some but none reads."""
    folder = Path(folder)
    candidates = [folder / "latest.pt"] + list(reversed(step_checkpoints(folder).values()))
    failures = []
    for path in (p for p in candidates if p.exists()):
        try:
            ck = load_checkpoint(path)
        except CheckpointError as exc:
            failures.append(str(exc))
            continue
        if failures:
            warn(f"warning: {failures[0]}; resuming from {path} instead")
        return path, ck
    if failures:
        raise CheckpointError(
            f"cannot resume {what}: none of its {len(failures)} checkpoints can be read "
            f"({failures[0]})"
        )
    return None
