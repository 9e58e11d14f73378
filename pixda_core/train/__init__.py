"""Training and evaluation: source-only pretraining, PixDA and the baselines."""

from .evaluate import evaluate, metrics_dict, val_loader, write_metrics
from .loops import TrainingError, adapt, ensure_source_only, source_only_run, train_source_only
from .runtime import Runtime, setup_runtime

__all__ = [
    "adapt", "train_source_only", "ensure_source_only", "source_only_run", "evaluate",
    "metrics_dict", "val_loader", "write_metrics", "TrainingError", "Runtime", "setup_runtime",
]  # fmt: skip
