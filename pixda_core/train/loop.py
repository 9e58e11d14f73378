"""Training, read top to bottom: source-only pretraining, and adaptation by PixDA or a
baseline (docs/method.md; each method is a class in :mod:`pixda_core.methods`, whose hooks the
loop calls).

:func:`adapt` (and, without the first two steps, :func:`train_source_only`):

1. check everything that can be checked before a run folder is written (``preflight``);
2. find the source-only model to start from, or train it first (``ensure_source_only``);
3. build the job (nets, data, streams; :class:`~pixda_core.train.job.Job`) and resume it
   from its newest checkpoint when asked;
4. the main phase (:func:`main_phase`): one step after another until the iteration budget
   is spent; at the end of each pass over the source images, validation and the method's own
   action while iterations remain in the budget (PixDA's selection, which may end the phase
   early);
5. the method's last phase (:func:`last_phase`: PixDA's distillation);
6. the final evaluation, written to ``metrics.json`` (:func:`finish`).

Checkpoints hold the whole job, so a resumed run continues exactly where its checkpoint was.
"""

from __future__ import annotations

from pathlib import Path

from ..config import Config
from ..errors import ConfigError
from ..methods import Method, SourceOnly, Step, method_of, portable
from .evaluate import evaluate, metrics_dict, write_metrics
from .job import Job, TrainingError
from .records import log_losses, pct, validate, validation_row
from .resume import require_clean_state, save
from .resume import resume as resume_from_checkpoint
from .rundir import RunFolder, finished, read_metrics, run_lock
from .runtime import log_stream, ran_on, setup_runtime, stop_on_signals
from .start import Start, preflight, resolve_init, resolve_shots, source_only_run
from .step import main_step

__all__ = ["adapt", "train_source_only", "ensure_source_only", "TrainingError"]


def train_source_only(cfg: Config, resume: bool = False) -> dict:
    """Train G on the source alone (``cfg.pretrain``, init from ``cfg.model.init``), validated
    on the target val set; the run folder is ``<run.out_dir>/<run.name>``. Returns the final
    metrics (as in ``metrics.json``)."""
    cfg = resolve_init(cfg)
    method = method_of(cfg, source_only=True)
    start = preflight(cfg, method, resume)
    with run_lock(Path(cfg.run.out_dir) / cfg.run.name):
        return run_job(cfg, method, resume, init=cfg.model.init, start=start)


def adapt(cfg: Config, resume: bool = False, method: type[Method] | None = None) -> dict:
    """Adapt a source-only model with ``cfg.method.name`` (or ``method``, a method class: one
    defined in a notebook cell is registered and trained here). The start point is
    ``cfg.run.restore_from`` or the shared source-only run (trained first when missing).
    Returns the final metrics."""
    if method is not None:
        cfg = cfg.override(method={"name": portable(method)})
    cfg, listed = resolve_shots(cfg)
    if cfg.run.restore_from is None:  # the shared source-only model comes first
        cfg = resolve_init(cfg)
    method = method_of(cfg)
    start = preflight(cfg, method, resume, listed=listed)  # the split, the data: read once
    so = so_start = None
    if cfg.run.restore_from is None:  # and its folder and init, when it is still to train
        so = source_only_run(cfg)
        if not source_only_done(so):  # (its data roots are cfg's: start's datasets)
            so_start = preflight(so, SourceOnly(so), True, data=False)
            so_start.source, so_start.val = start.source, start.val
    with run_lock(Path(cfg.run.out_dir) / cfg.run.name):
        init = ensure_source_only(cfg, checked=True, so=so, start=so_start)
        return run_job(cfg, method, resume, init=str(init), start=start)


def source_only_done(so: Config) -> bool:
    """Has the source-only run ``so`` finished, its checkpoint there to adapt from?"""
    folder = Path(so.run.out_dir) / so.run.name
    return finished(folder) and (folder / "checkpoints" / "latest.pt").exists()


def ensure_source_only(
    cfg: Config, checked: bool = False, so: Config | None = None, start: Start | None = None
) -> Path:
    """The source-only checkpoint to adapt from: ``run.restore_from`` when given, else the
    shared source-only run for this source and preset, trained now when missing (and resumed
    when a previous attempt was interrupted). ``checked``: the caller has run the source-only
    run's preflight (:func:`adapt` does, before anything is written); ``so``: the source-only
    run's config, as the caller resolved it; ``start``: what that preflight read (with the
    adaptation run's datasets: its roots and sizes are the same)."""
    if cfg.run.restore_from is not None:
        path = Path(cfg.run.restore_from)
        if not path.is_file():
            raise ConfigError(f"--restore_from {path} does not exist")
        return path
    so = so or source_only_run(cfg)
    folder = Path(so.run.out_dir) / so.run.name
    latest = folder / "checkpoints" / "latest.pt"

    def done() -> bool:
        return source_only_done(so)

    if not done():
        method = SourceOnly(so)
        if not checked:  # the folder and init checks (the data roots are cfg's)
            preflight(so, method, True, data=False)
        # runs started together (a batch of jobs) train it once: the others wait, then reuse
        with run_lock(folder, wait=True):
            if not done():
                print(
                    f"no --restore_from given: training a source-only model first in {folder} "
                    "(reused by later runs of this source and preset)",
                    file=log_stream(),
                )
                run_job(so, method, True, init=so.model.init, start=start)
                return latest
    print(f"source-only model: reusing {folder}", file=log_stream())
    return latest


