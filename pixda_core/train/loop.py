"""Training, read top to bottom: source-only pretraining, and adaptation by PixDA or a
baseline (docs/method.md; what each method uses is in :mod:`pixda_core.methods`).

:func:`adapt` (and, without the first two steps, :func:`train_source_only`):

1. check everything that can be checked before a run folder is written (``preflight``);
2. find the source-only model to start from, or train it first (``ensure_source_only``);
3. build the job (nets, data, streams; :class:`~pixda_core.train.job.Job`) and resume it
   from its newest checkpoint when asked;
4. the main phase (:func:`main_phase`): one step after another until the iteration budget
   is spent; at the end of each pass over the source images, validation and (PixDA, while
   iterations remain in the budget) selection, which may end the phase early;
5. the distillation phase (:func:`distillation_phase`, PixDA);
6. the final evaluation, written to ``metrics.json`` (:func:`finish`).

Checkpoints hold the whole job, so a resumed run continues exactly where its checkpoint was.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from ..config import Config
from ..data.common import skipping
from ..data.splits import ChosenSplit
from ..errors import ConfigError
from ..methods import SOURCE_ONLY, TABLE, Method, method_of
from .distillation import kd_length, kd_step, make_teacher
from .evaluate import evaluate, metrics_dict, write_metrics
from .job import Job, TrainingError, pct
from .rundir import RunFolder, finished, read_metrics, run_lock
from .runtime import log_stream, ran_on, setup_runtime, stop_on_signals, worker_ignores_stops
from .selection import against_truth, keep, next_tau, score_images
from .start import preflight, resolve_init, resolve_shots, source_only_run
from .step import main_step
from .streams import SkipReport, per_rank

__all__ = ["adapt", "train_source_only", "ensure_source_only", "TrainingError"]


def train_source_only(cfg: Config, resume: bool = False) -> dict:
    """Train G on the source alone (``cfg.pretrain``, init from ``cfg.model.init``), validated
    on the target val set; the run folder is ``<run.out_dir>/<run.name>``. Returns the final
    metrics (as in ``metrics.json``)."""
    method = method_of(cfg, source_only=True)
    cfg = resolve_init(cfg)
    preflight(cfg, method, resume)
    with run_lock(Path(cfg.run.out_dir) / cfg.run.name):
        return run_job(cfg, method, resume, init=cfg.model.init)


def adapt(cfg: Config, resume: bool = False) -> dict:
    """Adapt a source-only model with ``cfg.method.name``. The start point is
    ``cfg.run.restore_from`` or the shared source-only run (trained first when missing).
    Returns the final metrics."""
    method = method_of(cfg)
    cfg, listed = resolve_shots(cfg)
    if cfg.run.restore_from is None:  # the shared source-only model comes first
        cfg = resolve_init(cfg)
    chosen = preflight(cfg, method, resume, listed=listed)  # the split, read and checked once
    if cfg.run.restore_from is None:  # and its folder and init, when it is still to train
        so = source_only_run(cfg)
        if not source_only_done(so):
            preflight(so, TABLE[SOURCE_ONLY], True, data=False)  # (its data roots are cfg's)
    with run_lock(Path(cfg.run.out_dir) / cfg.run.name):
        init = ensure_source_only(cfg, checked=True)
        return run_job(cfg, method, resume, init=str(init), chosen=chosen)


def source_only_done(so: Config) -> bool:
    """Has the source-only run ``so`` finished, its checkpoint there to adapt from?"""
    folder = Path(so.run.out_dir) / so.run.name
    return finished(folder) and (folder / "checkpoints" / "latest.pt").exists()


def ensure_source_only(cfg: Config, checked: bool = False) -> Path:
    """The source-only checkpoint to adapt from: ``run.restore_from`` when given, else the
    shared source-only run for this source and preset, trained now when missing (and resumed
    when a previous attempt was interrupted). ``checked``: the caller has run the source-only
    run's preflight (:func:`adapt` does, before anything is written)."""
    if cfg.run.restore_from is not None:
        path = Path(cfg.run.restore_from)
        if not path.is_file():
            raise ConfigError(f"--restore_from {path} does not exist")
        return path
    so = source_only_run(cfg)
    folder = Path(so.run.out_dir) / so.run.name
    latest = folder / "checkpoints" / "latest.pt"

    def done() -> bool:
        return source_only_done(so)

    if not done():
        method = TABLE[SOURCE_ONLY]
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
                run_job(so, method, True, init=so.model.init)
                return latest
    print(f"source-only model: reusing {folder}", file=log_stream())
    return latest


