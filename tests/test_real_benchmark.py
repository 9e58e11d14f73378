"""The real benchmark as a researcher meets it: initial weights or a refusal, the published
splits, the release's optimiser as an option, precision that fits the card, a deterministic
mode, and TensorBoard."""

from __future__ import annotations

import copy
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch

from pixda_core.config import preset
from pixda_core.data import toy
from pixda_core.data.splits import PUBLISHED, choose_split, published_split, read_split
from pixda_core.methods import method_of
from pixda_core.models import deeplabv2, param_groups
from pixda_core.train.runtime import Runtime, choose_precision
from pixda_core.train.step import build_nets

from .helpers import assert_user_error, cli, release_args

# ------------------------------------------------------------------------------ precision


@pytest.mark.unit
@pytest.mark.parametrize(
    "asked, device, capability, cpu_bf16, chosen",
    [
        ("auto", "cuda", (9, 0), False, "bf16"),  # H100
        ("auto", "cuda", (8, 0), False, "bf16"),  # A100
        ("auto", "cuda", (7, 5), False, "fp16"),  # T4, RTX 20xx
        ("auto", "cuda", (7, 0), False, "fp16"),  # V100
        ("auto", "cpu", None, False, "fp32"),
        ("auto", "cpu", None, True, "bf16"),
        ("fp32", "cuda", (9, 0), False, "fp32"),
        ("bf16", "cuda", (7, 5), False, "bf16"),  # asked for: used as asked
        ("fp16", "cpu", None, False, "fp16"),
    ],
)
def test_auto_precision_fits_the_card(asked, device, capability, cpu_bf16, chosen):
    assert choose_precision(asked, device, capability, cpu_bf16) == chosen
    rt = Runtime(torch.device("cpu"), precision=chosen)
    assert (rt.grad_scaler() is not None) == (chosen == "fp16")


# ------------------------------------------------------------------------------ release SGD


def _release_groups(model, lr):
    """The release's optimiser groups, as its DeepLab builds them: for conv1, bn1 and
    layer1-4, every module inside (itself included) yields all its trainable parameters;
    then the heads' parameters at 10x."""

    def backbone():
        for part in (model.conv1, model.bn1, model.layer1, model.layer2, model.layer3,
                     model.layer4):  # fmt: skip
            for module in part.modules():
                for p in module.parameters():
                    if p.requires_grad:
                        yield p

    def heads():
        for head in (model.layer5, model.layer6):
            yield from head.parameters()

    return [{"params": backbone(), "lr": lr}, {"params": heads(), "lr": 10 * lr}]


@pytest.mark.unit
def test_release_sgd_repeats_backbone_parameters_as_the_release_does():
    model = deeplabv2(19, "resnet18", multi_level=True)
    groups = param_groups(model, 1e-3, release=True)
    times = Counter(id(p) for p in groups[0]["params"])
    names = {id(p): n for n, p in model.named_parameters()}
    by_name = {names[i]: k for i, k in times.items()}
    assert by_name["conv1.weight"] == 1  # conv1 is listed as itself
    assert by_name["layer1.0.conv1.weight"] == 3  # layer1, layer1.0, layer1.0.conv1
    assert by_name["layer2.0.downsample.0.weight"] == 4  # ... and the downsample Sequential
    assert len(groups[1]["params"]) == len(set(map(id, groups[1]["params"])))  # heads once
    assert set(times) == {id(p) for p in param_groups(model, 1e-3)[0]["params"]}


@pytest.mark.unit
def test_release_sgd_step_equals_the_release_update():
    cfg = preset("toy").override(
        model={"multi_level": True},
        adapt={"release_sgd": True},
        method={"name": "finetune"},
        run={"seed": 4},
    )
    nets = build_nets(cfg, method_of(cfg), cfg.adapt, Runtime(torch.device("cpu")))
    reference = copy.deepcopy(nets.g)
    o = cfg.adapt
    with pytest.warns(UserWarning, match="duplicate parameters"):  # torch says so; we don't
        release = torch.optim.SGD(
            _release_groups(reference, o.lr), lr=o.lr, momentum=o.momentum,
            weight_decay=o.weight_decay,
        )  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):  # the second step also exercises the shared momentum buffers
        grads = {n: torch.randn(p.shape, generator=gen) for n, p in nets.g.named_parameters()}
        for model in (nets.g, reference):
            for n, p in model.named_parameters():
                p.grad = grads[n].clone() if p.requires_grad else None
        nets.optimizers["g"].step()
        release.step()
    ours, theirs = nets.g.state_dict(), reference.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    # and it is not the plain optimiser: a block's weight moved about three times as far
    plain = build_nets(cfg.override(adapt={"release_sgd": False}), method_of(cfg), cfg.adapt,
                       Runtime(torch.device("cpu")))  # fmt: skip
    assert not torch.equal(plain.g.state_dict()["layer1.0.conv1.weight"],
                           ours["layer1.0.conv1.weight"])  # fmt: skip


