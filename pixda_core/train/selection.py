"""Scoring the kept source images, for a method that selects among them (PixDA's selection
rounds, :meth:`pixda_core.methods.PixDA.source_pass_end`), and how a round did against what a
synthetic benchmark knows.

:func:`score_kept_source` feeds the batches (each kept source image with a target shot to
pair it with), splits the work between processes, skips unreadable files and gathers the
scores; the method's function scores a batch, the method's rule keeps or drops.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, Subset

from ..data.common import skipping
from .runtime import worker_ignores_stops
from .streams import SkipReport


def score_kept_source(job, score: Callable, paired: bool) -> torch.Tensor:
    """Score every kept source image (``job.state.kept``): ``score(images, paired_images,
    label_size)`` on batches of ``data.select_batch_size`` on the device, source image ``i``
    paired with target shot ``i mod N`` (``paired_images`` None unless ``paired``). Each
    process scores every world-th image; an unreadable file (``data.on_error: skip``) gets
    NaN. Returns the scores in the order of ``kept``, on the host, the same in every
    process. G is in eval mode meanwhile."""
    cfg, rt, s = job.cfg, job.rt, job.state
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
    g = job.nets.g
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
        pairs = rt.images(tb["image"][[slot[i] - b * bs for i in pos]]) if paired else None
        scores[torch.tensor(pos, device=rt.device)] = score(
            rt.images(sb["image"]), pairs, sb["label"].shape[-2:]
        )
    g.train()
    skips.report(f"selection round {s.selection_round + 1}")
    rt.all_reduce_(scores)
    rt.all_reduce_(unread)
    return scores.cpu().masked_fill(unread.cpu() > 0, float("nan"))


#: the columns :func:`against_truth` adds to a round's row of ``selection.csv``
TRUTH_COLUMNS = ("distance_rho", "kept_distance", "dropped_distance")


def against_truth(scores, kept, distances) -> dict[str, float]:
    """A round of selection against what only a synthetic benchmark knows: each candidate's
    true distance to the target look (the toy's ``toy_looks.csv``; 0 = the target's look).

    ``distance_rho``: Spearman's rank correlation of the scores with the distances (a
    selection that finds target-like images scores the nearer ones higher: rho < 0);
    ``kept_distance`` / ``dropped_distance``: the mean distance of the images kept and of
    those dropped. Candidates without a score or a distance are left out; NaN where a value
    cannot be computed (fewer than 3 candidates, no spread, no image on one side)."""
    import numpy as np
    from scipy import stats

    s = np.asarray(scores, dtype=float)
    d = np.asarray(distances, dtype=float)
    k = np.asarray(kept, dtype=bool)
    ok = np.isfinite(s) & np.isfinite(d)
    rho = np.nan
    if ok.sum() >= 3 and np.ptp(s[ok]) > 0 and np.ptp(d[ok]) > 0:
        rho = float(stats.spearmanr(s[ok], d[ok])[0])
    kept_d = float(d[ok & k].mean()) if (ok & k).any() else np.nan
    dropped_d = float(d[ok & ~k].mean()) if (ok & ~k).any() else np.nan
    return dict(zip(TRUTH_COLUMNS, (rho, kept_d, dropped_d), strict=True))
