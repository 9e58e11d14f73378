"""A run's records: a history row and a loss line every ``run.log_every`` steps, validation
(a validations.csv row, a log line, TensorBoard), as functions of the job
(:class:`~pixda_core.train.job.Job`) whose run they record."""

from __future__ import annotations

from .evaluate import evaluate, metrics_dict
from .resume import require_finite
from .runtime import log_stream


def log_losses(job, phase: str | None = None) -> None:
    """A history row and a loss line: the mean of each loss since the last one
    (``phase``: the phase they belong to, when it has just ended)."""
    if not job.losses:
        return
    means = job.losses.means(job.rt)
    require_finite(job, means)
    # host time per step and the share of it spent waiting for the next batches; on CUDA
    # the host runs ahead of the GPU only a few steps, so over an interval this is the
    # step time, and the wait is what the loader adds to it
    wait, total = job.timing
    step_s = total / max(job.losses.steps, 1)
    data_wait = wait / total if total > 0 else 0.0
    job.timing = [0.0, 0.0]
    job.losses.clear()
    s = job.state
    phase = phase or s.phase
    lr = job.nets.optimizers["g"].param_groups[0]["lr"]
    row = {"step": s.step, "phase": phase, "lr": lr}
    row.update(dict.fromkeys(job.method.losses))
    row.update(means)
    row.update({"step_s": step_s, "data_wait": data_wait})
    job.folder.append("history", row)
    shown = " ".join(f"{n.removeprefix('loss_')} {v:.4f}" for n, v in means.items())
    line = (
        f"step {s.step} [{phase}] {shown} | {step_s:.3f} s/step, waiting for data {data_wait:.0%}"
    )
    if job.bar is not None and not job.bar.disable:
        job.bar.set_postfix_str(shown, refresh=False)
        job.bar.write(line, file=log_stream())
    else:
        job.rt.log(line)
    if job.board is not None:
        job.board.losses(s.step, means, job.nets.optimizers)


def validate(job) -> None:
    """Evaluate G on the target val set now: a validations.csv row and a log line."""
    s = job.state
    cm = evaluate(job.nets.g, job.val, job.rt)
    m = metrics_dict(cm, job.cfg, s.step, job.method.name, job.split_source)
    validation_row(job, m, s.phase)
    job.last_val = (s.step, cm)
    extra = f", mIoU-13 {m['miou_13'] * 100:.2f}" if "miou_13" in m else ""
    job.rt.log(
        f"step {s.step}: val mIoU-{m['protocol']} {pct(m['miou'])}{extra}, pixel accuracy "
        f"{pct(m['pixel_accuracy'])}"
    )
    if job.board is not None:
        job.board.validation(s.step, m, job.nets.g)


def validation_row(job, m: dict, phase: str) -> None:
    row = {"step": m["step"], "phase": phase, "miou": m["miou"]}
    if "miou_13" in m:
        row["miou_13"] = m["miou_13"]
    row["pixel_accuracy"] = m["pixel_accuracy"]
    row.update({f"iou_{k}": v for k, v in m["per_class_iou"].items()})
    job.folder.append("validations", row)


def pct(v) -> str:
    return "n/a" if v is None else f"{v * 100:.2f}"
