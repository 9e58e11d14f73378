"""One strict configuration for every training job: frozen dataclasses, presets, YAML.

``Config.from_dict`` rejects unknown keys, wrong types and out-of-range values with a
:class:`~pixda_core.errors.ConfigError` naming the key (``optim`` values are written as used:
nothing is rescaled while parsing). Derived values come from named functions below
(:func:`protocol`), never from mutating the config.

Presets:

- ``paper``: the published configuration (docs/method.md) in iterations and learning
  rates as used;
- ``toy``: the embedded toy benchmark (``data/toy``) on a 2-core CPU: ResNet-18, 128x64,
  source-only in about 2 minutes and one adaptation run in about 2 minutes.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path

import yaml

from .errors import ConfigError
from .labels import NUM_CLASSES
from .methods import ADAPTATION as METHODS
from .models.deeplab import BACKBONES

SOURCES = ("gta5", "synthia")
TARGETS = ("cityscapes",)
SEG_LOSSES = ("focal", "ce")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
ON_ERROR = ("stop", "skip")


@dataclass(frozen=True)
class DataConfig:
    """Where the data is and how it is fed. Sizes are (W, H)."""

    source: str = "gta5"
    source_root: str = "data/toy/gta5"
    #: the release's list file of source images; None uses every image of the root
    source_list: str | None = None
    target: str = "cityscapes"
    target_root: str = "data/toy/cityscapes"
    #: labelled target images per training city (18 cities)
    num_shots: int = 1
    #: a split file in the release's format; None: the published split of ``num_shots``
    #: (1-5) when the target root holds its images, else one drawn (seeded by ``split_seed``)
    split_file: str | None = None
    #: draw the split with this seed (instead of the published one); None: the published
    #: split where it applies, else a draw seeded by the run's seed
    split_seed: int | None = None
    #: training images and labels are resized (not cropped) to this size
    size: tuple[int, int] = (1024, 512)
    #: val images are resized to this size; predictions are upsampled to the full label size
    val_size: tuple[int, int] = (1024, 512)
    #: evaluate on the first N val images only (quick checks); None = all
    val_limit: int | None = None
    val_batch_size: int = 2
    #: images per batch in PixDA's selection pass (inference only, so larger than training's)
    select_batch_size: int = 16
    num_workers: int = 4
    #: an image or label that cannot be read: "stop" the run naming the file, or "skip" it
    #: (training: the next readable image takes its place; validation: it is left out) with
    #: a warning per file and a count at the end of each epoch
    on_error: str = "stop"


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "resnet101"
    #: the second ASPP head on layer3 (kept for the release's weights; the losses use layer6)
    multi_level: bool = True
    #: initial weights for source-only training: a file (the release's
    #: DeepLab_resnet_pretrained_init.pth, torchvision's ImageNet ResNet weights, a model of
    #: ours), "none" for random weights (asked for explicitly), or None: torchvision's ImageNet
    #: weights of the backbone when they are in torch's hub cache, else the run is refused
    init: str | None = None


@dataclass(frozen=True)
class OptimConfig:
    """SGD + poly for G, Adam + poly for the discriminators. Values are used as written."""

    batch_size: int = 4
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_d: float = 4e-4
    betas: tuple[float, float] = (0.9, 0.99)
    power: float = 0.9
    #: the poly schedule's horizon: lr = base * (1 - step / max_iters) ** power
    max_iters: int = 62500
    #: iterations actually run (the adversarial phase for PixDA; KD steps come on top)
    early_stop: int = 30000
    #: the release's SGD parameter groups: each backbone parameter listed once per module
    #: that encloses it (1-4 times), so SGD applies its update that many times a step (a
    #: larger effective backbone step than ``lr`` says); off: every parameter once
    release_sgd: bool = False


@dataclass(frozen=True)
class MethodConfig:
    """The adaptation method and its switches (docs/method.md); PixDA's ablations are flags."""

    name: str = "pixda"
    seg_loss: str = "focal"
    #: FDA-translate every source batch towards the paired target batch (all source methods)
    fda: bool = True
    fda_beta: float = 0.01
    #: PixDA's weight on the pixel adversarial loss
    lambda_adv: float = 0.1
    #: AdaptSegNet's weight on the whole-image adversarial loss
    lambda_adv_image: float = 0.001
    #: off = a plain per-pixel adversarial loss (no CE and class-balance weights)
    pixel_weights: bool = True
    #: the release's gradient through the CE weight (docs/method.md; the paper detaches it)
    release_gradient: bool = False
    selection: bool = True
    tau: float = 0.4
    tau_step: float = 0.4
    distillation: bool = True
    kd_steps: int = 201
    kd_alpha: float = 0.5
    lambda_kd: float = 0.5


