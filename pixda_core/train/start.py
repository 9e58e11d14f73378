"""Before a run starts: every check that can be made first, and the source-only model that
an adaptation run starts from.

A run folder that failed a check would block the corrected command, so :func:`preflight`
checks everything it can before anything is trained or written. :func:`source_only_run`
names the source-only model that the adaptation runs of a source and preset share.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..config import Config, preset
from ..data import Cityscapes, toy
from ..data.splits import ChosenSplit, choose_split, read_split, split_shots
from ..errors import ConfigError, say_once
from ..methods import SOURCE_ONLY, Method
from ..models.discriminators import output_size
from ..models.pretrained import load_pretrained, read_weights
from ..textfiles import require_file
from .inputs import source_dataset
from .rundir import RESUME_FREE, RunFolder, not_started
from .step import build_segmenter


@dataclass
class Start:
    """What the checks before a run found and built, handed to the run so that nothing is
    read, built or checked twice: the target shots chosen (None: no target shots, or a resumed
    run with its own ``split.txt``), the source set, the target val set, and the initial
    weights' file as read (G's ``run.restore_from``, or ``model.init`` for source-only)."""

    chosen: ChosenSplit | None = None
    source: Dataset | None = None
    val: Cityscapes | None = None
    weights: object | None = None

    def take_weights(self) -> object | None:
        """The weights as read, handed over once: the run loads them into its networks, and
        this record lets go of them (a ResNet-101's state is not held for the run's length)."""
        weights, self.weights = self.weights, None
        return weights


def preflight(
    cfg: Config, method: Method, resume: bool, data: bool = True, listed: list[str] | None = None
) -> Start:
    """Check, before anything is written: the output folder is writable and the run name
    free (or resumable); the source and target roots have their layouts and labels; the
    split file (or the drawn split) fits the target root; the initial weights
    (``run.restore_from`` for adaptation, ``model.init`` for source-only) read and fit the
    model. ``data=False`` leaves out the dataset and split checks (made already for the
    same roots by the caller). Returns what it built (:class:`Start`): the run's target shots,
    chosen and checked here once (``listed``: the split file's entries, read by
    :func:`resolve_shots`), and the datasets it read."""
    start = Start()
    if os.environ.get("RANK", "0") == "0":  # under torchrun rank 0 owns the run folder
        RunFolder.check(cfg, resume)
    if data:  # a toy benchmark of an older generator is refused, never mixed with this one
        for root in (cfg.data.source_root, cfg.data.target_root):
            toy.check_current(root)
    if data and method.source:
        start.source = source_dataset(cfg)
    if data:
        start.val = Cityscapes(cfg.data.target_root, "val", size=cfg.data.val_size)
    chosen = None
    if data and method.target:
        Cityscapes(cfg.data.target_root, "train", size=cfg.data.size)
        folder = Path(cfg.run.out_dir) / cfg.run.name
        if not (resume and (folder / "split.txt").exists() and not not_started(folder)):
            d = cfg.data
            chosen = choose_split(
                d.target_root,
                d.num_shots,
                d.split_file,
                d.split_seed,
                cfg.run.seed,
                every=method.all_target,
                listed=listed,
            )
    check_sizes(cfg, method)
    source_only = method.name == SOURCE_ONLY
    init = cfg.model.init if source_only else cfg.run.restore_from
    flag = "--init (config model.init)" if source_only else "--restore_from"
    if init is not None and init != "none":
        expected = "a weights or checkpoint file (a run's checkpoint is RUN/checkpoints/latest.pt)"
        require_file(init, flag, expected, ConfigError)
        start.weights = read_weights(init)  # read once: training loads these
        report = load_pretrained(build_segmenter(cfg), init, raw=start.weights)
        heads = [k for k in report.missing if k.startswith("layer6.")]
        if not source_only and heads:
            raise ConfigError(
                f"--restore_from {init} is an initialisation ({report.format}: backbone "
                "weights without the segmentation heads of a trained model), not a source-only "
                "model: pass it as --init (a source-only model is then trained from it first) "
                "and leave out --restore_from, or give --restore_from a source-only model (the "
                "release's gta5_source_only_model.pth or a checkpoint of ours)"
            )
    start.chosen = chosen
    return start


def check_sizes(cfg: Config, method: Method) -> None:
    """Refuse a training size that a discriminator of the method cannot take (D2 halves its
    input five times, so it needs at least 32 pixels a side). The limits are not constants:
    they come from each discriminator's layers (:func:`output_size`), and the smallest size
    it accepts is searched for. (The segmenter takes every size the config accepts, 8 pixels
    a side and up: tested.)"""
    with torch.device("meta"):  # the layers' shapes only: no memory, no initialisation
        nets = method.networks(19)
    judges = [
        (f"{getattr(net, 'description', 'the network')} ({name.upper()})", net)
        for name, net in nets.items()
    ]
    w, h = cfg.data.size
    for what, net in judges:
        if output_size(net, w, 1) >= 1 and output_size(net, h, 0) >= 1:
            continue
        least_w = _smallest(lambda x, net=net: output_size(net, x, 1) >= 1)
        least_h = _smallest(lambda x, net=net: output_size(net, x, 0) >= 1)
        raise ConfigError(
            f"--crop_size {w},{h} (config data.size) is too small for {what} of "
            f"{method.title}: it needs at least {least_w} pixels wide "
            f"and {least_h} high"
        )


def _smallest(ok, limit: int = 1 << 14) -> int:
    """The smallest n in 1..limit with ok(n), for ok false below it and true above."""
    low, high = 1, limit
    while low < high:
        mid = (low + high) // 2
        if ok(mid):
            high = mid
        else:
            low = mid + 1
    return low


def resolve_shots(cfg: Config) -> tuple[Config, list[str] | None]:
    """With a split file, the run's shots are the file's entries per city (when every city
    has the same number; else ``data.num_shots`` as given): what the run trains on is what it
    records. (``run.py`` refuses a ``--num_shots`` that disagrees with the file.) Returns the
    config and the file's entries (read once here, checked by :func:`preflight`)."""
    if cfg.data.split_file is None:
        return cfg, None
    listed = read_split(cfg.data.split_file)
    shots = split_shots(listed)
    if shots is None or shots == cfg.data.num_shots:
        return cfg, listed
    return cfg.override(data={"num_shots": shots}), listed


