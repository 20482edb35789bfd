"""Albumentations pipelines for training and evaluation, ImageNet normalisation and its inverse.

Introduced in notebook 01 (``01_data_exploration``, "what the model sees"); notebook 04 trains with them.

Both pipelines take an ``(H, W, 3) uint8`` RGB image and an ``(H, W) uint8`` {0, 1} mask, resize them to a
square ``img_size x img_size`` (images with area interpolation when shrinking, masks with nearest neighbour so
they stay binary), normalise the image with the ImageNet mean and standard deviation (what pretrained encoders
expect) and return torch tensors::

    out = train_transforms(256)(image=image, mask=mask)
    out["image"]  # torch.float32 (3, 256, 256), normalised
    out["mask"]   # torch.uint8   (256, 256) in {0, 1}

Every geometric augmentation is applied to image and mask together; colour augmentations touch the image only.
"""
from __future__ import annotations

import os

# albumentations asks PyPI for a newer release at import (a network call, and a warning offline or whenever one
# exists, advising an upgrade past the tested range); the course pins its version, so the check is off unless
# the user set the variable. The one environment write of the package on import (docs/ARCHITECTURE.md).
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from albumentations.pytorch import ToTensorV2  # noqa: E402

#: Per-channel RGB mean of ImageNet, on the [0, 1] scale (what torchvision / smp encoders were trained with).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
#: Per-channel RGB standard deviation of ImageNet, on the [0, 1] scale.
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: Colour augmentation strengths of :func:`train_transforms`: ``mild`` (the recipe) or ``strong`` (notebook 06's
#: domain-shift mitigation: casts of the light, wider brightness, contrast, saturation and hue, gamma).
COLOUR_AUGMENTS: tuple[str, ...] = ("mild", "strong")


def _check_size(img_size: int) -> None:
    """Raise ValueError unless ``img_size`` is a positive int."""
    if isinstance(img_size, bool) or not isinstance(img_size, int) or img_size <= 0:
        raise ValueError(f"img_size must be a positive int (pixels), got {img_size!r}")


def resize_transform(img_size: int) -> A.Resize:
    """Square resize to ``img_size``: area interpolation when shrinking images, nearest neighbour for masks.

    The first step of both pipelines; :mod:`helpers.data.cache` (the preprocessing cache) applies exactly this, so a
    cached pair goes through the rest of the pipeline unchanged (resizing an ``S x S`` array to ``S`` is a no-op).

    Raises:
        ValueError: ``img_size`` is not a positive int.
    """
    _check_size(img_size)
    return A.Resize(img_size, img_size, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST,
                    area_for_downscale="image")


def _to_model_input() -> list[A.BasicTransform]:
    """ImageNet normalisation (uint8 0-255 -> float) followed by HWC -> CHW torch tensors."""
    return [A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD, max_pixel_value=255.0), ToTensorV2()]


def colour_transforms(colour: str = "mild") -> list[A.BasicTransform]:
    """The colour part of :func:`train_transforms` (image only).

    ``mild`` (the recipe): half the images get a small brightness / contrast / saturation change and a hue
    shift of at most ±0.02 of the colour wheel, because lesion colour carries information. ``strong`` (notebook
    06, against another dermoscope's light or another population's skin): most images get a colour cast of the
    light (each channel times its own factor in [0.75, 1.25]), wider brightness / contrast / saturation (±0.35)
    and hue (±0.05) changes, and a gamma in [0.7, 1.5].

    Raises:
        ValueError: ``colour`` is not one of :data:`COLOUR_AUGMENTS`.
    """
    if colour == "mild":
        return [A.OneOf([
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=1.0),
            A.HueSaturationValue(hue_shift_limit=5, sat_shift_limit=15, val_shift_limit=10, p=1.0),
        ], p=0.5)]
    if colour == "strong":
        return [A.MultiplicativeNoise(multiplier=(0.75, 1.25), per_channel=True, elementwise=False, p=0.7),
                A.ColorJitter(brightness=0.35, contrast=0.35, saturation=0.35, hue=0.05, p=0.8),
                A.RandomGamma(gamma_limit=(70, 150), p=0.3)]
    raise ValueError(f"colour augmentation {colour!r} is not one of {', '.join(COLOUR_AUGMENTS)}")


