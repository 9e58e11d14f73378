"""A run's data: the source set, the target shots (chosen once, written to the run's
``split.txt``, and where they came from), and the check that each set fills a batch."""

from __future__ import annotations

from pathlib import Path

from ..config import Config
from ..data import GTA5, Synthia, write_split
from ..data.splits import ChosenSplit, choose_split, split_source
from ..errors import ConfigError
from ..methods import Method, method_class
from .rundir import RunFolder
from .runtime import Runtime
from .streams import per_rank


def source_dataset(cfg: Config):
    cls = {"gta5": GTA5, "synthia": Synthia}[cfg.data.source]
    return cls(cfg.data.source_root, size=cfg.data.size, list_file=cfg.data.source_list)


def target_split(cfg: Config, folder: RunFolder, rt: Runtime, chosen: ChosenSplit | None) -> Path:
    """The target shots of the run, written to ``split.txt`` in the run folder (``chosen`` by
    the checks before the run, else here; see :func:`~pixda_core.data.splits.choose_split`:
    the split file, the published split, or a seeded draw); the run says which."""
    path = folder.path / "split.txt"
    if rt.is_main and not path.exists():
        if chosen is None:
            d = cfg.data
            every = method_class(cfg.method.name).all_target
            chosen = choose_split(
                d.target_root, d.num_shots, d.split_file, d.split_seed, cfg.run.seed, every
            )
        write_split(path, chosen.names)
        rt.log(f"target shots: {chosen.how} -> {path}")
    rt.barrier()
    return path


def require_batches(n: int, batch: int, rt: Runtime, what: str) -> None:
    if per_rank(n, batch, rt.world) == 0:
        raise ConfigError(
            f"{what} has {n} images, fewer than one batch of --batch_size = {batch}"
            + (f" on each of {rt.world} processes" if rt.distributed else "")
        )


def shots_source(cfg: Config, method: Method, chosen: ChosenSplit | None) -> str | None:
    """Where the run's target shots came from (``metrics.json``'s ``split``): as ``chosen``
    says, else (a resumed run with its own ``split.txt``) worked out from the config; None
    for a run without target shots."""
    if not method.target:
        return None
    if chosen is not None:
        return chosen.source
    d = cfg.data
    return split_source(
        d.target_root, d.num_shots, d.split_file, d.split_seed, cfg.run.seed, method.all_target
    )
