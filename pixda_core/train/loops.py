"""Training: source-only pretraining, and adaptation by PixDA or a baseline (method.md).

Public entry points are plain functions over one :class:`~pixda_core.config.Config`:

- :func:`train_source_only` trains G on the source alone (``cfg.pretrain``);
- :func:`adapt` adapts a source-only model with ``cfg.method.name``:

  ``pixda``       FDA source + target shots; G: seg on both + lambda_adv * L_pix through D1;
                  D1 and D2 on detached predictions; D2-based sample selection after every
                  source epoch; then ``kd_steps`` of distillation on the target shots;
  ``finetune``    the source-only model trained on the target shots alone;
  ``joint``       source + target shots, supervised only;
  ``adaptsegnet`` source + target shots + whole-image output-space adversarial loss with D2.

Both write a run folder (:mod:`pixda_core.train.rundir`) and return the final metrics. A run
is one loop of steps; its whole state (models, optimisers, schedules, stream positions,
selection state, phase) goes into each checkpoint, so a resumed run continues exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from ..checkpoint import (
    load_checkpoint,
    load_model_state,
    prune_checkpoints,
    rng_state,
    save_checkpoint,
    set_rng_state,
    step_checkpoints,
)
from ..config import Config, preset
from ..data import GTA5, Cityscapes, Synthia, draw_split, load_split, write_split
from ..data.common import skipping
from ..data.fda import fda_source_to_target
from ..errors import ConfigError, PixdaError
from ..models.pretrained import CheckpointError
from .evaluate import evaluate, metrics_dict, val_loader, write_metrics
from .rundir import RESUME_FREE, RunFolder, run_lock
from .runtime import Runtime, release_normalize, setup_runtime
from .step import Trainer, upsample
from .streams import SkipReport, Stream, per_rank

SOURCE_STREAM, TARGET_STREAM = 1000, 1
LOSS_COLUMNS = {
    "source_only": ["loss_seg_src"],
    "finetune": ["loss_seg_trg"],
    "joint": ["loss_seg_src", "loss_seg_trg"],
    "adaptsegnet": ["loss_seg_src", "loss_seg_trg", "loss_adv", "loss_d2"],
    "pixda": ["loss_seg_src", "loss_seg_trg", "loss_adv", "loss_d1", "loss_d2", "loss_kd"],
}


class TrainingError(PixdaError):
    """Training cannot go on (a non-finite loss, too few images for a batch)."""


@dataclass
class State:
    """Everything besides weights and optimisers that a checkpoint must restore."""

    step: int = 0
    phase: str = "main"  # main -> kd -> done
    src_position: int = 0
    trg_position: int = 0
    selection_round: int = 0
    tau: float = 0.0
    kept: list[int] = field(default_factory=list)
    kd_end: int = 0
    last_val_step: int = -1
    end_reason: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


# ------------------------------------------------------------------------------- helpers


def source_dataset(cfg: Config):
    cls = {"gta5": GTA5, "synthia": Synthia}[cfg.data.source]
    return cls(cfg.data.source_root, size=cfg.data.size, list_file=cfg.data.source_list)


def target_split(cfg: Config, folder: RunFolder, rt: Runtime) -> Path:
    """The target shots of the run, written to ``split.txt`` in the run folder: the user's
    split file (validated) or one drawn with ``data.split_seed`` (default: the run's seed)."""
    path = folder.path / "split.txt"
    if rt.is_main and not path.exists():
        if cfg.data.split_file is not None:
            names = load_split(cfg.data.split_file, cfg.data.target_root).names
        else:
            seed = cfg.run.seed if cfg.data.split_seed is None else cfg.data.split_seed
            names = draw_split(cfg.data.target_root, cfg.data.num_shots, seed)
        write_split(path, names)
    rt.barrier()
    return path


def _require_batches(n: int, batch: int, rt: Runtime, what: str, flag: str) -> None:
    if per_rank(n, batch, rt.world) == 0:
        raise ConfigError(
            f"{what} has {n} images, fewer than one batch of {flag} = {batch}"
            + (f" on each of {rt.world} processes" if rt.distributed else "")
        )


class Job(Trainer):
    """One run: builds everything from the config, then :meth:`run` steps until done."""

    def __init__(self, cfg: Config, kind: str, folder: RunFolder, rt: Runtime, init: str | None):
        super().__init__(cfg, kind, rt, init)
        self.folder = folder
        self.columns = LOSS_COLUMNS[self.method]
        me = cfg.method
        self.source = source_dataset(cfg) if self.uses_source else None
        self.target = None
        if self.uses_target:
            split = target_split(cfg, folder, rt)
            self.target = Cityscapes(cfg.data.target_root, "train", cfg.data.size, split)
            _require_batches(
                len(self.target), self.batch, rt, f"the target split {split}", "--batch_size"
            )  # fmt: skip
        if self.source is not None:
            _require_batches(
                len(self.source), self.batch, rt, f"the source set {cfg.data.source_root}",
                "--batch_size",
            )  # fmt: skip
        self.val = val_loader(cfg, rt)
        self.state = State(tau=me.tau, kept=list(range(len(self.source))) if self.source else [])
        self.last_val: tuple[int, object] | None = None
        self.timing = [0.0, 0.0]  # seconds waiting for batches, seconds per step (host), summed
        self.unreadable: set[str] = set()  # files skipped under data.on_error=skip (warned once)
        self.writer = self._tensorboard()

    # ----------------------------------------------------------------------- building
    def _tensorboard(self):
        if not (self.cfg.run.tensorboard and self.rt.is_main):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.rt.log("run.tensorboard: the tensorboard package is not installed; skipped")
            return None
        return SummaryWriter(str(self.folder.path / "tensorboard"))

    def _streams(self) -> None:
        s = self.state
        self.src = self.trg = None
        if self.uses_source:
            self.src = self._source_stream(s.src_position)
        if self.uses_target:
            self.trg = Stream(
                self.target, range(len(self.target)), self.batch, self.cfg.run.seed,
                TARGET_STREAM, s.trg_position, self.rt, self.cfg.data.num_workers,
                on_error=self.cfg.data.on_error, what="target shots", warned=self.unreadable,
            )  # fmt: skip

    def _source_stream(self, start: int) -> Stream:
        s = self.state
        return Stream(
            self.source, s.kept, self.batch, self.cfg.run.seed,
            SOURCE_STREAM + s.selection_round, start, self.rt, self.cfg.data.num_workers,
            on_error=self.cfg.data.on_error, what="source set", warned=self.unreadable,
        )  # fmt: skip

    @property
    def total_steps(self) -> int:
        return self.opt_cfg.early_stop + self.kd_steps

    # ----------------------------------------------------------------------- checkpoints
    def _check_finite(self) -> None:
        """Refuse to go on (or to checkpoint) with a non-finite loss; one host sync."""
        if not self.acc:
            return
        names = list(self.acc)
        finite = torch.isfinite(torch.stack([self.acc[n] for n in names])).tolist()
        for n, ok in zip(names, finite, strict=True):
            if not ok:
                s = self.state
                raise TrainingError(
                    f"{n} is not finite (NaN or inf) at step {s.step} ({s.phase} phase, since "
                    f"the last log line); the last good checkpoint is kept in "
                    f"{self.folder.checkpoints}; lower the learning rate or check the data"
                )

    def checkpoint(self) -> None:
        s = self.state
        self._check_finite()
        if self.src is not None:
            s.src_position = self.src.position
        if self.trg is not None:
            s.trg_position = self.trg.position
        if not self.rt.is_main:
            self.rt.barrier()
            return
        state = {
            "kind": self.kind,
            "state": s.to_dict(),
            "config": self.cfg.to_dict(),
            "model": self.g.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: o.state_dict() for k, o in self.schedulers.items()},
            "rng": rng_state(),
            # losses summed since the last history row, so a resumed run writes the same rows
            "loss_sums": {k: v.cpu() for k, v in self.acc.items()},
            "loss_count": self.acc_n,
        }
        for name, m in (("d1", self.d1), ("d2", self.d2), ("teacher", self.teacher)):
            if m is not None:
                state[name] = m.state_dict()
        ckpts = self.folder.checkpoints
        path = save_checkpoint(state, ckpts / f"step_{s.step}.pt")
        latest = self.folder.latest
        tmp = latest.with_name(".latest.pt.link")
        tmp.unlink(missing_ok=True)
        try:
            tmp.hardlink_to(path)
        except OSError:  # no hard links on this file system: write a second copy
            save_checkpoint(state, tmp)
        tmp.replace(latest)
        prune_checkpoints(ckpts, self.cfg.run.keep_checkpoints)
        self.rt.barrier()

    def resume_point(self) -> tuple[Path, dict] | None:
        """The newest readable checkpoint of the run: ``latest.pt``, or when that cannot be
        read (truncated, damaged), the newest ``step_N.pt`` that can. None for a run that has
        none yet; an error when there are checkpoints but none is readable."""
        ckpts = self.folder.checkpoints
        candidates = [self.folder.latest] + list(reversed(step_checkpoints(ckpts).values()))
        candidates = [p for p in candidates if p.exists()]
        failures = []
        for path in candidates:
            try:
                ck = load_checkpoint(path)
            except CheckpointError as exc:
                failures.append(str(exc))
                continue
            if failures:
                self.rt.log(f"warning: {failures[0]}; resuming from {path} instead")
            return path, ck
        if failures:
            raise CheckpointError(
                f"cannot resume {self.folder.path}: none of its {len(failures)} checkpoints can "
                f"be read ({failures[0]})"
            )
        return None

    def restore(self, path: Path, ck: dict) -> None:
        if ck.get("kind") != self.kind:
            raise ConfigError(f"{path} is a {ck.get('kind')} checkpoint, not {self.kind}")
        load_model_state(self.g, ck["model"], path)
        for name, m in (("d1", self.d1), ("d2", self.d2)):
            if m is not None:
                load_model_state(m, ck[name], path)
        for k, o in self.optimizers.items():
            o.load_state_dict(ck["optimizers"][k])
        for k, sch in self.schedulers.items():
            sch.load_state_dict(ck["schedulers"][k])
        self.state = State(**ck["state"])
        if "teacher" in ck:
            self.teacher = self._make_teacher()
            self.teacher.load_state_dict(ck["teacher"])
        set_rng_state(ck["rng"])
        self.acc = {k: v.to(self.rt.device) for k, v in ck["loss_sums"].items()}
        self.acc_n = ck["loss_count"]
        for table in ("history", "validations", "selection"):
            self.folder.truncate(table, self.state.step)
        self.rt.log(f"resumed {self.folder.path} at step {self.state.step} ({self.state.phase})")

    # ----------------------------------------------------------------------- selection
    @torch.no_grad()
    def select(self) -> None:
        """Score every kept source image with D2 (FDA towards a target shot) and keep those
        whose BCE against the source label is above tau; then tau grows (method.md).

        An inference pass: no gradients, autocast, eval-mode G and batches of
        ``data.select_batch_size``. Source image ``i`` of the kept list is styled towards
        target shot ``i mod N``. Under ``data.on_error: skip`` an unreadable source image
        is not kept."""
        rt, me, s = self.rt, self.cfg.method, self.state
        n = len(s.kept)
        mine = list(range(rt.rank, n, rt.world))
        slot = {i: k for k, i in enumerate(mine)}  # kept position -> place in this rank's order
        where = {k: i for i, k in enumerate(s.kept)}  # dataset index -> kept position
        bs, workers = self.cfg.data.select_batch_size, self.cfg.data.num_workers
        skips = SkipReport("source set", rt.log, self.unreadable)
        src, collate = skipping(self.source, self.cfg.data.on_error, replace=False)
        trg, _ = skipping(self.target, self.cfg.data.on_error, replace=True)
        loaders = [
            DataLoader(Subset(ds, idx), batch_size=bs, num_workers=workers, collate_fn=collate,
                       pin_memory=rt.device.type == "cuda")
            for ds, idx in ((src, [s.kept[i] for i in mine]),
                            (trg, [i % len(self.target) for i in mine]))
        ]  # fmt: skip
        scores = torch.zeros(n, device=rt.device)
        unread = torch.zeros(n, device=rt.device)
        self.g.eval()
        for b, (sb, tb) in enumerate(zip(*loaders, strict=True)):
            tb.pop("skipped", None)
            skipped = sb.pop("skipped", [])
            if skipped:
                skips.add(skipped)
                unread[[where[int(e.partition("\t")[0])] for e in skipped]] = 1
            if "image" not in sb:
                continue
            pos = [where[int(k)] for k in sb["index"]]
            img = rt.images(sb["image"])
            if me.fda:
                paired = tb["image"][[slot[i] - b * bs for i in pos]]
                img = fda_source_to_target(img, rt.images(paired), me.fda_beta)
            with rt.autocast():
                _, main = self.g(release_normalize(img))
                out = self.d2(upsample(main, sb["label"].shape[-2:]).softmax(1))
            bce = F.binary_cross_entropy_with_logits(
                out.float(), torch.zeros_like(out, dtype=torch.float32), reduction="none"
            )
            scores[torch.tensor(pos, device=rt.device)] = bce.mean(dim=(1, 2, 3))
        self.g.train()
        skips.report(f"selection round {s.selection_round + 1}")
        rt.all_reduce_(scores)
        rt.all_reduce_(unread)
        scores_host = scores.cpu().masked_fill(unread.cpu() > 0, float("nan"))
        keep = (scores_host > s.tau).tolist()  # NaN (unreadable) is never kept
        new = [k for k, ok in zip(s.kept, keep, strict=True) if ok]
        s.selection_round += 1
        row = {"step": s.step, "round": s.selection_round, "tau": round(s.tau, 6),
               "candidates": n, "kept": len(new), "mean_score": float(scores_host.nanmean()),
               "event": ""}  # fmt: skip
        self.folder.append("selection", row)
        if self.folder.is_main:
            import pandas as pd

            out = self.folder.path / "selection" / f"round_{s.selection_round}.csv"
            out.parent.mkdir(exist_ok=True)
            names = [self.source.samples[k].name for k in s.kept]
            pd.DataFrame({"name": names, "score": scores_host.tolist(), "kept": keep}).to_csv(
                out, index=False
            )
        rt.log(f"step {s.step}: selection round {s.selection_round} at tau {s.tau:.2f} kept "
               f"{len(new)} of {n} source images")  # fmt: skip
        s.tau += me.tau_step
        s.kept = new
        if per_rank(len(new), self.batch, rt.world) == 0:
            s.end_reason = (f"selection kept {len(new)} source images, fewer than one batch of "
                            f"{self.batch} per process")  # fmt: skip
            s.phase = "kd" if self.kd_steps else "done"
        else:
            s.src_position = 0
            self.src.close()
            self.src = self._source_stream(0)

    # ----------------------------------------------------------------------- validation
    def _validation_row(self, m: dict, phase: str) -> None:
        row = {"step": m["step"], "phase": phase, "miou": m["miou"]}
        if "miou_13" in m:
            row["miou_13"] = m["miou_13"]
        row["pixel_accuracy"] = m["pixel_accuracy"]
        row.update({f"iou_{k}": v for k, v in m["per_class_iou"].items()})
        self.folder.append("validations", row)

    def validate(self) -> None:
        s = self.state
        phase = s.phase
        cm = evaluate(self.g, self.val, self.rt)
        m = metrics_dict(cm, self.cfg, s.step, self.method)
        self._validation_row(m, phase)
        self.last_val = (s.step, cm)
        s.last_val_step = s.step
        extra = f", mIoU-13 {m['miou_13'] * 100:.2f}" if "miou_13" in m else ""
        self.rt.log(
            f"step {s.step}: val mIoU-{m['protocol']} {_pct(m['miou'])}{extra}, pixel accuracy "
            f"{_pct(m['pixel_accuracy'])}"
        )
        if self.writer is not None and m["miou"] is not None:
            self.writer.add_scalar("val/miou", m["miou"], s.step)

    # ----------------------------------------------------------------------- logging
    def log_losses(self, bar, phase: str | None = None) -> None:
        """Average the losses accumulated since the last row and write them (``phase``: the
        phase they belong to, when a phase has just ended)."""
        if not self.acc:
            return
        names = list(self.acc)
        values = torch.stack([self.acc[n] for n in names]) / self.acc_n
        self.rt.all_reduce_(values)
        values = (values / self.rt.world).tolist()  # the one host sync of the logging interval
        s = self.state
        for n, v in zip(names, values, strict=True):
            if not math.isfinite(v):
                raise TrainingError(
                    f"{n} is not finite ({v}) at step {s.step} ({s.phase} phase, since the last "
                    f"log line); the last good checkpoint is kept in {self.folder.checkpoints}; "
                    "lower the learning rate or check the data"
                )
        # host time per step and the share of it spent waiting for the next batches; on CUDA
        # the host runs ahead of the GPU only a few steps, so over an interval this is the
        # step time, and the wait is what the loader adds to it
        wait, total = self.timing
        step_s = total / max(self.acc_n, 1)
        data_wait = wait / total if total > 0 else 0.0
        self.timing = [0.0, 0.0]
        self.acc, self.acc_n = {}, 0
        phase = phase or s.phase
        row = {"step": s.step, "phase": phase, "lr": self.opt_g.param_groups[0]["lr"]}
        row.update(dict.fromkeys(self.columns))
        pairs = list(zip(names, values, strict=True))
        row.update(pairs)
        row.update({"step_s": step_s, "data_wait": data_wait})
        self.folder.append("history", row)
        shown = " ".join(f"{n.removeprefix('loss_')} {v:.4f}" for n, v in pairs)
        line = (f"step {s.step} [{phase}] {shown} | {step_s:.3f} s/step, waiting for data "
                f"{data_wait:.0%}")  # fmt: skip
        if bar is not None and not bar.disable:
            bar.set_postfix_str(shown, refresh=False)
            bar.write(line, file=sys.stderr)
        else:
            self.rt.log(line)
        if self.writer is not None:
            for n, v in pairs:
                self.writer.add_scalar(f"train/{n}", v, s.step)

    # ----------------------------------------------------------------------- the loop
    def run(self, resume: bool) -> dict:
        from tqdm.auto import tqdm

        cfg, rt = self.cfg, self.rt
        point = self.resume_point() if resume else None
        if point is not None:
            self.restore(*point)
        elif resume:  # killed before its first checkpoint: start over, without its log rows
            for table in ("history", "validations", "selection"):
                self.folder.truncate(table, 0)
        done = self.folder.path / "metrics.json"
        if self.state.phase == "done" and done.exists():
            self.rt.log(f"{self.folder.path} is complete (step {self.state.step})")
            return json.loads(done.read_text())
        self._streams()
        s = self.state
        if s.phase == "kd" and self.teacher is None:
            self.teacher = self._make_teacher()
        bar = tqdm(
            total=self.total_steps, initial=s.step, desc=f"{self.method} {cfg.run.name}",
            disable=not (cfg.run.progress and rt.is_main), file=sys.stderr,
        )  # fmt: skip
        try:
            while s.phase != "done":
                phase_before = s.phase
                if s.phase == "main" and s.step >= self.opt_cfg.early_stop:
                    s.end_reason = s.end_reason or f"iteration budget ({s.step}) spent"
                    s.phase = "kd" if self.kd_steps else "done"
                elif s.phase == "kd" and s.step >= s.kd_end:
                    s.phase = "done"
                if s.phase != phase_before:
                    self._enter(phase_before)
                    continue
                t0 = time.perf_counter()
                if s.phase == "main":
                    src = next(self.src) if self.src is not None else None
                    trg = next(self.trg) if self.trg is not None else None
                    self.timing[0] += time.perf_counter() - t0
                    self.main_step(src, trg)
                else:
                    trg = next(self.trg)
                    self.timing[0] += time.perf_counter() - t0
                    self.kd_step(trg)
                self.timing[1] += time.perf_counter() - t0
                s.step += 1
                self.acc_n += 1
                bar.update(1)
                if s.step % cfg.run.log_every == 0:
                    self.log_losses(bar)
                validated = False
                if s.phase == "main" and self.src is not None and self.src.at_epoch_end:
                    self.validate()
                    validated = True
                    if self.selection and s.step < self.opt_cfg.early_stop:
                        self.select()
                if cfg.run.val_every and s.step % cfg.run.val_every == 0 and not validated:
                    self.validate()
                if s.phase != "main" and phase_before == "main":
                    self._enter("main")
                elif s.step % cfg.run.ckpt_every == 0:
                    self.checkpoint()
        finally:
            bar.close()
            for st in (self.src, self.trg):
                if st is not None:
                    st.close()
        return self.finish()

    def _enter(self, left: str) -> None:
        """Bookkeeping when a phase ends: a log line, the teacher for KD, a checkpoint."""
        s = self.state
        if left == "main":
            self.rt.log(f"step {s.step}: main phase over ({s.end_reason})")
            if self.selection:
                self.folder.append("selection", {
                    "step": s.step, "round": s.selection_round, "tau": round(s.tau, 6),
                    "candidates": len(s.kept), "kept": len(s.kept), "mean_score": None,
                    "event": f"main phase over: {s.end_reason}",
                })  # fmt: skip
            if s.phase == "kd":
                s.kd_end = s.step + self.kd_steps
                self.teacher = self._make_teacher()
                self.rt.log(f"distillation: {self.kd_steps} steps on the target shots")
        if self.acc:
            self.log_losses(None, phase=left)
        if s.phase != "done":
            self.checkpoint()

    def finish(self) -> dict:
        s = self.state
        pred_dir = self.folder.path / "predictions" if self.cfg.run.save_predictions else None
        if self.last_val is not None and self.last_val[0] == s.step and pred_dir is None:
            cm = self.last_val[1]
        else:
            cm = evaluate(self.g, self.val, self.rt, predictions_dir=pred_dir)
        metrics = metrics_dict(cm, self.cfg, s.step, self.method)
        if self.last_val is None or self.last_val[0] != s.step:
            self.last_val = (s.step, cm)
            self._validation_row(metrics, "final")
        if self.rt.is_main:
            write_metrics(self.folder.path, metrics, cm)
        s.phase = "done"
        self.checkpoint()
        if self.writer is not None:
            self.writer.close()
        self.rt.log(f"{self.method} {self.cfg.run.name}: final mIoU-{metrics['protocol']} "
                    f"{_pct(metrics['miou'])} at step {s.step} -> {self.folder.path}")  # fmt: skip
        return metrics