# ------------------------------------------------------------------------------ splits


@pytest.mark.unit
def test_the_published_splits_ship_with_their_licence():
    assert (PUBLISHED / "LICENSE").read_text().startswith("MIT License")
    assert "Copyright (c) 2021 Antonio Tavera" in (PUBLISHED / "LICENSE").read_text()
    for n in range(1, 6):
        names = read_split(published_split(n))
        cities = Counter(name.split("/")[0] for name in names)
        assert len(names) == 18 * n and len(cities) == 18 and set(cities.values()) == {n}
    five = read_split(published_split(5))
    assert [k for k, c in Counter(five).items() if c > 1] == [
        "zurich/zurich_000112_000019_leftImg8bit.png"
    ]
    assert published_split(6) is None


@pytest.fixture(scope="module")
def published_root(toy_root, tmp_path_factory) -> Path:
    """A toy Cityscapes root whose train images carry the names of all published splits
    (each a copy of a toy image of the same city)."""
    root = tmp_path_factory.mktemp("published") / "toy"
    shutil.copytree(toy_root, root)
    train, labels = (root / "cityscapes" / d / "train" for d in ("leftImg8bit", "gtFine"))
    toy_train = toy_root / "cityscapes" / "leftImg8bit" / "train"
    toy_labels = toy_root / "cityscapes" / "gtFine" / "train"
    for n in range(1, 6):
        for name in read_split(published_split(n)):
            city, file = name.split("/")
            image = sorted((toy_train / city).glob("*.png"))[0]
            label = toy_labels / city / image.name.replace("leftImg8bit", "gtFine_labelIds")
            shutil.copyfile(image, train / name)
            shutil.copyfile(label, labels / city / file.replace("leftImg8bit", "gtFine_labelIds"))
    return root


@pytest.mark.data
def test_the_published_split_is_chosen_where_its_images_are(published_root, toy_root):
    cs = published_root / "cityscapes"
    one = choose_split(cs, 1, run_seed=3)
    assert one.names == read_split(published_split(1)) and "published 1-shot" in one.how
    five = choose_split(cs, 5)
    assert five.names == read_split(published_split(5)) and len(five.names) == 90
    assert "zurich_000112_000019_leftImg8bit.png 2 times, kept as published" in five.how
    drawn = choose_split(cs, 1, split_seed=7)  # a seeded draw when asked for
    assert "drawn with seed 7" in drawn.how and drawn.names != one.names
    toy_only = choose_split(toy_root / "cityscapes", 1, run_seed=3)  # no published images
    assert "drawn with seed 3" in toy_only.how and "not in" in toy_only.how
    assert choose_split(cs, 6, run_seed=3).how.startswith("6 per city drawn with seed 3")


@pytest.mark.training
def test_a_1_shot_and_a_5_shot_run_use_the_published_splits(published_root, tmp_path, capsys,
                                                            weights):  # fmt: skip
    for shots in (1, 5):
        code, err = cli(
            capsys, *release_args(published_root, tmp_path, f"s{shots}"), "--is_train",
            "--restore_from", weights, "--method", "finetune", "--num_shots", shots,
            "--early_stop", "2", "--set", "data.val_batch_size=6",
        )  # fmt: skip
        assert code == 0, err[-2000:]
        assert f"target shots: the published {shots}-shot split" in err
        written = read_split(tmp_path / f"s{shots}" / "split.txt")
        assert written == read_split(published_split(shots))
    assert "kept as published" in err  # the 5-shot duplicate, said once


# ------------------------------------------------------------------------------ initial weights


