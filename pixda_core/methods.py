"""The one table of what each method trains on and with (docs/method.md).

Every other place reads it: the config's choices, the training loop (which datasets, which
discriminators, selection, distillation), the loss columns of ``history.csv``, the sweep's
method names and the tables' and figures' method titles.

======================  ======  ======  ====  ====  ===========  =======  ======
method                  source  target  D1    D2    adversarial  selects  distils
======================  ======  ======  ====  ====  ===========  =======  ======
``source_only``         yes     -       -     -     -            -        -
``finetune`` (FT)       -       yes     -     -     -            -        -
``joint``               yes     yes     -     -     -            -        -
``adaptsegnet``         yes     yes     -     yes   image (D2)   -        -
``pixda``               yes     yes     yes   yes   pixel (D1)   yes      yes
``oracle``              -       all     -     -     -            -        -
======================  ======  ======  ====  ====  ===========  =======  ======

The oracle is FT on every target training image instead of the shots, trained as long as
the source-only model (the ``pretrain`` schedule, as an oracle is fully trained on its data):
the reference a few-shot method is measured against (how much of the fully labelled target
it recovers). Tables and figures show it, like source-only, as a reference without a shot
count.

PixDA's D2 is there for the selection only: with ``method.selection: false`` it is not built,
and with ``method.distillation: false`` (or ``kd_steps: 0``) there is no distillation phase
(:func:`method_spec`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Method:
    name: str
    #: how tables, figures and logs name it
    title: str
    #: trains G on source batches (FDA-styled towards the target when it also uses target)
    source: bool
    #: trains G on the target shots
    target: bool
    #: the pixel discriminator D1 (PixDA's pixel adversarial loss)
    d1: bool = False
    #: the image discriminator D2 (AdaptSegNet's adversarial loss; PixDA's selection)
    d2: bool = False
    #: the adversarial term on G's target predictions: "pixel" (through D1), "image"
    #: (through D2) or None
    adversarial: str | None = None
    #: D2-based selection of source images after each source epoch
    selects: bool = False
    #: the distillation phase after the main phase (``method.kd_steps`` steps)
    distils: bool = False
    #: the loss columns of its history.csv
    losses: tuple[str, ...] = ()
    #: trains on every target training image, not ``data.num_shots`` per city (the oracle)
    all_target: bool = False


SEG_SRC, SEG_TRG, ADV, D1, D2, KD = (
    "loss_seg_src",
    "loss_seg_trg",
    "loss_adv",
    "loss_d1",
    "loss_d2",
    "loss_kd",
)

# fmt: off
TABLE: dict[str, Method] = {m.name: m for m in (
    Method("source_only", "source only", source=True,  target=False, losses=(SEG_SRC,)),
    Method("finetune",    "FT",          source=False, target=True,  losses=(SEG_TRG,)),
    Method("joint",       "joint",       source=True,  target=True,  losses=(SEG_SRC, SEG_TRG)),
    Method("adaptsegnet", "AdaptSegNet-style", source=True, target=True, d2=True,
           adversarial="image", losses=(SEG_SRC, SEG_TRG, ADV, D2)),
    Method("pixda",       "PixDA",       source=True,  target=True,  d1=True, d2=True,
           adversarial="pixel", selects=True, distils=True,
           losses=(SEG_SRC, SEG_TRG, ADV, D1, D2, KD)),
    Method("oracle",      "oracle",      source=False, target=True,  all_target=True,
           losses=(SEG_TRG,)),
)}
# fmt: on

SOURCE_ONLY = "source_only"
#: the adaptation methods (``method.name``, ``--method``), the default first
ADAPTATION = tuple(sorted((n for n in TABLE if n != SOURCE_ONLY), key=lambda n: n != "pixda"))
#: method name -> its title in tables and figures
TITLES = {name: m.title for name, m in TABLE.items()}
ORACLE = "oracle"
#: the references drawn without a shot count: no target shots, and every target image
REFERENCES = (SOURCE_ONLY, ORACLE)


def schedule(method: Method) -> str:
    """The config section of a method's optimiser and length: ``pretrain`` for source-only
    and the oracle (trained in full on their data), ``adapt`` for the few-shot methods."""
    return "pretrain" if method.name == SOURCE_ONLY or method.all_target else "adapt"


def method_spec(
    name: str, selection: bool = True, distillation: bool = True, kd_steps: int = 1
) -> Method:
    """The table's row for ``name`` with PixDA's ablation switches applied: no selection
    means no D2; no distillation (or ``kd_steps`` 0) means no distillation phase. The loss
    columns stay those of the method, so ablations give tables of the same shape."""
    m = TABLE[name]
    return replace(
        m,
        d2=m.d2 and (m.adversarial == "image" or selection),
        selects=m.selects and selection,
        distils=m.distils and distillation and kd_steps > 0,
    )


def method_of(cfg, source_only: bool = False) -> Method:
    """The method a run trains: source-only pretraining, or ``cfg.method`` with its switches."""
    if source_only:
        return TABLE[SOURCE_ONLY]
    mc = cfg.method
    return method_spec(mc.name, mc.selection, mc.distillation, mc.kd_steps)


def run_name(method: str, shots: int, seed: int, split_seed: int | None = None) -> str:
    """A run's default folder name: ``<method>_<N>shot_seed<S>[_split<K>]``; the oracle's,
    which takes every target image, ``oracle_seed<S>``."""
    if TABLE[method].all_target:
        return f"{method}_seed{seed}"
    name = f"{method}_{shots}shot_seed{seed}"
    return name if split_seed is None else f"{name}_split{split_seed}"
