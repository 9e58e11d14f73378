"""The command line's flags: one table, :data:`FLAGS`, of every flag of ``run.py`` and
``pixda {pretrain,adapt,evaluate}`` (the release's and the kit's), its parser, the config keys
it sets and the modes that take it; :data:`KEY_FLAGS` maps a config key back to the flag, so
that an error names what the user typed. Read by :mod:`pixda_core.train.cli`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field

import yaml

from ..config import BACKBONES, METHODS, PRECISIONS, PRESETS, SOURCES
from ..errors import DataError
from ..textfiles import load_yaml

# ------------------------------------------------------------------------------ flag values


def parse_size_flag(text: str) -> list[int]:
    """``--crop_size W,H`` through the data layer's own size parser."""
    from ..data.common import parse_size

    try:
        return list(parse_size(text))
    except DataError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (e.g. 1024,512)") from None


def parse_gpu_ids(text: str) -> list[int]:
    try:
        ids = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list like 0 or 0,1 (-1: CPU)"
        ) from None
    return ids or [-1]


def parse_set(text: str) -> tuple[str, object]:
    """``--set SECTION.KEY=VALUE`` (here and in the sweep): the key and the value read as
    YAML (``true``, ``0.5``, ``[1024, 512]``)."""
    key, sep, value = text.partition("=")
    if not sep or key.count(".") != 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not SECTION.KEY=VALUE (e.g. method.tau=0.6)"
        )
    try:
        return key, load_yaml(value)
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        problem = getattr(exc, "problem", None) or " ".join(str(exc).split())[:100]
        raise argparse.ArgumentTypeError(
            f"{text!r}: the value {value!r} is not valid YAML ({problem}); quote it, e.g. "
            f"{key}='\"{value}\"'"
        ) from None


def nest_overrides(pairs: list[tuple[str, object]]) -> dict[str, dict]:
    """``[("adapt.lr", 0.01)]`` -> ``{"adapt": {"lr": 0.01}}`` (the form configs merge)."""
    nested: dict[str, dict] = {}
    for key, value in pairs:
        section, _, name = key.partition(".")
        nested.setdefault(section, {})[name] = value
    return nested


# ------------------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Flag:
    """One flag: what argparse makes of it and the config keys its value sets (``optim.X``:
    the section being trained, ``pretrain`` or ``adapt``)."""

    name: str
    help: str | None = None
    keys: tuple[str, ...] = ()
    #: one of the release's own flags (listed in their own group of --help)
    release: bool = False
    #: argparse's other arguments (type, choices, action, ...)
    parse: dict = field(default_factory=dict)
    #: the flag's value -> the config value (default: as parsed)
    to_config: Callable | None = None
    #: the commands that have it ("run" is run.py)
    modes: tuple[str, ...] = ("run", "pretrain", "adapt", "evaluate")

    @property
    def dest(self) -> str:
        return self.parse.get("dest", self.name.removeprefix("--"))


SET = {"action": "store_const", "const": True}  # a switch that sets its key to true

