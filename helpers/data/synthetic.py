"""The embedded default dataset: procedurally drawn dermoscopy-like images with exact lesion masks.

No download, no licence question, and the ground truth is exact by construction: the mask is the 0.5 level
set of the lesion's opacity, so a model can in principle reach Dice 1. Each image is drawn in layers, the way
a dermoscope sees skin:

1. **skin**: a tone from light to dark skin, low-frequency blotches, fine texture, illumination falloff;
2. **lesion**: a radial shape perturbed by a few Fourier harmonics and smooth noise; pigment density with
   variegation (tan, brown, dark brown), blue-grey veil, a darker pigment network, dots and globules,
   absorbed Beer-Lambert style so the lesion darkens whatever skin lies under it; a soft but defined border;
3. **artefacts** drawn over both, which leave the mask untouched just like real ground truth: hairs,
   gel/air bubbles, ruler tick marks, the dark circular vignette of the dermoscope's lens.

Images are 4:3 like HAM10000's 600x450: ``W = size``, ``H = round(0.75 * size)``. Everything is drawn from
``numpy.random.default_rng(seed)``, so a seed always gives the same pair on any machine.

Each dataset folder also holds ``attributes.csv``: what was drawn for every image (skin tone, hairs, gel
bubbles, ruler, vignette, lesion area, border contact), so notebook 06 can score subgroups offline. A
:class:`Domain` changes the generator's settings (skin-tone range, the dermoscope's colour cast) to draw a
held-out "clinic" for the domain-shift lesson; the default domain draws the embedded dataset.

Public API: :func:`generate_sample`, :func:`generate_pair`, :class:`Domain`, :func:`sample_seed`,
:func:`write_dataset`, :func:`ensure_synthetic`, :data:`DEFAULT_SMOKE`, :data:`DEFAULT_FULL`,
:data:`ATTRIBUTES_FILE`, :data:`ATTRIBUTE_COLUMNS`. Introduced in notebook 01 (``01_data_exploration``), whose
data it is unless ``SKINSEG_DATA`` points elsewhere.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from helpers import config
from helpers.data.files import JPEG_EXTENSION, atomic_write, mask_name, write_mask, write_text_atomic

#: Dataset sizes :func:`helpers.data.course_splits` uses in smoke mode and in the full recipe.
DEFAULT_SMOKE: dict[str, int] = dict(n=40, size=192)
DEFAULT_FULL: dict[str, int] = dict(n=600, size=384)
#: Bump when the drawing changes: cached datasets with another version are regenerated.
GENERATOR_VERSION = 2
ID_PREFIX = "SYN_"
JPEG_QUALITY = 95

# Skin tones (linear-ish RGB in [0, 1]) from very light to dark; a tone is interpolated between neighbours.
_SKIN_TONES = np.array([
    [0.95, 0.84, 0.80], [0.93, 0.78, 0.70], [0.88, 0.70, 0.60],
    [0.78, 0.58, 0.45], [0.62, 0.44, 0.32], [0.46, 0.31, 0.22],
], dtype=np.float32)
# Melanin absorbs blue most and red least: a dense spot turns brown, then dark brown, then almost black.
_MELANIN_ABSORPTION = np.array([0.75, 1.15, 1.55], dtype=np.float32)
_BLUE_GREY = np.array([0.40, 0.44, 0.52], dtype=np.float32)


def image_shape(size: int) -> tuple[int, int]:
    """``(H, W)`` of a synthetic image of width ``size``: 4:3 like dermoscopy, ``H = round(0.75 * size)``."""
    return int(round(0.75 * size)), int(size)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: float, octaves: int = 3) -> np.ndarray:
    """Zero-mean, unit-std smooth noise ``(H, W) float32``: Gaussian grids of ``cells`` (x2 per octave) upsampled."""
    h, w = shape
    out = np.zeros(shape, np.float32)
    amp = 1.0
    for octave in range(octaves):
        gw = max(2, int(round(cells * 2**octave)))
        gh = max(2, int(round(gw * h / w)))
        grid = rng.standard_normal((gh, gw)).astype(np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        amp *= 0.5
    out -= out.mean()
    return out / (out.std() + 1e-6)


def _skin(rng: np.random.Generator, shape: tuple[int, int],
          tones: tuple[float, float] = (0.0, 1.0)) -> tuple[np.ndarray, float]:
    """Skin background ``(H, W, 3) float32`` in [0, 1] (tone, blotches, texture, falloff) and its tone in [0, 1].

    The tone position is drawn from Beta(1.3, 2.2) (most dermoscopy archives hold lighter skin), mapped onto
    ``tones`` = (lightest, darkest) as fractions of the :data:`_SKIN_TONES` scale (0 = very light, 1 = dark).
    """
    h, w = shape
    position = tones[0] + rng.beta(1.3, 2.2) * (tones[1] - tones[0])
    t = position * (len(_SKIN_TONES) - 1)
    lo = int(np.floor(t))
    hi = min(lo + 1, len(_SKIN_TONES) - 1)
    tone = (1 - (t - lo)) * _SKIN_TONES[lo] + (t - lo) * _SKIN_TONES[hi]
    tone = tone * rng.uniform(0.95, 1.04, size=3).astype(np.float32)  # white balance of the camera
    blotch = _smooth_noise(rng, shape, cells=rng.uniform(2, 5))
    redness = np.clip(_smooth_noise(rng, shape, cells=rng.uniform(3, 7)), 0, None)
    fine = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), 0.8 * w / 256)
    skin = tone[None, None, :] * (1 + 0.05 * blotch[..., None] + 0.05 * fine[..., None])
    skin = skin + rng.uniform(0.0, 0.05) * redness[..., None] * np.array([0.3, -0.6, -0.4], np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = w * rng.uniform(0.3, 0.7), h * rng.uniform(0.3, 0.7)
    r2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / (0.25 * (w**2 + h**2))
    falloff = 1 - rng.uniform(0.0, 0.3) * r2
    return skin * falloff[..., None], float(position)


def _lesion_field(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Normalised lesion distance ``d (H, W) float32`` (< 1 inside the lesion) and the lesion radius in pixels.

    ``d`` is the distance to the lesion centre divided by an angle-dependent radius: an ellipse of random
    elongation and orientation, perturbed by Fourier harmonics 2..7 and by smooth noise.
    """
    h, w = shape
    area_fraction = float(np.exp(rng.uniform(np.log(0.03), np.log(0.6))))
    radius = float(np.sqrt(area_fraction * h * w / np.pi))
    angle = rng.uniform(0, np.pi)
    stretch = np.sqrt(rng.uniform(1.0, 1.7))  # elongation: radius * stretch along `angle`, radius / stretch across
    if rng.random() < 0.07:  # centre near one edge: a lesion cut by the image border, as in real close-ups
        inset = rng.uniform(-0.2, 0.5) * radius
        along_x, along_y = rng.uniform(0.2 * w, 0.8 * w), rng.uniform(0.2 * h, 0.8 * h)
        cx, cy = [(inset, along_y), (w - inset, along_y), (along_x, inset), (along_x, h - inset)][rng.integers(4)]
    else:  # keep the whole lesion in view when it fits (large lesions still reach the border)
        reach = 1.25 * radius * stretch
        cx = rng.uniform(min(reach, w / 2), max(w - reach, w / 2))
        cy = rng.uniform(min(reach, h / 2), max(h - reach, h / 2))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    u = (dx * np.cos(angle) + dy * np.sin(angle)) / stretch
    v = (-dx * np.sin(angle) + dy * np.cos(angle)) * stretch
    theta = np.arctan2(v, u)
    irregularity = rng.uniform(0.04, 0.22)
    radial = np.ones(shape, np.float32)
    for k in range(2, 8):
        radial += irregularity * rng.standard_normal() / k**0.7 * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    radial = np.clip(radial, 0.35, None)
    radial *= 1 + rng.uniform(0.02, 0.08) * _smooth_noise(rng, shape, cells=w / max(radius, 8.0) * 1.5, octaves=2)
    d = np.hypot(u, v) / (radius * radial)
    return d.astype(np.float32), radius