@dataclass(frozen=True)
class RunConfig:
    name: str = "run"
    #: where run folders go
    out_dir: str = "results"
    seed: int = 1993
    device: str = "auto"
    #: autocast precision: "auto" = bf16 on GPUs that have it (compute capability 8.0+), fp16
    #: with a gradient scaler on older ones, fp32 on the CPU (bf16 with ``cpu_bf16``);
    #: "bf16", "fp16" or "fp32" asks for one on any device
    precision: str = "auto"
    #: "auto" precision on the CPU is bf16 instead of fp32 (about 1.8x faster where the CPU
    #: has AVX512-BF16 or AMX, much slower where it does not; off by default)
    cpu_bf16: bool = False
    #: deterministic algorithms (torch.use_deterministic_algorithms, no cuDNN autotuning,
    #: CUBLAS_WORKSPACE_CONFIG): repeatable CUDA runs, at a cost in speed
    deterministic: bool = False
    channels_last: bool = True
    #: torch.compile G and D1 for training (first steps slower while it compiles)
    compile: bool = False
    #: one G forward over the source and target batches together instead of two: faster,
    #: but BatchNorm then computes its batch statistics over both domains at once (the
    #: method runs them separately), so results differ; off by default
    concat_forward: bool = False
    #: a loss line (and a history.csv row) every N steps; the only host synchronisation
    log_every: int = 50
    #: an extra validation every N steps (0 = only after each source epoch and at the end)
    val_every: int = 0
    ckpt_every: int = 1000
    #: keep the newest K step checkpoints (0 = keep all); latest.pt is always kept
    keep_checkpoints: int = 0
    save_predictions: bool = False
    #: the source-only model to adapt from (the release's file or ours)
    restore_from: str | None = None
    #: without ``restore_from``: adapt from a source-only model trained with this run's seed
    #: (one per seed, so that intervals over seeds include the source-only model's own
    #: spread) instead of the one the preset's seed trains for every run
    own_source_only: bool = False
    tensorboard: bool = False
    progress: bool = True


@dataclass(frozen=True)
class Config:
    preset: str = "paper"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    #: source-only pretraining
    pretrain: OptimConfig = field(default_factory=OptimConfig)
    #: adaptation (all methods)
    adapt: OptimConfig = field(default_factory=OptimConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self):
        validate(self)

    # ------------------------------------------------------------------ dict / YAML round trip
    def to_dict(self) -> dict:
        return _to_plain(self)

    @classmethod
    def from_dict(cls, data: dict, base: Config | None = None) -> Config:
        """Build a config from a (possibly partial) nested dict over ``base`` (the ``paper``
        preset, or the preset named by ``data["preset"]``)."""
        if not isinstance(data, dict):
            raise ConfigError(f"config must be a mapping, got {type(data).__name__}")
        if base is None:
            base = preset(data.get("preset", "paper"))
        return _merge(base, data, "")

    def to_yaml(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> Config:
        """A config file: a YAML mapping of sections (keys not given keep the preset's
        defaults). Empty, binary, malformed or of another shape is an error naming the file."""
        from .textfiles import load_yaml, read_text

        path = Path(path)
        expected = "a YAML mapping of sections (data:, model:, method:, ...)"
        text = read_text(path, "config file", expected, ConfigError)
        try:
            data = load_yaml(text)
        except (ValueError, RecursionError) as exc:  # e.g. a date 2001-02-30, "!!int abc"
            raise ConfigError(
                f"config file {path} is not valid YAML ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:200]})"
            ) from None
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" at line {where.line + 1}" if where is not None else ""
            problem = getattr(exc, "problem", None) or "malformed"
            raise ConfigError(f"config file {path} is not valid YAML{at} ({problem})") from None
        if data is None:
            raise ConfigError(f"config file {path} is empty; expected {expected}")
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} holds a {type(data).__name__}, not {expected}")
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None

    def override(self, **sections) -> Config:
        """``cfg.override(run={"name": "x"}, adapt={"early_stop": 10})``: strict, like
        ``from_dict``."""
        return _merge(self, sections, "")


