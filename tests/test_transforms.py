"""helpers.data.transforms: shapes, binary masks, image/mask alignment under augmentation, seeding, denormalize."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.data.transforms import (
    COLOUR_AUGMENTS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    denormalize,
    eval_transforms,
    resize_transform,
    train_transforms,
)


def _pair(h: int = 45, w: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """A dark image with a bright off-centre rectangle ``lesion`` and its mask (non-square, asymmetric)."""
    mask = np.zeros((h, w), np.uint8)
    mask[5:25, 8:40] = 1
    image = np.full((h, w, 3), 30, np.uint8)
    image[mask == 1] = (230, 220, 210)
    return image, mask


@pytest.mark.parametrize("make", [train_transforms, eval_transforms])
def test_output_shapes_and_types(make):
    image, mask = _pair()
    out = make(32)(image=image, mask=mask)
    assert isinstance(out["image"], torch.Tensor) and out["image"].shape == (3, 32, 32)
    assert out["image"].dtype == torch.float32
    assert out["mask"].shape == (32, 32) and set(out["mask"].unique().tolist()) <= {0, 1}


def test_train_masks_stay_binary_and_aligned_with_the_image():
    image, mask = _pair()
    pipeline = train_transforms(40, seed=0)
    for _ in range(40):
        out = pipeline(image=image, mask=mask)
        m = out["mask"].numpy().astype(bool)
        assert set(np.unique(m)) <= {False, True}
        bright = denormalize(out["image"]).mean(axis=2)
        if m.any() and (~m).any():  # the lesion moved with the mask: its pixels stay the bright ones
            assert bright[m].mean() > bright[~m].mean() + 0.3


def test_train_pipeline_is_random_but_seeded():
    image, mask = _pair()

    def run(seed: int) -> list[torch.Tensor]:
        pipeline = train_transforms(32, seed=seed)
        return [pipeline(image=image, mask=mask)["mask"] for _ in range(8)]

    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    assert len({tuple(x.flatten().tolist()) for x in a}) > 1  # augmentations differ between calls


def test_eval_is_deterministic_and_normalises_with_imagenet_stats():
    mean_colour = np.round(np.array(IMAGENET_MEAN) * 255).astype(np.uint8)
    image = np.broadcast_to(mean_colour, (20, 30, 3)).copy()
    out = eval_transforms(16)(image=image, mask=np.zeros((20, 30), np.uint8))
    assert out["image"].abs().max() < 0.01  # the ImageNet mean maps to 0
    white = eval_transforms(16)(image=np.full((20, 30, 3), 255, np.uint8), mask=np.zeros((20, 30), np.uint8))
    expected = (1 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(white["image"][:, 0, 0].numpy(), expected, rtol=1e-5)


def test_resize_uses_nearest_for_masks_when_enlarging():
    mask = np.zeros((5, 7), np.uint8)
    mask[1:4, 2:5] = 1
    out = resize_transform(64)(image=np.zeros((5, 7, 3), np.uint8), mask=mask)
    assert out["mask"].shape == (64, 64) and set(np.unique(out["mask"])) == {0, 1}


def test_denormalize_inverts_eval_transform_for_tensors_and_arrays():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    out = eval_transforms(16)(image=image, mask=np.zeros((16, 16), np.uint8))["image"]
    expected = image / 255.0
    for x in (out, out.numpy(), out.numpy().transpose(1, 2, 0), out.clone().requires_grad_(True)):
        back = denormalize(x)
        assert back.shape == (16, 16, 3) and back.dtype == np.float32
        np.testing.assert_allclose(back, expected, atol=1e-5)
    assert denormalize(torch.full((3, 4, 4), 10.0)).max() == 1.0  # clipped to [0, 1]
    with pytest.raises(ValueError, match="expects a"):
        denormalize(torch.zeros(4, 8, 8))


@pytest.mark.parametrize("size", [0, -8, 3.5, True])
def test_bad_sizes_are_refused(size):
    with pytest.raises(ValueError, match="img_size"):
        train_transforms(size)
    with pytest.raises(ValueError, match="img_size"):
        eval_transforms(size)


def test_importing_the_transforms_turns_albumentations_update_check_off():
    """Its check at import calls PyPI (a warning offline, and advice to upgrade past the tested range).

    In a subprocess where every urllib request fails and warnings are errors, the check, had it run, would
    warn "Failed to check for updates" and so fail the import.
    """
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    code = ("import sys, types, urllib.request\n"
            "def refuse(*a, **k): raise OSError('the update check ran')\n"
            "urllib.request.OpenerDirector.open = refuse\n"
            "import helpers.data.transforms, os\n"
            "print(os.environ['NO_ALBUMENTATIONS_UPDATE'])\n")
    out = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", code], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["1"]


def _channel_ratio_spread(colour: str) -> float:
    """Spread (std over 60 draws) of the red/blue ratio of a grey image's mean colour after ``colour`` augmentation."""
    image, mask = np.full((32, 32, 3), 128, np.uint8), np.zeros((32, 32), np.uint8)
    pipeline = train_transforms(32, seed=0, colour=colour)
    ratios = []
    for _ in range(60):
        rgb = denormalize(pipeline(image=image, mask=mask)["image"]).reshape(-1, 3).mean(axis=0)
        ratios.append(rgb[0] / max(rgb[2], 1e-6))
    return float(np.std(ratios))


def test_strong_colour_augmentation_casts_the_light_more_than_the_mild_one():
    mild, strong = _channel_ratio_spread("mild"), _channel_ratio_spread("strong")
    assert strong > 2 * mild, (mild, strong)   # per-channel gains: another dermoscope's light
    assert set(COLOUR_AUGMENTS) == {"mild", "strong"}
    with pytest.raises(ValueError, match="'wild' is not one of mild, strong"):
        train_transforms(32, colour="wild")
