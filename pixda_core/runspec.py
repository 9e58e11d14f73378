"""One run, whole: :class:`RunSpec`, what a sweep plans for each run, what it hands notebook 02
or 03 as papermill parameters, and what the notebook reads those parameters back into before it
makes the run's config (:meth:`RunSpec.config`, through :func:`make_config`: the one place a
notebook's or a sweep's run config is made, with its data roots, :func:`data_roots`; run.py's
flags name config keys directly, and share the one rule of a run's length,
:func:`pixda_core.config.run_length`).

    spec = RunSpec(method="pixda", num_shots=1, seed=0, iterations=150)
    spec.params()                    # notebook 03's parameters
    RunSpec.from_params(spec.params()) == spec
    spec.config()                    # the run's Config
    spec.source_only().config().run.name   # the source-only model it starts from
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from .config import Config, preset, run_length
from .errors import ConfigError
from .methods import SOURCE_ONLY, portable, run_name
from .paths import resolve

SOURCE_DIRS = {"gta5": "gta5", "synthia": "synthia"}


@dataclass(frozen=True)
class Roots:
    source: Path
    target: Path
    kind: str  # "gta5" or "synthia"


def data_roots(
    data_root: str = "data/toy",
    source: str = "gta5",
    source_root: str | None = None,
    target_root: str | None = None,
    generate_toy: bool = True,
) -> Roots:
    """The source and target roots: ``<data_root>/{gta5,synthia,cityscapes}`` unless given
    one by one. A missing ``data_root`` that holds no dataset yet is filled with the toy
    benchmark (when ``generate_toy``)."""
    if source not in SOURCE_DIRS:
        raise ConfigError(f"source {source!r} is not one of {', '.join(SOURCE_DIRS)}")
    base = resolve(data_root)
    src = resolve(source_root) if source_root else base / SOURCE_DIRS[source]
    trg = resolve(target_root) if target_root else base / "cityscapes"
    if generate_toy and not (source_root and target_root) and not base.exists():
        from .data import toy

        print(f"{base} does not exist: writing the toy benchmark there")
        toy.generate(base, progress=False)
    return Roots(src, trg, source)


def make_config(
    preset_name: str = "toy",
    data_root: str = "data/toy",
    source: str = "gta5",
    source_root: str | None = None,
    target_root: str | None = None,
    method="pixda",
    num_shots: int = 1,
    seed: int | None = None,
    iterations: int | None = None,
    pretrain_iterations: int | None = None,
    run_name: str | None = None,
    out_dir: str = "results",
    device: str = "auto",
    overrides: dict | None = None,
    init: str | None = None,
    generate_toy: bool = True,
) -> Config:
    """The config the notebook parameters describe, checked like any config (a bad value is a
    ConfigError naming it). ``iterations`` / ``pretrain_iterations`` are the iterations run by
    the adaptation / source-only training (:func:`pixda_core.config.run_length`: ``early_stop``,
    the poly horizon stretched to them when it is shorter, as run.py's ``--early_stop``);
    ``init``: the source-only model's initial weights (a file, relative ones from
    :func:`base_dir`; "none"; None: the preset's); ``method``: a name, a spec
    (``module:Class``, ``path/to/file.py:Class``) or a method class itself (one defined in a
    notebook cell: registered here, known in this kernel); ``overrides`` is a nested dict
    (``{"adapt": {"lr": 0.01}}``) merged last; ``generate_toy=False`` writes no toy benchmark
    where the default root is missing (a sweep's plan writes nothing)."""
    method = portable(method)
    roots = data_roots(data_root, source, source_root, target_root, generate_toy)
    base = preset(preset_name)
    data: dict = {
        "data": {
            "source": source,
            "source_root": str(roots.source),
            "target_root": str(roots.target),
            "num_shots": num_shots,
        },
        "method": {"name": method},
        "run": {"out_dir": str(resolve(out_dir)), "device": device},
    }
    if seed is not None:
        data["run"]["seed"] = seed
    if init is not None:
        data["model"] = {"init": init if init == "none" else str(resolve(init))}
    if run_name:
        data["run"]["name"] = run_name
    for section, its in (("adapt", iterations), ("pretrain", pretrain_iterations)):
        if its is not None:  # (run.py's --early_stop: the same rule)
            data[section] = run_length(getattr(base, section), steps=its)
    for sec, values in (overrides or {}).items():
        if not isinstance(values, dict):
            raise ConfigError(f"overrides[{sec!r}] must be a dict of keys, got {values!r}")
        data.setdefault(sec, {}).update(values)
    return Config.from_dict(data, base=base)


#: the notebooks' parameters a spec gives (each notebook also takes ``style``, for figures)
ADAPT_PARAMETERS = (
    "data_root", "source", "source_root", "target_root", "preset", "method", "num_shots",
    "seed", "iterations", "pretrain_iterations", "init", "run_name", "out_dir", "device",
    "overrides",
)  # fmt: skip
SOURCE_ONLY_PARAMETERS = (
    "data_root", "source", "source_root", "target_root", "preset", "iterations", "init",
    "run_name", "out_dir", "device", "overrides",
)  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """The settings of a run besides its combination (method, shots, seeds): the source, the
    preset, the data roots, the lengths (``iterations``: the adaptation's,
    ``pretrain_iterations``: the source-only model's; None: the preset's), the initial weights
    and ``overrides``, any other config values as a nested dict (``{"adapt": {"lr": 0.01}}``).
    What every run of a sweep's grid shares (:class:`pixda_core.sweep_grid.Grid`)."""

    source: str = "gta5"
    preset: str = "toy"
    data_root: str = "data/toy"
    source_root: str | None = None
    target_root: str | None = None
    iterations: int | None = None
    pretrain_iterations: int | None = None
    init: str | None = None
    overrides: dict = field(default_factory=dict)

    def settings(self) -> dict:
        """These settings alone, by name (a grid's, for each of its runs' specs)."""
        return {f.name: getattr(self, f.name) for f in fields(Settings)}


@dataclass(frozen=True)
class RunSpec(Settings):
    """A run as notebook 03 (an adaptation run) or notebook 02 (``method="source_only"``: a
    source-only model) takes it: its :class:`Settings`, its method, shots and seed;
    ``split_seed`` draws the target split with that seed; relative paths are taken from the
    kit's base folder (:func:`pixda_core.paths.base_dir`)."""

    method: str = "pixda"
    num_shots: int = 1
    seed: int | None = None
    split_seed: int | None = None
    run_name: str | None = None
    out_dir: str = "results"
    device: str = "auto"

    def __post_init__(self):
        # one form for every spec: a method as another process finds it, the split seed in
        # its field (never also in the overrides)
        object.__setattr__(self, "method", portable(self.method))
        data = dict(self.overrides.get("data", {}))
        if "split_seed" in data:
            split = data.pop("split_seed")
            if self.split_seed is None:
                object.__setattr__(self, "split_seed", split)
            rest = {k: v for k, v in self.overrides.items() if k != "data"}
            object.__setattr__(self, "overrides", {**rest, **({"data": data} if data else {})})

    # ---------------------------------------------------------------------------- what it is

    @property
    def is_source_only(self) -> bool:
        return self.method == SOURCE_ONLY

    @property
    def name(self) -> str:
        """The run's folder name (a source-only model's: from its config's hash)."""
        return self.run_name or self.config().run.name

    def config(self, generate_toy: bool = True) -> Config:
        """The run's config, checked (a bad value is a ConfigError naming its key);
        ``generate_toy=False``: nothing written, even where the default toy root is missing."""
        from .train.start import source_only_run

        overrides = self.notebook_overrides()
        if self.is_source_only:
            cfg = make_config(self.preset, self.data_root, self.source, self.source_root,
                              self.target_root, pretrain_iterations=self.pretrain_iterations,
                              init=self.init, out_dir=self.out_dir, device=self.device,
                              overrides=overrides, generate_toy=generate_toy)  # fmt: skip
            # a name given: that folder; else the shared model's (named by its settings)
            return (
                cfg.override(run={"name": self.run_name})
                if self.run_name
                else source_only_run(cfg)
            )
        cfg = make_config(self.preset, self.data_root, self.source, self.source_root,
                          self.target_root, method=self.method, num_shots=self.num_shots,
                          seed=self.seed, iterations=self.iterations,
                          pretrain_iterations=self.pretrain_iterations, init=self.init,
                          run_name=self.run_name, out_dir=self.out_dir, device=self.device,
                          overrides=overrides, generate_toy=generate_toy)  # fmt: skip
        if self.run_name:
            return cfg
        default = run_name(cfg.method.name, cfg.data.num_shots, cfg.run.seed, self.split_seed)
        return cfg.override(run={"name": default})

    def source_only(self) -> RunSpec:
        """The spec of the source-only model this run starts from (the one its training
        reuses or trains: the preset's seed's, or its own seed's with
        ``run.own_source_only``)."""
        own = self.overrides.get("run", {}).get("own_source_only", False)
        return replace(self, method=SOURCE_ONLY, num_shots=1, seed=self.seed if own else None,
                       split_seed=None, iterations=None, run_name=None)  # fmt: skip

    # ----------------------------------------------------------------- notebook parameters

    @property
    def notebook(self) -> str:
        from .notebook_run import NB_ADAPT, NB_SOURCE_ONLY

        return NB_SOURCE_ONLY if self.is_source_only else NB_ADAPT

    def params(self) -> dict:
        """The papermill parameters of its notebook (02 or 03), which
        :meth:`from_params` reads back into this spec."""
        d = {**asdict(self), "overrides": self.notebook_overrides()}
        if self.is_source_only:
            d["iterations"] = self.pretrain_iterations
            return {k: d[k] for k in SOURCE_ONLY_PARAMETERS}
        return {k: d[k] for k in ADAPT_PARAMETERS}

    def notebook_overrides(self) -> dict:
        """``overrides`` as its notebook takes them: the split seed in ``data``, and a
        source-only model's seed in ``run`` (notebook 02 has no seed parameter)."""
        out = dict(self.overrides)
        if self.split_seed is not None:
            out["data"] = {**out.get("data", {}), "split_seed": self.split_seed}
        if self.is_source_only and self.seed is not None:
            out["run"] = {**out.get("run", {}), "seed": self.seed}
        return out

    @classmethod
    def from_params(cls, params: dict, source_only: bool = False) -> RunSpec:
        """The spec notebook 03's parameters describe (``source_only``: notebook 02's);
        ``params`` holds at least them: the notebook's ``globals()``, or :meth:`params`."""
        names = SOURCE_ONLY_PARAMETERS if source_only else ADAPT_PARAMETERS
        given = {k: params[k] for k in names if k in params}
        if not source_only:
            return cls(**given)
        overrides = dict(given.pop("overrides", None) or {})
        run = dict(overrides.get("run", {}))
        seed = run.pop("seed", None)
        if "run" in overrides:
            overrides = {k: v for k, v in overrides.items() if k != "run"}
            if run:
                overrides["run"] = run
        its = given.pop("iterations", None)
        return cls(method=SOURCE_ONLY, seed=seed, pretrain_iterations=its,
                   overrides=overrides, **given)  # fmt: skip

    # ------------------------------------------------------------------------ its length

    def steps(self, cfg: Config | None = None) -> int:
        """The training steps it runs: its schedule's ``early_stop``, plus the steps of its
        method's last phase (PixDA's distillation). ``cfg``: its config, made already."""
        from .methods import method_of

        cfg = cfg or self.config()
        method = method_of(cfg, source_only=self.is_source_only)
        return getattr(cfg, method.schedule).early_stop + method.last_phase_steps()