def run_job(
    cfg: Config, method: Method, resume: bool, init: str | None, chosen: ChosenSplit | None = None
) -> dict:
    """Build the job (``chosen``: its target shots, as preflight chose them), resume it when
    asked, run its phases, evaluate it."""
    from tqdm.auto import tqdm

    rt = setup_runtime(cfg.run)
    folder = RunFolder.open(cfg, resume, rt.is_main)
    rt.barrier()
    job = Job(cfg, method, folder, rt, init, chosen)
    if resume:
        job.resume()
    if job.state.phase == "done" and finished(folder.path):
        rt.log(f"{folder.path} is complete (step {job.state.step})")
        return read_metrics(folder.path / "metrics.json")
    # (done, with its metrics.json missing or damaged: evaluated again below)
    total = job.optim.early_stop + kd_length(cfg, method)
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
            distillation_phase(job)
        if job.rt.distributed and job.should_stop(last=True):  # a vote cast at the last step
            job.stop()
    return finish(job)


def main_phase(job: Job) -> None:
    """The method's steps until ``early_stop`` iterations are done (or, for PixDA, until the
    selection keeps fewer source images than one batch)."""
    cfg, s = job.cfg, job.state
    budget = job.optim.early_stop
    # PixDA selects at a pass's end only with iterations left (nothing would train on the
    # images kept). A run whose budget ended on a pass's end, resumed with a larger one, owes
    # that round now, as a run started with that budget makes it (at a pass's end, any other
    # checkpoint of the main phase follows its round: its stream starts over at 0)
    if job.method.selects and job.src is not None and job.src.at_epoch_end and s.step < budget:
        selection_round(job)
        job.checkpoint()
    while s.step < budget and not s.end_reason:
        src, trg = job.next_batches()
        main_step(job.nets, src, trg, cfg, job.losses)
        job.step_done()  # counts the step; a loss line every run.log_every steps

        # a pass over the (kept) source images is over: validate, then select
        if job.src is not None and job.src.at_epoch_end:
            job.validate()
            if job.method.selects and s.step < budget:
                selection_round(job)
                if s.end_reason:  # too few images kept for a batch
                    break
        elif cfg.run.val_every and s.step % cfg.run.val_every == 0:
            job.validate()

        if s.step % cfg.run.ckpt_every == 0:
            job.checkpoint()
        if job.should_stop():  # SIGTERM / SIGINT: a checkpoint here, then out
            job.stop()
    end_main_phase(job)


def end_main_phase(job: Job) -> None:
    """Say why the main phase ended, then go on to distillation (PixDA: ``kd_end`` set,
    a checkpoint) or to the end."""
    s = job.state
    s.end_reason = s.end_reason or f"iteration budget ({s.step}) spent"
    job.rt.log(f"step {s.step}: main phase over ({s.end_reason})")
    if job.method.selects:
        job.folder.append(
            "selection",
            {
                "step": s.step,
                "round": s.selection_round,
                "tau": round(s.tau, 6),
                "candidates": len(s.kept),
                "kept": len(s.kept),
                "mean_score": None,
                "event": f"main phase over: {s.end_reason}",
            },
        )
    kd_steps = kd_length(job.cfg, job.method)
    s.phase = "kd" if kd_steps else "done"
    if kd_steps:
        s.kd_end = s.step + kd_steps
        job.rt.log(f"distillation: {kd_steps} steps on the target shots")
    job.log_losses(phase="main")
    if s.phase == "kd":
        job.checkpoint()


def distillation_phase(job: Job) -> None:
    """PixDA's distillation: the target shots only, towards a frozen copy of G."""
    cfg, s = job.cfg, job.state
    # G as the phase begins; a run resumed inside the phase takes the teacher its checkpoint
    # saved (the checkpoint written as the phase begins has none: G is the teacher there)
    job.teacher = make_teacher(job.nets.g, job.resumed_teacher)
    while s.step < s.kd_end:
        _, trg = job.next_batches(source=False)
        kd_step(job.nets, job.teacher, trg, cfg, job.losses)
        job.step_done()
        if cfg.run.val_every and s.step % cfg.run.val_every == 0:
            job.validate()
        if s.step % cfg.run.ckpt_every == 0:
            job.checkpoint()
        if job.should_stop():
            job.stop()
    s.phase = "done"
    job.log_losses(phase="kd")


def finish(job: Job) -> dict:
    """The final evaluation (the last validation's, when it was at this step and no
    predictions are asked for), ``metrics.json``, and a last checkpoint."""
    cfg, s, rt = job.cfg, job.state, job.rt
    job.require_clean_state()  # no metrics from weights that have gone bad
    pred_dir = job.folder.path / "predictions" if cfg.run.save_predictions else None
    if job.last_val is not None and job.last_val[0] == s.step and pred_dir is None:
        cm = job.last_val[1]
    else:
        cm = evaluate(job.nets.g, job.val, rt, predictions_dir=pred_dir)
    metrics = metrics_dict(cm, cfg, s.step, job.method.name, job.split_source)
    if job.last_val is None or job.last_val[0] != s.step:
        job.last_val = (s.step, cm)
        job.validation_row(metrics, "final")
        if job.board is not None:
            job.board.validation(s.step, metrics, job.nets.g)
    metrics["ran_on"] = ran_on(rt)  # the session that finished the run
    if rt.is_main:
        write_metrics(job.folder.path, metrics, cm)
    s.phase = "done"
    job.checkpoint(state_checked=True)  # (checked above; evaluation changes no weight)
    if job.board is not None:
        job.board.close()
    rt.log(
        f"{job.method.name} {cfg.run.name}: final mIoU-{metrics['protocol']} "
        f"{pct(metrics['miou'])} at step {s.step} -> {job.folder.path}"
    )
    return metrics


