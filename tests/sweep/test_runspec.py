"""One run as one spec (pixda_core.runspec): the sweep's grid yields them, the notebooks'
parameters are made from them and read back into the same spec, and the spec makes the run's
config and names the source-only model the run starts from."""

from __future__ import annotations

import dataclasses

import pytest

from pixda_core.config import preset
from pixda_core.methods import ORACLE, SOURCE_ONLY
from pixda_core.runspec import RunSpec
from pixda_core.sweep_grid import Grid
from pixda_core.train import source_only_run

pytestmark = pytest.mark.data


def grid_specs(toy_root, tmp_path, **grid) -> list[RunSpec]:
    so, runs = Grid(data_root=str(toy_root), **grid).specs(tmp_path)
    return so + runs


@pytest.mark.parametrize("per_seed", [False, True])
def test_parameters_read_back_into_the_same_spec(toy_root, tmp_path, per_seed):
    specs = grid_specs(toy_root, tmp_path, methods=(SOURCE_ONLY, "finetune", "pixda", ORACLE),
                       shots=(1, 5), seeds=(0, 2), split_seeds=(7,), source_only_per_seed=per_seed,
                       overrides={"adapt": {"lr": 0.01}, "data": {"val_limit": 2}})  # fmt: skip
    # source-only, FT and PixDA x 2 shots x 2 seeds, the oracle x 2 seeds
    assert len(specs) == (2 if per_seed else 1) + 2 * 2 * 2 + 2
    for spec in specs:
        again = RunSpec.from_params(spec.params(), source_only=spec.is_source_only)
        assert again == spec, spec
        assert RunSpec.from_params({**spec.params(), "style": "screen", "In": []},
                                   source_only=spec.is_source_only) == spec  # fmt: skip
    split = [s for s in specs if s.split_seed is not None]
    assert split and all(s.params()["overrides"]["data"]["split_seed"] == 7 for s in split)
    assert all("split_seed" not in s.overrides.get("data", {}) for s in specs)  # one place


def test_a_spec_names_the_source_only_model_its_run_starts_from(toy_root, tmp_path):
    """What the sweep trains first (the source-only spec's folder) is what the run's training
    reuses (source_only_run of the run's config), with one model per seed when asked."""
    for per_seed in (False, True):
        specs = grid_specs(toy_root, tmp_path, methods=(SOURCE_ONLY, "pixda", ORACLE),
                           shots=(1,), seeds=(0, 1), source_only_per_seed=per_seed)  # fmt: skip
        so = {s.name for s in specs if s.is_source_only}
        for spec in (s for s in specs if not s.is_source_only):
            expected = source_only_run(spec.config()).run.name
            assert spec.source_only().name == expected and expected in so
        assert len(so) == (2 if per_seed else 1)


def test_a_specs_config_and_length(toy_root, tmp_path):
    toy = preset("toy")
    base = RunSpec(data_root=str(toy_root), out_dir=str(tmp_path), seed=3)
    pixda = base.config()
    assert pixda.method.name == "pixda" and pixda.run.name == "pixda_1shot_seed3"
    assert pixda.run.out_dir == str(tmp_path) and pixda.run.seed == 3
    assert base.steps() == toy.adapt.early_stop + toy.method.kd_steps  # + its distillation
    ft = dataclasses.replace(base, method="finetune", iterations=300, split_seed=4)
    assert ft.config().run.name == "finetune_1shot_seed3_split4"
    assert ft.config().data.split_seed == 4 and ft.config().adapt.max_iters == 300
    assert ft.steps() == 300
    so = ft.source_only()
    assert so.is_source_only and so.seed is None and so.split_seed is None
    assert so.steps() == toy.pretrain.early_stop
    assert so.config().run.name.startswith("source_only_gta5_toy_")
    named = dataclasses.replace(so, run_name="mine", pretrain_iterations=5)
    assert named.config().run.name == "mine" and named.steps() == 5
