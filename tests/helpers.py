"""The suite's one helpers module: how to shrink a run (``TINY`` for notebooks and sweeps,
:func:`tiny` for a :class:`Config`, :func:`release_args` for ``run.py``'s flags), how to call
the command line in-process and check what the user sees, and hand-made run tables."""

from __future__ import annotations

import fcntl
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from PIL import Image

from pixda_core.analysis import load_runs, summary_table
from pixda_core.config import Config, preset
from pixda_core.data import toy
from pixda_core.errors import PixdaError
from pixda_core.labels import CLASS_NAMES

#: the repository's root (a checkout: the suite runs from one)
ROOT = Path(__file__).resolve().parents[1]


def release_args(toy: Path, out: Path, name: str = "e") -> list[str]:
    """run.py's flags for a run of a few seconds on the toy benchmark (64x32, batch 2)."""
    return [
        "--source_dataset", "gta5", "--source_dataroot", str(toy / "gta5"),
        "--target_dataset", "cityscapes", "--target_dataroot", str(toy / "cityscapes"),
        "--name", name, "--preset", "toy", "--checkpoints_dir", str(out),
        "--crop_size", "64,32", "--batch_size", "2", "--max_iters", "20", "--early_stop", "2",
        "--kd_steps", "1", "--set", "data.val_batch_size=6", "--set", "run.keep_checkpoints=1",
        "--set", "run.ckpt_every=2", "--quiet",
    ]  # fmt: skip


def cli(capsys, *argv) -> tuple[int, str]:
    """Run ``run.py``'s entry point in this process: (exit code, what it printed to stderr).
    The entry point is what ``python run.py`` calls, so the exit code and the output are the
    user's (argparse's own errors exit through SystemExit)."""
    from pixda_core.train.cli import run_main

    capsys.readouterr()
    try:
        code = run_main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def train(capsys, toy: Path, out: Path, weights=None, *extra, name: str = "e"):
    """``run.py --is_train`` on the toy (:func:`release_args`), ``--restore_from weights`` when
    given: (exit code, stderr)."""
    argv = [*release_args(toy, out, name), "--is_train"]
    if weights is not None:
        argv += ["--restore_from", weights]
    return cli(capsys, *argv, *extra)


def assert_user_error(code: int, err: str, *words) -> None:
    """Exit code 2, no traceback, and the message names each of ``words``."""
    assert code == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert "error: " in err
    for w in words:
        assert str(w) in err, f"{w!r} not in: {err[-2000:]}"


#: overrides that shrink the toy preset for notebook and sweep tests
TINY = {
    "data": {"size": [64, 32], "val_size": [64, 32], "val_batch_size": 6},
    "pretrain": {"batch_size": 2},
    "adapt": {"batch_size": 2},
    "method": {"kd_steps": 2},
    "run": {"keep_checkpoints": 1},  # ~150 MB each: keep the disk use low
}


#: bounded and reproducible: a few seconds a test, the same examples in every run
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip


#: text that looks like what the readers expect, broken in the ways files get broken
LINES = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "aachen/aachen_000000_000019_leftImg8bit.png",
                "",
                "  ",
                "../x.png",
                "/abs/path.png",
                "a/b/c.png",
                "{",
                "miou: 1",
                "run:",
                "  name: x",
                "  seed: 2001-02-30",
                "x: !!int abc",
                "[" * 3000,
                "{" * 3000,
                '{"miou": 1}',
                "name,method,shots,seed,job_id",
                "\ufeff",
                "\x00",
            ]
        ),
        st.text(max_size=40),
    ),  # fmt: skip
    max_size=8,
)


CONTENT = st.one_of(
    st.binary(max_size=200),
    LINES.map(lambda lines: "\n".join(lines).encode()),
    LINES.map(lambda lines: "\r\n".join(lines).encode("utf-8-sig")),
)


def one_line_error(exc: Exception, path: Path) -> None:
    message = str(exc)
    assert str(path) in message, message
    assert "\n" not in message.strip(), message