def selection_round(job: Job) -> None:
    """One round of PixDA's selection over the kept source images (the scoring and the rule
    are in :mod:`~pixda_core.train.selection`; here the bookkeeping): each process scores
    every world-th image, source image ``i`` styled towards target shot ``i mod N``; an
    unreadable file (``data.on_error: skip``) gets no score and is not kept; the scores go
    to ``selection/round_<k>.csv`` and a row to ``selection.csv``; the source stream starts
    over on the images kept, or the main phase ends when they are fewer than one batch."""
    cfg, rt, s, mc = job.cfg, job.rt, job.state, job.cfg.method
    n = len(s.kept)
    mine = list(range(rt.rank, n, rt.world))
    slot = {i: k for k, i in enumerate(mine)}  # kept position -> place in this rank's order
    where = {k: i for i, k in enumerate(s.kept)}  # dataset index -> kept position
    bs, workers = cfg.data.select_batch_size, cfg.data.num_workers
    skips = SkipReport("source set", rt.warn, job.unreadable)
    src, collate = skipping(job.source, cfg.data.on_error, replace=False)
    trg, _ = skipping(job.target, cfg.data.on_error, replace=True)
    pin = rt.device.type == "cuda"
    loaders = [
        DataLoader(
            Subset(ds, idx),
            batch_size=bs,
            num_workers=workers,
            collate_fn=collate,
            pin_memory=pin,
            worker_init_fn=worker_ignores_stops,
        )
        for ds, idx in (
            (src, [s.kept[i] for i in mine]),
            (trg, [i % len(job.target) for i in mine]),
        )
    ]
    scores = torch.zeros(n, device=rt.device)
    unread = torch.zeros(n, device=rt.device)
    g, d2 = job.nets.g, job.nets.d2
    g.eval()
    for b, (sb, tb) in enumerate(zip(*loaders, strict=True)):
        tb.pop("skipped", None)
        skipped = sb.pop("skipped", [])
        if skipped:
            skips.add(skipped)
            unread[[where[int(e.partition("\t")[0])] for e in skipped]] = 1
        if "image" not in sb:
            continue
        pos = [where[int(k)] for k in sb["index"]]
        paired = rt.images(tb["image"][[slot[i] - b * bs for i in pos]]) if mc.fda else None
        scores[torch.tensor(pos, device=rt.device)] = score_images(
            g, d2, rt.images(sb["image"]), sb["label"].shape[-2:], rt, paired, mc.fda_beta
        )
    g.train()
    skips.report(f"selection round {s.selection_round + 1}")
    rt.all_reduce_(scores)
    rt.all_reduce_(unread)
    scores_host = scores.cpu().masked_fill(unread.cpu() > 0, float("nan"))
    keep_mask = keep(scores_host, s.tau).tolist()
    new = [k for k, ok in zip(s.kept, keep_mask, strict=True) if ok]
    s.selection_round += 1
    names = [job.source.samples[k].name for k in s.kept]
    row = {
        "step": s.step,
        "round": s.selection_round,
        "tau": round(s.tau, 6),
        "candidates": n,
        "kept": len(new),
        "mean_score": float(scores_host.nanmean()),
        "event": "",
    }
    truth = job.look_distances  # a toy benchmark's source: how the round did against it
    if truth is not None:
        distances = [truth.get(name, float("nan")) for name in names]
        row.update(against_truth(scores_host.tolist(), keep_mask, distances))
    job.folder.append("selection", row)
    if job.folder.is_main:
        import pandas as pd

        out = job.folder.path / "selection" / f"round_{s.selection_round}.csv"
        out.parent.mkdir(exist_ok=True)
        table = pd.DataFrame({"name": names, "score": scores_host.tolist(), "kept": keep_mask})
        if truth is not None:
            table["distance"] = distances
        table.to_csv(out, index=False)
    rt.log(
        f"step {s.step}: selection round {s.selection_round} at tau {s.tau:.2f} kept "
        f"{len(new)} of {n} source images"
    )
    s.tau = next_tau(s.tau, mc.tau_step)
    s.kept = new
    batch = job.optim.batch_size
    if per_rank(len(new), batch, rt.world) == 0:
        s.end_reason = (
            f"selection kept {len(new)} source images, fewer than one batch of {batch} per process"
        )
    else:
        s.src_position = 0
        job.src.close()
        job.src = job.source_stream(0)
