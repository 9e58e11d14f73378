"""How fast the data pipeline feeds training: GTA5-size pairs to 1024x512 tensors.

    python benchmarks/loader.py --images 64 --workers 0 1 2
    python benchmarks/loader.py --root /data/GTA5 --images 400 --workers 4 8 16

Reads pairs with the kit's GTA5 loader (decode, bicubic resize of the image, nearest resize of
the label, trainId lookup) through a DataLoader of batch 4, once from the original PNGs and
once from the data_prep cache (pre-resized to the training size), for each worker count, and
prints images/s (after the first batch, so worker start-up is left out). Without ``--root``
it writes GTA5-size toy scenes (1914x1052) to a temporary folder first. A 0.1 s PixDA step
eats 40 source images/s (batch 4, plus 4 target images from a small, cached split).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from torch.utils.data import DataLoader, Subset

from pixda_core.data import GTA5, toy
from pixda_core.data.prep import write_cache


def rate(root: Path, size, n: int, workers: int, batch: int = 4) -> float:
    ds = Subset(GTA5(root, size=size), range(n))
    loader = DataLoader(ds, batch_size=batch, num_workers=workers)
    it = iter(loader)
    next(it)  # workers started, first batch in
    t0 = time.perf_counter()
    seen = sum(len(b["name"]) for b in it)
    return seen / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", help="a GTA5 root (default: GTA5-size toy scenes, written now)")
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--size", default="1024,512", help="training size W,H")
    args = p.parse_args(argv)
    size = tuple(int(x) for x in args.size.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.root:
            root = Path(args.root)
        else:
            spec = toy.ToySpec(
                size=(2048, 1024),
                num_gta5=args.images,
                num_synthia=0,
                train_per_city=0,
                val_per_city=0,
            )
            root = toy.generate(tmp / "toy", spec, progress=False) / "gta5"
        n = min(args.images, len(GTA5(root, size=None)))
        t0 = time.perf_counter()
        cache = write_cache("gta5", root, tmp / "cache", size=size, progress=False)
        cache_s = time.perf_counter() - t0
        print(
            f"{n} GTA5 pairs from {root} -> {size[0]}x{size[1]}; cache written in "
            f"{cache_s:.1f} s ({n / cache_s:.1f} pairs/s)"
        )
        print("\n| source | workers | images/s |\n|---|---|---|")
        for label, where in (("original PNGs", root), ("data_prep cache", cache)):
            for w in args.workers:
                print(f"| {label} | {w} | {rate(where, size, n, w):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
