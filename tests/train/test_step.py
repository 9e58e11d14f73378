"""One training step (pixda_core.train.step): batch statistics, compile, no host sync, fp16."""

from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from pixda_core import losses
from pixda_core.config import preset
from pixda_core.methods import Step, method_of
from pixda_core.methods.pixda import make_teacher
from pixda_core.train import adapt
from pixda_core.train.runtime import Runtime
from pixda_core.train.step import LossSums, Nets, build_nets, main_step
from tests.helpers import tiny


def batch(seed: int, b: int = 2, w: int = 64, h: int = 32) -> dict:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, 19, (b, 1, h // 8, w // 8), generator=g).float()
    label = F.interpolate(coarse, size=(h, w), mode="nearest").long()[:, 0]
    label[torch.rand(b, h, w, generator=g) < 0.05] = 255
    return {"image": torch.rand(b, 3, h, w, generator=g) * 255, "label": label}


class Trainer:
    """The nets of a config and the step on them, as the training loop runs it."""

    def __init__(self, cfg):
        self.cfg, self.losses = cfg, LossSums()
        self.nets: Nets = build_nets(cfg, method_of(cfg), cfg.adapt, Runtime(torch.device("cpu")))
        self.g = self.nets.g

    def main_step(self, src, trg):
        main_step(self.nets, src, trg, self.cfg, self.losses)


def trainer(frozen_bn: bool = False, **run) -> Trainer:
    cfg = preset("toy").override(
        data={"size": [64, 32]}, adapt={"batch_size": 2}, run={"seed": 3, **run}
    )
    t = Trainer(cfg)
    if frozen_bn:  # batch statistics out of the picture: BatchNorm uses its running values
        for m in t.g.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
    return t


def steps(t: Trainer, n: int = 2) -> dict:
    for i in range(n):
        t.main_step(batch(2 * i), batch(2 * i + 1))
    return {k: v.item() for k, v in t.losses.sums.items()}


def max_weight_difference(a: Trainer, b: Trainer) -> float:
    pa, pb = a.g.state_dict(), b.g.state_dict()
    return max((pa[k].float() - pb[k].float()).abs().max().item() for k in pa)


# operators whose result the host must wait for on CUDA: a scalar read (.item(), bool(),
# float()), or an output whose shape depends on the data (boolean masks, nonzero, unique)
SYNCING = {
    "_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2",
    "unique_consecutive", "is_nonzero", "equal", "bincount", "repeat_interleave",
}  # fmt: skip


class OpNames(torch.utils._python_dispatch.TorchDispatchMode):
    """Names of the operators dispatched, except reads of ``host_scalars``: the optimisers'
    step counters, which torch keeps on the host even for CUDA parameters (non-capturable
    Adam), so reading them does not wait for the device."""

    def __init__(self, host_scalars):
        super().__init__()
        self.host = {id(t) for t in host_scalars}
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if not (name == "_local_scalar_dense" and id(args[0]) in self.host):
            self.names.add(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.training
def test_a_pixda_step_in_fp16_steps_every_optimiser_through_the_scaler():
    from pixda_core.train.step import LossSums, main_step

    cfg = preset("toy").override(data={"size": [64, 32]}, adapt={"batch_size": 1})
    rt = Runtime(torch.device("cpu"), precision="fp16")
    nets = build_nets(cfg, method_of(cfg), cfg.adapt, rt)
    before = {k: copy.deepcopy(o.state_dict()) for k, o in nets.optimizers.items()}
    gen = torch.Generator().manual_seed(0)
    batch = {"image": torch.rand(1, 3, 32, 64, generator=gen) * 255,
             "label": torch.randint(0, 19, (1, 32, 64), generator=gen)}  # fmt: skip
    losses = LossSums()
    main_step(nets, batch, batch, cfg, losses)
    assert set(losses.sums) == {"loss_seg_src", "loss_seg_trg", "loss_adv", "loss_d1", "loss_d2"}
    assert all(torch.isfinite(v) for v in losses.sums.values())
    assert nets.scaler is not None and nets.scaler.get_scale() > 0
    stepped = {k for k, o in nets.optimizers.items() if o.state_dict() != before[k]}
    assert stepped == {"g", "d1", "d2"}  # an inf/NaN gradient would have skipped a step


@pytest.mark.training
def test_concatenated_forward_is_the_same_step_without_batch_statistics():
    plain, concat = trainer(frozen_bn=True), trainer(frozen_bn=True, concat_forward=True)
    la, lb = steps(plain), steps(concat)
    assert la.keys() == lb.keys() >= {"loss_seg_src", "loss_seg_trg", "loss_adv", "loss_d1"}
    for k in la:
        assert la[k] == pytest.approx(lb[k], rel=1e-4, abs=1e-5), k
    assert max_weight_difference(plain, concat) < 1e-4
    assert max_weight_difference(plain, trainer()) > 1e-2  # the steps did move the weights


@pytest.mark.training
def test_concatenated_forward_changes_batchnorm_statistics():
    plain, concat = trainer(), trainer(concat_forward=True)
    la, lb = steps(plain, 1), steps(concat, 1)
    assert abs(la["loss_seg_src"] - lb["loss_seg_src"]) > 1e-3
    rm_a = plain.g.bn1.running_mean
    rm_b = concat.g.bn1.running_mean  # one update over both domains instead of two
    assert not torch.allclose(rm_a, rm_b)


@pytest.mark.training
@pytest.mark.slow
def test_compiled_step_matches_the_eager_step(monkeypatch):
    # the kit's compile path (what is compiled, and the step through it) on TorchDynamo and
    # AOTAutograd, without Inductor's C++ code generation (a minute and a half on 2 cores, cold
    # cache; PyTorch tests its own backend; benchmarks/gpu_check.sh runs Inductor on a GPU)
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, **kw: compile_(m, backend="aot_eager", **kw))
    eager, compiled = trainer(), trainer(compile=True)
    la, lb = steps(eager), steps(compiled)
    for k in la:
        assert la[k] == pytest.approx(lb[k], rel=1e-3, abs=1e-4), k
    assert max_weight_difference(eager, compiled) < 1e-3
    assert max_weight_difference(eager, trainer()) > 1e-2


@pytest.mark.training
@pytest.mark.parametrize("method", ["pixda", "adaptsegnet", "advent", "joint", "finetune"])
def test_the_step_needs_no_host_synchronisation(method):
    """Every operator of a training step (and of PixDA's distillation step), as dispatched:
    none of them makes the host wait for the device, so the CUDA loop runs ahead of the GPU
    between its logging intervals (benchmarks/step.py --check-sync checks the same on a GPU)."""
    cfg = preset("toy").override(
        data={"size": [64, 32]}, adapt={"batch_size": 2}, method={"name": method}, run={"seed": 3}
    )
    t = Trainer(cfg)
    t.main_step(batch(0), batch(1))  # lazy initialisation outside the recorded steps
    steps = [
        st["step"] for o in t.nets.optimizers.values() for st in o.state.values() if "step" in st
    ]
    with OpNames(steps) as ops:
        t.main_step(batch(2), batch(3))
        if method == "pixda":
            t.nets.method.teacher = make_teacher(t.g)
            t.nets.method.last_phase_step(Step(t.nets, cfg, t.losses), batch(4))
    assert {"convolution", "convolution_backward", "_foreach_add_"} & ops.names
    assert not SYNCING & ops.names, sorted(SYNCING & ops.names)


@pytest.mark.training
def test_the_check_sees_a_host_synchronisation(monkeypatch):
    t = trainer()
    t.main_step(batch(0), batch(1))
    real = losses.pixel_adversarial_loss
    monkeypatch.setattr(
        losses,
        "pixel_adversarial_loss",
        lambda *a, **k: real(*a, **k) * (1 + 0 * float(a[0].detach().mean())),
    )
    steps = [
        st["step"] for o in t.nets.optimizers.values() for st in o.state.values() if "step" in st
    ]
    with OpNames(steps) as ops:
        t.main_step(batch(2), batch(3))
    assert "_local_scalar_dense" in ops.names


@pytest.mark.training
def test_pixel_weights_change_the_adversarial_loss(toy_root, tmp_path, source_only):
    losses = []
    for i, weights in enumerate((True, False)):
        cfg = tiny(
            toy_root,
            tmp_path,
            method={"pixel_weights": weights, "selection": False, "distillation": False},
            adapt={"early_stop": 2},
            run={"name": f"w{i}", "restore_from": str(source_only)},
        )
        adapt(cfg)
        losses.append(pd.read_csv(tmp_path / f"w{i}" / "history.csv")["loss_adv"].iloc[0])
    # the plain loss is BCE against "source" of a fresh D1 (~log 2); the weighted one scales
    # each pixel by its CE and (1 - class share), so it moves away from it
    assert abs(losses[1] - math.log(2)) < 0.1
    assert losses[0] > 0 and abs(losses[0] - losses[1]) > 0.1 * losses[1]
