"""The release's command line (``run.py``) and ``pixda {pretrain,adapt,evaluate}``.

The release is driven by::

    python run.py --source_dataset gta5 --source_dataroot DIR --target_dataset cityscapes \
        --target_dataroot DIR --name NAME --gpu_ids 0 --is_train --num_shots 1

and tested by the same command without ``--is_train`` plus ``--which_iter N``. Those flags
mean the same here. Every value means what ``--help`` says: iterations are iterations and
learning rates are used as given (the release divided its 250k/120k by the batch size and
multiplied its learning rates by it while parsing; the ``paper`` preset holds the results).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import yaml

from ..config import BACKBONES, METHODS, PRESETS, SOURCES, Config, preset
from ..errors import ConfigError, run_cli

#: config key -> the flag that sets it, so an error names what the user typed
FLAGS = {
    "data.source": "--source_dataset", "data.source_root": "--source_dataroot",
    "data.target": "--target_dataset", "data.target_root": "--target_dataroot",
    "data.num_shots": "--num_shots", "data.split_file": "--split_file",
    "data.size": "--crop_size", "data.num_workers": "--num_workers", "run.name": "--name",
    "run.seed": "--seed", "run.out_dir": "--checkpoints_dir", "run.precision": "--amp",
    "model.backbone": "--backbone", "method.name": "--method", "method.kd_steps": "--kd_steps",
    "run.restore_from": "--restore_from",
}  # fmt: skip
for _sec in ("pretrain", "adapt"):
    FLAGS.update({f"{_sec}.batch_size": "--batch_size", f"{_sec}.max_iters": "--max_iters",
                  f"{_sec}.early_stop": "--early_stop", f"{_sec}.lr": "--lr"})  # fmt: skip


def _with_flag(exc: ConfigError) -> ConfigError:
    msg = str(exc)
    for key, flag in FLAGS.items():
        if f"config {key} " in msg:
            return ConfigError(msg.replace(f"config {key} ", f"{flag} (config {key}) ", 1))
    return exc


def parse_size_flag(text: str) -> list[int]:
    """``--crop_size W,H`` through the data layer's own size parser."""
    from ..data.common import parse_size
    from ..errors import DataError

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
    key, sep, value = text.partition("=")
    if not sep or key.count(".") != 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not SECTION.KEY=VALUE (e.g. method.tau=0.6)"
        )
    return key, yaml.safe_load(value)


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
    p = argparse.ArgumentParser(
        prog=prog,
        description=DESCRIPTIONS[mode],
        epilog=EPILOG,
    )
    g = p.add_argument_group("the release's flags")
    g.add_argument("--source_dataset", choices=SOURCES, help="source domain")
    g.add_argument("--source_dataroot", help="source dataset root (GTA5 or SYNTHIA layout)")
    g.add_argument("--target_dataset", choices=("cityscapes",), help="target domain")
    g.add_argument("--target_dataroot", help="Cityscapes root (leftImg8bit/, gtFine/)")
    g.add_argument("--name", help="run name: the run folder is CHECKPOINTS_DIR/NAME")
    g.add_argument(
        "--gpu_ids",
        type=parse_gpu_ids,
        default=None,
        help="GPU to use, e.g. 0 (-1: CPU). For several GPUs launch with "
        "torchrun --nproc_per_node N; default: GPU 0 when there is one",
    )
    if mode == "run":
        g.add_argument(
            "--is_train",
            action="store_true",
            help="train (adapt); without it, evaluate the run's checkpoint",
        )
    g.add_argument("--num_shots", type=int, help="labelled Cityscapes images per training city")
    g.add_argument(
        "--which_iter",
        type=int,
        help="evaluation: the checkpoint step to evaluate (default: the latest)",
    )
    g.add_argument(
        "--continue_train",
        action="store_true",
        help="resume the run NAME from its latest checkpoint",
    )
    o = p.add_argument_group("kit options (default: the preset's value)")
    o.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="paper",
        help="defaults for everything not given: 'paper' (method.md) or 'toy' (the "
        "embedded toy benchmark on a CPU)",
    )
    o.add_argument("--config", help="a YAML config file (overrides the preset; flags override it)")
    o.add_argument("--method", choices=METHODS, help="adaptation method (default: pixda)")
    o.add_argument("--backbone", choices=BACKBONES)
    o.add_argument(
        "--crop_size",
        type=parse_size_flag,
        help="W,H that training and val images are resized to, e.g. 1024,512",
    )
    o.add_argument("--batch_size", type=int, help="images per domain per step (per process)")
    o.add_argument("--lr", type=float, help="G backbone learning rate as used (heads: 10x)")
    o.add_argument("--max_iters", type=int, help="horizon of the poly learning-rate schedule")
    o.add_argument(
        "--early_stop",
        type=int,
        help="iterations to run (PixDA: of the adversarial phase; capped at --max_iters)",
    )
    o.add_argument(
        "--kd_steps", type=int, help="distillation steps after PixDA's adversarial phase"
    )
    o.add_argument("--seed", type=int, help="seed of the run and of the drawn split")
    o.add_argument("--split_file", help="target shots (release format); default: drawn, seeded")
    o.add_argument(
        "--restore_from",
        help="source-only model to adapt (the release's .pth or ours); default: the "
        "shared source-only run of this source and preset, trained first if missing",
    )
    o.add_argument("--checkpoints_dir", help="where run folders go (default: results)")
    o.add_argument(
        "--amp",
        choices=("bf16", "fp32"),
        help="CUDA precision: bf16 autocast (default) or fp32 (CPU: fp32 unless --cpu_bf16)",
    )
    o.add_argument(
        "--cpu_bf16",
        action="store_true",
        help="bf16 autocast on the CPU too (faster on CPUs with AVX512-BF16/AMX)",
    )
    o.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile G and D1 (CUDA: faster after the first steps, which compile)",
    )
    o.add_argument(
        "--concat_forward",
        action="store_true",
        help="one G forward over source and target together instead of two (meant for GPUs; "
        "slower on the CPU); it "
        "CHANGES BatchNorm batch statistics (computed over both domains at once, where the "
        "method uses one domain at a time), so results differ from the method's; off by default",
    )
    o.add_argument("--num_workers", type=int, help="data loader workers per process")
    o.add_argument(
        "--save_predictions",
        action="store_true",
        help="write coloured and label-id predictions (Cityscapes layout)",
    )
    o.add_argument(
        "--set",
        dest="overrides",
        type=parse_set,
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="any other config value, e.g. --set method.selection=false",
    )
    o.add_argument("--quiet", action="store_true", help="no progress bars; loss lines instead")
    return p


