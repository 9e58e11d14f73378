"""The release's command line (``run.py``) and ``pixda {pretrain,adapt,evaluate}``.

The release is driven by::

    python run.py --source_dataset gta5 --source_dataroot DIR --target_dataset cityscapes \
        --target_dataroot DIR --name NAME --gpu_ids 0 --is_train --num_shots 1

and tested by the same command without ``--is_train`` plus ``--which_iter N``. Those flags
mean the same here. Every value means what ``--help`` says: iterations are iterations and
learning rates are used as given (the release divided its 250k/120k by the batch size and
multiplied its learning rates by it while parsing; the ``paper`` preset holds the results).

One table, :data:`~pixda_core.train.flags.FLAGS`, makes both the argument parser and the
mapping from flags to config keys (which error messages use to name the flag a user typed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import yaml

from ..config import Config, preset, run_length
from ..data.splits import read_split, split_shots
from ..errors import ConfigError, run_cli
from ..textfiles import load_yaml, read_text
from .flags import FLAGS, KEY_FLAGS, nest_overrides

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
    if "max_iters" in optim or "early_stop" in optim:  # (the notebooks' iterations: the same)
        given = {"steps": optim.get("early_stop"), "horizon": optim.get("max_iters")}
        optim.update(run_length(getattr(cfg, section), **given))
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
        loaded = load_yaml(text) or {}
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
