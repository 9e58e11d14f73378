"""The methods: one class each, one module each (docs/method.md; how to add one:
docs/add-a-method.md).

======================  ======  ======  =====================  ==========================
method                  source  target  its networks           its phases
======================  ======  ======  =====================  ==========================
``source_only``         yes     -       -                      -
``finetune`` (FT)       -       yes     -                      -
``joint``               yes     yes     -                      -
``adaptsegnet``         yes     yes     D2 (image, softmax)    -
``advent`` (AdvEnt)     yes     yes     D (image, entropy)     -
``pixda``               yes     yes     D1 (pixel), D2         selection, distillation
``oracle``              -       all     -                      -
======================  ======  ======  =====================  ==========================

The oracle is FT on every target training image instead of the shots, trained as long as the
source-only model: the reference a few-shot method is measured against. Tables and figures
show it, like source-only, as a reference without a shot count.

Everything downstream (the config's ``method.name``, ``run.py --method``, sweeps, notebooks,
tables, figures) finds a method through :func:`method_class`: the kit's own, those registered
with :func:`register_method`, entry points of the group ``pixda_core.methods``, or a class
named as ``module:Class`` / ``path/to/file.py:Class``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from .adaptsegnet import AdaptSegNet
from .advent import AdvEnt
from .base import Method, Step, domain_discriminator_loss
from .finetune import Finetune
from .joint import Joint
from .oracle import Oracle
from .pixda import PixDA
from .registry import (
    ENTRY_POINTS,
    available,
    check_method,
    is_spec,
    method_class,
    portable,
    register_method,
    registered,
    spec_of,
)
from .source_only import SourceOnly

#: the kit's methods, in the order tables list them
BUILTIN = (SourceOnly, Finetune, Joint, AdaptSegNet, AdvEnt, PixDA, Oracle)
for _cls in BUILTIN:
    register_method(_cls)

SOURCE_ONLY = SourceOnly.name
ORACLE = Oracle.name
#: the references drawn without a shot count: no target shots, and every target image
REFERENCES = (SOURCE_ONLY, ORACLE)
#: the kit's adaptation methods (``--method``), the default first
ADAPTATION = tuple(
    sorted((c.name for c in BUILTIN if c is not SourceOnly), key=lambda n: n != PixDA.name)
)


class _Titles(Mapping):
    """Method name -> its title in tables and figures, for every method registered in this
    process (a live view: a method registered later is in it)."""

    def __getitem__(self, name: str) -> str:
        return registered()[name].title

    def __iter__(self) -> Iterator[str]:
        return iter(registered())

    def __len__(self) -> int:
        return len(registered())


TITLES: Mapping[str, str] = _Titles()


def method_of(cfg, source_only: bool = False) -> Method:
    """The method a run trains, made from its config: source-only pretraining, or
    ``cfg.method.name`` (a name or a spec, :func:`method_class`)."""
    cls = SourceOnly if source_only else method_class(cfg.method.name)
    return cls(cfg)


def known(name: str) -> type[Method] | None:
    """The registered class of ``name``, or None (no import is tried)."""
    return registered().get(name)


def run_name(method: str, shots: int, seed: int, split_seed: int | None = None) -> str:
    """A run's default folder name: ``<method>_<N>shot_seed<S>[_split<K>]``; that of a method
    on every target image (the oracle) ``<method>_seed<S>``. ``method``: a name or a spec."""
    cls = method_class(method)
    if cls.all_target:
        return f"{cls.name}_seed{seed}"
    name = f"{cls.name}_{shots}shot_seed{seed}"
    return name if split_seed is None else f"{name}_split{split_seed}"


__all__ = [
    "Method",
    "Step",
    "domain_discriminator_loss",
    "register_method",
    "method_class",
    "method_of",
    "portable",
    "run_name",
    "available",
    "check_method",
    "is_spec",
    "spec_of",
    "known",
    "ENTRY_POINTS",
    "BUILTIN",
    "TITLES",
    "SOURCE_ONLY",
    "ORACLE",
    "REFERENCES",
    "ADAPTATION",
    "SourceOnly",
    "Finetune",
    "Joint",
    "AdaptSegNet",
    "AdvEnt",
    "PixDA",
    "Oracle",
]
