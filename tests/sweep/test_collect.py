"""sweep --collect over a sweep folder that holds two runs of one method, shots and seed that
differ in length: they are never pooled (issue 32)."""

from __future__ import annotations

import pandas as pd
import pytest

from pixda_core import sweep_cli
from pixda_core import workflow as wf
from pixda_core.train import adapt
from tests.helpers import GRID, TINY


@pytest.mark.notebooks
@pytest.mark.slow
def test_collect_never_pools_runs_of_different_lengths(sweep_copy, toy_root, capsys):
    out, _ = sweep_copy
    [so] = out.glob("source_only_*/checkpoints/latest.pt")
    # the sweep's FT 1-shot seed 0 ran GRID["iterations"] (4) steps; this one runs 2
    cfg = wf.make_config(
        "toy", str(toy_root), method="finetune", num_shots=1, seed=0, iterations=2,
        pretrain_iterations=GRID["pretrain_iterations"], out_dir=str(out), device="cpu",
        overrides={**TINY, "run": {**TINY["run"], "progress": False, "restore_from": str(so)}},
        run_name="finetune_1shot_seed0_short",
    )  # fmt: skip
    adapt(cfg)

    with pytest.raises(SystemExit):  # --setting goes with --collect only
        sweep_cli.main(["--setting", "abc"])
    capsys.readouterr()
    assert sweep_cli.main(["--collect", str(out), "--setting", "nope"]) == 2
    assert "setting 'nope': no run has it" in capsys.readouterr().err

    assert sweep_cli.main(["--collect", str(out)]) == 0, capsys.readouterr().err
    stats = pd.read_csv(out / "analysis" / "stats_miou.csv")
    ft1 = stats[(stats["method"] == "finetune") & (stats["shots"] == 1)]
    assert len(ft1) == 2 and set(ft1["n"]) == {1} and set(ft1["runs"]) == {1}
    assert ft1["fingerprint"].nunique() == 2
    assert sorted(ft1["setting_label"]) == ["2 it.", "4 it."]
    md = (out / "analysis" / "stats_miou.md").read_text()
    assert "| FT, 2 it." in md and "| FT, 4 it." in md
    assert "more run repeating" not in md  # nothing was averaged
    summary = pd.read_csv(out / "analysis" / "summary.csv")
    assert summary["fingerprint"].nunique() == 4  # source-only, FT x2 lengths, PixDA