def train_transforms(img_size: int, *, seed: int | None = None, colour: str = "mild") -> A.Compose:
    """The training pipeline: resize, flips, 90° rotations, mild affine, colour changes, normalise.

    Dermoscopy has no canonical orientation, so all flips and right-angle rotations are label-preserving.
    Colour changes are :func:`colour_transforms` (mild by default, because lesion colour carries information),
    and one image in ten gets CLAHE or a slight Gaussian blur.

    Args:
        img_size: side of the square output, in pixels.
        seed: seed of the pipeline's own random state (albumentations ignores global seeds); None draws
            fresh entropy. :func:`helpers.data.make_loaders` sets it per worker.
        colour: ``mild`` or ``strong`` (:data:`COLOUR_AUGMENTS`, see :func:`colour_transforms`).

    Returns:
        ``A.Compose`` mapping ``image=(H, W, 3) uint8, mask=(H, W) uint8`` to ``image (3, S, S) float32``
        and ``mask (S, S) uint8`` tensors.

    Raises:
        ValueError: ``img_size`` is not a positive int, or ``colour`` is unknown.
    """
    _check_size(img_size)
    colour_ops = colour_transforms(colour)
    return A.Compose([
        resize_transform(img_size),
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.RandomRotate90(p=0.5),
        A.Affine(translate_percent=(-0.06, 0.06), scale=(0.9, 1.1), rotate=(-30, 30),
                 border_mode=cv2.BORDER_REFLECT_101, mask_interpolation=cv2.INTER_NEAREST, p=0.5),
        *colour_ops,
        A.OneOf([
            A.CLAHE(clip_limit=2.0, tile_grid_size=(8, 8), p=1.0),
            A.GaussianBlur(blur_limit=(3, 5), p=1.0),
        ], p=0.1),
        *_to_model_input(),
    ], seed=seed)


def eval_transforms(img_size: int) -> A.Compose:
    """The validation / test / prediction pipeline: square resize and ImageNet normalisation only.

    Raises:
        ValueError: ``img_size`` is not a positive int.
    """
    _check_size(img_size)
    return A.Compose([resize_transform(img_size), *_to_model_input()])


def denormalize(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """Undo ImageNet normalisation for display.

    Args:
        image: a normalised image, ``(3, H, W)`` (tensor or array, as the pipelines output) or ``(H, W, 3)``
            array. Tensors may live on any device and may require grad.

    Returns:
        ``(H, W, 3) float32`` RGB in [0, 1] (clipped).

    Raises:
        ValueError: the input is not a 3-channel image.
    """
    arr = image.detach().cpu().float().numpy() if isinstance(image, torch.Tensor) else np.asarray(image, np.float32)
    if arr.ndim != 3 or 3 not in (arr.shape[0], arr.shape[-1]):
        raise ValueError(f"denormalize expects a (3, H, W) or (H, W, 3) image, got shape {arr.shape}")
    if arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = arr.transpose(1, 2, 0)
    out = arr * np.asarray(IMAGENET_STD, np.float32) + np.asarray(IMAGENET_MEAN, np.float32)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------------------------ colour constancy
#: Minkowski norm of Shades-of-Grey colour constancy (Finlayson & Trezzi 2004; p = 6 in their experiments
#: and in ISIC challenge entries such as Barata et al. 2015).
SHADES_OF_GREY_POWER = 6


def shades_of_grey(image: np.ndarray, power: float = SHADES_OF_GREY_POWER) -> np.ndarray:
    """Remove the colour cast of the light (or the camera) with Shades-of-Grey colour constancy.

    Introduced in notebook 06 (domain shift). The illuminant of channel ``c`` is estimated as the Minkowski
    ``p``-mean of its values, ``e_c = (mean I_c^p)^(1/p)`` (p = 1 is Grey World, p = inf is max-RGB), and each
    channel is multiplied by ``1 / (sqrt(3) e_c / ||e||)``: a neutral illuminant leaves the image unchanged,
    a cast is divided out while the overall brightness is kept.

    Args:
        image: ``(H, W, 3) uint8`` RGB.
        power: the Minkowski norm ``p`` (>= 1).

    Returns:
        ``(H, W, 3) uint8`` RGB, clipped to [0, 255].

    Raises:
        ValueError: not an ``(H, W, 3)`` image, or ``power < 1``.
    """
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"shades_of_grey expects an (H, W, 3) RGB image, got shape {arr.shape}")
    if not power >= 1:
        raise ValueError(f"power must be >= 1 (6 is the usual choice), got {power}")
    rgb = arr.astype(np.float64)
    scale = max(rgb.max(), 1.0)  # normalise before the power: 255**6 is large but exact in float64 anyway
    illuminant = scale * np.power(np.mean(np.power(rgb / scale, power), axis=(0, 1)), 1.0 / power)
    illuminant = np.maximum(illuminant, 1e-6)
    gains = np.linalg.norm(illuminant) / (np.sqrt(3.0) * illuminant)
    return np.clip(rgb * gains + 0.5, 0, 255).astype(np.uint8)


class ShadesOfGrey(A.ImageOnlyTransform):
    """Albumentations wrapper of :func:`shades_of_grey` (colour only: masks pass unchanged).

    Put it first in a pipeline, for training and evaluation alike, e.g.
    ``A.Compose([ShadesOfGrey(), *eval_transforms(256).transforms])``.
    """

    def __init__(self, power: float = SHADES_OF_GREY_POWER, p: float = 1.0) -> None:
        super().__init__(p=p)
        if not power >= 1:
            raise ValueError(f"power must be >= 1 (6 is the usual choice), got {power}")
        self.power = power

    def apply(self, img: np.ndarray, **params) -> np.ndarray:
        return shades_of_grey(img, self.power)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("power",)