def run_job(
    cfg: Config, method: Method, resume: bool, init: str | None, start: Start | None = None
) -> dict:
    """Build the job (``start``: what the checks before it chose and read: its target shots,
    its datasets), resume it when asked, run its phases, evaluate it."""
    from tqdm.auto import tqdm

    rt = setup_runtime(cfg.run)
    folder = RunFolder.open(cfg, resume, rt.is_main)
    rt.barrier()
    job = Job(cfg, method, folder, rt, init, start)
    if resume:
        resume_from_checkpoint(job)
    if job.state.phase == "done" and finished(folder.path):
        rt.log(f"{folder.path} is complete (step {job.state.step})")
        return read_metrics(folder.path / "metrics.json")
    # (done, with its metrics.json missing or damaged: evaluated again below)
    total = job.optim.early_stop + method.last_phase_steps()
    show = cfg.run.progress and rt.is_main
    desc = f"{method.name} {cfg.run.name}"
    job.bar = tqdm(
        total=total, initial=job.state.step, desc=desc, disable=not show, file=log_stream()
    )
    asked = stop_on_signals(lambda signum: setattr(job, "stop_signal", signum))
    with job.open_streams(), job.bar, asked:
        if job.state.phase == "main":
            main_phase(job)
        if job.state.phase == "kd":
            last_phase(job)
        if job.rt.distributed and job.should_stop(last=True):  # a vote cast at the last step
            job.stop()
    return finish(job)


def main_phase(job: Job) -> None:
    """The method's steps until ``early_stop`` iterations are done (or until the method ends
    the phase early: PixDA's selection keeping fewer source images than one batch)."""
    cfg, s = job.cfg, job.state
    budget = job.optim.early_stop
    # a method acts at a pass's end only with iterations left (PixDA: nothing would train on
    # the images its selection keeps). A run whose budget ended on a pass's end, resumed with
    # a larger one, owes that action now, as a run started with that budget takes it (at a
    # pass's end, any other checkpoint of the main phase follows its action: PixDA's stream
    # starts over at 0)
    method = job.method
    at_pass_end = job.src is not None and job.src.at_epoch_end
    if method.acts_at_pass_end and at_pass_end and s.step < budget:
        method.source_pass_end(job)
        save(job)
    while s.step < budget and not s.end_reason:
        src, trg = job.next_batches()
        main_step(job.nets, src, trg, cfg, job.losses)
        job.step_done()  # counts the step; a loss line every run.log_every steps

        # a pass over the (kept) source images is over: validate, then the method's action
        if job.src is not None and job.src.at_epoch_end:
            validate(job)
            if method.acts_at_pass_end and s.step < budget:
                method.source_pass_end(job)
                if s.end_reason:  # the method ended the phase (PixDA: too few images kept)
                    break
        elif cfg.run.val_every and s.step % cfg.run.val_every == 0:
            validate(job)

        if s.step % cfg.run.ckpt_every == 0:
            save(job)
        if job.should_stop():  # SIGTERM / SIGINT: a checkpoint here, then out
            job.stop()
    end_main_phase(job)


def end_main_phase(job: Job) -> None:
    """Say why the main phase ended, then go on to the method's last phase (PixDA's
    distillation: ``kd_end`` set, a checkpoint) or to the end."""
    s, method = job.state, job.method
    s.end_reason = s.end_reason or f"iteration budget ({s.step}) spent"
    job.rt.log(f"step {s.step}: main phase over ({s.end_reason})")
    method.main_phase_over(job)
    kd_steps = method.last_phase_steps()
    s.phase = "kd" if kd_steps else "done"
    if kd_steps:
        s.kd_end = s.step + kd_steps
        job.rt.log(f"{method.last_phase}: {kd_steps} steps on the target shots")
    log_losses(job, phase="main")
    if s.phase == "kd":
        save(job)


def last_phase(job: Job) -> None:
    """The method's last phase (PixDA's distillation): its steps on the target shots only."""
    cfg, s, method = job.cfg, job.state, job.method
    method.start_last_phase(job, job.resumed_modules)
    step = Step(job.nets, cfg, job.losses)
    while s.step < s.kd_end:
        _, trg = job.next_batches(source=False)
        method.last_phase_step(step, trg)
        job.step_done()
        if cfg.run.val_every and s.step % cfg.run.val_every == 0:
            validate(job)
        if s.step % cfg.run.ckpt_every == 0:
            save(job)
        if job.should_stop():
            job.stop()
    s.phase = "done"
    log_losses(job, phase="kd")


def finish(job: Job) -> dict:
    """The final evaluation (the last validation's, when it was at this step and no
    predictions are asked for), ``metrics.json``, and a last checkpoint."""
    cfg, s, rt = job.cfg, job.state, job.rt
    require_clean_state(job)  # no metrics from weights that have gone bad
    pred_dir = job.folder.path / "predictions" if cfg.run.save_predictions else None
    if job.last_val is not None and job.last_val[0] == s.step and pred_dir is None:
        cm = job.last_val[1]
    else:
        cm = evaluate(job.nets.g, job.val, rt, predictions_dir=pred_dir)
    metrics = metrics_dict(cm, cfg, s.step, job.method.name, job.split_source)
    if job.last_val is None or job.last_val[0] != s.step:
        job.last_val = (s.step, cm)
        validation_row(job, metrics, "final")
        if job.board is not None:
            job.board.validation(s.step, metrics, job.nets.g)
    metrics["ran_on"] = ran_on(rt)  # the session that finished the run
    if rt.is_main:
        write_metrics(job.folder.path, metrics, cm)
    s.phase = "done"
    save(job, state_checked=True)  # (checked above; evaluation changes no weight)
    if job.board is not None:
        job.board.close()
    rt.log(
        f"{job.method.name} {cfg.run.name}: final mIoU-{metrics['protocol']} "
        f"{pct(metrics['miou'])} at step {s.step} -> {job.folder.path}"
    )
    return metrics
