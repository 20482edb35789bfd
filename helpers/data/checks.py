"""``python -m helpers.data check DIR``: validate every pair of a dataset folder and say what is wrong with it.

Introduced in notebook 01 (``01_data_exploration``), which checks the course data before looking at it.
:func:`check_dataset` collects every problem instead of stopping at the first:

* PROBLEMS (exit 1): a file that does not decode, a file name that is not valid UTF-8, an image without a mask
  or a mask without an image, an id seen twice in one folder, a mask whose size differs from its image's, a mask
  the mask rule refuses (:func:`helpers.data.files.read_mask`: 0/1, colour, alpha-only, 16-bit, non-binary),
  **the same image content under two ids** (sha256 of the decoded pixels) of two lesions, **one id in two split
  folders** (``train/`` and ``val/``...), and one ``lesion_id`` of the metadata CSV (:mod:`helpers.data.layouts`)
  in two split folders.
* WARNINGS: empty or full masks, masks that look inverted (:func:`inverted_masks`: median lesion fraction
  above :data:`MAX_MEDIAN_LESION_FRACTION` and the lesion filling the image frame; training refuses them, see :func:`helpers.data.dataset.make_loaders`), the same image content
  under two ids that the metadata CSV gives one ``lesion_id`` (HAM10000 has two such pairs: the lesion keeps
  them in one split), and **near-duplicate images** (a resized, recompressed or recoloured copy, the same lesion
  photographed again from the same spot): two DCT perceptual hashes (:func:`perceptual_hash`) within
  :data:`NEAR_DUPLICATE_BITS` of 63 bits (8x8 frequencies of a 32x32 thumbnail) and within
  :data:`NEAR_DUPLICATE_FINE_BITS` of 255 bits (16x16 frequencies of a 64x64 thumbnail); near-duplicates that the metadata CSV
  gives one ``lesion_id`` (a lesion photographed again) are counted in one summary warning.

Why these hashes and bounds (``python -m helpers.data check ../shared/data/isic-real`` reproduces the last
figures): on 400 ISIC training images an 8x8 *average* hash put 275 of the 79,800 pairs of distinct images
within 3 bits (dermoscopy images all look alike at 8x8: a dark blob on lighter skin inside a vignette). The
63-bit DCT hash kept them at least 6 bits apart, and copies resized to 2/3 and saved as JPEG quality 80 stayed
within 4 bits (50 of 50). On the 2,086 images of ``isic-real`` it still found 24 pairs within 4 bits, of which
the ones looked at by eye split cleanly on the 255-bit hash: the same picture (recoloured, re-cropped or
shifted) at 4-56 bits, different lesions with a similar layout (small lesion in the middle, ruler below) at 80
or more; resized JPEG copies stay within 10. Photographs of one lesion from another angle are found by no small
hash: that is what a metadata CSV with ``lesion_id`` is for (:mod:`helpers.data.layouts`).
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from helpers.data.files import (
    MASK_EXTENSION,
    MASK_SUFFIX,
    DatasetError,
    binarize_mask,
    check_sizes,
    frame_fraction,
    mask_values,
    read_image,
)
from helpers.data.layouts import (
    GROUP_COLUMN,
    ISIC2018_SUBSETS,
    Pair,
    detect_layout,
    has_isic2018_truth,
    mask_id,
    printable,
    read_groups,
    require_dir,
    scan,
    split_folders,
)
from helpers.data.splits import find_leaks

#: Masks look inverted (background white) when their median lesion fraction is above this ...
MAX_MEDIAN_LESION_FRACTION = 0.5
#: ... and the lesion fills more than this share of the image frame on the median (see files.frame_fraction).
#: Area alone is not enough: a small subset of real images can have big lesions (0.52 on 16 isic-real ones).
MAX_MEDIAN_FRAME_FRACTION = 0.5


def inverted_masks(fractions: Sequence[float], frames: Sequence[float],
                   limit: float | None = MAX_MEDIAN_LESION_FRACTION) -> str | None:
    """Why masks with these lesion ``fractions`` and ``frames`` (frame fractions) look inverted, else None.

    The one rule of ``check`` (a warning) and of training (refused, :func:`helpers.data.dataset.make_loaders`):
    the median lesion fraction is above ``limit`` AND the median frame fraction above
    :data:`MAX_MEDIAN_FRAME_FRACTION`. ``limit`` None never calls masks inverted.
    """
    if limit is None or not len(fractions):
        return None
    area, frame = float(np.median(fractions)), float(np.median(frames))
    if area <= limit or frame <= MAX_MEDIAN_FRAME_FRACTION:
        return None
    return (f"their median lesion fraction is {area:.2f} (above {limit:.2f}) and the lesion fills "
            f"{frame:.0%} of the image border on the median (lesion masks rarely touch it)")
#: Near-duplicates (warning) differ in at most this many bits of the coarse 63-bit hash ...
NEAR_DUPLICATE_BITS = 4
#: ... and in at most this many bits of the fine 255-bit hash.
NEAR_DUPLICATE_FINE_BITS = 64
#: (thumbnail side, kept frequencies per side) of the coarse and the fine perceptual hash.
COARSE_HASH, FINE_HASH = (32, 8), (64, 16)


@dataclass
class CheckReport:
    """What :func:`check_dataset` found. ``ok`` is True when ``problems`` is empty.

    Attributes:
        root: the folder checked. layout: its layout (``"splits"`` for train/val/test sub-folders).
        parts: pairs per part (``{"all": n}``, ``{"train": ..., "val": ...}`` or ISIC 2018 subsets).
        problems: ``(file, reason)`` for every unusable file (see the module docstring); a reason that
            involves a second file names it.
        warnings: ``(file, reason)`` for suspicious but usable data.
        image_sizes: ``Counter`` of ``(width, height)`` over readable images.
        lesion_fractions: lesion pixel fraction of every readable mask, in [0, 1].
        frame_fractions: the lesion's share of the image frame of every readable mask, in [0, 1].
    """

    root: Path
    layout: str = "unknown"
    parts: dict[str, int] = field(default_factory=dict)
    problems: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[tuple[Path, str]] = field(default_factory=list)
    image_sizes: Counter = field(default_factory=Counter)
    lesion_fractions: list[float] = field(default_factory=list)
    frame_fractions: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def n_pairs(self) -> int:
        return sum(self.parts.values())

    def summary(self) -> str:
        """A few human-readable lines: counts, image sizes, lesion fraction, then warnings and problems."""
        parts = ", ".join(f"{k} {v}" for k, v in self.parts.items())
        lines = [f"dataset {self.root} ({self.layout} layout): {self.n_pairs} pairs ({parts or 'none'})"]
        if self.image_sizes:
            common = ", ".join(f"{w}x{h} ({c})" for (w, h), c in self.image_sizes.most_common(5))
            more = len(self.image_sizes) - 5
            lines.append(f"image sizes (width x height): {common}" + (f" and {more} more" if more > 0 else ""))
        if self.lesion_fractions:
            f = np.asarray(self.lesion_fractions)
            lines.append(f"lesion fraction: min {f.min():.3f}  median {np.median(f):.3f}  max {f.max():.3f}")
        for label, items in (("warning", self.warnings), ("problem", self.problems)):
            if items:
                lines.append(f"{len(items)} {label}(s):")
                lines += [f"  {path}: {reason}" for path, reason in items]
        lines.append("OK" if self.ok else f"NOT OK: {len(self.problems)} problem(s); fix or remove those files")
        return "\n".join(map(printable, lines))  # a non-UTF-8 file name prints as \xNN escapes


def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix ``(n, n)``: ``D @ x`` is the DCT of the column ``x``."""
    k, i = np.mgrid[0:n, 0:n]
    d = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    return d