# ----------------------------------------------------------------------------- presets


def _paper() -> Config:
    # The release divides 250k / 120k iterations and multiplies 2.5e-4 / 1e-4 by its batch of
    # 4 while parsing; here the values are written as used: 62,500 (poly horizon), 30,000
    # (early stop), lr 1e-3 (backbone; heads 10x), discriminators 4e-4.
    return Config(preset="paper")


def _toy() -> Config:
    # Sized for 2 CPU cores on the toy benchmark (data/toy, 256x128 Cityscapes). No ImageNet
    # weights can be downloaded, so source-only training starts from random init, asked for
    # as init "none" (lr 1e-3: 2.5e-3 already diverges from scratch with the heads at 10x).
    # Adaptation restarts the poly schedule at the same lr, as the paper's does (1e-3 both):
    # at 2.5e-3 the first steps threw each source-only model out of its minimum (FT's target
    # loss 0.6 -> 3.3; joint's source loss 0.13 -> 3.3, and at one seed it never came back).
    opt = OptimConfig(batch_size=4, lr=1e-3, lr_d=4e-4, max_iters=500, early_stop=500)
    return Config(
        preset="toy",
        data=DataConfig(size=(128, 64), val_size=(128, 64), num_workers=0, val_batch_size=10),
        model=ModelConfig(backbone="resnet18", multi_level=False, init="none"),
        pretrain=opt,
        adapt=replace(opt, max_iters=200, early_stop=150),
        method=MethodConfig(kd_steps=20),
        run=RunConfig(seed=0, log_every=10, ckpt_every=50, keep_checkpoints=3),
    )


PRESETS = {"paper": _paper, "toy": _toy}


def preset(name: str) -> Config:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}: expected one of {', '.join(PRESETS)}")
    return PRESETS[name]()


def _flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _yaml_value(value) -> str:
    """A value as a config file writes it (``[1024, 512]``, ``null``, ``true``)."""
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("...\n").strip()


