"""Few-shot splits of Cityscapes train: N labelled images per training city.

A split file lists one image per line, relative to ``leftImg8bit/train/``, in the release's
format ``city/city_XXXXXX_YYYYYY_leftImg8bit.png``. "N-shot" means N images per city: with the
18 training cities, 1-shot is 18 images and 5-shot is 90.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError, say_once
from ..textfiles import read_text
from .cityscapes_files import scan_split
from .common import safe_relative, write_list_file

TRAIN_CITIES = (
    "aachen", "bochum", "bremen", "cologne", "darmstadt", "dusseldorf", "erfurt", "hamburg",
    "hanover", "jena", "krefeld", "monchengladbach", "strasbourg", "stuttgart", "tubingen", "ulm",
    "weimar", "zurich",
)  # fmt: skip
VAL_CITIES = ("frankfurt", "lindau", "munster")
CITIES = {"train": TRAIN_CITIES, "val": VAL_CITIES}
#: the five split files published with the release (MIT; see published_splits/README.md)
PUBLISHED = Path(__file__).parent / "published_splits"

_NAME = re.compile(r"^(?P<city>[a-z]+)/(?P=city)_\d{6}_\d{6}_leftImg8bit\.png$")
FORMAT = "city/city_XXXXXX_YYYYYY_leftImg8bit.png"


@dataclass
class Split:
    """A validated split: the names in file order and the duplicates found (name -> count)."""

    names: list[str]
    duplicates: dict[str, int] = field(default_factory=dict)

    def per_city(self) -> dict[str, int]:
        return dict(Counter(n.split("/", 1)[0] for n in self.names))


def city_images(root: str | os.PathLike, split: str = "train") -> dict[str, list[str]]:
    """Image names of ``split`` grouped by city, each list sorted."""
    groups: dict[str, list[str]] = defaultdict(list)
    for name in scan_split(Path(root), split):
        groups[name.split("/", 1)[0]].append(name)
    return dict(groups)


def draw_split(root: str | os.PathLike, shots: int, seed: int = 0) -> list[str]:
    """Draw ``shots`` images per training city, without replacement, reproducibly per seed.

    Cities are visited in a fixed order and images drawn from each city's sorted list, so the
    same root, shots and seed always give the same split. A city with fewer than ``shots``
    images, or a training city absent from the root, is an error naming it.
    """
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
        raise DataError(f"shots must be a positive integer (images per city), got {shots!r}")
    groups = city_images(root, "train")
    rng = np.random.default_rng(seed)
    names: list[str] = []
    for city in TRAIN_CITIES:
        have = groups.get(city, [])
        if len(have) < shots:
            raise DataError(
                f"{shots}-shot split asks for {shots} images of {city!r} but {root} has "
                f"{len(have)} in leftImg8bit/train/{city}"
            )
        picks = rng.choice(len(have), size=shots, replace=False)
        names.extend(have[i] for i in sorted(picks))
    return names


def write_split(path: str | os.PathLike, names: list[str]) -> Path:
    """Write a split file in the release's format (one name per line, like list files)."""
    return write_list_file(path, names)


def read_split(path: str | os.PathLike) -> list[str]:
    """Read a split file; an empty file or a malformed line is an error naming file and line."""
    path = Path(path)
    lines = read_text(path, "split file", f"lines {FORMAT}").splitlines()
    names = []
    for i, line in enumerate(lines, 1):
        entry = line.strip()
        if not entry:
            continue
        entry = safe_relative(entry, f"split file {path} line {i}")
        if not _NAME.match(entry):
            raise DataError(f"split file {path} line {i}: {entry!r} is not of the form {FORMAT}")
        names.append(entry)
    if not names:
        raise DataError(f"split file {path} is empty; expected one {FORMAT} per line")
    return names


def validate_split(
    names: list[str], root: str | os.PathLike, split: str = "train", where: str = "split"
) -> Split:
    """Check a split against a Cityscapes root: the right cities, every image present.

    Duplicates are not an error (the published 5-shot list has one) but are reported in the
    returned :class:`Split` so the caller can warn.
    """
    root = Path(root)
    cities = CITIES[split]
    base = root / "leftImg8bit" / split
    for name in names:
        city = name.split("/", 1)[0]
        if city not in cities:
            raise DataError(
                f"{where}: {name!r} is from {city!r}, not a Cityscapes {split} city "
                f"({', '.join(cities)})"
            )
    missing = [n for n in dict.fromkeys(names) if not (base / n).is_file()]
    if missing:
        raise DataError(
            f"{where}: {len(missing)} image(s) not found under {base} (first: {missing[0]})"
        )
    dups = {n: c for n, c in Counter(names).items() if c > 1}
    return Split(list(names), dups)