def _pct(v) -> str:
    return "n/a" if v is None else f"{v * 100:.2f}"


# ---------------------------------------------------------------------------- entry points


def preflight(cfg: Config, kind: str, resume: bool, data: bool = True) -> None:
    """Every check that can be made before a run starts, so that a bad path, dataset, split or
    weights file is reported before anything is trained or written (a run folder that failed
    these checks would otherwise block the corrected command): the output folder is writable
    and the run name free (or resumable); the source and target roots have their layouts and
    labels; the split file (or the drawn split) fits the target root; ``run.restore_from`` is
    a readable weights file that fits the model. ``data=False`` leaves out the dataset and
    split checks (done already by the caller for the same roots)."""
    from ..labels import NUM_CLASSES
    from ..models import deeplabv2
    from ..models.pretrained import load_pretrained

    if os.environ.get("RANK", "0") == "0":  # under torchrun rank 0 owns the run folder
        RunFolder.check(cfg, resume)
    method = "source_only" if kind == "source_only" else cfg.method.name
    if data and method != "finetune":
        source_dataset(cfg)
    if data:
        Cityscapes(cfg.data.target_root, "val", size=cfg.data.val_size)
    if data and method != "source_only":
        Cityscapes(cfg.data.target_root, "train", size=cfg.data.size)
        written = Path(cfg.run.out_dir) / cfg.run.name / "split.txt"
        if not (resume and written.exists()):
            if cfg.data.split_file is not None:
                load_split(cfg.data.split_file, cfg.data.target_root)
            else:
                draw_split(cfg.data.target_root, cfg.data.num_shots, 0)
    init = cfg.run.restore_from if kind == "adapt" else cfg.model.init
    if init is not None:
        if not Path(init).is_file():
            flag = "--restore_from" if kind == "adapt" else "model.init"
            raise ConfigError(f"{flag} {init} does not exist")
        g = deeplabv2(NUM_CLASSES, cfg.model.backbone, cfg.model.multi_level)
        load_pretrained(g, init)