def config_from_args(args: argparse.Namespace, section: str) -> Config:
    """The config the flags describe; ``section`` ("pretrain" or "adapt") receives the
    optimisation flags."""
    data: dict = {}
    cfg = preset(args.preset)
    if args.config:
        try:
            loaded = yaml.safe_load(Path(args.config).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"--config {args.config}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--config {args.config} is not valid YAML: {exc}") from None
        if isinstance(loaded, dict):
            loaded.pop("preset", None)  # --preset decides the base
        try:
            cfg = Config.from_dict(loaded, base=cfg)
        except ConfigError as exc:
            raise ConfigError(f"--config {args.config}: {exc}") from None
    d, run, model, method, optim = {}, {}, {}, {}, {}
    for flag, (sec, key) in {
        "source_dataset": (d, "source"), "source_dataroot": (d, "source_root"),
        "target_dataset": (d, "target"), "target_dataroot": (d, "target_root"),
        "num_shots": (d, "num_shots"), "split_file": (d, "split_file"),
        "num_workers": (d, "num_workers"), "name": (run, "name"), "seed": (run, "seed"),
        "restore_from": (run, "restore_from"), "checkpoints_dir": (run, "out_dir"),
        "amp": (run, "precision"), "method": (method, "name"), "backbone": (model, "backbone"),
        "kd_steps": (method, "kd_steps"), "batch_size": (optim, "batch_size"),
        "lr": (optim, "lr"), "max_iters": (optim, "max_iters"),
        "early_stop": (optim, "early_stop"),
    }.items():  # fmt: skip
        value = getattr(args, flag, None)
        if value is not None:
            sec[key] = value
    if args.crop_size is not None:
        d["size"] = d["val_size"] = args.crop_size
    if args.save_predictions:
        run["save_predictions"] = True
    if args.cpu_bf16:
        run["cpu_bf16"] = True
    if args.compile:
        run["compile"] = True
    if args.concat_forward:
        run["concat_forward"] = True
    if args.quiet:
        run["progress"] = False
    if args.gpu_ids is not None:
        run["device"] = "cpu" if args.gpu_ids[0] < 0 else "auto"
    base_optim = getattr(cfg, section)
    if "max_iters" in optim and "early_stop" not in optim:
        optim["early_stop"] = min(base_optim.early_stop, optim["max_iters"])
    data.update({"data": d, "run": run, "model": model, "method": method, section: optim})
    for key, value in args.overrides:
        sec, _, name = key.partition(".")
        data.setdefault(sec, {})
        if not isinstance(data[sec], dict):
            raise ConfigError(f"--set {key}: {sec} is not a config section")
        data[sec][name] = value
    try:
        return Config.from_dict(data, base=cfg)
    except ConfigError as exc:
        raise _with_flag(exc) from None


