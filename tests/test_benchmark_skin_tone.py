"""benchmarks/skin_tone_by_source.py: ITA is undefined exactly where the skin's median b* is not positive."""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.data import synthetic
from helpers.evaluation import subgroups

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_undefined_ita_counts_the_bluish_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    script = importlib.import_module("skin_tone_by_source")
    root = synthetic.ensure_synthetic(12, 64, seed=3, root=tmp_path / "syn")
    images = sorted((root / "images").iterdir())
    for path in images[:4]:   # a cold white balance: skin turns bluish, b* < 0
        rgb = np.asarray(Image.open(path).convert("RGB"), np.float64)
        Image.fromarray(np.clip(rgb * [0.55, 0.8, 1.6], 0, 255).astype(np.uint8)).save(path, quality=95)
    assert script.main(["--data", str(root), "--n", "12", "--json", str(tmp_path / "out.json")]) == 0
    result = json.loads((tmp_path / "out.json").read_text())["sources"]
    assert list(result) == ["all"] and result["all"]["images"] == 12
    masks = {p.stem.removesuffix("_segmentation"): p for p in (root / "masks").iterdir()}
    expected = sum(np.isnan(subgroups.skin_ita(np.asarray(Image.open(p).convert("RGB")),
                                               np.asarray(Image.open(masks[p.stem]))))
                   for p in images)
    assert result["all"]["undefined"] == expected >= 4
    assert sum(result["all"]["categories"].values()) == 12
    assert "ITA undefined (skin b* <= 0) on" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        script.main(["--data", str(root), "--n", "0"])