def perceptual_hash(image: np.ndarray, size: int = COARSE_HASH[0], keep: int = COARSE_HASH[1]) -> int:
    """A DCT perceptual hash ("pHash") of an ``(H, W, 3) uint8`` image, as an int of ``keep**2 - 1`` bits.

    The image is turned grey and box-resized to ``size x size``; of its 2-D DCT the lowest ``keep x keep``
    frequencies except the mean are kept, and each bit says whether that coefficient is above their median.
    Resized or recompressed copies differ in few bits (see the module docstring for the measured bounds).
    """
    grey = Image.fromarray(image).convert("L").resize((size, size), Image.Resampling.BOX)
    d = _dct_matrix(size)
    coefficients = (d @ np.asarray(grey, dtype=np.float64) @ d.T)[:keep, :keep].ravel()[1:]
    bits = coefficients > np.median(coefficients)
    return int("".join("1" if b else "0" for b in bits), 2)


def _pixel_hash(image: np.ndarray) -> str:
    """sha256 of the decoded pixels and shape: equal for the same picture saved under any name or format."""
    return hashlib.sha256(repr(image.shape).encode() + image.tobytes()).hexdigest()


@dataclass
class _Seen:
    """Per-image fingerprints gathered while checking, compared once every part is read."""

    pixels: dict[str, list[tuple[str, Path]]] = field(default_factory=dict)
    phash: list[tuple[int, int, Path, str]] = field(default_factory=list)  # (coarse, fine, image, id)
    parts: dict[str, list[Pair]] = field(default_factory=dict)  # part name -> its pairs, for find_leaks
    groups: dict[str, str] = field(default_factory=dict)  # image id -> lesion id