def _select_gpu(args) -> None:
    """``--gpu_ids`` outside torchrun: make that GPU the visible one (before CUDA starts)."""
    ids = args.gpu_ids
    if ids is None or ids[0] < 0 or "LOCAL_RANK" in os.environ:
        return
    if len(ids) > 1:
        print(f"--gpu_ids {','.join(map(str, ids))}: one process uses one GPU; for all of them "
              f"launch torchrun --nproc_per_node {len(ids)} run.py ... (using GPU {ids[0]} now)",
              file=sys.stderr)  # fmt: skip
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", str(ids[0]))


def evaluate_run(cfg: Config, which_iter: int | None = None, save_predictions: bool = False):
    """Evaluate the checkpoint of step ``which_iter`` (default: the latest) of the run
    ``cfg.run.name`` on the target val set; writes ``metrics_step_<N>.json`` (+ confusion)
    into the run folder and returns the metrics."""
    from ..checkpoint import load_checkpoint, load_model_state, step_checkpoints
    from ..labels import NUM_CLASSES
    from ..models import deeplabv2
    from .evaluate import evaluate, metrics_dict, val_loader, write_metrics
    from .runtime import setup_runtime

    folder = Path(cfg.run.out_dir) / cfg.run.name
    if not (folder / "config.yaml").exists():
        raise ConfigError(f"--name {cfg.run.name}: no run folder {folder} (with config.yaml)")
    saved = Config.from_yaml(folder / "config.yaml")
    # the run's own model and data settings; where the data is now comes from the caller
    cfg = replace(saved, data=replace(saved.data, target_root=cfg.data.target_root,
                  num_workers=cfg.data.num_workers), run=replace(saved.run, device=cfg.run.device,
                  precision=cfg.run.precision, out_dir=cfg.run.out_dir))  # fmt: skip
    ckpts = step_checkpoints(folder / "checkpoints")
    if which_iter is None:
        path = folder / "checkpoints" / "latest.pt"
        if not path.exists():
            raise ConfigError(f"run folder {folder} has no checkpoints/latest.pt")
    elif which_iter not in ckpts:
        have = ", ".join(map(str, ckpts)) or "none"
        raise ConfigError(f"--which_iter {which_iter}: {folder}/checkpoints has no "
                          f"step_{which_iter}.pt (steps kept: {have})")  # fmt: skip
    else:
        path = ckpts[which_iter]
    ck = load_checkpoint(path)
    rt = setup_runtime(cfg.run)
    g = deeplabv2(NUM_CLASSES, cfg.model.backbone, cfg.model.multi_level)
    load_model_state(g, ck["model"], path)
    g = g.to(rt.device)
    step = int(ck["state"]["step"])
    preds = folder / f"predictions_step_{step}" if save_predictions else None
    cm = evaluate(g, val_loader(cfg, rt), rt, predictions_dir=preds, progress=cfg.run.progress)
    method = "source_only" if ck.get("kind") == "source_only" else cfg.method.name
    metrics = metrics_dict(cm, cfg, step, method)
    if rt.is_main:
        out = write_metrics(folder, metrics, cm, stem=f"metrics_step_{step}")
        extra = f", mIoU-13 {metrics['miou_13'] * 100:.2f}" if "miou_13" in metrics else ""
        print(f"{folder} step {step}: mIoU-{metrics['protocol']} {metrics['miou'] * 100:.2f}"
              f"{extra} -> {out}")  # fmt: skip
        print(json.dumps(metrics["per_class_iou"], indent=1))
    return metrics


def _main(argv, prog: str, mode: str) -> int:
    args = build_parser(prog, mode).parse_args(argv)
    _select_gpu(args)
    from .loops import adapt, train_source_only

    if mode == "run":
        mode = "adapt" if args.is_train else "evaluate"
    cfg = config_from_args(args, "pretrain" if mode == "pretrain" else "adapt")
    if mode != "evaluate" and args.which_iter is not None:
        raise ConfigError("--which_iter selects a checkpoint to evaluate; it needs test mode "
                          "(no --is_train)")  # fmt: skip
    if mode == "evaluate":
        evaluate_run(cfg, args.which_iter, args.save_predictions)
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
