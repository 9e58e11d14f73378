"""A run's parts, built from its config: the method, the nets, the data and its streams, the
state a checkpoint restores, the run folder and the logs.

A :class:`Job` holds them (composition: ``job.nets.g``, ``job.src``, ``job.state``) and does
the bookkeeping around the steps: timing the batches, a loss line every ``run.log_every``
steps, validation, checkpoints and resuming from them. The order of things, the loops, is in
:mod:`pixda_core.train.loop`.
"""

from __future__ import annotations

import math
import signal
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields

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
from ..data import Cityscapes, toy
from ..data.splits import ChosenSplit
from ..errors import ConfigError, PixdaError, Stopped
from ..methods import Method
from .evaluate import checkpoint_method, evaluate, metrics_dict, val_loader
from .inputs import require_batches, shots_source, source_dataset, target_split
from .rundir import RunFolder, config_differences
from .runtime import Runtime, StopVote, log_stream
from .step import LossSums, build_nets
from .streams import SOURCE_STREAM, TARGET_STREAM, Stream, per_rank
from .tensorboard import Board

#: the run folder's tables that a resumed run rewrites from its checkpoint's step on
TABLES = ("history", "validations", "selection")
#: a checkpoint's own entries; every other one is a module of the method's (its networks, the
#: modules of its phases)
KIT_ENTRIES = ("method", "state", "config", "model", "optimizers", "schedulers", "rng",
               "loss_sums", "loss_count", "scaler")  # fmt: skip


class TrainingError(PixdaError):
    """Training cannot go on (a non-finite loss)."""


@dataclass
class State:
    """Everything besides weights and optimisers that a checkpoint restores."""

    step: int = 0
    #: "main" (the method's steps), then "kd" (the method's last phase: PixDA's
    #: distillation), then "done"
    phase: str = "main"
    #: samples taken from the source / target stream (their position, see streams.py)
    src_position: int = 0
    trg_position: int = 0
    #: a selecting method's rounds done and its next threshold (PixDA's); the source images
    #: still kept (all, for a method that does not select)
    selection_round: int = 0
    tau: float = 0.0
    kept: list[int] = field(default_factory=list)
    #: the step at which the last phase ends (set when it begins)
    kd_end: int = 0
    #: why the main phase ended (the budget, or selection keeping too few images)
    end_reason: str = ""

    @classmethod
    def from_dict(cls, saved: dict) -> State:
        names = {f.name for f in fields(cls)}  # older checkpoints carry keys since dropped
        return cls(**{k: v for k, v in saved.items() if k in names})