def _pigment_network(rng: np.random.Generator, shape: tuple[int, int], size: int) -> np.ndarray:
    """A reticular pattern ``(H, W) float32`` in [0, 1]: the zero-crossings of band-pass noise form a mesh."""
    h, w = shape
    period = rng.uniform(5.0, 10.0) * size / 256
    field = _smooth_noise(rng, shape, cells=w / period, octaves=1)
    return np.clip(1 - np.abs(field) / rng.uniform(0.15, 0.3), 0, 1)


def _dots(rng: np.random.Generator, mask: np.ndarray, size: int) -> np.ndarray:
    """Dark dots and globules ``(H, W) float32`` in [0, 1] at random positions inside ``mask``."""
    layer = np.zeros(mask.shape, np.uint8)
    inside = np.flatnonzero(mask)
    count = int(rng.integers(0, 25)) if inside.size and rng.random() < 0.6 else 0
    scale = size / 256
    for idx in rng.choice(inside, size=count) if count else []:
        y, x = divmod(int(idx), mask.shape[1])
        r = max(1, int(round(rng.uniform(0.8, 3.5) * scale)))
        cv2.circle(layer, (x, y), r, int(rng.integers(120, 256)), -1, cv2.LINE_AA)
    return cv2.GaussianBlur(layer.astype(np.float32) / 255, (0, 0), 0.6 * scale)


