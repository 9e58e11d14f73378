import pandas as pd
from PIL import Image

from pixda_core import demo


def test_demo_writes_statistics_and_figures(toy_root, tmp_path, capsys):
    out = tmp_path / "demo"
    assert demo.main(["--data", str(toy_root), "--out", str(out), "--quiet"]) == 0
    stats = pd.read_csv(out / "class_stats.csv")
    assert set(stats["domain"]) == set(demo.DOMAINS)
    shares = stats.groupby("domain")["share"].sum()
    assert ((shares - 1).abs() < 1e-9).all()
    road = stats[stats["class"] == "road"].set_index("domain")["share"]
    rider = stats[stats["class"] == "rider"].set_index("domain")["share"]
    assert (road > 10 * rider).all()
    for name in ("class_frequency.png", "class_frequency.pdf", "samples.png"):
        assert (out / name).stat().st_size > 10_000
    width, height = Image.open(out / "class_frequency.png").size
    assert width > 1500 and height > 500
    printed = capsys.readouterr().out
    assert "share of labelled pixels per class" in printed and "no problems found" in printed


def test_demo_refuses_a_broken_root(toy_copy, tmp_path, capsys):
    (toy_copy / "gta5" / "labels" / "00002.png").unlink()
    assert demo.main(["--data", str(toy_copy), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "failed its check" in err and str(toy_copy / "gta5") in err
