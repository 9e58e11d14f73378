"""Loading weights into DeepLab-v2 without downloading anything, and without running code.

Accepted files (all read with ``torch.load(..., weights_only=True)``):

(a) the release's init file ``DeepLab_resnet_pretrained_init.pth``: a flat state dict whose keys
    carry one module prefix (``Scale.``); its 21-class ``layer5`` is skipped by shape;
(b) the release's checkpoints (``gta5_source_only_model.pth``): ``{"model_state": {...}}`` with
    ``module.`` prefixes, ``layer5`` = aux head, ``layer6`` = main head;
(c) torchvision ResNet ImageNet state dicts (backbone only; ``fc`` is skipped);
(d) the project's own checkpoints: ``{"model": state_dict, ...}``.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import PixdaError
from ..textfiles import require_file


class CheckpointError(PixdaError):
    """A weights file that is missing, unreadable, unsafe or does not fit the model."""


@dataclass
class LoadReport:
    format: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (key, why)
    missing: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"format {self.format}: loaded {len(self.loaded)} tensors, skipped "
            f"{len(self.skipped)}, left at init {len(self.missing)}"
        )


def read_weights(path: str | os.PathLike) -> object:
    """``torch.load`` with ``weights_only=True`` and clear errors naming the file."""
    path = require_file(path, "weights file", "a PyTorch weights file", CheckpointError)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types on a damaged or foreign file
        unsafe = [ln.strip() for ln in str(exc).splitlines() if "GLOBAL" in ln]
        if isinstance(exc, pickle.UnpicklingError) and unsafe:  # names code to import
            raise CheckpointError(
                f"{path} was refused: it is not a plain weights file and loading it could run "
                f"code ({unsafe[0]})"
            ) from None
        raise CheckpointError(  # torch's own text advises weights_only=False: not repeated
            f"{path} cannot be read as PyTorch weights ({type(exc).__name__}); is it a complete "
            ".pth file?"
        ) from None


def _strip(keys_state: dict, prefix: str) -> dict:
    return {k.removeprefix(prefix): v for k, v in keys_state.items()}


def _normalise(obj: object, model_keys: set[str], path: Path) -> tuple[str, dict]:
    if isinstance(obj, dict) and isinstance(obj.get("model_state"), dict):
        fmt, state = "release checkpoint", obj["model_state"]
    elif isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        fmt, state = "pixda checkpoint", obj["model"]
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        fmt, state = "state dict", obj
    else:
        raise CheckpointError(
            f"{path} holds no state dict (expected a dict of tensors, 'model_state' or 'model')"
        )
    if all(k.startswith("module.") for k in state):
        state = _strip(state, "module.")
    tops = {k.split(".", 1)[0] for k in state}
    model_tops = {k.split(".", 1)[0] for k in model_keys}
    if len(tops) == 1 and not tops & model_tops:  # one wrapping module, e.g. "Scale."
        state = _strip(state, f"{tops.pop()}.")
    if fmt == "state dict":
        fmt = (
            "release init"
            if any(k.startswith("layer5.conv2d_list") for k in state)
            else ("torchvision resnet" if "fc.weight" in state else "state dict")
        )
    return fmt, state


def load_pretrained(
    model: nn.Module, path: str | os.PathLike, strict: bool = True, raw: object | None = None
) -> LoadReport:
    """Load ``path`` into ``model`` by name and shape; report what was loaded, skipped, missing.
    (``raw``: the file as :func:`read_weights` read it already, so that it is not read again.)

    With ``strict`` (default) it refuses, naming the keys, a load that leaves backbone weights
    uninitialised, and a checkpoint of the release's or the project's own format whose heads
    do not fit (another class count or backbone). Init files and torchvision weights leave the
    heads at their initialisation.
    """
    path = Path(path)
    target = getattr(model, "module", model)
    own = target.state_dict()
    fmt, state = _normalise(read_weights(path) if raw is None else raw, set(own), path)
    report = LoadReport(fmt)
    to_load = {}
    for key, value in state.items():
        if key not in own:
            report.skipped.append((key, "not in the model"))
        elif own[key].shape != value.shape:
            report.skipped.append((key, f"shape {tuple(value.shape)} != {tuple(own[key].shape)}"))
        else:
            to_load[key] = value
    report.loaded = sorted(to_load)
    report.missing = sorted(
        k for k in own if k not in to_load and not k.endswith("num_batches_tracked")
    )
    if strict:
        heads = ("layer5.", "layer6.")
        backbone_gaps = [k for k in report.missing if not k.startswith(heads)]
        if backbone_gaps:
            raise CheckpointError(
                f"{path} ({fmt}) leaves {len(backbone_gaps)} backbone tensors uninitialised "
                f"(first: {', '.join(backbone_gaps[:4])}); is it for another backbone? "
                "Pass strict=False to load it anyway"
            )
        # an aux head (layer5) the model was built without is fine; backbone tensors are not
        extra = [
            k
            for k, why in report.skipped
            if why == "not in the model" and not k.startswith("layer5.")
        ]
        if fmt in ("release checkpoint", "pixda checkpoint") and extra:
            raise CheckpointError(
                f"{path} ({fmt}) holds {len(extra)} tensors the model does not have (first: "
                f"{', '.join(extra[:3])}); it is for another backbone (model: "
                f"{getattr(target, 'backbone_name', '?')})"
            )
        if fmt in ("release checkpoint", "pixda checkpoint"):
            head_gaps = [k for k in report.missing if k.startswith(heads)]
            if head_gaps:
                why = dict(report.skipped)
                shown = ", ".join(f"{k} ({why.get(k, 'absent')})" for k in head_gaps[:3])
                classes = own["layer6.conv2d_list.0.weight"].shape[0]
                raise CheckpointError(
                    f"{path} ({fmt}) does not fit the model's heads: {shown}; the checkpoint is "
                    f"for another class count or backbone (model: {classes} classes)"
                )
    target.load_state_dict(to_load, strict=False)
    return report
