"""Who does the model fail? Skin tone by individual typology angle, image attributes, subgroup score tables.

Introduced in notebook 06 ("Will it work on the next patient?").

* **Individual typology angle** (ITA, Chardon et al. 1991; Del Bino & Bernerd 2013): from the CIELAB colour
  of the skin, ``ITA = arctan((L* - 50) / b*) * 180 / pi`` degrees. Light skin is bright (high ``L*``) and
  not very yellow (low ``b*``), so its angle is large; dark skin has ``L* < 50`` and a negative angle.
  :func:`skin_ita` measures it on the skin *outside* the lesion, a margin away from its border, with the
  median over those pixels (robust to hairs and the dark corners of the dermoscope). ITA is defined for
  yellowish skin, ``b* > 0``; a median ``b* <= 0`` (bluish or neutral "skin": the dermoscope's white balance, a
  colour cast) gives NaN, "unknown", instead of an angle. On HAM10000 that is about a third of the images and
  three in four of the ``vidir_modern`` source (a 300-image sample), so skin tone measured on uncorrected
  dermoscopy partly measures the device. Categories
  (:data:`ITA_CATEGORIES`): very light > 55, light 41-55, intermediate 28-41, tan 10-28, brown -30-10,
  dark < -30 (lower bounds exclusive, upper inclusive).
* Per-image attributes a mask alone gives: :func:`lesion_fraction`, :func:`touches_border`,
  :func:`size_group`.
* :func:`subgroup_table`: the mean of a per-image score for each value of an attribute, with a percentile
  bootstrap interval (:func:`helpers.evaluation.reliability.bootstrap_ci`) and the number of images, so a small group's
  uncertain mean is not read as a finding.

Images are ``(H, W, 3) uint8`` RGB, masks ``(H, W)`` with lesion > 0.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import pandas as pd

from helpers.evaluation.reliability import N_BOOT, bootstrap_ci

#: ITA skin-tone categories, from the lightest: ``(name, lower bound in degrees)``; a category runs from its
#: lower bound (exclusive) up to the previous category's lower bound (inclusive).
ITA_CATEGORIES: tuple[tuple[str, float], ...] = (
    ("very light", 55.0), ("light", 41.0), ("intermediate", 28.0), ("tan", 10.0), ("brown", -30.0),
    ("dark", -np.inf),
)
#: Linear sRGB -> CIE XYZ (IEC 61966-2-1) and the D65 reference white.
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])
#: Names of :data:`ITA_CATEGORIES`, lightest first (the order subgroup tables use).
ITA_NAMES: tuple[str, ...] = tuple(name for name, _ in ITA_CATEGORIES)
#: Default margin, as a fraction of the image's shorter side, between the lesion and the skin ITA is measured on.
SKIN_MARGIN = 0.05
#: Lesion-size groups of :func:`size_group`: ``(name, upper bound of the lesion's share of the image)``.
SIZE_GROUPS: tuple[tuple[str, float], ...] = (("small (< 5 %)", 0.05), ("medium (5-20 %)", 0.20),
                                              ("large (> 20 %)", 1.0))


def rgb_to_lab(image: np.ndarray) -> np.ndarray:
    """CIELAB (D65 white) of sRGB colours: ``(..., 3) float64`` with ``L*`` in [0, 100], ``a*, b*`` about [-128, 127].

    The exact CIE formulas (sRGB gamma -> linear RGB -> XYZ -> L*a*b*); OpenCV's float conversion uses a
    coarser lookup table.

    Args:
        image: ``(H, W, 3)`` (or ``(N, 3)``, or ``(3,)``) uint8 RGB, or float RGB in [0, 1].

    Raises:
        ValueError: the last axis is not 3 channels.
    """
    arr = np.asarray(image)
    if arr.shape[-1] != 3:
        raise ValueError(f"expected RGB values with 3 channels on the last axis, got shape {arr.shape}")
    rgb = arr.astype(np.float64) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float64)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_TO_XYZ.T / _D65_WHITE
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def ita_degrees(lightness: np.ndarray | float, b_star: np.ndarray | float) -> np.ndarray | float:
    """Individual typology angle ``arctan((L* - 50) / b*)`` in degrees.

    Computed as ``arctan2(L* - 50, b*)``, which equals the formula for ``b* > 0`` (every skin colour) and
    stays defined at ``b* = 0``.
    """
    out = np.degrees(np.arctan2(np.asarray(lightness, np.float64) - 50.0, np.asarray(b_star, np.float64)))
    return float(out) if np.ndim(out) == 0 else out


def skin_tone_ita(lightness: float, b_star: float) -> float:
    """The ITA of a skin colour, or NaN where it is undefined: ``b* <= 0`` (bluish or neutral "skin", a white
    balance or a colour cast) or NaN (no skin measured). :func:`skin_ita`'s rule, on medians already measured."""
    return ita_degrees(lightness, b_star) if b_star > 0 else float("nan")


def ita_category(ita: float) -> str:
    """The :data:`ITA_CATEGORIES` name of an angle in degrees (``"very light"`` ... ``"dark"``).

    Raises:
        ValueError: ``ita`` is NaN.
    """
    if np.isnan(ita):
        raise ValueError("ITA is NaN: no skin pixels were measured (see skin_ita)")
    for name, lower in ITA_CATEGORIES:
        if ita > lower:
            return name
    return ITA_CATEGORIES[-1][0]


