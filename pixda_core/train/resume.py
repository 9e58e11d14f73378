"""A run's checkpoints and the rules of resuming one: the whole job written at a step (never
a non-finite value: the checks before each), the newest readable one resumed, what a resume
may change. Functions of the job (:class:`~pixda_core.train.job.Job`)."""

from __future__ import annotations

import math
from dataclasses import asdict

from ..checkpoint import (
    finite_checkpoint,
    floating_tensors,
    load_model_state,
    newest_clean,
    newest_readable,
    nonfinite_parts,
    rng_state,
    save_step_checkpoint,
    set_rng_state,
)
from ..config import Config
from ..errors import ConfigError, PixdaError
from .evaluate import checkpoint_method
from .rundir import config_differences

#: the run folder's tables that a resumed run rewrites from its checkpoint's step on
TABLES = ("history", "validations", "selection")
#: a checkpoint's own entries; every other one is a module of the method's (its networks, the
#: modules of its phases)
KIT_ENTRIES = ("method", "state", "config", "model", "optimizers", "schedulers", "rng",
               "loss_sums", "loss_count", "scaler")  # fmt: skip


class TrainingError(PixdaError):
    """Training cannot go on (a non-finite loss)."""


def save(job, state_checked: bool = False) -> None:
    """Write the whole job (nets, optimisers, schedules, state, RNGs, pending loss sums)
    as ``checkpoints/step_<step>.pt`` and ``latest.pt`` (``state_checked``: the caller has
    just run :func:`require_clean_state` and nothing has trained since)."""
    s, nets = job.state, job.nets
    require_finite(job, job.losses.totals())
    if not state_checked:
        require_clean_state(job)  # nothing non-finite is ever saved
    if job.src is not None:
        s.src_position = job.src.position
    if job.trg is not None:
        s.trg_position = job.trg.position
    pending = job.losses.state_dict(job.rt)  # (a collective: every process is here)
    if not job.rt.is_main:
        job.rt.barrier()
        return
    saved = {
        "method": job.method.name,
        "state": asdict(s),
        "config": job.cfg.to_dict(),
        "model": nets.g.state_dict(),
        "optimizers": {k: o.state_dict() for k, o in nets.optimizers.items()},
        "schedulers": {k: o.state_dict() for k, o in nets.schedulers.items()},
        "rng": rng_state(),
        # losses summed since the last history row (over the processes), so a resumed run
        # writes the same rows
        **pending,
    }
    for name, m in [*nets.networks.items(), *job.method.saved_modules().items()]:
        saved[name] = m.state_dict()
    if nets.scaler is not None:  # fp16: the loss scale it has reached
        saved["scaler"] = nets.scaler.state_dict()
    save_step_checkpoint(saved, job.folder.checkpoints, s.step, job.cfg.run.keep_checkpoints)
    job.clock.write(job.folder.path, job.rt.precision, job.rt.world)  # timing.json, as of now
    job.rt.barrier()


def resume(job) -> None:
    """Continue from the newest readable checkpoint (a run killed before its first one
    starts over, without the log rows it wrote)."""
    found = newest_readable(job.folder.checkpoints, str(job.folder.path), job.rt.log)
    if found is None:
        for table in TABLES:
            job.folder.truncate(table, 0)
        return
    path, ck = found
    if not finite_checkpoint(ck):
        good = newest_clean(job.folder.checkpoints)
        instead = f"; the newest clean one is {good[1]}" if good else ""
        raise TrainingError(
            f"cannot resume {job.folder.path}: its checkpoint {path} holds NaN or inf (a run "
            f"that diverged, saved before the kit checked for it){instead}; start afresh "
            "under another --name with a lower learning rate"
        )
    trained = checkpoint_method(ck, job.cfg)
    if trained != job.method.name:
        raise ConfigError(f"{path} is a checkpoint of a {trained} run, not {job.method.name}")
    nets = job.nets
    load_model_state(nets.g, ck["model"], path)
    for name, m in nets.networks.items():
        if name not in ck:
            raise ConfigError(f"{path} holds no network {name!r} of {job.method.name}")
        load_model_state(m, ck[name], path)
    for k, o in nets.optimizers.items():
        o.load_state_dict(ck["optimizers"][k])
    for k, sch in nets.schedulers.items():
        sch.load_state_dict(ck["schedulers"][k])
    if nets.scaler is not None and "scaler" in ck:
        nets.scaler.load_state_dict(ck["scaler"])
    job.state = type(job.state).from_dict(ck["state"])
    job.resumed_modules = {
        k: v for k, v in ck.items() if k not in KIT_ENTRIES and k not in nets.networks
    }
    set_rng_state(ck["rng"])
    job.losses.load_state_dict(ck, job.rt)
    job.clock.resumed(job.folder.path)  # the time and memory its record says so far
    changed = settings_changed(job, path, Config.from_dict(ck["config"], base=job.cfg))
    for table in TABLES:
        job.folder.truncate(table, job.state.step)
    job.rt.log(f"resumed {job.folder.path} at step {job.state.step} ({job.state.phase})")
    if changed:
        job.rt.log(f"with changed settings: {'; '.join(changed)}")
        if job.rt.is_main:  # the folder's config is the run's from here on
            job.cfg.to_yaml(job.folder.path / "config.yaml")


