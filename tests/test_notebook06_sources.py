"""Notebook 06's domain-shift section on data that names its sources (HAM10000's metadata column ``dataset``).

The embedded synthetic set has no sources, so the notebook draws synthetic domains there; a learner with HAM10000
gets the real cross-source experiment instead (train on the largest source, test on the others). That branch is
run here, offline, on a HAM10000-layout folder built from two synthetic "clinics": a neutral dermoscope and a warm
one, each listed under its own ``dataset`` value in ``HAM10000_metadata.csv``.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from helpers import data
from helpers.course import runner
from helpers.course.colab import notebook_paths
from helpers.data import layouts, synthetic

SIZE = 64
#: name -> (images, generator settings); the larger one is the source the notebook trains on.
CLINICS = {"clinic_neutral": (24, synthetic.Domain("neutral", skin_tones=(0.0, 0.45))),
           "clinic_warm": (14, synthetic.Domain("warm", skin_tones=(0.0, 0.45), colour_cast=(1.0, 0.84, 0.62)))}


def _ham_with_sources(root: Path) -> dict[str, str]:
    """HAM10000 layout with a ``dataset`` column from :data:`CLINICS`; two images per lesion; returns {id: source}."""
    sources, rows, k = {}, ["lesion_id,image_id,dx,dx_type,age,sex,localization,dataset"], 0
    for name, (n, domain) in CLINICS.items():
        drawn = root.parent / f"drawn-{name}"
        synthetic.write_dataset(drawn, n, SIZE, seed=len(sources), domain=domain, progress=False)
        for pair in data.discover_pairs(drawn):
            ident = f"ISIC_{24300 + k:07d}"
            (root / layouts.HAM_IMAGE_DIRS[k % 2]).mkdir(parents=True, exist_ok=True)
            (root / layouts.HAM_MASK_DIR).mkdir(parents=True, exist_ok=True)
            shutil.copy(pair.image, root / layouts.HAM_IMAGE_DIRS[k % 2] / f"{ident}.jpg")
            shutil.copy(pair.mask, root / layouts.HAM_MASK_DIR / f"{ident}_segmentation.png")
            rows.append(f"HAM_{k // 2:07d},{ident},nv,histo,40.0,female,back,{name}")
            sources[ident] = name
            k += 1
    (root / layouts.HAM_METADATA).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return sources


def test_fake_ham_has_two_sources(tmp_path):
    sources = _ham_with_sources(tmp_path / "ham")
    found = data.source_pairs(tmp_path / "ham")
    assert list(found) == list(CLINICS) and {k: len(v) for k, v in found.items()} == {"clinic_neutral": 24,
                                                                                      "clinic_warm": 14}
    assert all(sources[p.id] == name for name, pairs in found.items() for p in pairs)


@pytest.mark.slow
def test_notebook06_trains_on_one_source_and_tests_on_the_other(tmp_path, monkeypatch):
    _ham_with_sources(tmp_path / "ham")
    monkeypatch.setenv("SKINSEG_DATA", str(tmp_path / "ham"))
    monkeypatch.setenv("SKINSEG_SMOKE", "1")
    monkeypatch.delenv("SKINSEG_PROFILE", raising=False)
    monkeypatch.setenv("SKINSEG_HOME", str(tmp_path / "home"))
    path = next(p for p in notebook_paths() if p.name.startswith("06_"))
    runner.run_notebook(path, tmp_path / "executed", timeout=600)
    executed = nbformat.read(tmp_path / "executed" / path.name, as_version=4)
    text = "\n".join(out.get("text", "") for cell in executed.cells if cell.cell_type == "code"
                     for out in cell.get("outputs", []) if out.get("output_type") == "stream")
    assert f"sources of {tmp_path / 'ham'} (metadata column 'dataset'): train on 'clinic_neutral'" in text
    assert "trained 3 models on 'clinic_neutral' only" in text   # as is, Shades-of-Grey, strong colour augmentation
    card = (tmp_path / "home" / "runs" / "06_model_card.md").read_text(encoding="utf-8")
    assert "trained on clinic_neutral only): Dice drop (95 % interval) as is: clinic_warm" in card
    assert "; Shades-of-Grey: clinic_warm" in card and "; colour augmentation: clinic_warm" in card
