"""What the numbered notebooks call: notebook parameters -> config, data roots, previews.

Relative paths in notebook parameters and sweep options are taken from one base folder
(:func:`base_dir`), not from the notebook's working folder, so ``data/toy`` means the same in
JupyterLab, under papermill and in a terminal: the checkout when the kit runs from one (an
editable install, the working folder inside it), else the folder the user works in
(``$PIXDA_HOME`` when set, else the current folder). The toy benchmark is generated when the
default toy root is missing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import torch

from .config import Config
from .errors import ConfigError, DataError, PixdaError, user_message
from .paths import CHECKOUT, PACKAGE, base_dir, notebooks_dir, resolve  # noqa: F401 (the kit's)

# (the notebooks': their parameters as one run, its roots and config)
from .runspec import SOURCE_DIRS, Roots, RunSpec, data_roots, make_config  # noqa: F401


def setup_notebook() -> None:
    """Called by each notebook's setup cell: in IPython (JupyterLab, papermill), the kit's own
    user errors (:class:`~pixda_core.errors.PixdaError`: a bad parameter, a missing folder, a
    damaged file) show as the command line shows them, ``error: <message naming the fix>``,
    without a traceback; any other exception (a bug) keeps its traceback. The cell still
    fails: an error output with the error's name and message, so Run All stops there and
    papermill (sweeps, the demo) reports the notebook as failed with that one line."""
    try:
        from IPython import get_ipython
    except ImportError:  # a plain Python process: nothing to set up
        return
    shell = get_ipython()
    if shell is None:
        return

    def one_line(shell, etype, value, tb, tb_offset=None):
        stb = [f"\x1b[0;31merror: {user_message(value)}\x1b[0m"]
        shell._showtraceback(etype, value, stb)  # the kernel sends it as the cell's error
        return stb

    shell.set_custom_exc((PixdaError,), one_line)


def analysis_runs(runs, setting: str | None = None):
    """Notebook 04's runs: :func:`pixda_core.analysis.load_runs` over ``runs`` (run folders or
    folders of run folders, relative ones from :func:`base_dir`), one ``setting`` of them
    when given (:func:`pixda_core.analysis.choose_setting`). Nothing there: an error naming
    where it looked and the two ways to make runs."""
    from .analysis import choose_setting, find_runs, load_runs

    folders = [resolve(r) for r in runs]
    missing = [f for f in folders if not f.is_dir()]
    if missing or not find_runs(folders):
        where = ", ".join(str(f) + (" (no such folder)" if f in missing else "") for f in folders)
        raise DataError(
            f"no finished runs under {where}: make one with notebook 03, or a grid with "
            "`pixda sweep` (`make demo` runs a small one), or set runs to your run folders"
        )
    return choose_setting(load_runs(folders), setting)


def copy_notebooks(dest: str | os.PathLike, force: bool = False) -> list[Path]:
    """Copy the numbered notebooks into ``dest`` (a folder of the user's, to explore and
    edit); an existing copy is kept unless ``force``."""
    dest = resolve(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for nb in sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb")):
        target = dest / nb.name
        if target.exists() and not force:
            if _code(target) != _code(nb):
                print(f"kept {target}: its code differs from the kit's (--force replaces it)")
            continue
        shutil.copyfile(nb, target)
        written.append(target)
    return written


def _code(path: Path) -> list[str] | None:
    """A notebook's code cells, what decides whether a user's copy is still the kit's."""
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return [c.source for c in nb.cells if c.cell_type == "code"]


#: notebook 04's list parameters: the type of their items and the words they take instead
LIST_PARAMETERS = {
    "runs": ((str, os.PathLike), "run folders or folders of run folders", ()),
    "classes": ((str,), "class names", ()),
    "error_images": ((int,), "val image indices", ("differ",)),
}