def load_split(
    path: str | os.PathLike,
    root: str | os.PathLike,
    split: str = "train",
    warn: bool = True,
    names: list[str] | None = None,
) -> Split:
    """Read and validate a split file (``names``: its entries, when read already); warns
    (does not fail) on duplicate entries, one line once per file, unless ``warn`` is off (a
    file already announced, such as a run's own split.txt)."""
    names = read_split(path) if names is None else names
    result = validate_split(names, root, split, where=f"split file {path}")
    if result.duplicates and warn:
        listed = ", ".join(f"{n} (x{c})" for n, c in result.duplicates.items())
        say_once(
            f"warning: split file {path} lists some images more than once: {listed} (kept: "
            "each is drawn as often as it is listed)"
        )
    return result


def published_split(shots: int) -> Path | None:
    """The published split file of ``shots`` images per city (1-5); None for other counts."""
    path = PUBLISHED / f"train_{shots}shot.txt"
    return path if path.is_file() else None


def split_shots(names: list[str]) -> int | None:
    """The shots of a split: its entries per city, as listed, when every city it names has
    the same number (the published 5-shot file lists one zurich image twice: 5, as published
    and as trained on), else None."""
    per_city = Counter(name.split("/", 1)[0] for name in names)
    counts = set(per_city.values())
    return counts.pop() if len(counts) == 1 else None


@dataclass
class ChosenSplit:
    """The target shots of a run, how they were chosen (for the run's log) and where from, as
    :func:`split_source` says it (for ``metrics.json``)."""

    names: list[str]
    how: str
    source: str


def choose_split(
    root: str | os.PathLike,
    shots: int,
    split_file: str | os.PathLike | None = None,
    split_seed: int | None = None,
    run_seed: int = 0,
    every: bool = False,
    listed: list[str] | None = None,
) -> ChosenSplit:
    """The target shots of a run: with ``every`` (the oracle), every training image of
    ``root``; the split file when given; else, without ``split_seed``, the published split of
    ``shots`` when ``root`` holds all its images (as published: the 5-shot file's duplicate
    stays, so that image is drawn twice as often); else ``shots`` images per city drawn with
    ``split_seed`` (default: ``run_seed``). ``listed``: the split file's entries, when the
    caller has read it (it is checked here, not read again)."""
    if every:
        names = [n for city in city_images(root).values() for n in city]
        return ChosenSplit(names, f"every training image of {root} ({len(names)})", "all")
    if split_file is not None:
        names = load_split(split_file, root, names=listed).names
        return ChosenSplit(names, f"the split file {split_file}", f"file {Path(split_file).name}")
    names, why = _published_here(root, shots, split_seed)
    if names is not None:
        dups = {n: c for n, c in Counter(names).items() if c > 1}
        note = "".join(
            f"; it lists {n} {c} times, kept as published (drawn {c}x as often)"
            for n, c in dups.items()
        )
        how = f"the published {shots}-shot split ({len(names)} entries{note})"
        return ChosenSplit(names, how, "published")
    seed = run_seed if split_seed is None else split_seed
    names = draw_split(root, shots, seed)
    return ChosenSplit(names, f"{shots} per city drawn with seed {seed}{why}", f"seed {seed}")


def _published_here(
    root: str | os.PathLike, shots: int, split_seed: int | None
) -> tuple[list[str] | None, str]:
    """The published split of ``shots`` when it applies (no ``split_seed``, 1-5 shots) and
    ``root`` holds all its images; else None and why not ("" where it does not apply)."""
    published = published_split(shots) if split_seed is None else None
    if published is None:
        return None, ""
    names = read_split(published)
    base = Path(root) / "leftImg8bit" / "train"
    missing = [n for n in dict.fromkeys(names) if not (base / n).is_file()]
    if not missing:
        return names, ""
    return None, (
        f" (the published {shots}-shot split's images are not in {base}: "
        f"{len(missing)} missing, e.g. {missing[0]})"
    )


def split_source(
    root: str | os.PathLike,
    shots: int,
    split_file: str | os.PathLike | None = None,
    split_seed: int | None = None,
    run_seed: int = 0,
    every: bool = False,
) -> str:
    """Where :func:`choose_split` takes the shots from, as a label tables can group by:
    ``"published"``, ``"seed S"`` (drawn), ``"file NAME"`` or ``"all"`` (``every``)."""
    if every:
        return "all"
    if split_file is not None:
        return f"file {Path(split_file).name}"
    if _published_here(root, shots, split_seed)[0] is not None:
        return "published"
    return f"seed {run_seed if split_seed is None else split_seed}"