def train_source_only(cfg: Config, resume: bool = False) -> dict:
    """Train G on the source alone (``cfg.pretrain``, init from ``cfg.model.init``), validate
    on the target val set; the run folder is ``<run.out_dir>/<run.name>``. Returns the final
    metrics (as in ``metrics.json``)."""
    preflight(cfg, "source_only", resume)
    with run_lock(Path(cfg.run.out_dir) / cfg.run.name):
        return _train(cfg, "source_only", resume, cfg.model.init)


def _train(cfg: Config, kind: str, resume: bool, init: str | None) -> dict:
    rt = setup_runtime(cfg.run)
    folder = RunFolder.open(cfg, resume, rt.is_main)
    rt.barrier()
    return Job(cfg, kind, folder, rt, init).run(resume)


def source_only_run(cfg: Config) -> Config:
    """The config of the source-only run shared by every adaptation run of ``cfg``'s source
    and preset: the adaptation-only settings (method, ``adapt``, shots, split, seed) are reset
    to the preset's, and the folder is ``<out_dir>/source_only_<source>_<preset>_<hash>``,
    the hash covering what is left where it differs from the preset, so runs that differ in
    it do not share a model."""
    base = preset(cfg.preset)
    data = replace(cfg.data, num_shots=base.data.num_shots, split_file=None, split_seed=None)
    canon = replace(
        cfg, data=data, adapt=base.adapt,
        method=replace(base.method, seg_loss=cfg.method.seg_loss),
        run=replace(cfg.run, name="source_only", seed=base.run.seed, restore_from=None),
    )  # fmt: skip
    # the hash covers what differs from the preset, so that a new config key (at its
    # default) does not rename the folders of models trained before it existed
    d, ref = canon.to_dict(), base.to_dict()
    for section, key in RESUME_FREE:
        d[section].pop(key)
    diff = {sec: {k: v for k, v in vals.items() if v != ref[sec][k]}
            for sec, vals in d.items() if isinstance(vals, dict)}  # fmt: skip
    digest = hashlib.sha256(json.dumps(diff, sort_keys=True).encode()).hexdigest()[:8]
    name = f"source_only_{cfg.data.source}_{cfg.preset}_{digest}"
    return replace(canon, run=replace(canon.run, name=name))


