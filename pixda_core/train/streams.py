"""Batch streams whose position is one integer, so a resumed run sees the same batches.

Each stream walks a list of dataset indices epoch after epoch; epoch ``e`` is a permutation
drawn from ``(seed, stream, e)``, so it depends on nothing but those numbers. Under
``torchrun`` rank ``r`` of ``N`` takes every N-th index of the permutation. Every epoch is cut
to whole batches, so a batch never straddles two epochs and "one pass over the source set" is
a whole number of steps. The position (samples consumed per rank) is counted in the
training loop, not in the loader, so prefetching workers do not disturb it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data.common import skipping
from .runtime import Runtime, worker_ignores_stops

#: the ``stream`` number that seeds the order of the target shots' epochs
TARGET_STREAM = 1
#: the source images' stream number is this plus the selection round, so each round's
#: (smaller) source list is walked in an order of its own
SOURCE_STREAM = 1000


def epoch_order(n: int, seed: int, stream: int, epoch: int) -> torch.Tensor:
    state = np.random.SeedSequence([seed, stream, epoch]).generate_state(1, np.uint64)[0]
    g = torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)
    return torch.randperm(n, generator=g)


def per_rank(n: int, batch: int, world: int) -> int:
    """Samples one rank takes from an epoch of ``n`` indices (whole batches only)."""
    return (n // world) // batch * batch


class EpochStream(Sampler[int]):
    """Endless sampler over ``indices`` starting ``start`` samples into the rank's sequence.

    Shape of the sequence: epoch by epoch, ``per_rank(len(indices), batch, world)`` indices.
    """

    def __init__(
        self,
        indices: Sequence[int],
        batch: int,
        seed: int,
        stream: int,
        start: int = 0,
        rank: int = 0,
        world: int = 1,
    ):
        self.indices = list(indices)
        self.batch, self.seed, self.stream = batch, seed, stream
        self.rank, self.world = rank, world
        self.epoch_len = per_rank(len(self.indices), batch, world)
        if self.epoch_len == 0:
            raise ValueError(
                f"{len(self.indices)} images cannot fill one batch of {batch} on each of "
                f"{world} process(es)"
            )
        self.start = start

    def __iter__(self) -> Iterator[int]:
        epoch, offset = divmod(self.start, self.epoch_len)
        n = len(self.indices)
        while True:
            order = epoch_order(n, self.seed, self.stream, epoch)
            mine = list(order)[self.rank :: self.world][: self.epoch_len]
            for i in mine[offset:]:
                yield self.indices[int(i)]
            offset = 0
            epoch += 1


def stream_loader(
    dataset: Dataset, sampler: Sampler, batch: int, workers: int, pin: bool, collate_fn=None
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=workers > 0,
        drop_last=False,
        collate_fn=collate_fn,
        worker_init_fn=worker_ignores_stops,
    )


class SkipReport:
    """Files skipped under ``data.on_error: skip``: a warning the first time each one is
    met, and a count per epoch (or per evaluation) when asked."""

    def __init__(self, what: str, log, warned: set[str] | None = None):
        self.what, self.log = what, log
        self.warned: set[str] = set() if warned is None else warned  # shared: warn once a run
        self.count = 0

    def add(self, skipped: list[str]) -> None:
        for entry in skipped:
            _, name, why = entry.split("\t", 2)
            self.count += 1
            if name not in self.warned:
                self.warned.add(name)
                self.log(
                    f"warning: skipping {name} of the {self.what} (data.on_error=skip): {why}"
                )

    def report(self, when: str) -> None:
        if self.count:
            self.log(
                f"{when}: skipped {self.count} unreadable image(s) of the {self.what} "
                f"(data.on_error=skip; {len(self.warned)} distinct file(s) so far)"
            )
        self.count = 0


class Stream:
    """A sampler, its loader and its position: ``next(stream)`` is the next batch.

    ``indices`` are dataset indices walked epoch after epoch in the order of ``(seed,
    stream_id, epoch)`` from ``start`` samples in. With ``on_error="skip"`` an unreadable
    file is replaced by the next readable image of the dataset; each is warned about once
    (``warned`` is shared by a run's streams) and counted at the end of every epoch."""

    def __init__(
        self,
        dataset: Dataset,
        indices: Sequence[int],
        *,
        batch: int,
        seed: int,
        stream_id: int,
        start: int,
        rt: Runtime,
        workers: int,
        on_error: str,
        what: str,
        warned: set[str],
    ):
        self.sampler = EpochStream(indices, batch, seed, stream_id, start, rt.rank, rt.world)
        self.batch = batch
        self.position = start
        self.skips = SkipReport(what, rt.warn, warned) if on_error == "skip" else None
        dataset, collate = skipping(dataset, on_error, replace=True)
        pin = rt.device.type == "cuda"
        self.loader = stream_loader(dataset, self.sampler, batch, workers, pin, collate)
        self._it = iter(self.loader)

    @property
    def epoch(self) -> int:
        return self.position // self.sampler.epoch_len

    @property
    def at_epoch_end(self) -> bool:
        return self.position > 0 and self.position % self.sampler.epoch_len == 0

    def __next__(self) -> dict:
        batch = next(self._it)
        self.position += self.batch
        if self.skips is not None:
            self.skips.add(batch.pop("skipped"))
            if self.at_epoch_end:
                self.skips.report(f"end of epoch {self.epoch}")
        return batch

    def close(self) -> None:
        del self._it