@pytest.fixture(scope="module")
def real_size_root(tmp_path_factory) -> Path:
    """A toy benchmark at the real image sizes (2048x1024 Cityscapes, 1914x1052 GTA5)."""
    spec = toy.ToySpec(seed=5, size=(2048, 1024), num_gta5=2, num_synthia=1, train_per_city=1,
                       val_per_city=1)  # fmt: skip
    return toy.generate(tmp_path_factory.mktemp("real") / "toy", spec, progress=False)


@pytest.fixture(scope="module")
def torchvision_r101(tmp_path_factory) -> Path:
    """A state dict in torchvision's ResNet-101 format (random values: nothing downloads)."""
    import torchvision

    path = tmp_path_factory.mktemp("tv") / "resnet101-63fe2227.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet101().state_dict(), path)
    return path


def paper_flags(root: Path, out: Path, *extra) -> list:
    """run.py's flags for the paper preset on a real-size root, shrunk to a step or two."""
    return [
        "--source_dataset", "gta5", "--source_dataroot", root / "gta5",
        "--target_dataset", "cityscapes", "--target_dataroot", root / "cityscapes",
        "--name", "paper", "--checkpoints_dir", out, "--crop_size", "64,32", "--batch_size", "1",
        "--early_stop", "1", "--kd_steps", "1", "--num_workers", "0", "--quiet", *extra,
    ]  # fmt: skip


