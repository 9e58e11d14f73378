"""The README's and the docs' blocks, run: every Python block (Sybil parses the pages; the
blocks run in order, one namespace a page, at tiny sizes on a toy benchmark), the shell
commands that are cheap (their words, through the program's own entry point in this process,
from a folder laid out like the checkout), and for every shell command, run or not, its
program's ``--help`` names each of its flags.

A command that is not run is listed by name in :data:`NOT_RUN`, with why; a command or a
Python block that is neither run nor listed fails :func:`test_every_block_is_run_or_listed`.
Nothing here is a pytest skip (CI fails on skips: ``PIXDA_NO_SKIPS``)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, SPEC, tiny
from tests.shared import shared

README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]

if not (ROOT / "mkdocs.yml").is_file():  # an installed package without its checkout
    pytest.skip("no mkdocs.yml: not a checkout", allow_module_level=True)


# ------------------------------------------------------------------------ shell commands

#: what a line of an indented code block starts with when it is a command (other indented
#: blocks are file trees, formulas and layouts)
PROGRAMS = re.compile(r"(make|bash|torchrun|\.venv/bin/python|python)\s|\$\w+|\w+=")


def shell_commands(markdown: str) -> list[str]:
    """The shell commands of a page: the lines of its indented code blocks (outside fenced
    ones) that start with a program, continuation lines joined, comments and brackets'
    spacing kept, runs of spaces made one."""
    out, current, in_fence, in_block, blank = [], "", False, False, True
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        if in_fence or line.lstrip().startswith("```"):
            in_block, blank = False, False
            continue
        if line.startswith("    ") and (in_block or blank):
            in_block = True
            text = line.split(" #")[0].strip()
            current = f"{current} {text.rstrip(chr(92)).strip()}".strip()
            if not text.endswith("\\"):
                if PROGRAMS.match(current + " "):
                    out.append(" ".join(current.split()))
                current = ""
        elif line.strip():
            in_block = False
        blank = not line.strip()
    return out


def all_commands() -> dict[str, list[str]]:
    """Every page's shell commands: {command: [pages]}."""
    found: dict[str, list[str]] = {}
    for page in PAGES:
        for command in shell_commands(page.read_text()):
            found.setdefault(command, []).append(page.name)
    return found


def matches(command: str, name: str) -> bool:
    """``command`` is ``name``, or starts with its words (``S=`` names an assignment)."""
    return command == name or command.startswith(name if name.endswith("=") else name + " ")


#: the commands that are not run, by the words they start with, and why
NOT_RUN = {
    "make demo": "minutes of training (tests/e2e/test_demo.py runs it)",
    "make test": "the suite itself",
    "make test-fast": "the suite's unit layer, which this run holds",
    "make lint": "ruff over the checkout, which .ci/run runs before the suite",
    "make lab": "starts JupyterLab, which serves until it is stopped",
    ".venv/bin/python -m pytest": "parts of the suite, which this run holds",
    ".venv/bin/python run.py": "training or evaluation: minutes on the toy, a GPU on the real "
    "data (tests/cli runs run.py's flags at tiny sizes)",
    ".venv/bin/python -m pixda_core pretrain": "trains on the real data, on a GPU",
    ".venv/bin/python -m pixda_core sweep --shots": "a sweep: an hour and more on the toy "
    "(tests/sweep runs sweeps at tiny sizes)",
    ".venv/bin/python -m pixda_core sweep --methods": "a sweep of a plug-in method "
    "(tests/methods/test_plugin.py sweeps add-a-method.md's class at tiny sizes)",
    ".venv/bin/python -m pixda_core sweep --gaps": "a sweep over gaps: hours on the toy "
    "(tests/sweep/test_gap_sweep.py at tiny sizes)",
    ".venv/bin/python -m pixda_core sweep --preset paper": "the real benchmark's sweep, GPUs",
    ".venv/bin/python -m pixda_core sweep --executor slurm": "a SLURM cluster and the real "
    "data (tests/e2e/test_slurm.py runs sweeps on a one-node cluster)",
    ".venv/bin/python -m pixda_core sweep --status /shared/results/gta5_sweep": "the SLURM "
    "sweep's folder",
    ".venv/bin/python -m pixda_core sweep --collect /shared/results/gta5_sweep": "the SLURM "
    "sweep's folder",
    ".venv/bin/python -m pixda_core sweep --collect results/toy_sweep": "notebook 04 over the "
    "sweep: half a minute (tests/sweep/test_collect.py runs sweep --collect on a toy sweep; "
    "statistics.md's Python block, run here, reads one)",
    ".venv/bin/python benchmarks/step.py": "a timing benchmark",
    ".venv/bin/python -m pixda_core bench": "steps of every method timed: a minute "
    "(tests/sweep/test_plan.py runs pixda bench on one method, one step)",
    "bash benchmarks/gpu_check.sh": "a GPU",
    "torchrun": "several training processes (tests/e2e/test_torchrun.py)",
    "JOBS=2 bash benchmarks/toy_table.sh": "the whole toy table and its gap sweeps: hours "
    "(tests/sweep/test_gap_sweep.py runs a gap sweep and the two scripts at tiny sizes)",
}