def settings_changed(job, path, before: Config) -> list[str]:
    """What this resume changes against the checkpoint's config (the folder's config.yaml
    was checked against it before: :meth:`RunFolder.check`). A larger ``early_stop``
    extends the main phase: a run whose main phase ran out its budget and whose method
    has no distillation is reopened (its metrics.json moved to ``metrics_step_N.json``);
    one whose last phase has begun, or whose selection ended it, cannot be extended."""
    refused, changed = config_differences(before, job.cfg)
    s, section = job.state, job.method.schedule
    old = getattr(before, section).early_stop
    if refused:
        raise ConfigError(f"cannot resume from {path}: its config differs in {refused[0]}")
    if job.optim.early_stop == old or s.phase == "main":
        return changed
    budget = s.end_reason.startswith("iteration budget")
    if s.phase == "done" and budget and not job.method.last_phase_steps():
        s.phase, s.end_reason = "main", ""  # (s.step is the old early_stop: below the new)
        for stem in ("metrics.json", "metrics_confusion.npy"):
            done = job.folder.path / stem
            if job.rt.is_main and done.exists():
                done.replace(done.with_name(stem.replace("metrics", f"metrics_step_{s.step}")))
        return changed
    why = f"its {job.method.last_phase} has begun" if s.kd_end else s.end_reason
    ended = s.kd_end - job.method.last_phase_steps() if s.kd_end else s.step
    raise ConfigError(
        f"cannot extend {job.folder.path} to {section}.early_stop {job.optim.early_stop}: "
        f"its main phase ended at step {ended} ({why}); start a new run under another --name"
    )


def require_finite(job, losses: dict[str, float]) -> None:
    """Stop the run at a NaN or inf loss (before it reaches a checkpoint)."""
    s = job.state
    for name, value in losses.items():
        if not math.isfinite(value):
            diverged(
                job,
                f"{name} is not finite ({value}) at step {s.step} ({s.phase} phase, since "
                "the last log line)",
            )


def require_clean_state(job) -> None:
    """Stop the run when what a checkpoint would save (weights and buffers, the
    discriminators, the teacher, the optimiser states) holds a NaN or an inf: weights
    can go bad steps before the loss does. A fused check per part, one read back; at
    checkpoints and before the final evaluation only, never per step."""
    nets, s = job.nets, job.state
    parts = {"G's weights and buffers": floating_tensors(nets.g.state_dict())}
    for name, m in nets.networks.items():
        parts[name.upper()] = floating_tensors(m.state_dict())
    for name, m in job.method.saved_modules().items():
        parts[f"the {name}"] = floating_tensors(m.state_dict())
    parts["the optimiser states"] = floating_tensors(
        [o.state_dict()["state"] for o in nets.optimizers.values()]
    )
    bad = nonfinite_parts(parts)
    if bad:
        diverged(
            job,
            f"{' and '.join(bad)} hold NaN or inf at step {s.step} ({s.phase} phase); "
            "nothing was saved at this step",
        )


def diverged(job, what: str) -> None:
    """End the run: ``what`` went non-finite. The message names the newest checkpoint on
    disk that holds only finite values, checked now (never one merely assumed good)."""
    found = newest_clean(job.folder.checkpoints)
    if found is None:
        clean = f"no checkpoint in {job.folder.checkpoints} is clean (none was written before)"
    else:
        clean = f"the newest clean checkpoint (checked) is {found[1]}, step {found[0]}"
    raise TrainingError(
        f"the run diverged: {what}; {clean}; a resume would diverge the same way: start "
        "afresh under another --name with a lower learning rate, or check the data"
    )
