"""Shades-of-Grey colour constancy: a colour cast is removed, a neutral image is left alone, masks pass through."""
import albumentations as A
import numpy as np
import pytest

from helpers.data.transforms import ShadesOfGrey, eval_transforms, shades_of_grey


def _neutral_scene(seed: int = 0) -> np.ndarray:
    """A grey-world scene: random grey patches (R = G = B) with some colourful pixels that cancel out."""
    rng = np.random.default_rng(seed)
    grey = rng.integers(40, 200, size=(48, 64, 1)).repeat(3, axis=2)
    return grey.astype(np.uint8)


def test_a_colour_cast_is_removed():
    scene = _neutral_scene()
    cast = np.array([1.0, 0.8, 0.55])                      # a warm (yellow-orange) dermoscope light
    tinted = np.clip(scene * cast, 0, 255).astype(np.uint8)
    means = tinted.reshape(-1, 3).mean(0)
    assert means[2] / means[0] < 0.6                       # clearly cast before
    fixed = shades_of_grey(tinted).astype(np.float64)
    ratios = fixed.reshape(-1, 3).mean(0) / fixed.reshape(-1, 3).mean()
    np.testing.assert_allclose(ratios, 1.0, atol=0.02)     # channels balanced again
    # pixel by pixel the corrected image is the neutral scene up to one brightness factor
    k = fixed.mean() / scene.mean()
    assert np.abs(fixed - k * scene).mean() < 2.5


def test_a_neutral_image_is_unchanged_and_power_matters():
    scene = _neutral_scene(1)
    np.testing.assert_array_equal(shades_of_grey(scene), scene)
    rng = np.random.default_rng(2)
    colourful = rng.integers(0, 256, size=(32, 32, 3)).astype(np.uint8)
    colourful[..., 0] = colourful[..., 0] // 2 + 100            # red-heavy, skewed distribution
    assert not np.array_equal(shades_of_grey(colourful, 1), shades_of_grey(colourful, 6))


def test_shades_of_grey_transform_in_a_pipeline_leaves_the_mask():
    image = np.clip(_neutral_scene() * np.array([0.6, 0.9, 1.0]), 0, 255).astype(np.uint8)
    mask = np.zeros(image.shape[:2], np.uint8)
    mask[10:20, 5:30] = 1
    out = A.Compose([ShadesOfGrey()])(image=image, mask=mask)
    np.testing.assert_array_equal(out["image"], shades_of_grey(image))
    np.testing.assert_array_equal(out["mask"], mask)
    tensors = A.Compose([ShadesOfGrey(), *eval_transforms(16).transforms])(image=image, mask=mask)
    assert tuple(tensors["image"].shape) == (3, 16, 16)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="RGB"):
        shades_of_grey(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="power"):
        shades_of_grey(np.zeros((4, 4, 3), np.uint8), power=0.5)
    with pytest.raises(ValueError, match="power"):
        ShadesOfGrey(power=0)