#: the commands that are run, by the words they start with (the test that runs them)
RUN = {
    ".venv/bin/python data_prep/check_dataset.py": "test_the_data_commands_run",
    ".venv/bin/python data_prep/make_cache.py": "test_the_data_commands_run",
}

#: the real datasets' folders in the docs, and what stands for them where commands and blocks
#: run: the toy benchmark, in the same layouts (longest first)
REAL_DATA = {
    "/data/GTA5_1024": "data/cache/gta5",
    "/data/cityscapes_1024": "data/cache/cityscapes",
    "/data/GTA5": "data/toy/gta5",
    "/data/RAND_CITYSCAPES": "data/toy/synthia",
    "/data/cityscapes": "data/toy/cityscapes",
}


def on_the_toy(text: str) -> str:
    for real, toy in REAL_DATA.items():
        text = text.replace(real, toy)
    return text


def named(commands, name: str) -> list[str]:
    return [c for c in commands if matches(c, name)]


# ------------------------------------------------------------------------ Python blocks


def python_blocks(page: Path):
    """The page's Python blocks as Sybil examples (one namespace for the page)."""
    from sybil import Document
    from sybil.parsers.markdown import CodeBlockParser

    return list(Document.parse(str(page), CodeBlockParser("python", evaluator=_evaluate)))


def _evaluate(example) -> None:
    """Sybil's evaluator, with the page's shrinking (``__shrink__`` in its namespace) applied
    to the block first; tracebacks name the page's lines."""
    source = str(example.parsed)
    for old, new in example.namespace.get("__shrink__", []):
        source = source.replace(old, new)
    example.namespace.setdefault("__ran__", []).append(example.line)
    padding = "\n" * (example.line + example.parsed.line_offset)
    exec(compile(padding + source, example.path, "exec", dont_inherit=True), example.namespace)


#: how each page's Python blocks are run: its layer, and the text replaced in its blocks to run
#: them at tiny sizes (each must still be there) besides :data:`REAL_DATA`
SHRINK = {
    "python.md": ("data", []),
    "method.md": ("data", [('backbone="resnet101"', 'backbone="resnet18"')]),
    # the toy preset shrunk to seconds (tests.helpers.tiny: 64x32, a few steps)
    "training.md": ("training", [('preset("toy")', "TINY_TOY")]),
    "add-a-method.md": ("training", [('preset("toy")', "TINY_TOY")]),
    "statistics.md": ("notebooks", []),
}


@pytest.fixture(scope="session")
def doc_toy(tmp_path_factory) -> Path:
    """The toy benchmark the docs' blocks run on: the suite's tiny toy with five target images
    per city (the docs adapt with 5 shots); built once for the run, read-only."""
    from pixda_core.data import toy

    spec = dataclasses.replace(SPEC, train_per_city=5)
    build = lambda f: str(toy.generate(f / "toy", spec, progress=False))  # noqa: E731
    return shared(tmp_path_factory, "doc-toy", build)[0] / "toy"


@pytest.fixture
def checkout(tmp_path, doc_toy, monkeypatch) -> Path:
    """A folder laid out like the checkout, where the docs' relative paths lead: ``data_prep/``
    and ``data/toy`` (the docs' toy) are links; the working folder and ``$PIXDA_HOME`` of what
    runs here, so that what the blocks write lands in it."""
    home = tmp_path / "checkout"
    (home / "data").mkdir(parents=True)
    (home / "data_prep").symlink_to(ROOT / "data_prep")
    (home / "data" / "toy").symlink_to(doc_toy)
    monkeypatch.chdir(home)
    monkeypatch.setenv("PIXDA_HOME", str(home))
    return home