def list_parameters(**given) -> tuple:
    """A notebook's list parameters as lists, in the order given: a list (or tuple) of items
    as it is; one item (papermill's ``-p`` passes a string, or a number) as a one-item list;
    a word it takes instead (``error_images = "differ"``) as it is. Anything else stops the
    notebook, naming the parameter and what it takes (:data:`LIST_PARAMETERS`)."""
    out = []
    for name, value in given.items():
        kinds, what, words = LIST_PARAMETERS[name]
        if isinstance(value, str) and value in words:
            out.append(value)
            continue
        items = list(value) if isinstance(value, list | tuple) else [value]
        bad = [v for v in items if not isinstance(v, kinds) or isinstance(v, bool)]
        if bad:
            also = "".join(f" or {w!r}" for w in words)
            raise ConfigError(
                f"notebook parameter {name} = {value!r}: expected a list of {what} (one alone "
                f"is taken as a list of one){also}; {bad[0]!r} is a {type(bad[0]).__name__}"
            )
        out.append(items)
    return tuple(out)


def check_roots(roots: Roots) -> None:
    """Run the data_prep checker on both roots; print each summary; stop on problems."""
    from .data.prep import check_dataset
    from .errors import DataError

    for kind, root in ((roots.kind, roots.source), ("cityscapes", roots.target)):
        report = check_dataset(kind, root, progress=False)
        print(report.summary())
        if not report.ok:
            raise DataError(f"{root} failed its check; see the problems above")


def split_table(names: list[str]):
    """Images per training city of a split, with the file names (a DataFrame)."""
    import pandas as pd

    frame = pd.DataFrame(
        {"city": [n.split("/", 1)[0] for n in names], "image": [n.split("/", 1)[1] for n in names]}
    )
    return (
        frame.groupby("city", sort=False)["image"]
        .agg(["count", ", ".join])
        .rename(columns={"join": "images"})
    )


def class_statistics(roots: Roots):
    """Share of labelled pixels per class in the source set and the Cityscapes train set
    (long format: class, domain, pixels, share, images)."""
    import pandas as pd

    from .data.prep import class_frequencies, label_histograms, scan_layout

    frames = []
    domains = (
        (f"{roots.kind.upper()} (source)", roots.kind, roots.source),
        ("Cityscapes train (target)", "cityscapes", roots.target),
    )
    for title, kind, root in domains:
        layout = scan_layout(kind, root)
        samples = [
            s for g, ss in layout.groups.items() if g.startswith(("all", "train")) for s in ss
        ]
        hists = label_histograms(kind, samples, progress=False)
        frames.append(class_frequencies(hists).assign(domain=title))
    return pd.concat(frames, ignore_index=True)


def sample_rows(roots: Roots, n: int = 2):
    """(title, image, trainIds) rows of source and target train images for a mosaic."""
    from .data import GTA5, Cityscapes, Synthia

    source = (GTA5 if roots.kind == "gta5" else Synthia)(roots.source, size=None)
    target = Cityscapes(roots.target, "train", size=None)
    rows = []
    for title, ds in ((roots.kind.upper(), source), ("Cityscapes", target)):
        for i in range(n):
            item = ds[(i * 7) % len(ds)]
            rows.append(
                (
                    f"{title}\n{Path(item['name']).name[:24]}",
                    as_uint8_image(item["image"]),
                    item["label"].numpy(),
                )
            )
    return rows


def run_title(cfg: Config) -> str:
    """A run in words: "PixDA, 1-shot, seed 0"; "oracle, every target image, seed 0"."""
    from .methods import method_class

    method = method_class(cfg.method.name)
    shots = "every target image" if method.all_target else f"{cfg.data.num_shots}-shot"
    return f"{method.title}, {shots}, seed {cfg.run.seed}"


def at_gap(runs, gap: float | None = None):
    """The runs of one gap of a sweep over the toy's domain gap: ``gap``, else 1 (the toy's
    default) when it ran, else the largest; said in one line. Runs of one benchmark (or
    without a gap) are returned as they are."""
    gaps = sorted(runs["gap"].dropna().unique()) if "gap" in runs else []
    if len(gaps) < 2:
        return runs
    if gap is None:
        gap = 1.0 if 1.0 in gaps else gaps[-1]
    elif gap not in gaps:
        raise ConfigError(f"gap {gap!r}: the runs have gaps {', '.join(f'{g:g}' for g in gaps)}")
    print(f"the per-class analysis below uses the runs at gap {gap:g} (of {len(gaps)} gaps)")
    return runs[runs["gap"] == gap].reset_index(drop=True)