# fmt: off
FLAGS = (
    # the release's flags, with the release's meanings
    Flag("--source_dataset", "source domain", ("data.source",), True, {"choices": SOURCES}),
    Flag("--source_dataroot", "source dataset root (GTA5 or SYNTHIA layout)",
         ("data.source_root",), True),
    Flag("--target_dataset", "target domain", ("data.target",), True,
         {"choices": ("cityscapes",)}),
    Flag("--target_dataroot", "Cityscapes root (leftImg8bit/, gtFine/)", ("data.target_root",),
         True),
    Flag("--name", "run name: the run folder is CHECKPOINTS_DIR/NAME", ("run.name",), True),
    Flag("--gpu_ids", "GPU to use, e.g. 0 (-1: CPU). For several GPUs launch with torchrun "
         "--nproc_per_node N; default: GPU 0 when there is one", ("run.device",), True,
         {"type": parse_gpu_ids}, to_config=lambda ids: "cpu" if ids[0] < 0 else "auto"),
    Flag("--is_train", "train (adapt); without it, evaluate the run's checkpoint", (), True,
         {"action": "store_true"}, modes=("run",)),
    Flag("--num_shots", "labelled Cityscapes images per training city", ("data.num_shots",),
         True, {"type": int}),
    Flag("--which_iter", "evaluation: the checkpoint step to evaluate (default: the latest)",
         (), True, {"type": int}),
    Flag("--continue_train", "resume the run NAME from its latest checkpoint", (), True,
         {"action": "store_true"}),
    # the kit's options
    Flag("--preset", "defaults for everything not given: 'paper' (docs/method.md) or 'toy' (the "
         "embedded toy benchmark on a CPU)", parse={"choices": sorted(PRESETS),
                                                      "default": "paper"}),
    Flag("--config", "a YAML config file (overrides the preset; flags override it)"),
    Flag("--method", f"adaptation method: {', '.join(METHODS)} (default: pixda), a method of an "
         "installed plug-in package, or a class named as module:Class or path/to/file.py:Class "
         "(docs/add-a-method.md)", ("method.name",)),
    Flag("--backbone", None, ("model.backbone",), parse={"choices": BACKBONES}),
    Flag("--crop_size", "W,H that training and val images are resized to, e.g. 1024,512",
         ("data.size", "data.val_size"), parse={"type": parse_size_flag}),
    Flag("--batch_size", "images per domain per step (per process)", ("optim.batch_size",),
         parse={"type": int}),
    Flag("--lr", "G backbone learning rate as used (heads: 10x)", ("optim.lr",),
         parse={"type": float}),
    Flag("--max_iters", "horizon of the poly learning-rate schedule (alone: also caps the "
         "iterations run)", ("optim.max_iters",),
         parse={"type": int}),
    Flag("--early_stop", "iterations to run (PixDA: of the adversarial phase); past the "
         "preset's poly horizon it stretches the horizon, unless --max_iters is given",
         ("optim.early_stop",), parse={"type": int}),
    Flag("--kd_steps", "distillation steps after PixDA's adversarial phase",
         ("method.kd_steps",), parse={"type": int}),
    Flag("--seed", "seed of the run (and of a drawn split without --split_seed)",
         ("run.seed",), parse={"type": int}),
    Flag("--split_file", "target shots (release format); default: the published N-shot "
         "split (N = 1-5) when the target root holds its images, else one drawn, seeded",
         ("data.split_file",)),
    Flag("--split_seed", "draw the target shots with this seed instead of using the "
         "published split (variance over splits)", ("data.split_seed",),
         parse={"type": int}),
    Flag("--init", "initial weights of the source-only model: the release's "
         "DeepLab_resnet_pretrained_init.pth, torchvision's ImageNet ResNet weights (found "
         "without this flag in $TORCH_HOME/hub/checkpoints/), a model of ours, or 'none' "
         "(random weights); default: the preset's (paper: the cached torchvision weights, "
         "else an error; toy: none)", ("model.init",)),
    Flag("--restore_from", "source-only model to adapt (the release's .pth or ours); default: "
         "the shared source-only run of this source and preset, trained first if missing",
         ("run.restore_from",)),
    Flag("--checkpoints_dir", "where run folders go (default: results)", ("run.out_dir",)),
    Flag("--amp", "precision: auto (default: bf16 on GPUs of compute capability 8.0+, fp16 "
         "with a gradient scaler on older ones, fp32 on the CPU), or bf16, fp16, fp32 on any "
         "device; the run says which it uses", ("run.precision",),
         parse={"choices": PRECISIONS}),
    Flag("--cpu_bf16", "auto precision on the CPU is bf16 (faster on CPUs with "
         "AVX512-BF16/AMX, slower without)", ("run.cpu_bf16",), parse=SET),
    Flag("--deterministic", "deterministic algorithms: torch.use_deterministic_algorithms "
         "(warn_only), cuDNN autotuning off, CUBLAS_WORKSPACE_CONFIG=:4096:8. Repeatable "
         "runs on one machine and software stack, at a cost in speed on CUDA (no "
         "cudnn.benchmark, slower deterministic kernels; an op without a deterministic CUDA "
         "kernel, such as bilinear upsampling's backward, warns once and stays "
         "nondeterministic); CPU runs are repeatable without it", ("run.deterministic",),
         parse=SET),
    Flag("--release_sgd", "SGD parameter groups as in the release: each backbone parameter "
         "listed once per module enclosing it (1-4 times), so its update is applied that "
         "many times a step, as in the published runs; default: once", ("optim.release_sgd",),
         parse=SET),
    Flag("--compile", "torch.compile G and D1 (CUDA: faster after the first steps, which "
         "compile)", ("run.compile",), parse=SET),
    Flag("--concat_forward", "one G forward over source and target together instead of two "
         "(meant for GPUs; slower on the CPU); it CHANGES BatchNorm batch statistics "
         "(computed over both domains at once, where the method uses one domain at a time), "
         "so results differ from the method's; off by default", ("run.concat_forward",),
         parse=SET),
    Flag("--num_workers", "data loader workers per process", ("data.num_workers",),
         parse={"type": int}),
    Flag("--save_predictions", "write coloured and label-id predictions (Cityscapes layout)",
         ("run.save_predictions",), parse=SET),
    Flag("--set", "any other config value, e.g. --set method.selection=false",
         parse={"dest": "overrides", "type": parse_set, "action": "append", "default": [],
                "metavar": "SECTION.KEY=VALUE"}),
    Flag("--quiet", "no progress bars; loss lines instead", ("run.progress",),
         parse={"action": "store_const", "const": False}),
)
# fmt: on

#: config key -> the flag whose value it holds, so that an error names what the user typed
#: (switches and flags whose value is translated cannot hold a wrong value: not listed)
KEY_FLAGS = {
    (f"{section}.{key.partition('.')[2]}" if key.startswith("optim.") else key): flag.name
    for flag in FLAGS
    if flag.to_config is None and flag.parse.get("action") != "store_const"
    for key in flag.keys[:1]
    for section in (("pretrain", "adapt") if key.startswith("optim.") else ("",))
}