def _draw_lesion(rng: np.random.Generator, skin: np.ndarray, d: np.ndarray, radius: float, size: int) -> np.ndarray:
    """Darken ``skin`` by the lesion's pigment; returns the image ``(H, W, 3) float32``.

    The lesion's opacity is a logistic step of ``d`` centred on ``d = 1``, so the exact mask ``d < 1`` is where
    the pigment is at least half its full strength.
    """
    shape = d.shape
    softness = min(rng.uniform(0.8, 4.0) * size / 256 / radius, 0.08)  # border width: a few pixels
    alpha = 1 / (1 + np.exp(np.clip((d - 1) / softness, -30, 30)))
    mask = d < 1
    base = rng.uniform(0.45, 1.7)
    variegation = _smooth_noise(rng, shape, cells=rng.uniform(4, 10))
    centre = rng.uniform(-0.3, 0.6) * (1 - np.clip(d, 0, 1) ** 2)  # darker (or lighter) centre
    density = base * np.clip(1 + rng.uniform(0.15, 0.55) * variegation + centre, 0.25, None)
    if rng.random() < 0.7:
        patches = np.clip(_smooth_noise(rng, shape, cells=rng.uniform(3, 7)) + 0.3, 0, 1)
        density += rng.uniform(0.3, 0.9) * _pigment_network(rng, shape, size) * patches
    density += rng.uniform(0.5, 1.5) * _dots(rng, mask, size)
    image = skin * np.exp(-(alpha * density)[..., None] * _MELANIN_ABSORPTION)
    if rng.random() < 0.35:  # blue-grey veil / regression structures over part of the lesion
        veil = np.clip(_smooth_noise(rng, shape, cells=rng.uniform(3, 6)) - rng.uniform(0.0, 0.8), 0, 1)
        veil *= alpha * rng.uniform(0.4, 0.85)
        grey = _BLUE_GREY * float(np.clip(skin.mean(), 0.35, 0.9)) / 0.8
        image = image * (1 - veil[..., None]) + grey * veil[..., None]
    return image


def _draw_hairs(rng: np.random.Generator, image: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    """Thin, dark (sometimes fair) curved hairs crossing skin and lesion alike; returns (image, hair count)."""
    if rng.random() < 0.45:
        return image, 0
    h, w = image.shape[:2]
    count = int(rng.integers(1, 6)) if rng.random() < 0.6 else int(rng.integers(6, 30))
    colour = np.array([0.10, 0.07, 0.05], np.float32) if rng.random() < 0.8 else np.array([0.55, 0.42, 0.30], np.float32)
    layer = np.zeros((h, w), np.uint8)
    t = np.linspace(0, 1, 24, dtype=np.float32)[:, None]
    for _ in range(count):
        start = np.array([rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h], np.float32)
        heading = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.3, 1.1) * w
        end = start + length * np.array([np.cos(heading), np.sin(heading)], np.float32)
        bend = rng.normal(0, 0.2) * length * np.array([-np.sin(heading), np.cos(heading)], np.float32)
        ctrl = (start + end) / 2 + bend
        curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * ctrl + t**2 * end
        thickness = max(1, int(round(rng.uniform(0.7, 1.6) * size / 256)))
        cv2.polylines(layer, [np.round(curve).astype(np.int32)], False, int(rng.integers(170, 256)),
                      thickness, cv2.LINE_AA)
    a = (layer.astype(np.float32) / 255 * rng.uniform(0.75, 0.95))[..., None]
    return image * (1 - a) + colour * a, count