class Job:
    """One run of ``method``: built from the config, resumed by :meth:`resume`."""

    def __init__(
        self,
        cfg: Config,
        method: Method,
        folder: RunFolder,
        rt: Runtime,
        init: str | None,
        chosen: ChosenSplit | None = None,
    ):
        self.cfg, self.method, self.folder, self.rt = cfg, method, folder, rt
        self.optim = getattr(cfg, method.schedule)
        self.nets = build_nets(cfg, method, self.optim, rt, init)
        self.source = source_dataset(cfg) if method.source else None
        self.target = None
        if method.target:
            split = target_split(cfg, folder, rt, chosen)
            # the split was announced when it was chosen (duplicates included)
            self.target = Cityscapes(
                cfg.data.target_root, "train", cfg.data.size, split, warn_duplicates=False
            )
            what = f"the target split {split}"
            require_batches(len(self.target), self.optim.batch_size, rt, what)
        if self.source is not None:
            what = f"the source set {cfg.data.source_root}"
            require_batches(len(self.source), self.optim.batch_size, rt, what)
        self.val = val_loader(cfg, rt)
        #: where the target shots came from (metrics.json's ``split``), known once
        self.split_source = shots_source(cfg, method, chosen)
        kept = list(range(len(self.source))) if self.source is not None else []
        #: a toy source's true distances to the target look (None on real data): what a
        #: method's selection rounds are checked against (selection.csv)
        self.look_distances = (
            toy.look_distances(cfg.data.source_root) if method.acts_at_pass_end else None
        )
        self.state = State(tau=cfg.method.tau, kept=kept)
        self.losses = LossSums()
        self.src: Stream | None = None  # the batch streams, while open_streams() holds them
        self.trg: Stream | None = None
        #: the modules of the method's phases as the checkpoint resumed from held them
        self.resumed_modules: dict[str, dict] | None = None
        self.last_val: tuple[int, object] | None = None  # (step, confusion matrix)
        self.bar = None  # the progress bar, while the loop runs
        self.timing = [0.0, 0.0]  # seconds waiting for batches, seconds per step (host), summed
        self._step_start = 0.0
        self.unreadable: set[str] = set()  # files skipped under data.on_error=skip (warned once)
        self.stop_signal: int | None = None  # SIGTERM / SIGINT received: stop after this step
        self.stop_vote = StopVote(rt)  # under torchrun: the processes agree on stopping
        self.board = Board.open(folder.path, cfg, rt)  # TensorBoard, when asked for

    # --------------------------------------------------------------------------- batches
    @contextmanager
    def open_streams(self):
        """The source and target streams, from the positions of the state, closed after."""
        s = self.state
        if self.method.source and s.phase == "main":  # distillation trains on the target only
            self.src = self.source_stream(s.src_position)
        if self.method.target:
            self.trg = self._stream(
                self.target, range(len(self.target)), TARGET_STREAM, s.trg_position, "target shots"
            )
        try:
            yield
        finally:
            for stream in (self.src, self.trg):
                if stream is not None:
                    stream.close()

    def keep_source(self, kept: list[int]) -> None:
        """Train on the source images ``kept`` from here (a selection round's outcome): the
        source stream starts over on them, or the main phase ends when they are fewer than
        one batch."""
        s, batch = self.state, self.optim.batch_size
        s.kept = kept
        if per_rank(len(kept), batch, self.rt.world) == 0:
            s.end_reason = (
                f"selection kept {len(kept)} source images, fewer than one batch of {batch} "
                "per process"
            )
        else:
            s.src_position = 0
            self.src.close()
            self.src = self.source_stream(0)

    def source_stream(self, start: int) -> Stream:
        """The stream over the source images kept so far (all, before any selection)."""
        s = self.state
        stream_id = SOURCE_STREAM + s.selection_round
        return self._stream(self.source, s.kept, stream_id, start, "source set")

    def _stream(self, dataset, indices, stream_id: int, start: int, what: str) -> Stream:
        return Stream(
            dataset,
            indices,
            batch=self.optim.batch_size,
            seed=self.cfg.run.seed,
            stream_id=stream_id,
            start=start,
            rt=self.rt,
            workers=self.cfg.data.num_workers,
            on_error=self.cfg.data.on_error,
            what=what,
            warned=self.unreadable,
        )

    def next_batches(self, source: bool = True) -> tuple[dict | None, dict | None]:
        """The next source and target batches (None where there is no such stream, or
        ``source=False``); the wait for them is counted for the loss lines."""
        self._step_start = time.perf_counter()
        src = next(self.src) if source and self.src is not None else None
        trg = next(self.trg) if self.trg is not None else None
        self.timing[0] += time.perf_counter() - self._step_start
        return src, trg

    def step_done(self) -> None:
        """Count the step just taken; a loss line every ``run.log_every`` steps."""
        self.timing[1] += time.perf_counter() - self._step_start
        self.state.step += 1
        self.losses.steps += 1
        self.bar.update(1)
        if self.state.step % self.cfg.run.log_every == 0:
            self.log_losses()

    def should_stop(self, last: bool = False) -> bool:
        """Has a stop been asked for (:func:`stop_on_signals`)? Checked after every step
        (``last``: after the last step, reading the vote still in flight). Under torchrun
        the processes agree on it through :class:`~pixda_core.train.runtime.StopVote` (an
        asynchronous CPU all-reduce read one step later), so that they all stop, and
        checkpoint, at the same step, within a scheduler's grace period."""
        asked = self.stop_signal is not None
        if self.rt.distributed:
            asked = self.stop_vote.close() if last else self.stop_vote(asked)
        if asked:
            name = signal.Signals(self.stop_signal or signal.SIGTERM).name
            self.rt.log(f"{name}: stopping after step {self.state.step}, with a checkpoint")
        return asked

    def stop(self) -> None:
        """Checkpoint now (unless the step's own checkpoint was just written) and end the
        run: what a scheduler's SIGTERM asks for. (The losses summed since the last loss line
        go into the checkpoint, so the resumed run writes the same lines as one never
        stopped.)"""
        if self.state.step % self.cfg.run.ckpt_every:
            self.checkpoint()
        if self.board is not None:
            self.board.close()
        self.stop_vote.close()  # every process has the one vote of this step in flight
        signum = self.stop_signal or signal.SIGTERM
        raise Stopped(
            signum,
            f"stopped by {signal.Signals(signum).name} at step {self.state.step}: checkpoint "
            f"{self.folder.latest} written; resume with --continue_train",
        )

    # --------------------------------------------------------------------------- logs
    def log_losses(self, phase: str | None = None) -> None:
        """A history row and a loss line: the mean of each loss since the last one
        (``phase``: the phase they belong to, when it has just ended)."""
        if not self.losses:
            return
        means = self.losses.means(self.rt)
        self.require_finite(means)
        # host time per step and the share of it spent waiting for the next batches; on CUDA
        # the host runs ahead of the GPU only a few steps, so over an interval this is the
        # step time, and the wait is what the loader adds to it
        wait, total = self.timing
        step_s = total / max(self.losses.steps, 1)
        data_wait = wait / total if total > 0 else 0.0
        self.timing = [0.0, 0.0]
        self.losses.clear()
        s = self.state
        phase = phase or s.phase
        lr = self.nets.optimizers["g"].param_groups[0]["lr"]
        row = {"step": s.step, "phase": phase, "lr": lr}
        row.update(dict.fromkeys(self.method.losses))
        row.update(means)
        row.update({"step_s": step_s, "data_wait": data_wait})
        self.folder.append("history", row)
        shown = " ".join(f"{n.removeprefix('loss_')} {v:.4f}" for n, v in means.items())
        line = (
            f"step {s.step} [{phase}] {shown} | {step_s:.3f} s/step, waiting for data "
            f"{data_wait:.0%}"
        )
        if self.bar is not None and not self.bar.disable:
            self.bar.set_postfix_str(shown, refresh=False)
            self.bar.write(line, file=log_stream())
        else:
            self.rt.log(line)
        if self.board is not None:
            self.board.losses(s.step, means, self.nets.optimizers)

    def require_finite(self, losses: dict[str, float]) -> None:
        """Stop the run at a NaN or inf loss (before it reaches a checkpoint)."""
        s = self.state
        for name, value in losses.items():
            if not math.isfinite(value):
                self.diverged(
                    f"{name} is not finite ({value}) at step {s.step} ({s.phase} phase, since "
                    "the last log line)"
                )

    def require_clean_state(self) -> None:
        """Stop the run when what a checkpoint would save (weights and buffers, the
        discriminators, the teacher, the optimiser states) holds a NaN or an inf: weights
        can go bad steps before the loss does. A fused check per part, one read back; at
        checkpoints and before the final evaluation only, never per step."""
        nets, s = self.nets, self.state
        parts = {"G's weights and buffers": floating_tensors(nets.g.state_dict())}
        for name, m in nets.networks.items():
            parts[name.upper()] = floating_tensors(m.state_dict())
        for name, m in self.method.saved_modules().items():
            parts[f"the {name}"] = floating_tensors(m.state_dict())
        parts["the optimiser states"] = floating_tensors(
            [o.state_dict()["state"] for o in nets.optimizers.values()]
        )
        bad = nonfinite_parts(parts)
        if bad:
            self.diverged(
                f"{' and '.join(bad)} hold NaN or inf at step {s.step} ({s.phase} phase); "
                "nothing was saved at this step"
            )

    def diverged(self, what: str) -> None:
        """End the run: ``what`` went non-finite. The message names the newest checkpoint on
        disk that holds only finite values, checked now (never one merely assumed good)."""
        found = newest_clean(self.folder.checkpoints)
        if found is None:
            clean = (
                f"no checkpoint in {self.folder.checkpoints} is clean (none was written before)"
            )
        else:
            clean = f"the newest clean checkpoint (checked) is {found[1]}, step {found[0]}"
        raise TrainingError(
            f"the run diverged: {what}; {clean}; a resume would diverge the same way: start "
            "afresh under another --name with a lower learning rate, or check the data"
        )

    def validate(self) -> None:
        """Evaluate G on the target val set now: a validations.csv row and a log line."""
        s = self.state
        cm = evaluate(self.nets.g, self.val, self.rt)
        m = metrics_dict(cm, self.cfg, s.step, self.method.name, self.split_source)
        self.validation_row(m, s.phase)
        self.last_val = (s.step, cm)
        extra = f", mIoU-13 {m['miou_13'] * 100:.2f}" if "miou_13" in m else ""
        self.rt.log(
            f"step {s.step}: val mIoU-{m['protocol']} {pct(m['miou'])}{extra}, pixel accuracy "
            f"{pct(m['pixel_accuracy'])}"
        )
        if self.board is not None:
            self.board.validation(s.step, m, self.nets.g)

    def validation_row(self, m: dict, phase: str) -> None:
        row = {"step": m["step"], "phase": phase, "miou": m["miou"]}
        if "miou_13" in m:
            row["miou_13"] = m["miou_13"]
        row["pixel_accuracy"] = m["pixel_accuracy"]
        row.update({f"iou_{k}": v for k, v in m["per_class_iou"].items()})
        self.folder.append("validations", row)

    # --------------------------------------------------------------------------- checkpoints
    def checkpoint(self, state_checked: bool = False) -> None:
        """Write the whole job (nets, optimisers, schedules, state, RNGs, pending loss sums)
        as ``checkpoints/step_<step>.pt`` and ``latest.pt`` (``state_checked``: the caller has
        just run :meth:`require_clean_state` and nothing has trained since)."""
        s, nets = self.state, self.nets
        self.require_finite(self.losses.totals())
        if not state_checked:
            self.require_clean_state()  # nothing non-finite is ever saved
        if self.src is not None:
            s.src_position = self.src.position
        if self.trg is not None:
            s.trg_position = self.trg.position
        if not self.rt.is_main:
            self.rt.barrier()
            return
        saved = {
            "method": self.method.name,
            "state": asdict(s),
            "config": self.cfg.to_dict(),
            "model": nets.g.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in nets.optimizers.items()},
            "schedulers": {k: o.state_dict() for k, o in nets.schedulers.items()},
            "rng": rng_state(),
            # losses summed since the last history row, so a resumed run writes the same rows
            **self.losses.state_dict(),
        }
        for name, m in [*nets.networks.items(), *self.method.saved_modules().items()]:
            saved[name] = m.state_dict()
        if nets.scaler is not None:  # fp16: the loss scale it has reached
            saved["scaler"] = nets.scaler.state_dict()
        save_step_checkpoint(saved, self.folder.checkpoints, s.step, self.cfg.run.keep_checkpoints)
        self.rt.barrier()

    def resume(self) -> None:
        """Continue from the newest readable checkpoint (a run killed before its first one
        starts over, without the log rows it wrote)."""
        found = newest_readable(self.folder.checkpoints, str(self.folder.path), self.rt.log)
        if found is None:
            for table in TABLES:
                self.folder.truncate(table, 0)
            return
        path, ck = found
        if not finite_checkpoint(ck):
            good = newest_clean(self.folder.checkpoints)
            instead = f"; the newest clean one is {good[1]}" if good else ""
            raise TrainingError(
                f"cannot resume {self.folder.path}: its checkpoint {path} holds NaN or inf (a run "
                f"that diverged, saved before the kit checked for it){instead}; start afresh "
                "under another --name with a lower learning rate"
            )
        trained = checkpoint_method(ck, self.cfg)
        if trained != self.method.name:
            raise ConfigError(f"{path} is a checkpoint of a {trained} run, not {self.method.name}")
        nets = self.nets
        load_model_state(nets.g, ck["model"], path)
        for name, m in nets.networks.items():
            if name not in ck:
                raise ConfigError(f"{path} holds no network {name!r} of {self.method.name}")
            load_model_state(m, ck[name], path)
        for k, o in nets.optimizers.items():
            o.load_state_dict(ck["optimizers"][k])
        for k, sch in nets.schedulers.items():
            sch.load_state_dict(ck["schedulers"][k])
        if nets.scaler is not None and "scaler" in ck:
            nets.scaler.load_state_dict(ck["scaler"])
        self.state = State.from_dict(ck["state"])
        self.resumed_modules = {
            k: v for k, v in ck.items() if k not in KIT_ENTRIES and k not in nets.networks
        }
        set_rng_state(ck["rng"])
        self.losses.load_state_dict(ck, self.rt.device)
        changed = self.settings_changed(path, Config.from_dict(ck["config"], base=self.cfg))
        for table in TABLES:
            self.folder.truncate(table, self.state.step)
        self.rt.log(f"resumed {self.folder.path} at step {self.state.step} ({self.state.phase})")
        if changed:
            self.rt.log(f"with changed settings: {'; '.join(changed)}")
            if self.rt.is_main:  # the folder's config is the run's from here on
                self.cfg.to_yaml(self.folder.path / "config.yaml")

    def settings_changed(self, path, before: Config) -> list[str]:
        """What this resume changes against the checkpoint's config (the folder's config.yaml
        was checked against it before: :meth:`RunFolder.check`). A larger ``early_stop``
        extends the main phase: a run whose main phase ran out its budget and whose method
        has no distillation is reopened (its metrics.json moved to ``metrics_step_N.json``);
        one whose last phase has begun, or whose selection ended it, cannot be extended."""
        refused, changed = config_differences(before, self.cfg)
        s, section = self.state, self.method.schedule
        old = getattr(before, section).early_stop
        if refused:
            raise ConfigError(f"cannot resume from {path}: its config differs in {refused[0]}")
        if self.optim.early_stop == old or s.phase == "main":
            return changed
        budget = s.end_reason.startswith("iteration budget")
        if s.phase == "done" and budget and not self.method.last_phase_steps():
            s.phase, s.end_reason = "main", ""  # (s.step is the old early_stop: below the new)
            for stem in ("metrics.json", "metrics_confusion.npy"):
                done = self.folder.path / stem
                if self.rt.is_main and done.exists():
                    done.replace(done.with_name(stem.replace("metrics", f"metrics_step_{s.step}")))
            return changed
        why = f"its {self.method.last_phase} has begun" if s.kd_end else s.end_reason
        ended = s.kd_end - self.method.last_phase_steps() if s.kd_end else s.step
        raise ConfigError(
            f"cannot extend {self.folder.path} to {section}.early_stop {self.optim.early_stop}: "
            f"its main phase ended at step {ended} ({why}); start a new run under another --name"
        )


def pct(v) -> str:
    return "n/a" if v is None else f"{v * 100:.2f}"