def skin_mask(mask: np.ndarray, margin: float = SKIN_MARGIN) -> np.ndarray:
    """Skin pixels: outside the lesion dilated by ``margin * min(H, W)`` pixels, ``(H, W) bool``.

    Raises:
        ValueError: ``mask`` is not 2-D or ``margin < 0``.
    """
    m = np.asarray(mask) > 0
    if m.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {m.shape}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    radius = int(round(margin * min(m.shape)))
    if radius > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        m = cv2.dilate(m.astype(np.uint8), kernel) > 0
    return ~m


def skin_lab(image: np.ndarray, mask: np.ndarray, margin: float = SKIN_MARGIN) -> tuple[float, float]:
    """Median ``(L*, b*)`` of the :func:`skin_mask` pixels: what :func:`skin_ita` measures the angle from.

    Returns:
        ``(nan, nan)`` when no skin pixel is left (the lesion fills the image).

    Raises:
        ValueError: image and mask sizes differ.
    """
    if np.shape(image)[:2] != np.shape(mask):
        raise ValueError(f"image {np.shape(image)[:2]} and mask {np.shape(mask)} differ in size")
    skin = skin_mask(mask, margin)
    if not skin.any():
        return float("nan"), float("nan")
    lab = rgb_to_lab(np.asarray(image)[skin])
    return float(np.median(lab[:, 0])), float(np.median(lab[:, 2]))


def skin_ita(image: np.ndarray, mask: np.ndarray, margin: float = SKIN_MARGIN) -> float:
    """ITA in degrees of the skin around the lesion: median ``L*`` and ``b*`` of :func:`skin_mask` pixels.

    Args:
        image: ``(H, W, 3) uint8`` RGB.
        mask: ``(H, W)`` lesion mask (ground truth, or a prediction on unlabelled images).
        margin: gap between lesion and measured skin, as a fraction of the shorter side.

    Returns:
        The angle, or NaN when no skin pixel is left (the lesion fills the image) or the skin's median ``b*`` is
        not positive (ITA is defined for yellowish skin only; see the module docstring).

    Raises:
        ValueError: image and mask sizes differ.
    """
    return skin_tone_ita(*skin_lab(image, mask, margin))


def lesion_fraction(mask: np.ndarray) -> float:
    """Share of the image's pixels that are lesion, in [0, 1]."""
    return float((np.asarray(mask) > 0).mean())


def touches_border(mask: np.ndarray) -> bool:
    """True when a lesion pixel lies on the image's first or last row or column (the lesion is cut off)."""
    m = np.asarray(mask) > 0
    return bool(m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any())


def size_group(fraction: float) -> str:
    """The :data:`SIZE_GROUPS` name of a lesion that covers ``fraction`` of its image."""
    for name, upper in SIZE_GROUPS:
        if fraction < upper:
            return name
    return SIZE_GROUPS[-1][0]


def mask_attributes(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], ids: Sequence[str] | None = None,
                    margin: float = SKIN_MARGIN) -> pd.DataFrame:
    """Attributes measurable on any image with a mask: ITA and its category, lesion size, border contact.

    Returns:
        DataFrame (index ``ids`` or 0..n-1) with columns ``ita``, ``skin_tone``, ``lesion_fraction``,
        ``size``, ``border_contact``.

    Raises:
        ValueError: different numbers of images, masks and ids.
    """
    if len(images) != len(masks) or (ids is not None and len(ids) != len(images)):
        raise ValueError(f"got {len(images)} images, {len(masks)} masks and "
                         f"{'no' if ids is None else len(ids)} ids: pass one of each per image")
    rows = []
    for image, mask in zip(images, masks):
        ita = skin_ita(image, mask, margin)
        fraction = lesion_fraction(mask)
        rows.append({"ita": ita, "skin_tone": ita_category(ita) if np.isfinite(ita) else "unknown",
                     "lesion_fraction": fraction, "size": size_group(fraction), "border_contact": touches_border(mask)})
    return pd.DataFrame(rows, index=list(ids) if ids is not None else None)


def subgroup_table(per_image: pd.DataFrame, by: str, metric: str = "dice", *, n_boot: int = N_BOOT,
                   level: float = 0.95, seed: int = 0, order: Sequence | None = None) -> pd.DataFrame:
    """Mean ``metric`` per value of attribute ``by``, with a bootstrap interval and the image count.

    Args:
        per_image: one row per image with a ``metric`` column and a ``by`` column.
        by: the attribute to group by (e.g. ``"skin_tone"``, ``"hair"``, ``"size"``).
        metric: the per-image score to average.
        n_boot, level, seed: as :func:`helpers.evaluation.reliability.bootstrap_ci` (each group resampled on its own).
        order: group values in the order to show (others follow, sorted); default sorted.

    Returns:
        DataFrame indexed by the group value with ``n``, ``mean``, ``low``, ``high``, ``width``.

    Raises:
        KeyError: ``by`` or ``metric`` is not a column (the columns are listed).
    """
    for column in (by, metric):
        if column not in per_image.columns:
            raise KeyError(f"no column {column!r} in the per-image table; columns: {list(per_image.columns)}")
    groups = {key: frame[metric].to_numpy() for key, frame in per_image.groupby(by, sort=True)}
    keys = [k for k in (order or []) if k in groups] + [k for k in groups if k not in set(order or [])]
    rows = {}
    for key in keys:
        ci = bootstrap_ci(groups[key], n_boot=n_boot, level=level, seed=seed)
        rows[key] = {"n": ci.n, "mean": ci.estimate, "low": ci.low, "high": ci.high, "width": ci.width}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = by
    return table