def _draw_bubbles(rng: np.random.Generator, image: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    """Gel or air bubbles: bright thin rings with a faint bright interior; returns (image, bubble count)."""
    if rng.random() > 0.25:
        return image, 0
    h, w = image.shape[:2]
    ring = np.zeros((h, w), np.uint8)
    fill = np.zeros((h, w), np.uint8)
    count = int(rng.integers(1, 6))
    for _ in range(count):
        centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        r = int(rng.uniform(3, 28) * size / 256)
        cv2.circle(fill, centre, r, 255, -1, cv2.LINE_AA)
        cv2.circle(ring, centre, r, 255, max(1, size // 256), cv2.LINE_AA)
    ring_a = cv2.GaussianBlur(ring.astype(np.float32) / 255, (0, 0), 0.5) * rng.uniform(0.5, 0.85)
    fill_a = fill.astype(np.float32) / 255 * rng.uniform(0.03, 0.1)
    image = image * (1 - fill_a[..., None]) + fill_a[..., None]
    return image * (1 - ring_a[..., None]) + 0.97 * ring_a[..., None], count


def _draw_ruler(rng: np.random.Generator, image: np.ndarray, size: int) -> tuple[np.ndarray, bool]:
    """A ruler near one edge: a base line with ticks every millimetre, longer every fifth; returns (image, drawn)."""
    if rng.random() > 0.2:
        return image, False
    h, w = image.shape[:2]
    layer = np.zeros((h, w), np.uint8)
    scale = size / 256
    step = rng.uniform(4.5, 7.5) * scale
    length = rng.uniform(0.35, 0.7) * w
    x0 = rng.uniform(0.05 * w, w - length - 0.05 * w)
    y0 = h - rng.uniform(0.06, 0.14) * h
    tilt = np.deg2rad(rng.uniform(-12, 12))
    direction = np.array([np.cos(tilt), np.sin(tilt)])
    normal = np.array([np.sin(tilt), -np.cos(tilt)])
    origin = np.array([x0, y0])
    ends = [origin, origin + length * direction]
    thickness = max(1, int(round(scale)))
    cv2.line(layer, tuple(np.round(ends[0]).astype(int)), tuple(np.round(ends[1]).astype(int)), 255, thickness,
             cv2.LINE_AA)
    for i in range(int(length // step) + 1):
        p = origin + i * step * direction
        tick = (6.0 if i % 5 == 0 else 3.0) * scale
        q = p + tick * normal
        cv2.line(layer, tuple(np.round(p).astype(int)), tuple(np.round(q).astype(int)), 255, thickness, cv2.LINE_AA)
    a = (layer.astype(np.float32) / 255 * rng.uniform(0.6, 0.9))[..., None]
    return image * (1 - a) + np.float32(0.12) * a, True


def _draw_vignette(rng: np.random.Generator, image: np.ndarray) -> tuple[np.ndarray, bool]:
    """The dermoscope's round field of view: corners outside a circle fade to near black; returns (image, drawn)."""
    if rng.random() > 0.4:
        return image, False
    h, w = image.shape[:2]
    half_diagonal = 0.5 * np.hypot(h, w)
    radius = rng.uniform(0.84, 1.0) * half_diagonal
    cx = w / 2 + rng.normal(0, 0.03 * w)
    cy = h / 2 + rng.normal(0, 0.03 * h)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot(xx - cx, yy - cy)
    edge = rng.uniform(0.005, 0.03) * half_diagonal
    dark = np.clip((r - radius) / edge + 0.5, 0, 1)[..., None]
    return image * (1 - dark) + np.float32(rng.uniform(0.02, 0.08)) * dark, True


@dataclass(frozen=True)
class Domain:
    """Generator settings of one synthetic "clinic": which skin tones it sees and the colour of its dermoscope.

    Introduced in notebook 06 (domain shift): train on one domain, test on another that the model never saw.
    The default domain draws the course's embedded dataset.

    Attributes:
        name: short label, used in folder names (letters, digits, ``-`` and ``_``).
        skin_tones: ``(lightest, darkest)`` range of the skin-tone scale, 0 = very light to 1 = dark; the
            tone is drawn from the same Beta(1.3, 2.2) mapped onto this range.
        colour_cast: per-channel RGB gain of the light / camera (``(1, 0.85, 0.65)`` is a warm, yellow-orange
            cast), applied to the whole image before blur and sensor noise.
    """

    name: str = "default"
    skin_tones: tuple[float, float] = (0.0, 1.0)
    colour_cast: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        lo, hi = self.skin_tones
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"skin_tones must satisfy 0 <= lightest <= darkest <= 1, got {self.skin_tones}")
        if len(self.colour_cast) != 3 or min(self.colour_cast) <= 0:
            raise ValueError(f"colour_cast must be three positive RGB gains, got {self.colour_cast}")
        if not self.name or not all(c.isalnum() or c in "-_" for c in self.name):
            raise ValueError(f"domain name {self.name!r}: use letters, digits, '-' and '_' only")

    @property
    def is_default(self) -> bool:
        """True for the settings of the embedded dataset (whatever the name)."""
        return self.skin_tones == (0.0, 1.0) and tuple(self.colour_cast) == (1.0, 1.0, 1.0)

    def to_dict(self) -> dict:
        """JSON form (for manifests)."""
        return {"name": self.name, "skin_tones": list(self.skin_tones), "colour_cast": list(self.colour_cast)}


#: The embedded dataset's settings.
DEFAULT_DOMAIN = Domain()
#: Columns of ``attributes.csv``: what the generator drew for each image (see :func:`generate_sample`).
ATTRIBUTE_COLUMNS: tuple[str, ...] = ("id", "skin_tone", "hairs", "bubbles", "ruler", "vignette", "lesion_area",
                                      "border_contact")
#: File name of the per-image attribute table :func:`write_dataset` writes beside ``images/`` and ``masks/``.
ATTRIBUTES_FILE = "attributes.csv"


def generate_sample(seed: int, size: int = 256,
                    domain: Domain = DEFAULT_DOMAIN) -> tuple[np.ndarray, np.ndarray, dict[str, float | int | bool]]:
    """Draw one synthetic dermoscopy image, its exact lesion mask, and what was drawn.

    Args:
        seed: any non-negative int; the same seed always gives the same sample (only
            ``numpy.random.default_rng(seed)`` is used, no global random state).
        size: image width in pixels (>= 32); the height is ``round(0.75 * size)``.
        domain: generator settings (:class:`Domain`); the default draws the embedded dataset.

    Returns:
        ``(image, mask, attributes)``: image ``(H, W, 3) uint8`` RGB, mask ``(H, W) uint8`` with values {0, 1}
        (1 = lesion), and ``attributes`` with ``skin_tone`` (0 = very light to 1 = dark), ``hairs`` and
        ``bubbles`` (counts, 0 = none), ``ruler`` and ``vignette`` (bool), ``lesion_area`` (share of the image)
        and ``border_contact`` (the lesion touches the image border). Hairs, bubbles, rulers and the vignette
        are drawn over the image but never change the mask, as in real ground truth.

    Raises:
        ValueError: ``size`` is smaller than 32 or ``seed`` is negative.
    """
    if size < 32:
        raise ValueError(f"size={size} is too small to draw a lesion: use size >= 32 (e.g. 64 for tests)")
    if seed < 0:
        raise ValueError(f"seed={seed} is negative: use a seed >= 0")
    rng = np.random.default_rng(seed)
    shape = image_shape(size)
    skin, tone = _skin(rng, shape, domain.skin_tones)
    d, radius = _lesion_field(rng, shape)
    mask = (d < 1).astype(np.uint8)
    image = _draw_lesion(rng, skin, d, radius, size)
    image, hairs = _draw_hairs(rng, image, size)
    image, bubbles = _draw_bubbles(rng, image, size)
    image, ruler = _draw_ruler(rng, image, size)
    image, vignette = _draw_vignette(rng, image)
    if tuple(domain.colour_cast) != (1.0, 1.0, 1.0):
        image = image * np.asarray(domain.colour_cast, np.float32)
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 0.45 * size / 256)
    image = image + rng.normal(0, 0.008, size=image.shape).astype(np.float32)  # sensor noise
    border = bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
    attributes = {"skin_tone": round(tone, 4), "hairs": hairs, "bubbles": bubbles, "ruler": ruler,
                  "vignette": vignette, "lesion_area": round(float(mask.mean()), 5), "border_contact": border}
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), mask, attributes


def generate_pair(seed: int, size: int = 256, domain: Domain = DEFAULT_DOMAIN) -> tuple[np.ndarray, np.ndarray]:
    """``(image, mask)`` of :func:`generate_sample` (same arguments, same pixels), without the attributes."""
    image, mask, _ = generate_sample(seed, size, domain)
    return image, mask


def sample_seed(seed: int, index: int) -> int:
    """Seed of sample ``index`` in the dataset with seed ``seed`` (stable: a larger n extends a smaller one)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def sample_id(index: int) -> str:
    """Image id of sample ``index``: ``SYN_0000000``, ``SYN_0000001``, ..."""
    return f"{ID_PREFIX}{index:07d}"


def write_dataset(out: Path | str, n: int, size: int = 256, seed: int = 0, *, domain: Domain = DEFAULT_DOMAIN,
                  progress: bool = True) -> list[str]:
    """Write ``n`` synthetic pairs in the ISIC layout, with their attribute table, and return their ids.

    Files: ``out/images/SYN_0000000.jpg`` (JPEG quality 95), ``out/masks/SYN_0000000_segmentation.png``
    (single channel, 0/255) and ``out/attributes.csv`` (:data:`ATTRIBUTE_COLUMNS`, one row per image, what
    :func:`generate_sample` drew; written atomically, last). Sample ``i`` is drawn from :func:`sample_seed`
    ``(seed, i)`` with ``domain``'s settings, so the same arguments give byte-identical files and a larger
    ``n`` extends a smaller one.

    Raises:
        ValueError: ``n`` < 1 (or ``size`` / ``seed`` invalid, see :func:`generate_pair`).
    """
    if n < 1:
        raise ValueError(f"n={n}: ask for at least one image")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    ids, rows = [], []
    for i in tqdm(range(n), desc=f"synthetic {size}px", unit="img", disable=not progress):
        image, mask, attributes = generate_sample(sample_seed(seed, i), size, domain)
        image_id = sample_id(i)
        Image.fromarray(image).save(out / "images" / f"{image_id}{JPEG_EXTENSION}", quality=JPEG_QUALITY)
        write_mask(out / "masks" / mask_name(image_id), mask)
        ids.append(image_id)
        rows.append({"id": image_id, **attributes})
    write_text_atomic(out / ATTRIBUTES_FILE, _attributes_csv(rows))
    return ids


def _attributes_csv(rows: list[dict]) -> str:
    """The rows as CSV text with the :data:`ATTRIBUTE_COLUMNS` header (booleans as ``True`` / ``False``)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=ATTRIBUTE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _manifest(n: int, size: int, seed: int, domain: Domain = DEFAULT_DOMAIN) -> dict:
    manifest = {"generator": "helpers.data.synthetic", "version": GENERATOR_VERSION, "n": n, "size": size, "seed": seed}
    return manifest if domain.is_default else {**manifest, "domain": domain.to_dict()}


def _is_complete(path: Path, n: int, size: int, seed: int, domain: Domain = DEFAULT_DOMAIN) -> bool:
    """True when ``path`` holds a manifest matching the arguments, the attribute table and all ``n`` pairs."""
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    expected = _manifest(n, size, seed, domain)
    if {k: manifest.get(k) for k in expected} != expected or not (path / ATTRIBUTES_FILE).is_file():
        return False
    return all((path / "images" / f"{sample_id(i)}{JPEG_EXTENSION}").is_file()
               and (path / "masks" / mask_name(sample_id(i))).is_file() for i in range(n))


def ensure_synthetic(n: int, size: int, seed: int = 0, root: Path | None = None, *,
                     domain: Domain = DEFAULT_DOMAIN) -> Path:
    """The folder of the synthetic dataset ``(n, size, seed)`` (of ``domain``), generated on first use.

    Returns ``(root or helpers.config.data_dir()) / f"synthetic-n{n}-s{size}-seed{seed}"`` (plus
    ``-<domain.name>`` for a non-default :class:`Domain`) in the ISIC layout (``images/``, ``masks/``,
    ``attributes.csv``, ``manifest.json``). An existing folder is reused when its ``manifest.json`` (written
    last) matches ``n``, ``size``, ``seed``, the domain and the generator version and every file is present;
    otherwise it is drawn again into a temporary folder that replaces it.

    Raises:
        ValueError: invalid ``n`` / ``size`` / ``seed`` (see :func:`write_dataset`).
    """
    base = Path(root) if root is not None else config.data_dir()
    path = base / (f"synthetic-n{n}-s{size}-seed{seed}" + ("" if domain.is_default else f"-{domain.name}"))
    if _is_complete(path, n, size, seed, domain):
        return path
    print(f"Drawing the synthetic dataset ({n} images, {size}px) into {path} (once; later runs reuse it)")
    try:
        with atomic_write(path) as tmp:  # a killed run leaves no half-drawn dataset at `path`
            write_dataset(tmp, n, size, seed, domain=domain)
            (tmp / "manifest.json").write_text(json.dumps(_manifest(n, size, seed, domain), indent=2) + "\n",
                                               encoding="utf-8")
    except OSError:  # another process renamed its copy in between
        if not _is_complete(path, n, size, seed, domain):
            raise
    return path