def imagenet_weights_in_cache(backbone: str) -> Path | None:
    """torchvision's ImageNet weights of ``backbone`` where torch keeps what it downloads
    (``$TORCH_HOME/hub/checkpoints/``), when they are there (nothing is downloaded)."""
    import torchvision

    weights = getattr(torchvision.models, f"ResNet{backbone.removeprefix('resnet')}_Weights")
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    for w in weights:
        path = folder / Path(w.url).name
        if path.is_file():
            return path
    return None


def resolve_init(cfg: Config) -> Config:
    """The source-only model's initial weights: ``model.init`` as given (a file, or "none"
    for random weights), else torchvision's ImageNet weights when they are in torch's cache
    (said so); else the run is refused, naming the files that serve and the flag."""
    if cfg.model.init is not None:
        return cfg
    cached = imagenet_weights_in_cache(cfg.model.backbone)
    if cached is None:
        import torchvision

        enum = getattr(torchvision.models, f"ResNet{cfg.model.backbone[6:]}_Weights")
        name = Path(enum.IMAGENET1K_V1.url).name
        folder = Path(torch.hub.get_dir()) / "checkpoints"
        raise ConfigError(
            f"no initial weights for the source-only model (--init, config model.init): a "
            f"{cfg.model.backbone} trained from random weights reaches a fraction of the "
            "published source-only mIoU, and every adapted number after it means little. "
            "Pass --init FILE with the release's DeepLab ImageNet init "
            f"(DeepLab_resnet_pretrained_init.pth) or torchvision's ImageNet weights ({name}; "
            f"placed in $TORCH_HOME/hub/checkpoints/, here {folder}, they are found without "
            "--init); --init none trains from random weights"
        )
    said = f"--init not given: using torchvision's ImageNet {cfg.model.backbone} weights {cached}"
    say_once(said)
    return replace(cfg, model=replace(cfg.model, init=str(cached)))


def source_only_run(cfg: Config) -> Config:
    """The config of the source-only run shared by every adaptation run of ``cfg``'s source
    and preset: the adaptation-only settings (method, ``adapt``, shots, split, seed) are reset
    to the preset's (the seed stays the run's with ``run.own_source_only``), and the folder is
    ``<out_dir>/source_only_<source>_<preset>_<hash>``,
    the hash covering what is left where it differs from the preset, so runs that differ in
    it do not share a model."""
    cfg = resolve_init(cfg)  # its initial weights are part of what names it
    base = preset(cfg.preset)
    data = replace(cfg.data, num_shots=base.data.num_shots, split_file=None, split_seed=None)
    canon = replace(
        cfg,
        data=data,
        adapt=base.adapt,
        method=replace(base.method, seg_loss=cfg.method.seg_loss),
        run=replace(
            cfg.run,
            name="source_only",
            seed=cfg.run.seed if cfg.run.own_source_only else base.run.seed,
            restore_from=None,
        ),
    )
    # the hash covers what differs from the preset, so that a new config key (at its
    # default) does not rename the folders of models trained before it existed
    d, ref = canon.to_dict(), base.to_dict()
    for section, key in RESUME_FREE:
        d[section].pop(key)
    d["run"].pop("own_source_only")  # the preset's seed's model is the shared one
    for section, key in (("data", "source_root"), ("data", "target_root"), ("run", "out_dir")):
        if d[section][key] is not None:  # data/toy and /here/data/toy: one model
            d[section][key] = os.path.abspath(d[section][key])
    if d["model"]["init"] not in (None, "none"):
        d["model"]["init"] = os.path.abspath(d["model"]["init"])
    diff = {
        sec: {k: v for k, v in vals.items() if v != ref[sec][k]}
        for sec, vals in d.items()
        if isinstance(vals, dict)
    }
    for root in ("source_root", "target_root"):  # a toy written again (another gap): a new model
        found = toy.toy_manifest(getattr(cfg.data, root))
        if found is not None:
            diff.setdefault("toy", {})[root] = found[1]
    digest = hashlib.sha256(json.dumps(diff, sort_keys=True).encode()).hexdigest()[:8]
    name = f"source_only_{cfg.data.source}_{cfg.preset}_{digest}"
    return replace(canon, run=replace(canon.run, name=name))