def preset_table(*names: str) -> str:
    """Every config value of the presets ``names`` (default: all) as a Markdown table, a row a
    key (``section.key``); docs/method.md holds it for ``paper`` and ``toy``."""
    names = names or tuple(PRESETS)
    flat = [_flat(preset(n).to_dict()) for n in names]
    lines = ["| key | " + " | ".join(f"`{n}`" for n in names) + " |",
             "|---|" + "---|" * len(names)]  # fmt: skip
    for key in flat[0]:
        if key == "preset":
            continue
        lines.append(f"| `{key}` | " + " | ".join(_yaml_value(f[key]) for f in flat) + " |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------- derived values


def run_length(opt: OptimConfig, steps: int | None = None, horizon: int | None = None) -> dict:
    """The keys of a schedule's length, one rule for run.py (``--early_stop``, ``--max_iters``),
    the notebooks and the sweep (``iterations``, ``pretrain_iterations``): ``steps`` is
    ``early_stop`` (the iterations run), ``horizon`` is ``max_iters`` (the poly schedule's).
    Steps past ``opt``'s horizon stretch it when no horizon is given (the learning rate then
    decays to zero at the last step); a horizon alone caps the steps at it; both given are
    taken as given (the config refuses steps past the horizon). A value that is not a
    positive integer is passed on for the config to refuse, naming its key."""
    out: dict = {}
    if horizon is not None:
        out["max_iters"] = horizon
    if steps is not None:
        out["early_stop"] = steps
        if horizon is None and _positive_int(steps) and steps > opt.max_iters:
            out["max_iters"] = steps
    elif _positive_int(horizon):
        out["early_stop"] = min(opt.early_stop, horizon)
    return out


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def num_classes(cfg: Config) -> int:
    """Outputs of G: the 19 Cityscapes train classes for either source (SYNTHIA's runs are
    scored on 16 and 13 of them, see :func:`protocol`)."""
    return NUM_CLASSES


def protocol(cfg: Config) -> str:
    """The mIoU protocol of the run: "19" for GTA5, "16" for SYNTHIA (plus 13 reported)."""
    return "16" if cfg.data.source == "synthia" else "19"


# ------------------------------------------------------------------------ validation


#: the longest file or folder name (bytes) of Linux's and macOS's file systems (NAME_MAX)
NAME_MAX = 255


def _check(cond: bool, key: str, value, expected: str) -> None:
    if not cond:
        raise ConfigError(f"config {key} = {value!r}: expected {expected}")


def _check_method(name: str) -> None:
    """``method.name``: an adaptation method the registry finds (a name, or a class named as
    ``module:Class`` / ``path/to/file.py:Class``, imported here)."""
    from .methods import method_class

    _check(
        isinstance(name, str) and name != "source_only",
        "method.name",
        name,
        f"an adaptation method: one of {', '.join(METHODS)}, or 'module:Class'",
    )
    try:
        method_class(name)
    except ConfigError as exc:
        raise ConfigError(f"config method.name = {name!r}: {exc}") from None


def validate(cfg: Config) -> None:
    """Range and choice checks; each message names the key, the value and what is expected."""
    d, m, me, r = cfg.data, cfg.model, cfg.method, cfg.run
    _check(cfg.preset in PRESETS, "preset", cfg.preset, f"one of {', '.join(PRESETS)}")
    _check(d.source in SOURCES, "data.source", d.source, f"one of {', '.join(SOURCES)}")
    _check(d.target in TARGETS, "data.target", d.target, f"one of {', '.join(TARGETS)}")
    _check(1 <= d.num_shots, "data.num_shots", d.num_shots, "a positive number of images/city")
    for key in ("size", "val_size"):
        v = getattr(d, key)
        _check(all(x >= 8 for x in v), f"data.{key}", list(v), "W,H of at least 8 pixels each")
    _check(d.val_limit is None or d.val_limit >= 1, "data.val_limit", d.val_limit, "None or >= 1")
    _check(d.val_batch_size >= 1, "data.val_batch_size", d.val_batch_size, ">= 1")
    _check(d.select_batch_size >= 1, "data.select_batch_size", d.select_batch_size, ">= 1")
    _check(d.num_workers >= 0, "data.num_workers", d.num_workers, ">= 0")
    _check(d.on_error in ON_ERROR, "data.on_error", d.on_error, "stop or skip")
    _check(m.backbone in BACKBONES, "model.backbone", m.backbone, f"one of {', '.join(BACKBONES)}")
    for sec in ("pretrain", "adapt"):
        o: OptimConfig = getattr(cfg, sec)
        _check(o.batch_size >= 1, f"{sec}.batch_size", o.batch_size, ">= 1")
        for key in ("lr", "lr_d"):
            _check(getattr(o, key) > 0, f"{sec}.{key}", getattr(o, key), "> 0")
        _check(0 <= o.momentum < 1, f"{sec}.momentum", o.momentum, "in [0, 1)")
        _check(o.weight_decay >= 0, f"{sec}.weight_decay", o.weight_decay, ">= 0")
        _check(all(0 <= b < 1 for b in o.betas), f"{sec}.betas", list(o.betas), "two in [0, 1)")
        _check(o.power >= 0, f"{sec}.power", o.power, ">= 0")
        _check(o.max_iters >= 1, f"{sec}.max_iters", o.max_iters, ">= 1")
        _check(
            1 <= o.early_stop <= o.max_iters,
            f"{sec}.early_stop",
            o.early_stop,
            f"between 1 and {sec}.max_iters ({o.max_iters})",
        )
    _check_method(me.name)
    _check(me.seg_loss in SEG_LOSSES, "method.seg_loss", me.seg_loss, "focal or ce")
    _check(0 <= me.fda_beta < 0.5, "method.fda_beta", me.fda_beta, "in [0, 0.5)")
    for key in ("lambda_adv", "lambda_adv_image", "lambda_kd", "tau", "tau_step", "kd_alpha"):
        _check(getattr(me, key) >= 0, f"method.{key}", getattr(me, key), ">= 0")
    _check(me.kd_steps >= 0, "method.kd_steps", me.kd_steps, ">= 0")
    _check(
        r.name != "" and "/" not in r.name and r.name not in (".", ".."),
        "run.name",
        r.name,
        "a folder name (no '/')",
    )
    _check(
        len(os.fsencode(r.name)) <= NAME_MAX,
        "run.name",
        r.name if len(r.name) <= 40 else f"{r.name[:40]}... ({len(os.fsencode(r.name))} bytes)",
        f"a folder name of at most {NAME_MAX} bytes (the file systems' limit on one name)",
    )
    for key, value in (("run.seed", r.seed), ("data.split_seed", d.split_seed)):
        _check(
            value is None or 0 <= value < 2**32,
            key,
            value,
            f"an integer from 0 to {2**32 - 1} (numpy's seed range)",
        )
    _check(r.device in DEVICES, "run.device", r.device, f"one of {', '.join(DEVICES)}")
    _check(r.precision in PRECISIONS, "run.precision", r.precision, "auto, bf16, fp16 or fp32")
    for key in ("log_every", "ckpt_every"):
        _check(getattr(r, key) >= 1, f"run.{key}", getattr(r, key), ">= 1")
    for key in ("val_every", "keep_checkpoints"):
        _check(getattr(r, key) >= 0, f"run.{key}", getattr(r, key), ">= 0")


# ------------------------------------------------------------------- strict merging


def _to_plain(obj):
    if is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, tuple):
        return [_to_plain(v) for v in obj]
    return obj