def run(command: str, capsys) -> str:
    """``.venv/bin/python PROGRAM ARGS`` run in this process (the same entry point, without
    starting Python and torch again: a few seconds a command on the 2-core machine), on the
    toy (:data:`REAL_DATA`): what it printed; a non-zero exit fails."""
    words = shlex.split(on_the_toy(command))
    assert words[0] == ".venv/bin/python", command
    capsys.readouterr()
    argv, code = sys.argv, 0
    try:
        if words[1:3] == ["-m", "pixda_core"]:
            from pixda_core.cli import main

            code = main(words[3:])
        else:
            sys.argv = words[1:]
            runpy.run_path(words[1], run_name="__main__")
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv = argv
    out = capsys.readouterr()
    assert code in (0, None), f"{command}: exit {code}\n{out.out[-3000:]}{out.err[-3000:]}"
    return out.out + out.err


# ------------------------------------------------------------------------ the tests


@pytest.mark.unit
def test_every_block_is_run_or_listed():
    """Each shell command is run or listed as not run (by its first words), each name in the
    lists still names a command, and each page with Python blocks is run."""
    commands = all_commands()
    names = [*RUN, *NOT_RUN]
    unlisted = [c for c in commands if not any(matches(c, n) for n in names)]
    assert not unlisted, f"shell commands in the docs neither run nor in NOT_RUN: {unlisted}"
    twice = [c for c in commands if sum(matches(c, n) for n in names) > 1]
    assert not twice, f"commands under two names: {twice}"
    stale = [n for n in names if not named(commands, n)]
    assert not stale, f"names in RUN / NOT_RUN that no page's command starts with: {stale}"
    tests = {t for why in NOT_RUN.values() for t in re.findall(r"tests/[\w/]+(?:\.py)?", why)}
    assert all((ROOT / t).exists() for t in tests), f"NOT_RUN names tests that are gone: {tests}"
    pages = {p.name for p in PAGES if python_blocks(p)}
    assert pages == set(SHRINK), f"pages with Python blocks: {sorted(pages)}; SHRINK: {SHRINK}"


@pytest.mark.unit
def test_every_command_of_the_readme_is_in_the_docs():
    shown = {c for page in DOCS.glob("*.md") for c in shell_commands(page.read_text())}
    lost = [c for c in shell_commands(README.read_text()) if c not in shown]
    assert not lost, f"commands in the README that no docs page shows: {lost}"


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _programs_help(words: list[str]) -> tuple[str, list[str]]:
    """(the help of the program a command runs, the command's words that go to it)."""
    if words[0] == "torchrun":
        from torch.distributed.run import get_args_parser

        return get_args_parser().format_help() + _help(["run.py"]), words[1:]
    if words[0] == ".venv/bin/python":
        words = words[1:]
    if words[:2] == ["-m", "pixda_core"]:
        return _help(words[:3]), words[3:]
    return _help(words[:1]), words[1:]


def _help(program: list[str]) -> str:
    """``program --help``'s text, run in this process (as ``python program --help``)."""
    out, argv = io.StringIO(), sys.argv
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            if program[0] == "-m":
                from pixda_core.cli import main

                main([*program[2:], "--help"])
            else:
                sys.argv = [program[0], "--help"]
                runpy.run_path(str(ROOT / program[0]), run_name="__main__")
    finally:
        sys.argv = argv
    return out.getvalue()


@pytest.mark.unit
def test_every_flag_of_the_docs_commands_exists():
    """For every command of the docs, run or not: its program exists, and its ``--help``
    names each of its flags (placeholders such as ``...same flags...`` left out)."""
    commands = all_commands()
    defined = {}
    targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M)
    wrong = []
    for command in commands:
        for name, value in defined.items():
            command = command.replace(f"${name}", value)
        if m := re.match(r"(\w+)=\"(.*)\"$", command):
            defined[m[1]] = m[2]
            continue
        words = shlex.split(command)
        while re.match(r"\w+=", words[0]):  # JOBS=2 bash ...: the environment, then the program
            words = words[1:]
        if words[0] == "make":
            wrong += [f"{command}: no make target {words[1]}"] * (words[1] not in targets)
            continue
        if words[0] == "bash":
            wrong += [f"{command}: no {words[1]}"] * (not (ROOT / words[1]).is_file())
            continue
        if words[1:3] == ["-m", "pytest"]:
            continue  # pytest's own flags; its paths and markers below
        text, args = _programs_help(words)
        assert "usage" in text.lower(), f"{command}: no --help ({text[:300]})"
        flags = {f.strip("[].,") for f in args if f.startswith("--") or f.startswith("[--")}
        missing = sorted(f for f in flags if f not in re.findall(r"--[\w-]+", text))
        wrong += [f"{command}: {', '.join(missing)} not in its --help"] * bool(missing)
    markers = {m.split(":")[0] for m in _pyproject()["tool"]["pytest"]["ini_options"]["markers"]}
    for command in named(commands, ".venv/bin/python -m pytest"):
        words = shlex.split(command)[3:]
        for before, word in zip(["", *words], words, strict=False):
            if before == "-m":
                unknown = set(re.findall(r"\w+", word)) - markers - {"and", "or", "not"}
                wrong += [f"{command}: no marker {sorted(unknown)}"] * bool(unknown)
            elif "/" in word:
                wrong += [f"{command}: no {word}"] * (not (ROOT / word).exists())
    assert not wrong, "\n".join(wrong)


