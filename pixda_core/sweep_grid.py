"""A sweep's grid: the combinations a sweep command asks for and the settings they share
(:class:`Grid`), each run of it as one :class:`~pixda_core.runspec.RunSpec`, and the tasks
the executors run (:func:`tasks_of`)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import ConfigError
from .executors import Task
from .methods import ADAPTATION, SOURCE_ONLY, method_class, portable, run_name
from .runspec import RunSpec, Settings

SWEEP_METHODS = (SOURCE_ONLY, *ADAPTATION)


@dataclass(frozen=True)
class Grid(Settings):
    """What a sweep command asks for: the combinations (methods x shots x seeds [x split
    seeds]) and the :class:`~pixda_core.runspec.Settings` every run of them shares."""

    methods: tuple[str, ...] = (SOURCE_ONLY, "finetune", "pixda")
    shots: tuple[int, ...] = (1, 5)
    seeds: tuple[int, ...] = (0,)
    #: seeds of drawn target splits (variance over splits); empty: the default split
    split_seeds: tuple[int, ...] = ()
    #: one source-only model per training seed (``run.own_source_only``) instead of one
    source_only_per_seed: bool = False

    def __post_init__(self) -> None:
        """Sequences (a command line's lists, JSON's) as tuples, a plug-in file's spec made
        absolute (:func:`~pixda_core.methods.portable`), no overrides as {}; then checked:
        an unknown method or shots below 1 is one line naming it."""
        fixed = {
            "methods": tuple(portable(m) for m in self.methods),
            "shots": tuple(self.shots),
            "seeds": tuple(self.seeds),
            "split_seeds": tuple(self.split_seeds),
            "data_root": str(self.data_root),
            "overrides": self.overrides or {},
        }
        for name, value in fixed.items():
            object.__setattr__(self, name, value)
        self.check()

    def check(self) -> None:
        for m in self.methods:
            if m == SOURCE_ONLY:
                continue
            try:
                method_class(m)
            except ConfigError as exc:
                raise ConfigError(f"--methods {m!r}: {exc}") from None
        bad = [s for s in self.shots if s < 1]
        if bad:
            raise ConfigError(f"--shots {bad[0]}: shots are images per city, at least 1")

    def base(self, out: Path) -> RunSpec:
        """What every run of the grid shares (its settings, paths absolute), as one spec."""
        from .paths import resolve

        shared = self.settings()
        for root in ("data_root", "source_root", "target_root"):
            shared[root] = str(resolve(shared[root])) if shared[root] else None
        if self.source_only_per_seed:
            run = {**self.overrides.get("run", {}), "own_source_only": True}
            shared["overrides"] = {**self.overrides, "run": run}
        return RunSpec(**shared, out_dir=str(out), device="auto")

    def specs(self, out: Path) -> tuple[list[RunSpec], list[RunSpec]]:
        """The source-only models (one, or one per seed) and the adaptation runs of the
        grid, each as one spec."""
        base = self.base(out)
        so = [replace(base, method=SOURCE_ONLY, seed=seed) for seed in self.source_only_seeds()]
        runs = [
            replace(
                base,
                method=method,
                num_shots=n or 1,
                seed=seed,
                split_seed=split,
                run_name=run_name(method, n, seed, split),
            )  # fmt: skip
            for method, n, seed, split in self.runs()
        ]  # (the oracle's shots, 0 here: any, it takes every image)
        return so, runs

    def runs(self) -> list[tuple[str, int, int, int | None]]:
        """(method, shots, seed, split seed) of every adaptation run; the oracle, which
        trains on every target image, runs once per seed (shots and split seeds do not
        apply: its shots are given as 0 here)."""
        splits = self.split_seeds or (None,)
        out = []
        for m in self.methods:
            if m == SOURCE_ONLY:
                continue
            if method_class(m).all_target:
                out += [(m, 0, seed, None) for seed in self.seeds]
            else:
                out += itertools.product([m], self.shots, self.seeds, splits)
        return out

    def source_only_seeds(self) -> list[int | None]:
        """The seeds of the source-only models: each training seed's, or None (the
        preset's seed, one model)."""
        return list(self.seeds) if self.source_only_per_seed else [None]


def tasks_of(grid: Grid, out: Path, expected: dict | None = None) -> tuple[list[Task], list[Task]]:
    """The source-only tasks (one, or one per seed) and the adaptation tasks of the grid
    (``expected``: run name -> its planned seconds, recorded with it)."""
    logs, nbs = out / "logs", out / "notebooks"
    expected = expected or {}

    def task(spec: RunSpec) -> Task:
        name = spec.name
        if spec.is_source_only:
            executed = f"02_source_only_{grid.source}_{grid.preset}"
            executed += f"_seed{spec.seed}.ipynb" if spec.seed is not None else ".ipynb"
        else:
            executed = f"03_{name}.ipynb"
        return Task(name, spec, str(nbs / executed), str(logs / f"{name}.log"),
                    str(logs / f"{name}.json"), expected.get(name))  # fmt: skip

    so, runs = grid.specs(out)
    return [task(s) for s in so], [task(s) for s in runs]