def _type_name(tp) -> str:
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        plural = {int: "integers", float: "numbers"}.get(args[0], "values")
        return f"a list of {len(args)} {plural}"
    return {
        type(None): "null",
        float: "a number",
        int: "an integer",
        bool: "true/false",
        str: "a string",
    }.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce(value, tp, key: str):
    """Return ``value`` as type ``tp`` or raise; ints are accepted where floats are expected,
    lists where tuples are, and nothing else is converted (no "1" -> 1)."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"config {key} = {value!r}: expected {_type_name(tp)}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"config {key} = {value!r}: expected {_type_name(tp)}")
        pairs = enumerate(zip(value, args, strict=True))
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in pairs)
    if tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"config {key} = {value!r}: expected {_type_name(tp)}")


def _merge(base, data: dict, prefix: str):
    if not isinstance(data, dict):
        raise ConfigError(f"config {prefix.rstrip('.')} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(type(base))
    names = [f.name for f in fields(base)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix}{unknown[0]}: expected one of {', '.join(names)}"
        )
    changes = {}
    for key, value in data.items():
        current = getattr(base, key)
        if is_dataclass(current):
            changes[key] = _merge(current, value, f"{prefix}{key}.")
        else:
            changes[key] = _coerce(value, hints[key], f"{prefix}{key}")
    return dataclasses.replace(base, **changes)
