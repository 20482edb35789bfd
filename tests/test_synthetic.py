"""The embedded synthetic dataset: shapes, determinism, plausible lesions, stable files, cached generation."""
import json

import numpy as np
import pytest
from PIL import Image

from helpers.data import synthetic
from helpers.data.synthetic import ensure_synthetic, generate_pair, sample_seed, write_dataset

SIZE = 64


@pytest.fixture(scope="module")
def samples():
    """30 pairs at 64 px, the way a dataset draws them."""
    return [generate_pair(sample_seed(0, i), SIZE) for i in range(30)]


def test_shapes_dtypes_and_values():
    image, mask = generate_pair(3, size=80)
    assert image.shape == (60, 80, 3) and image.dtype == np.uint8
    assert mask.shape == (60, 80) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 1} and mask.any()
    assert synthetic.image_shape(50) == (38, 50)  # H = round(0.75 * W)


def test_same_seed_same_pair_and_different_seeds_differ():
    a_img, a_mask = generate_pair(7, SIZE)
    b_img, b_mask = generate_pair(7, SIZE)
    c_img, c_mask = generate_pair(8, SIZE)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_mask, b_mask)
    assert not np.array_equal(a_img, c_img) and not np.array_equal(a_mask, c_mask)


def test_generation_ignores_global_random_state():
    np.random.seed(1)
    a = generate_pair(5, SIZE)[0]
    np.random.seed(2)
    np.random.random(10)
    assert np.array_equal(a, generate_pair(5, SIZE)[0])


def test_invalid_arguments_are_explained():
    with pytest.raises(ValueError, match="size >= 32"):
        generate_pair(0, size=16)
    with pytest.raises(ValueError, match="seed"):
        generate_pair(-1)


def test_lesion_areas_are_varied_and_some_touch_the_border(samples):
    areas = np.array([m.mean() for _, m in samples])
    assert areas.min() > 0.005 and areas.max() < 0.8, areas
    assert areas.min() < 0.08 and areas.max() > 0.3, f"expected small and large lesions, got {areas.round(2)}"
    touching = [bool(m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any()) for _, m in samples]
    assert 0 < sum(touching) < len(samples) * 0.6


def test_lesion_is_darker_than_skin(samples):
    darker = []
    for image, mask in samples:
        luminance = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        darker.append(luminance[mask == 1].mean() < luminance[mask == 0].mean())
    assert np.mean(darker) >= 0.9, f"only {np.mean(darker):.0%} of lesions are darker than their skin"


def test_artefacts_do_not_change_the_mask():
    """The mask is the lesion only: it has no hair-thin structures (it is the same as its morphological opening)."""
    import cv2

    for i in range(10):
        _, mask = generate_pair(sample_seed(0, i), SIZE)
        opened = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        assert (mask != opened).mean() < 0.01


def test_write_dataset_layout_and_byte_identical_twice(tmp_path):
    ids = write_dataset(tmp_path / "a", n=3, size=SIZE, seed=1, progress=False)
    write_dataset(tmp_path / "b", n=3, size=SIZE, seed=1, progress=False)
    assert ids == ["SYN_0000000", "SYN_0000001", "SYN_0000002"]
    for i in ids:
        for rel in (f"images/{i}.jpg", f"masks/{i}_segmentation.png"):
            assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    mask = np.asarray(Image.open(tmp_path / "a" / "masks" / "SYN_0000000_segmentation.png"))
    assert mask.ndim == 2 and set(np.unique(mask)) <= {0, 255}
    image = Image.open(tmp_path / "a" / "images" / "SYN_0000000.jpg")
    assert image.mode == "RGB" and image.size == (SIZE, 48)
    np.testing.assert_array_equal(mask // 255, generate_pair(sample_seed(1, 0), SIZE)[1])


def test_larger_n_extends_smaller_and_seed_changes_the_set(tmp_path):
    write_dataset(tmp_path / "small", n=2, size=SIZE, seed=0, progress=False)
    write_dataset(tmp_path / "large", n=4, size=SIZE, seed=0, progress=False)
    write_dataset(tmp_path / "other", n=2, size=SIZE, seed=1, progress=False)
    rel = "masks/SYN_0000001_segmentation.png"
    assert (tmp_path / "small" / rel).read_bytes() == (tmp_path / "large" / rel).read_bytes()
    assert (tmp_path / "small" / rel).read_bytes() != (tmp_path / "other" / rel).read_bytes()
    assert sample_seed(0, 1) != sample_seed(1, 0)


def test_ensure_synthetic_reuses_a_complete_set(tmp_path):
    path = ensure_synthetic(3, SIZE, seed=2, root=tmp_path)
    assert path == tmp_path / f"synthetic-n3-s{SIZE}-seed2"
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["n"] == 3 and manifest["size"] == SIZE and manifest["seed"] == 2
    assert manifest["version"] == synthetic.GENERATOR_VERSION
    stamp = (path / "images" / "SYN_0000000.jpg").stat().st_mtime_ns
    marker = path / "images" / "not_regenerated.txt"
    marker.write_text("kept")
    assert ensure_synthetic(3, SIZE, seed=2, root=tmp_path) == path
    assert marker.exists() and (path / "images" / "SYN_0000000.jpg").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name], "no temporary folders left behind"


def test_ensure_synthetic_regenerates_an_incomplete_set(tmp_path):
    path = ensure_synthetic(3, SIZE, seed=0, root=tmp_path)
    original = (path / "masks" / "SYN_0000002_segmentation.png").read_bytes()
    (path / "manifest.json").unlink()
    (path / "masks" / "SYN_0000002_segmentation.png").unlink()
    ensure_synthetic(3, SIZE, seed=0, root=tmp_path)
    assert (path / "manifest.json").is_file()
    assert (path / "masks" / "SYN_0000002_segmentation.png").read_bytes() == original
    # a manifest from another generator version is stale too
    (path / "manifest.json").write_text(json.dumps({"n": 3, "size": SIZE, "seed": 0, "version": -1}))
    (path / "images" / "SYN_0000000.jpg").write_bytes(b"broken")
    ensure_synthetic(3, SIZE, seed=0, root=tmp_path)
    assert (path / "images" / "SYN_0000000.jpg").read_bytes() != b"broken"
    # a missing file with a valid manifest is noticed as well
    (path / "images" / "SYN_0000001.jpg").unlink()
    ensure_synthetic(3, SIZE, seed=0, root=tmp_path)
    assert (path / "images" / "SYN_0000001.jpg").is_file()


def test_generation_is_fast_enough():
    import time

    generate_pair(0, 256)  # warm-up
    start = time.perf_counter()
    for seed in range(5):
        generate_pair(seed, 256)
    per_image = (time.perf_counter() - start) / 5
    assert per_image < 0.15, f"{per_image * 1000:.0f} ms per 256 px image (target < 30 ms on one free core)"
