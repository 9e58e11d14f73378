"""The release's command line (``run.py``) and ``pixda {pretrain,adapt,evaluate}``.

The release is driven by::

    python run.py --source_dataset gta5 --source_dataroot DIR --target_dataset cityscapes \
        --target_dataroot DIR --name NAME --gpu_ids 0 --is_train --num_shots 1

and tested by the same command without ``--is_train`` plus ``--which_iter N``. Those flags
mean the same here. Every value means what ``--help`` says: iterations are iterations and
learning rates are used as given (the release divided its 250k/120k by the batch size and
multiplied its learning rates by it while parsing; the ``paper`` preset holds the results).

One table, :data:`FLAGS`, makes both the argument parser and the mapping from flags to config
keys (which error messages use to name the flag a user typed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from ..config import BACKBONES, METHODS, PRECISIONS, PRESETS, SOURCES, Config, preset
from ..data.splits import read_split, split_shots
from ..errors import ConfigError, DataError, run_cli
from ..textfiles import read_text

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
        return key, yaml.safe_load(value)
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
    Flag("--preset", "defaults for everything not given: 'paper' (method.md) or 'toy' (the "
         "embedded toy benchmark on a CPU)", parse={"choices": sorted(PRESETS),
                                                      "default": "paper"}),
    Flag("--config", "a YAML config file (overrides the preset; flags override it)"),
    Flag("--method", "adaptation method (default: pixda)", ("method.name",),
         parse={"choices": METHODS}),
    Flag("--backbone", None, ("model.backbone",), parse={"choices": BACKBONES}),
    Flag("--crop_size", "W,H that training and val images are resized to, e.g. 1024,512",
         ("data.size", "data.val_size"), parse={"type": parse_size_flag}),
    Flag("--batch_size", "images per domain per step (per process)", ("optim.batch_size",),
         parse={"type": int}),
    Flag("--lr", "G backbone learning rate as used (heads: 10x)", ("optim.lr",),
         parse={"type": float}),
    Flag("--max_iters", "horizon of the poly learning-rate schedule", ("optim.max_iters",),
         parse={"type": int}),
    Flag("--early_stop", "iterations to run (PixDA: of the adversarial phase; capped at "
         "--max_iters)", ("optim.early_stop",), parse={"type": int}),
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

DESCRIPTIONS = {
    "run": "Train (--is_train: adapt a source-only model) or evaluate a run, with the "
    "release's flags.",
    "pretrain": "Train a source-only model (G on the source alone), validated on the target.",
    "adapt": "Adapt a source-only model to the target shots with PixDA or a baseline.",
    "evaluate": "Evaluate a run's checkpoint on the target val set (writes its metrics).",
}
EPILOG = (
    "Run folders: CHECKPOINTS_DIR/NAME with config.yaml, split.txt, metrics.json, "
    "validations.csv, history.csv, selection.csv, checkpoints/."
)


def build_parser(prog: str, mode: str) -> argparse.ArgumentParser:
    """``mode``: "run" (the release's run.py), "pretrain", "adapt" or "evaluate"."""
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTIONS[mode], epilog=EPILOG)
    groups = {
        True: p.add_argument_group("the release's flags"),
        False: p.add_argument_group("kit options (default: the preset's value)"),
    }
    for flag in FLAGS:
        if mode in flag.modes:
            groups[flag.release].add_argument(flag.name, help=flag.help, **flag.parse)
    return p


def config_from_args(args: argparse.Namespace, section: str) -> Config:
    """The config the flags describe; ``section`` ("pretrain" or "adapt") receives the
    optimisation flags (``optim.*``)."""
    cfg = preset(args.preset)
    if args.config:
        cfg = _config_file(args.config, cfg)
    data: dict[str, dict] = {}
    for flag in FLAGS:
        value = getattr(args, flag.dest, None)
        if not flag.keys or value is None:
            continue
        if flag.to_config is not None:
            value = flag.to_config(value)
        for key in flag.keys:
            sec, _, name = key.partition(".")
            data.setdefault(section if sec == "optim" else sec, {})[name] = value
    optim = data.get(section, {})
    if "max_iters" in optim and "early_stop" not in optim:
        optim["early_stop"] = min(getattr(cfg, section).early_stop, optim["max_iters"])
    for sec, values in nest_overrides(args.overrides).items():
        data.setdefault(sec, {}).update(values)
    try:
        cfg = Config.from_dict(data, base=cfg)
    except ConfigError as exc:
        raise _with_flag(exc) from None
    given = data.get("data", {})
    if "num_shots" in given and cfg.data.split_file:  # the file decides: they must agree
        shots = split_shots(read_split(cfg.data.split_file))
        if shots is not None and shots != cfg.data.num_shots:
            raise ConfigError(
                f"--split_file {cfg.data.split_file} has {shots} image(s) per city, but "
                f"--num_shots (config data.num_shots) is {cfg.data.num_shots}: leave out "
                "--num_shots (the file decides) or make the two agree"
            )
    return cfg


