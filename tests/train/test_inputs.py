"""A run's data (pixda_core.train.inputs): the split read and checked once."""

from __future__ import annotations

from pathlib import Path

import pytest

from pixda_core.train import adapt
from tests.helpers import tiny

pytestmark = pytest.mark.training


def test_a_run_reads_and_checks_its_split_file_once(toy_root, tmp_path, source_only, monkeypatch):
    """resolve_shots reads the split file, preflight checks what it read, the run writes it
    and metrics.json names it: one read of the file for all of them."""
    import pixda_core.data.splits as splits

    listed = tmp_path / "two.txt"
    names = splits.draw_split(toy_root / "cityscapes", 1, 3)
    splits.write_split(listed, names)
    reads = []
    real = splits.read_text

    def counted(path, *args, **kw):
        reads.append(Path(path))
        return real(path, *args, **kw)

    monkeypatch.setattr(splits, "read_text", counted)
    cfg = tiny(
        toy_root,
        tmp_path,
        method={"name": "finetune"},
        data={"split_file": str(listed)},
        run={"name": "ft", "restore_from": str(source_only)},
    )
    metrics = adapt(cfg)
    assert reads.count(listed) == 1
    assert metrics["split"] == "file two.txt" and metrics["shots"] == 1
    assert (tmp_path / "ft" / "split.txt").read_text().split() == names