def ensure_source_only(cfg: Config) -> Path:
    """The source-only checkpoint to adapt from: ``run.restore_from`` when given, else the
    shared source-only run for this source and preset, trained now when missing (and resumed
    when a previous attempt was interrupted)."""
    if cfg.run.restore_from is not None:
        path = Path(cfg.run.restore_from)
        if not path.is_file():
            raise ConfigError(f"--restore_from {path} does not exist")
        return path
    so = source_only_run(cfg)
    folder = Path(so.run.out_dir) / so.run.name
    latest = folder / "checkpoints" / "latest.pt"

    def done() -> bool:
        return (folder / "metrics.json").exists() and latest.exists()

    if not done():
        # the folder and init checks; its data roots are cfg's, which adapt() has checked
        preflight(so, "source_only", True, data=False)
        # runs started together (a batch of jobs) train it once: the others wait, then reuse
        with run_lock(folder, wait=True):
            if not done():
                print(f"no --restore_from given: training a source-only model first in "
                      f"{folder} (reused by later runs of this source and preset)",
                      file=sys.stderr)  # fmt: skip
                _train(so, "source_only", True, so.model.init)
                return latest
    print(f"source-only model: reusing {folder}", file=sys.stderr)
    return latest


def adapt(cfg: Config, resume: bool = False) -> dict:
    """Adapt a source-only model with ``cfg.method.name`` (see the module docstring). The
    start point is ``cfg.run.restore_from`` or the shared source-only run (trained first when
    missing). Returns the final metrics."""
    preflight(cfg, "adapt", resume)
    with run_lock(Path(cfg.run.out_dir) / cfg.run.name):
        init = ensure_source_only(cfg)
        return _train(cfg, "adapt", resume, str(init))


__all__ = ["adapt", "train_source_only", "ensure_source_only", "source_only_run",
           "TrainingError"]  # fmt: skip