def _check_parts(root: Path) -> tuple[str, list[tuple[str, Path, str, str]]]:
    """(layout label, [(part name, folder, layout, subset)]) of everything check_dataset should visit."""
    folders = split_folders(root)
    if folders:
        return "splits", [(name, folder, "auto", "training") for name, folder in folders.items()]
    layout = detect_layout(root)
    if layout == "isic2018":
        subsets = [s for s in ISIC2018_SUBSETS if s == "training" or has_isic2018_truth(root, s)]
        return layout, [(s, root, layout, s) for s in subsets]
    return layout, [("all", root, layout, "training")]


def _reason(exc: DatasetError, what: str, path: Path) -> str:
    """The error's message without its leading ``"<what> <path>: "`` (the report prints the path already)."""
    return str(exc).removeprefix(f"{what} {path}: ")


def _check_mask(pair: Pair, image: np.ndarray | None, report: CheckReport) -> None:
    """Apply the mask rule and the size check to ``pair.mask``; record its lesion fraction or its problem."""
    try:
        values = mask_values(pair.mask)
        if image is not None:
            check_sizes(pair, image.shape, values.shape)
        mask = binarize_mask(values, pair.mask)
    except DatasetError as exc:
        report.problems.append((pair.mask, _reason(exc, "mask", pair.mask)))
        return
    fraction = float(mask.mean()) if mask.size else 0.0
    report.lesion_fractions.append(fraction)
    report.frame_fractions.append(frame_fraction(mask))
    if fraction == 0.0:
        report.warnings.append((pair.mask, "mask is empty (no lesion pixel)"))
    elif fraction == 1.0:
        report.warnings.append((pair.mask, "mask covers the whole image"))


def _check_pair(pair: Pair, report: CheckReport, seen: _Seen) -> None:
    """Validate one pair, appending to ``report`` and recording the image's fingerprints in ``seen``."""
    image = None
    try:
        image = read_image(pair.image)
    except DatasetError as exc:
        report.problems.append((pair.image, _reason(exc, "image", pair.image)))
    if image is not None:
        report.image_sizes[(image.shape[1], image.shape[0])] += 1
        seen.pixels.setdefault(_pixel_hash(image), []).append((pair.id, pair.image))
        seen.phash.append((perceptual_hash(image), perceptual_hash(image, *FINE_HASH), pair.image, pair.id))
    _check_mask(pair, image, report)


def _check_part(name: str, folder: Path, layout: str, subset: str, report: CheckReport, seen: _Seen,
                progress: bool, groups: dict[str, str] | None = None) -> None:
    """Check one part (a split folder or an ISIC 2018 subset); raises DatasetError when it cannot be read.

    ``groups``: the root's ``{image_id: lesion_id}``, used when the part has no metadata CSV of its own.
    """
    found = scan(folder, detect_layout(folder) if layout == "auto" else layout, subset)
    groups = read_groups(folder) or groups or {}
    report.problems += [(p, f"file name {printable(p.name)} is not valid UTF-8: rename it (and its image or mask "
                            "to match) with a UTF-8 name; ASCII letters, digits, '-' and '_' are safest (training "
                            "refuses it)") for p in found.bad_names]
    report.problems += [(p, f"image has no mask ({p.stem}{MASK_SUFFIX}{MASK_EXTENSION} expected in "
                            f"{found.mask_dir})") for p in found.images_without_mask]
    report.problems += [(p, f"mask has no image (expected {mask_id(p)}.jpg/.png in "
                            f"{', '.join(map(str, found.image_dirs))})") for p in found.masks_without_image]
    for ident, paths in sorted(found.duplicates.items()):
        report.problems += [(p, f"duplicate id {ident!r}: also {', '.join(str(q) for q in paths if q != p)}")
                            for p in paths[1:]]
    report.parts[name] = len(found.pairs)
    for pair in tqdm(found.pairs, desc=f"checking {name}", disable=not progress):
        seen.parts.setdefault(name, []).append(pair)
        if pair.id in groups:
            seen.groups[pair.id] = groups[pair.id]
        _check_pair(pair, report, seen)


