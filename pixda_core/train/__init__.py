"""Training and evaluation: source-only pretraining, PixDA and the baselines.

Where things are: :mod:`~pixda_core.train.loop` (the loops, read top to bottom),
:mod:`~pixda_core.train.step` (G, the method's networks, their optimisers and poly
schedules; one step of the main phase, calling the method's hooks: the methods are in
:mod:`pixda_core.methods`), :mod:`~pixda_core.train.selection` (scoring the kept source
images, for a method that selects among them),
:mod:`~pixda_core.train.evaluate`, :mod:`~pixda_core.train.job` (a run's parts),
:mod:`~pixda_core.train.records` (its history, validations, TensorBoard),
:mod:`~pixda_core.train.resume` (checkpoints, resuming),
:mod:`~pixda_core.train.start` (checks before a run), :mod:`~pixda_core.train.inputs`
(its data), :mod:`~pixda_core.train.rundir` (run
folders), :mod:`~pixda_core.train.streams` (batch streams), :mod:`~pixda_core.train.runtime`
(device, precision, torchrun) and :mod:`~pixda_core.train.cli` (the command line; its flags in
:mod:`~pixda_core.train.flags`).
"""

from .evaluate import evaluate, load_run_model, metrics_dict, val_loader, write_metrics
from .job import TrainingError
from .loop import adapt, ensure_source_only, train_source_only
from .runtime import Runtime, setup_runtime
from .start import source_only_run

__all__ = [
    "adapt",
    "train_source_only",
    "ensure_source_only",
    "source_only_run",
    "evaluate",
    "load_run_model",
    "metrics_dict",
    "val_loader",
    "write_metrics",
    "TrainingError",
    "Runtime",
    "setup_runtime",
]