def _config_file(path: str, base: Config) -> Config:
    """A --config file: empty overrides nothing; sections given override the preset's."""
    text = read_text(path, "--config", "a YAML mapping of sections", ConfigError)
    try:
        loaded = yaml.safe_load(text) or {}
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        raise ConfigError(f"--config {path} is not valid YAML: {exc}") from None
    if isinstance(loaded, dict):
        loaded.pop("preset", None)  # --preset decides the base
    try:
        return Config.from_dict(loaded, base=base)
    except ConfigError as exc:
        raise ConfigError(f"--config {path}: {exc}") from None


def _with_flag(exc: ConfigError) -> ConfigError:
    msg = str(exc)
    for key, flag in KEY_FLAGS.items():
        if f"config {key} " in msg:
            return ConfigError(msg.replace(f"config {key} ", f"{flag} (config {key}) ", 1))
    return exc


def _select_gpu(args) -> None:
    """``--gpu_ids`` outside torchrun: make that GPU the visible one (before CUDA starts)."""
    ids = args.gpu_ids
    if ids is None or ids[0] < 0 or "LOCAL_RANK" in os.environ:
        return
    if len(ids) > 1:
        print(
            f"--gpu_ids {','.join(map(str, ids))}: one process uses one GPU; for all of them "
            f"launch torchrun --nproc_per_node {len(ids)} run.py ... (using GPU {ids[0]} now)",
            file=sys.stderr,
        )
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", str(ids[0]))


# ------------------------------------------------------------------------------ commands


def evaluate_run(cfg: Config, which_iter: int | None = None, save_predictions: bool = False):
    """Evaluate the checkpoint of step ``which_iter`` (default: the latest) of the run
    ``cfg.run.name`` on the target val set; writes ``metrics_step_<N>.json`` (+ confusion)
    into the run folder and returns the metrics."""
    from .evaluate import evaluate, load_run_model, metrics_dict, val_loader, write_metrics
    from .runtime import ran_on, setup_runtime

    folder = Path(cfg.run.out_dir) / cfg.run.name
    if not (folder / "config.yaml").exists():
        raise ConfigError(f"--name {cfg.run.name}: no run folder {folder} (with config.yaml)")
    model = load_run_model(folder, which_iter)
    # the run's own model and data settings; where the data is now comes from the caller
    saved = model.cfg
    cfg = replace(
        saved,
        data=replace(
            saved.data, target_root=cfg.data.target_root, num_workers=cfg.data.num_workers
        ),
        run=replace(
            saved.run,
            device=cfg.run.device,
            precision=cfg.run.precision,
            out_dir=cfg.run.out_dir,
        ),
    )
    rt = setup_runtime(cfg.run)
    g = model.g.to(rt.device)
    preds = folder / f"predictions_step_{model.step}" if save_predictions else None
    cm = evaluate(g, val_loader(cfg, rt), rt, predictions_dir=preds, progress=cfg.run.progress)
    metrics = metrics_dict(cm, cfg, model.step, model.method)
    metrics["ran_on"] = ran_on(rt)
    if rt.is_main:
        out = write_metrics(folder, metrics, cm, stem=f"metrics_step_{model.step}")
        extra = f", mIoU-13 {metrics['miou_13'] * 100:.2f}" if "miou_13" in metrics else ""
        print(
            f"{folder} step {model.step}: mIoU-{metrics['protocol']} "
            f"{metrics['miou'] * 100:.2f}{extra} -> {out}"
        )
        print(json.dumps(metrics["per_class_iou"], indent=1))
    return metrics


def _main(argv, prog: str, mode: str) -> int:
    args = build_parser(prog, mode).parse_args(argv)
    _select_gpu(args)
    from .loop import adapt, train_source_only

    if mode == "run":
        mode = "adapt" if args.is_train else "evaluate"
    cfg = config_from_args(args, "pretrain" if mode == "pretrain" else "adapt")
    if mode != "evaluate" and args.which_iter is not None:
        raise ConfigError(
            "--which_iter selects a checkpoint to evaluate; it needs test mode (no --is_train)"
        )
    if mode == "evaluate":
        evaluate_run(cfg, args.which_iter, bool(args.save_predictions))
    elif mode == "pretrain":
        train_source_only(cfg, resume=args.continue_train)
    else:
        adapt(cfg, resume=args.continue_train)
    return 0


def _entry(prog: str, mode: str):
    @run_cli
    def main(argv=None) -> int:
        return _main(argv, prog, mode)

    main.__name__ = f"{mode}_main"
    return main


run_main = _entry("run.py", "run")
pretrain_main = _entry("pixda pretrain", "pretrain")
adapt_main = _entry("pixda adapt", "adapt")
evaluate_main = _entry("pixda evaluate", "evaluate")