@pytest.mark.training
@pytest.mark.slow
def test_the_paper_preset_refuses_random_weights_and_takes_imagenet_ones(
    real_size_root, torchvision_r101, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # an empty cache
    out = tmp_path / "out"
    code, err = cli(capsys, *paper_flags(real_size_root, out), "--is_train", "--num_shots", "1")
    assert_user_error(code, err, "DeepLab_resnet_pretrained_init.pth", "resnet101-63fe2227.pth",
                      "--init", str(tmp_path / "torch_home" / "hub" / "checkpoints"))  # fmt: skip
    assert not out.exists() or list(out.iterdir()) == []  # nothing written

    # with --init a torchvision ResNet-101 state dict: the source-only model trains
    from pixda_core.train.cli import pretrain_main

    capsys.readouterr()
    code = pretrain_main([str(a) for a in paper_flags(real_size_root, out, "--init",
                                                      torchvision_r101)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err[-2000:]
    assert f"initial weights {torchvision_r101}: format torchvision resnet" in err
    metrics = json.loads((out / "paper" / "metrics.json").read_text())
    assert metrics["step"] == 1 and metrics["method"] == "source_only"

    # the same file in torch's cache is found without --init, and the run says so
    cache = tmp_path / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    shutil.copyfile(torchvision_r101, cache / torchvision_r101.name)
    code, err = cli(capsys, *paper_flags(real_size_root, tmp_path / "out2"), "--is_train",
                    "--num_shots", "1", "--method", "finetune", "--set",
                    "pretrain.batch_size=1", "--set", "pretrain.early_stop=1")  # fmt: skip
    assert code == 0, err[-2000:]
    assert f"--init not given: using torchvision's ImageNet resnet101 weights {cache}" in err


@pytest.mark.training
@pytest.mark.parametrize("kind", ["torchvision", "release init"])
def test_restore_from_an_init_file_is_refused_naming_init(toy_root, tmp_path, capsys, kind):
    import torchvision

    path = tmp_path / "init.pth"
    if kind == "torchvision":
        torch.save(torchvision.models.resnet18().state_dict(), path)
    else:  # the release's DeepLab init: "Scale." prefix, a 21-class head as layer5
        state = deeplabv2(21, "resnet18", multi_level=False).state_dict()
        torch.save({f"Scale.{k.replace('layer6', 'layer5')}": v for k, v in state.items()}, path)
    code, err = cli(capsys, *release_args(toy_root, tmp_path / "out"), "--is_train",
                    "--restore_from", path)  # fmt: skip
    assert_user_error(code, err, f"--restore_from {path} is an initialisation",
                      "pass it as --init")  # fmt: skip
    assert not (tmp_path / "out" / "e").exists()


# ------------------------------------------------------------------------------ fp16, determinism


def _run_py(*args, check=True):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "run.py"), *map(str, args)], cwd=root,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.training
@pytest.mark.slow
def test_an_fp16_run_with_its_scaler_resumes_exactly_after_sigkill(toy_root, tmp_path, weights):
    """fp16 autocast with a gradient scaler on the CPU (torch supports both there, slowly:
    about 8 s a step at 64x32, so this run is FT at 32x16): the scaler's state is in the
    checkpoint, so a run killed and resumed ends as one never stopped."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import pandas as pd

    from pixda_core.checkpoint import load_checkpoint

    def flags(name):
        return [
            *release_args(toy_root, tmp_path, name), "--is_train", "--restore_from", weights,
            "--amp", "fp16", "--method", "finetune", "--crop_size", "32,16", "--batch_size",
            "1", "--early_stop", "6", "--max_iters", "20", "--set", "run.log_every=1",
            "--set", "run.ckpt_every=2",
        ]  # fmt: skip

    straight = _run_py(*flags("straight"))
    assert "fp16 autocast with a gradient scaler" in straight.stderr
    ck = load_checkpoint(tmp_path / "straight" / "checkpoints" / "latest.pt")
    assert ck["scaler"]["scale"] > 0 and "_growth_tracker" in ck["scaler"]

    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, str(root / "run.py"), *map(str, flags("killed"))]
    proc = subprocess.Popen(command, cwd=root, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    ckpt = tmp_path / "killed" / "checkpoints" / "step_2.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "metrics.json").exists()
    _run_py(*flags("killed"), "--continue_train")
    a = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    b = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert {**a, "run": None} == {**b, "run": None}
    timing = ["step_s", "data_wait"]
    ha = pd.read_csv(tmp_path / "straight" / "history.csv").drop(columns=timing)
    hb = pd.read_csv(tmp_path / "killed" / "history.csv").drop(columns=timing)
    pd.testing.assert_frame_equal(ha, hb)


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
def test_two_deterministic_runs_write_byte_identical_checkpoints(toy_root, tmp_path, capsys,
                                                                 weights):  # fmt: skip
    args = [*release_args(toy_root, tmp_path / "out", "det"), "--is_train", "--restore_from",
            weights, "--deterministic", "--early_stop", "4", "--kd_steps", "1"]  # fmt: skip
    ckpts = []
    for attempt in range(2):
        code, err = cli(capsys, *args)
        assert code == 0, err[-2000:]
        moved = tmp_path / f"run{attempt}"
        (tmp_path / "out" / "det").rename(moved)
        ckpts.append((moved / "checkpoints" / "latest.pt").read_bytes())
    assert ckpts[0] == ckpts[1]
    assert torch.are_deterministic_algorithms_enabled()
    cli(capsys, *release_args(toy_root, tmp_path / "out", "plain"), "--is_train",
        "--restore_from", weights, "--early_stop", "1", "--kd_steps", "1")  # fmt: skip
    assert not torch.are_deterministic_algorithms_enabled()  # the next run sets it back


# ------------------------------------------------------------------------------ TensorBoard


@pytest.mark.training
def test_tensorboard_logs_losses_learning_rates_per_class_iou_and_predictions(
    toy_root, tmp_path, capsys, weights
):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    code, err = cli(capsys, *release_args(toy_root, tmp_path), "--is_train", "--restore_from",
                    weights, "--early_stop", "4", "--set", "run.tensorboard=true",
                    "--set", "run.log_every=2")  # fmt: skip
    assert code == 0, err[-2000:]
    logs = EventAccumulator(str(tmp_path / "e" / "tensorboard"), size_guidance={"images": 0})
    logs.Reload()
    scalars, images = set(logs.Tags()["scalars"]), set(logs.Tags()["images"])
    assert {"train/loss_seg_src", "train/loss_adv", "train/loss_d1", "lr/g", "lr/d1", "lr/d2",
            "val/miou", "val_iou/road"} <= scalars  # fmt: skip
    assert [e.step for e in logs.Scalars("train/loss_seg_trg")][:2] == [2, 4]
    lr = [e.value for e in logs.Scalars("lr/g")]
    assert lr == sorted(lr, reverse=True) and lr[0] < 0.0025  # the poly schedule
    assert len(images) == 3 and all(t.startswith("val_predictions/") for t in images)
    shot = logs.Images(sorted(images)[0])[-1]
    assert shot.width == 3 * 64 and shot.height == 32  # image | prediction | ground truth