def _cross_checks(report: CheckReport, seen: _Seen) -> None:
    """Problems and warnings that compare images: shared ids across parts, equal pixels, near-duplicates."""
    for leak in find_leaks(seen.parts, seen.groups):  # the one leak check (helpers.data.splits)
        (first_part, first), *rest = leak.places
        for part, pair in rest:
            if leak.kind == "id":
                report.problems.append((pair.image, f"id {leak.key!r} is in both {first_part} and {part} (also "
                                                    f"{first.image}): a pair in two splits leaks test data; remove it "
                                                    "from one split"))
            else:
                report.problems.append((pair.image, f"{GROUP_COLUMN} {leak.key!r} is in both {first_part} and {part} "
                                                    f"(also {first.image}): one lesion in two splits leaks test data; "
                                                    "keep its images in one split"))
    exact: set[frozenset[Path]] = set()
    for copies in seen.pixels.values():
        first_id, first = copies[0]
        for ident, path in copies[1:]:
            exact.add(frozenset((first, path)))
            if ident != first_id:
                _same_pixels(report, seen.groups, (first_id, first), (ident, path))
    _near_duplicates(report, seen.phash, exact, seen.groups)


def _same_pixels(report: CheckReport, groups: dict[str, str], first: tuple[str, Path], copy: tuple[str, Path]) -> None:
    """The same pixels under two ids: a warning when the metadata CSV gives both one lesion (kept in one split),
    else a problem (across lesions a copy can land in two splits)."""
    (first_id, first_path), (ident, path) = first, copy
    lesion = groups.get(ident)
    if lesion is not None and groups.get(first_id) == lesion:
        report.warnings.append((path, f"same pixels as {first_path} (id {first_id!r}) under another id {ident!r}, "
                                      f"both of {GROUP_COLUMN} {lesion!r}: the lesion keeps them in one split; "
                                      "keep one copy unless both are meant"))
    else:
        report.problems.append((path, f"same pixels as {first_path} (id {first_id!r}) under another id "
                                      f"{ident!r}: keep one copy (a duplicate can land in two splits)"))


def _near_duplicates(report: CheckReport, hashes: list[tuple[int, int, Path, str]], exact: set[frozenset[Path]],
                     groups: dict[str, str]) -> None:
    """Warn for every pair of images within both near-duplicate bounds (coarse hash first: it is vectorised).

    Pairs the metadata CSV gives one ``lesion_id`` (HAM10000 photographs many lesions more than once: 110 such
    pairs in ham10000-small) are expected and kept in one split by a lesion-grouped split: they are counted in one
    summary warning instead of one line each; pairs across lesions get a line each.
    """
    if len(hashes) < 2:
        return
    same_lesion: list[tuple[Path, Path]] = []
    codes = np.array([coarse for coarse, *_ in hashes], dtype=np.uint64)
    for i in range(len(codes) - 1):
        distance = np.bitwise_count(codes[i + 1:] ^ codes[i])
        for j in np.flatnonzero(distance <= NEAR_DUPLICATE_BITS) + i + 1:
            (_, fine_a, a, id_a), (_, fine_b, b, id_b) = hashes[i], hashes[j]
            fine = (fine_a ^ fine_b).bit_count()
            if fine > NEAR_DUPLICATE_FINE_BITS or frozenset((a, b)) in exact:
                continue
            if id_a in groups and groups.get(id_b) == groups[id_a]:
                same_lesion.append((a, b))
                continue
            report.warnings.append((b, f"near-duplicate of {a} (perceptual hashes {int(distance[j - i - 1])} of "
                                       f"63 and {fine} of 255 bits apart): the same picture or lesion twice? "
                                       "Keep one, or both in one split"))
    if same_lesion:
        (a, b), more = same_lesion[0], len(same_lesion) - 1
        report.warnings.append((report.root, f"{len(same_lesion)} near-duplicate pair(s) share a {GROUP_COLUMN} "
                                             f"(e.g. {a.name} and {b.name}{f', and {more} more' if more else ''}): "
                                             "the same lesion photographed again; the lesion-grouped split keeps "
                                             "each lesion in one split"))


def check_dataset(root: str | os.PathLike[str], *, progress: bool = True) -> CheckReport:
    """Validate every pair of a dataset folder (any layout, or train/val/test sub-folders) and summarise it.

    See the module docstring for what is a problem and what a warning. Never raises on a bad dataset (an
    unknown layout or a missing folder is itself reported as a problem).
    """
    report = CheckReport(root=Path(root))
    try:
        report.layout, parts = _check_parts(require_dir(root))
    except DatasetError as exc:
        report.problems.append((Path(root), str(exc)))
        return report
    seen = _Seen()
    try:
        groups = read_groups(report.root)
    except DatasetError as exc:
        report.problems.append((report.root, str(exc)))
        groups = None
    for name, folder, layout, subset in parts:
        try:
            _check_part(name, folder, layout, subset, report, seen, progress, groups)
        except DatasetError as exc:
            report.problems.append((folder, str(exc)))
    _cross_checks(report, seen)
    inverted = inverted_masks(report.lesion_fractions, report.frame_fractions)
    if inverted:
        report.warnings.append((report.root, f"are the masks inverted? {inverted}. Lesion pixels must be white "
                                             "(255), background black (0)"))
    return report
