"""A run's parts, built from its config: the method, the nets, the data and its streams, and
the state a checkpoint restores.

A :class:`Job` holds them (composition: ``job.nets.g``, ``job.src``, ``job.state``) and feeds
the steps: the batches, the step count, the stop vote. Its records (history, validations,
TensorBoard) are in :mod:`~pixda_core.train.records`, its checkpoints and the rules of
resuming in :mod:`~pixda_core.train.resume`; the order of things, the loops, in
:mod:`pixda_core.train.loop`.
"""

from __future__ import annotations

import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields

from ..config import Config
from ..data import Cityscapes, toy
from ..errors import Stopped
from ..methods import Method
from ..steptimes import RunClock
from .evaluate import val_loader
from .inputs import require_batches, shots_source, source_dataset, target_split
from .records import log_losses
from .resume import TrainingError, save
from .rundir import RunFolder
from .runtime import Runtime, StopVote
from .start import Start
from .step import LossSums, build_nets
from .streams import SOURCE_STREAM, TARGET_STREAM, Stream, per_rank
from .tensorboard import Board

__all__ = ["Job", "State", "TrainingError"]


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
    """One run of ``method``: built from the config, resumed by
    :func:`~pixda_core.train.resume.resume`."""

    def __init__(
        self,
        cfg: Config,
        method: Method,
        folder: RunFolder,
        rt: Runtime,
        init: str | None,
        start: Start | None = None,
    ):
        self.cfg, self.method, self.folder, self.rt = cfg, method, folder, rt
        self.optim = getattr(cfg, method.schedule)
        start = start or Start()  # what the checks before the run built, else built here
        self.nets = build_nets(cfg, method, self.optim, rt, init, start.take_weights())
        chosen = start.chosen
        self.source = None
        if method.source:
            self.source = start.source if start.source is not None else source_dataset(cfg)
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
        self.val = val_loader(cfg, rt, start.val)
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
        self.clock = RunClock(rt.device)  # the run's time and memory (timing.json)
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
        took = time.perf_counter() - self._step_start
        self.timing[1] += took
        self.clock.step(took)
        self.state.step += 1
        self.losses.steps += 1
        self.bar.update(1)
        if self.state.step % self.cfg.run.log_every == 0:
            log_losses(self)

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
            save(self)
        if self.board is not None:
            self.board.close()
        self.stop_vote.close()  # every process has the one vote of this step in flight
        signum = self.stop_signal or signal.SIGTERM
        raise Stopped(
            signum,
            f"stopped by {signal.Signals(signum).name} at step {self.state.step}: checkpoint "
            f"{self.folder.latest} written; resume with --continue_train",
        )
