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
from dataclasses import replace
from pathlib import Path

from ..config import Config, preset
from ..data import Cityscapes, draw_split, load_split
from ..errors import ConfigError
from ..methods import SOURCE_ONLY, Method
from ..models.pretrained import load_pretrained
from .job import source_dataset
from .rundir import RESUME_FREE, RunFolder
from .step import build_segmenter


def preflight(cfg: Config, method: Method, resume: bool, data: bool = True) -> None:
    """Check, before anything is written: the output folder is writable and the run name
    free (or resumable); the source and target roots have their layouts and labels; the
    split file (or the drawn split) fits the target root; the initial weights
    (``run.restore_from`` for adaptation, ``model.init`` for source-only) read and fit the
    model. ``data=False`` leaves out the dataset and split checks (made already for the
    same roots by the caller)."""
    if os.environ.get("RANK", "0") == "0":  # under torchrun rank 0 owns the run folder
        RunFolder.check(cfg, resume)
    if data and method.source:
        source_dataset(cfg)
    if data:
        Cityscapes(cfg.data.target_root, "val", size=cfg.data.val_size)
    if data and method.target:
        Cityscapes(cfg.data.target_root, "train", size=cfg.data.size)
        written = Path(cfg.run.out_dir) / cfg.run.name / "split.txt"
        if not (resume and written.exists()):
            if cfg.data.split_file is not None:
                load_split(cfg.data.split_file, cfg.data.target_root)
            else:
                draw_split(cfg.data.target_root, cfg.data.num_shots, 0)
    source_only = method.name == SOURCE_ONLY
    init = cfg.model.init if source_only else cfg.run.restore_from
    if init is not None:
        if not Path(init).is_file():
            flag = "model.init" if source_only else "--restore_from"
            raise ConfigError(f"{flag} {init} does not exist")
        load_pretrained(build_segmenter(cfg), init)


def source_only_run(cfg: Config) -> Config:
    """The config of the source-only run shared by every adaptation run of ``cfg``'s source
    and preset: the adaptation-only settings (method, ``adapt``, shots, split, seed) are reset
    to the preset's, and the folder is ``<out_dir>/source_only_<source>_<preset>_<hash>``,
    the hash covering what is left where it differs from the preset, so runs that differ in
    it do not share a model."""
    base = preset(cfg.preset)
    data = replace(cfg.data, num_shots=base.data.num_shots, split_file=None, split_seed=None)
    canon = replace(
        cfg,
        data=data,
        adapt=base.adapt,
        method=replace(base.method, seg_loss=cfg.method.seg_loss),
        run=replace(cfg.run, name="source_only", seed=base.run.seed, restore_from=None),
    )
    # the hash covers what differs from the preset, so that a new config key (at its
    # default) does not rename the folders of models trained before it existed
    d, ref = canon.to_dict(), base.to_dict()
    for section, key in RESUME_FREE:
        d[section].pop(key)
    diff = {
        sec: {k: v for k, v in vals.items() if v != ref[sec][k]}
        for sec, vals in d.items()
        if isinstance(vals, dict)
    }
    digest = hashlib.sha256(json.dumps(diff, sort_keys=True).encode()).hexdigest()[:8]
    name = f"source_only_{cfg.data.source}_{cfg.preset}_{digest}"
    return replace(canon, run=replace(canon.run, name=name))