def read_each(read, content: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(content)
        try:
            read(path)
        except PixdaError as exc:
            one_line_error(exc, path)


def hold_lock(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    fh = open(folder / ".lock", "a")
    fcntl.flock(fh, fcntl.LOCK_EX)
    return fh


def corrupt(path) -> None:
    path.write_bytes(path.read_bytes()[:300])


def runs_with_classes(zero="wall", absent="train") -> pd.DataFrame:
    """Three seeds of FT and PixDA at 1 shot and a source-only run; every class scores the
    run's mIoU except ``zero`` (0 in every run) and ``absent`` (NaN: not in the val set)."""
    rows = [("source_only", 0, 0, None, 30.0)]
    rows += [("finetune", 1, s, "published", v) for s, v in enumerate(FT_1)]
    rows += [("pixda", 1, s, "published", v) for s, v in enumerate(PIXDA_1)]
    runs = runs_frame(rows).assign(source="gta5")
    runs["path"] = ["/runs/" + r for r in runs["run"]]
    for c in CLASS_NAMES:
        runs[f"iou_{c}"] = 0.0 if c == zero else np.nan if c == absent else runs["miou"]
    return runs


def runs_frame(rows) -> pd.DataFrame:
    """A :func:`analysis.load_runs`-like frame from (method, shots, seed, split, mIoU %)."""
    frame = pd.DataFrame(rows, columns=["method", "shots", "seed", "split", "miou"])
    frame["miou"] /= 100
    frame["run"] = [
        f"{m}_{n}shot_seed{s}" for m, n, s in frame[["method", "shots", "seed"]].values
    ]
    return frame


FT_1 = [40.0, 46.0, 43.0]


PIXDA_1 = [45.0, 52.0, 50.0]  # FT + 5, 6, 7: significant


def png_size(path: Path) -> tuple[int, int]:
    assert path.stat().st_size > 5_000, path
    with Image.open(path) as im:
        return im.size


def per_city(toy: Path, k: int) -> list[str]:
    """k target train images of every city of the toy benchmark."""
    base = toy / "cityscapes" / "leftImg8bit" / "train"
    cities = defaultdict(list)
    for p in sorted(base.glob("*/*.png")):
        cities[p.parent.name].append(f"{p.parent.name}/{p.name}")
    return [n for names in cities.values() for n in names[:k]]


SHOT = "jena/jena_000001_000019_leftImg8bit.png"


OTHER = "aachen/aachen_000000_000019_leftImg8bit.png"


#: the grid of conftest's session sweep (the demo's, at the suite's sizes): source-only, then
#: FT and PixDA at 1 and 2 shots. The test benchmark's pass over its 8 source images is 4 steps
#: at TINY's batch 2: PixDA selects at step 4, then trains one step more (as the demo: 75
#: steps, a round, 5 more), then distils for 2 steps
GRID = dict(shots=(1, 2), methods=("source_only", "finetune", "pixda"), seeds=(0,),
            iterations=5, pretrain_iterations=6)  # fmt: skip


def grid_results(out: Path, shots=None) -> pd.DataFrame:
    """A sweep folder's summary rows (the runs on disk, read back), sorted; with ``shots``, the
    source-only model's row and the runs at those shot counts only."""
    runs = load_runs(out)
    if shots is not None:
        runs = runs[runs["shots"].isin([0, *shots])]
    table = summary_table(runs).drop(columns=["device", "wall_s", "step_s", "peak_memory_gb"])
    return table.sort_values(["method", "shots"]).reset_index(drop=True)  # (results, not times)


def toy_preset(**method):
    return preset("toy").override(data={"size": [64, 32]}, method=method, run={"seed": 3})


def tiny(toy_root: Path, out: Path, **sections) -> Config:
    """The toy preset shrunk to seconds: 64x32 images, batch 2, a handful of steps."""
    data = {
        "preset": "toy",
        "data": {"source_root": str(toy_root / "gta5"),
                 "target_root": str(toy_root / "cityscapes"),
                 "size": [64, 32], "val_size": [64, 32], "val_batch_size": 6},
        "pretrain": {"batch_size": 2, "max_iters": 40, "early_stop": 8, "lr": 1e-3},
        "adapt": {"batch_size": 2, "max_iters": 40, "early_stop": 6, "lr": 1e-3},
        "method": {"kd_steps": 3},
        # checkpoints (~100 MB each) at the end of a phase, on a stop and at the end only:
        # a test of resuming from an earlier step asks for them (run={"ckpt_every": N})
        "run": {"out_dir": str(out), "progress": False, "log_every": 2, "ckpt_every": 1000,
                "seed": 5, "keep_checkpoints": 1},
    }  # fmt: skip
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return Config.from_dict(data)


SPEC = toy.ToySpec(
    seed=3, size=(96, 48), num_gta5=8, num_synthia=8, train_per_city=3, val_per_city=2
)


def take_source_only(sweep: Path, out: Path) -> None:
    """Put the source-only models of the finished sweep ``sweep`` into the sweep folder ``out``
    under the names a sweep in ``out`` gives them (the name's hash covers the output folder),
    so that a sweep there with the same settings finds them trained. Checkpoints are hard
    links (written by rename, never changed in place)."""
    import os
    import shutil

    from pixda_core.train.start import source_only_run

    def copy(a, b):
        return os.link(a, b) if a.endswith(".pt") else shutil.copy2(a, b)

    out.mkdir(parents=True, exist_ok=True)
    for old in sorted(Path(sweep).glob("source_only_*")):
        cfg = Config.from_yaml(old / "config.yaml").override(run={"out_dir": str(out)})
        shutil.copytree(old, out / source_only_run(cfg).run.name, copy_function=copy)
