"""Shared fixtures: tiny datasets (48x36 px, drawn with PIL) in each layout :mod:`helpers.data` understands.

Fixture names are stable; other test files may use them:

``isic_dir``      ``images/ISIC_00000{0..7}.jpg`` + ``masks/<id>_segmentation.png`` (8 pairs)
``isic2018_dir``  official ISIC 2018 Task 1 folders: Training 8 pairs, Validation 3 pairs, Test 2 inputs
                  without ground truth (plus the LICENSE/ATTRIBUTION text files the real archives contain)
``ham_dir``       HAM10000: part_1 5 images, part_2 4 images, ``HAM10000_segmentations_lesion_tschandl`` 9 masks
``write_pair``    the function that draws one pair, for tests that build their own folders
"""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.data import synthetic

#: Width and height of every fixture image, in pixels.
FIXTURE_SIZE = (48, 36)


def draw_pair(seed: int, size: tuple[int, int] = FIXTURE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """A skin-coloured ``(H, W, 3) uint8`` image with a dark elliptical lesion and its ``(H, W)`` {0, 1} mask."""
    width, height = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    cy, cx = rng.uniform(0.35, 0.65) * height, rng.uniform(0.35, 0.65) * width
    ry, rx = rng.uniform(0.15, 0.3) * height, rng.uniform(0.15, 0.3) * width
    mask = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.uint8)
    skin = np.array([220, 170, 150]) + rng.integers(-15, 15, size=(height, width, 3))
    lesion = np.array([90, 50, 40]) + rng.integers(-15, 15, size=(height, width, 3))
    image = np.where(mask[:, :, None] == 1, lesion, skin).clip(0, 255).astype(np.uint8)
    return image, mask


def write_pair(image_path: Path, mask_path: Path | None, seed: int = 0,
               size: tuple[int, int] = FIXTURE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Draw a pair and save it (image as JPEG or PNG by suffix, mask as 0/255 PNG); returns the arrays."""
    image, mask = draw_pair(seed, size)
    image_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(image_path, quality=95) if image_path.suffix.lower() in (".jpg", ".jpeg") \
        else Image.fromarray(image).save(image_path)
    if mask_path is not None:
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask * 255).save(mask_path)
    return image, mask


def _isic_id(i: int) -> str:
    return f"ISIC_{i:07d}"


@pytest.fixture(name="write_pair")
def write_pair_fixture():
    """The :func:`write_pair` function (draw one pair and save it)."""
    return write_pair


@pytest.fixture
def isic_dir(tmp_path: Path) -> Path:
    """ISIC layout, 8 pairs: ``images/ISIC_000000{0..7}.jpg`` and ``masks/<id>_segmentation.png``."""
    root = tmp_path / "isic"
    for i in range(8):
        write_pair(root / "images" / f"{_isic_id(i)}.jpg", root / "masks" / f"{_isic_id(i)}_segmentation.png", i)
    return root


@pytest.fixture
def isic2018_dir(tmp_path: Path) -> Path:
    """Official ISIC 2018 Task 1 layout: Training 8 pairs, Validation 3 pairs, Test 2 inputs, no Test truth."""
    root = tmp_path / "isic2018"
    counts = {"Training": (0, 8), "Validation": (100, 3), "Test": (200, 2)}
    for subset, (start, n) in counts.items():
        inputs = root / f"ISIC2018_Task1-2_{subset}_Input"
        truth = None if subset == "Test" else root / f"ISIC2018_Task1_{subset}_GroundTruth"
        for i in range(start, start + n):
            mask = truth / f"{_isic_id(i)}_segmentation.png" if truth else None
            write_pair(inputs / f"{_isic_id(i)}.jpg", mask, i)
        (inputs / "ATTRIBUTION.txt").write_text("ISIC archive\n")
        if truth:
            (truth / "LICENSE.txt").write_text("CC-0\n")
    return root


@pytest.fixture
def ham_dir(tmp_path: Path) -> Path:
    """HAM10000 layout: ids ISIC_0024300.. in part_1 (5) and part_2 (4), all 9 masks in the tschandl folder."""
    root = tmp_path / "ham10000"
    for k in range(9):
        ident = _isic_id(24300 + k)
        part = "HAM10000_images_part_1" if k < 5 else "HAM10000_images_part_2"
        write_pair(root / part / f"{ident}.jpg",
                   root / "HAM10000_segmentations_lesion_tschandl" / f"{ident}_segmentation.png", k)
    return root


@pytest.fixture
def throughput(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """benchmarks/throughput.py as a module, with SKINSEG_HOME in a temporary folder and smoke mode on."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    monkeypatch.setenv("SKINSEG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SKINSEG_SMOKE", "1")
    return importlib.import_module("throughput")


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """Ten synthetic 48 px pairs (seed 3) in the ISIC layout, one set per test module: the training tests' data."""
    root = tmp_path_factory.mktemp("tiny")
    synthetic.write_dataset(root, n=10, size=48, seed=3, progress=False)
    return root


@pytest.fixture(scope="module")
def isolated_home(tmp_path_factory):
    """Runs, caches and figures go to a temporary SKINSEG_HOME; one torch thread (CPU is shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKINSEG_HOME", str(tmp_path_factory.mktemp("home")))
        yield
    torch.set_num_threads(threads)


@pytest.fixture
def solution_round_trip(capsys):
    """``run(module, k, check, namespace)``: exercise ``k``'s reference passes ``check``, and so does the source
    ``module.show_solution(k)`` prints, executed in ``namespace`` (the notebook's imports) as a learner pastes it.

    ``check`` takes the learner's function only (wrap checkers that need data in a lambda).
    """
    def run(module, k: int, check, namespace: dict) -> None:
        reference = module.EXERCISES.solutions[k]
        check(reference)
        assert capsys.readouterr().out.startswith(f"exercise {k} passed")
        module.show_solution(k)
        exec(capsys.readouterr().out, namespace)  # the printed solution runs as pasted
        pasted = namespace[reference.__name__]
        assert pasted is not reference
        check(pasted)
        assert capsys.readouterr().out.startswith(f"exercise {k} passed")

    return run