@pytest.mark.data
def test_the_data_commands_run(checkout, capsys):
    """real-benchmark.md's checks and caches, on the toy in the real layouts (its /data folders
    are the toy's, :data:`REAL_DATA`)."""
    commands = all_commands()
    for name in (n for n, test in RUN.items() if test == "test_the_data_commands_run"):
        for command in named(commands, name):
            run(command, capsys)
    for cache in ("gta5/labels", "cityscapes/gtFine/val"):
        assert any((checkout / "data" / "cache" / cache).rglob("*.png")), cache


def _python_page(name: str):
    layer, _ = SHRINK[name]
    return pytest.param(name, marks=getattr(pytest.mark, layer), id=name)


@pytest.mark.parametrize("name", [_python_page(n) for n in SHRINK])
def test_the_python_blocks_run(name, checkout, request):
    """A page's Python blocks, in order, in one namespace, at tiny sizes (:data:`SHRINK`), on
    the toy (:data:`REAL_DATA`), from the checkout-like folder."""
    page = DOCS / name
    examples = python_blocks(page)
    assert examples, f"{name} has no Python block"
    sources = "\n".join(str(e.parsed) for e in examples)
    stale = [old for old, _ in SHRINK[name][1] if old not in sources]
    assert not stale, f"{name}'s blocks no longer hold {stale}: update SHRINK"
    namespace = examples[0].namespace
    namespace["__shrink__"] = [*SHRINK[name][1], *REAL_DATA.items()]
    SETUP[name](checkout, namespace, request)
    for example in examples:
        example.evaluate()
    assert len(namespace["__ran__"]) == len(examples)
    CHECK.get(name, lambda ns: None)(namespace)


def _setup_method(home: Path, namespace: dict, request) -> None:
    """An init file where the block loads one: torchvision ResNet-18 weights (random)."""
    import torch
    import torchvision

    torch.save(torchvision.models.resnet18().state_dict(), "DeepLab_resnet_pretrained_init.pth")


def _setup_training(home: Path, namespace: dict, request) -> None:
    """The toy preset at 64x32, a few steps: PixDA's adaptation a pass over the 8 source
    images (4 steps) and one more, so that it selects once, then one distillation step."""
    namespace["TINY_TOY"] = tiny(
        home / "data" / "toy", home / "results",
        pretrain={"early_stop": 4}, adapt={"early_stop": 5}, method={"kd_steps": 1},
    )  # fmt: skip


def _setup_statistics(home: Path, namespace: dict, request) -> None:
    folder, _ = request.getfixturevalue("sweep")  # read only: load_runs
    (home / "results").mkdir()
    (home / "results" / "toy_sweep").symlink_to(folder)


SETUP = {
    "python.md": lambda home, namespace, request: None,
    "method.md": _setup_method,
    "training.md": _setup_training,
    "add-a-method.md": _setup_training,
    "statistics.md": _setup_statistics,
}


def _check_python(ns: dict) -> None:
    assert tuple(ns["item"]["image"].shape) == (3, 512, 1024)
    assert tuple(ns["item"]["label"].shape) == (512, 1024)
    assert len(ns["target"]) == 18  # one shot per training city


def _check_training(ns: dict) -> None:
    assert 0 <= ns["metrics"]["miou"] <= 1


def _check_method(ns: dict) -> None:
    assert ns["metrics"]["method"] == "entropy_min" and 0 <= ns["metrics"]["miou"] <= 1
    history = (Path(ns["cfg"].run.out_dir) / ns["cfg"].run.name / "history.csv").read_text()
    assert "loss_ent" in history.splitlines()[0]


CHECK = {"python.md": _check_python, "training.md": _check_training,
         "add-a-method.md": _check_method}  # fmt: skip