def fda_preview(roots: Roots, n: int = 3, beta: float = 0.01, size=(512, 256)):
    """``n`` (source, target, source in target style) triples, uint8 RGB, for a figure."""
    from .data import GTA5, Cityscapes, Synthia
    from .data.fda import fda_source_to_target

    src_ds = (GTA5 if roots.kind == "gta5" else Synthia)(roots.source, size=size)
    trg_ds = Cityscapes(roots.target, "train", size=size)
    rows = []
    for i in range(n):
        s = src_ds[(i * 37) % len(src_ds)]["image"]
        t = trg_ds[(i * 11) % len(trg_ds)]["image"]
        styled = fda_source_to_target(s[None], t[None], beta)[0]
        rows.append(tuple(as_uint8_image(x) for x in (s, t, styled)))
    return rows


def as_uint8_image(x: torch.Tensor) -> np.ndarray:
    """A dataset's (3, H, W) float RGB 0-255 image as (H, W, 3) uint8 for figures."""
    return x.clamp(0, 255).round().byte().permute(1, 2, 0).numpy()


def pick_runs(runs, shots: int | None = None, quiet: bool = False) -> dict[str, Path]:
    """One run folder per method for error maps and confusion matrices, like for like: the
    largest shot count every adapted method ran (or ``shots``), the lowest (seed, split) they
    all ran, source-only whatever its shots. What could not be matched is printed (unless
    ``quiet``). ``runs``: :func:`analysis.load_runs` frame."""
    import pandas as pd

    from .analysis import choose_setting, seed_split, settings_table
    from .methods import REFERENCES, TITLES

    notes = []
    listed = settings_table(runs)
    if len(listed) > 1:  # like for like: the setting with the most few-shot runs
        top = listed.sort_values("runs", ascending=False, kind="stable").iloc[0]
        runs = choose_setting(runs, top["setting"])
        notes.append(f"runs of {len(listed)} settings: only those of {top['label']} "
                     f"(setting {top['setting']})")  # fmt: skip
    runs = runs.reset_index(drop=True)  # one label per run: keys are looked up by it
    sources = runs["source"].value_counts() if "source" in runs else pd.Series(dtype=int)
    if len(sources) > 1:
        runs = runs[runs["source"] == sources.index[0]]
        notes.append(f"runs of several sources: only {sources.index[0]}'s ({sources.iloc[0]})")
    adapted = runs[~runs["method"].isin(REFERENCES)]  # the oracle has no shot count to match
    per_method = {m: set(g["shots"]) for m, g in adapted.groupby("method", sort=False)}
    common = set.intersection(*per_method.values()) if per_method else set()
    if shots is None and per_method:
        if common:
            shots = max(common)
        else:
            notes.append(
                "no shot count is common to all methods: each shown at its largest ("
                + ", ".join(f"{TITLES.get(m, m)} {max(s)}" for m, s in per_method.items())
                + ")"
            )
    elif shots is not None:
        lacking = [TITLES.get(m, m) for m, s in per_method.items() if shots not in s]
        if lacking:
            notes.append(f"{', '.join(lacking)}: no {shots}-shot run; left out")

    groups = {}
    for method, group in runs.groupby("method", sort=False):
        if method not in REFERENCES:
            group = group[group["shots"] == (shots if shots is not None else group["shots"].max())]
        if len(group):
            groups[method] = group
    keys = seed_split(runs)
    keysets = [set(keys[g.index]) for m, g in groups.items() if m != "source_only"]
    shared = set.intersection(*keysets) if keysets else set()
    if keysets and not shared:
        notes.append("the methods share no (seed, split): each shown with its lowest seed")
    chosen: dict[str, Path] = {}
    for method, group in groups.items():
        mine = group[keys[group.index].isin(shared)] if method != "source_only" else group
        pool = mine if len(mine) else group
        row = pool.loc[min(pool.index, key=keys.__getitem__)]  # the lowest (seed, split)
        label = TITLES.get(method, method)
        if method not in REFERENCES:
            label += f" {row['shots']}-shot"
        chosen[label] = Path(row["path"])
    if not chosen:
        raise ConfigError("no run to show: " + ("; ".join(notes) or "no runs given"))
    if notes and not quiet:
        print("pick_runs: " + "; ".join(notes))
    return chosen
