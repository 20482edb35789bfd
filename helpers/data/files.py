"""Reading and writing files: naming constants, atomic writes, images, and THE one mask rule.

Introduced in notebook 01 (``01_data_exploration``), where the first image and mask are read. Every module that
touches a file on disk goes through here: training (Dataset, cache), ``python -m helpers.data check``, evaluation
(``helpers.evaluation.metrics.evaluate_folders`` / ``python -m helpers.evaluate``) and prediction, so one mask file means the
same thing everywhere.

The mask rule (:func:`read_mask`, also in ``docs/ARCHITECTURE.md``, section "The mask rule"): a mask is read the
way the official ISIC scorer (``isic_challenge_scoring.load_image``) reads it: single channel 8-bit (mode ``L``;
1-bit mode ``1`` is converted to 0/255 first), lesion where the value is **> 128** (so 128 is background). What
the scorer would misread or refuse is refused here with a message naming the file and the fix:

* a 0/1 mask (maximum value 1: the scorer sees it as empty): multiply by 255 / save with :func:`write_mask`;
* a colour mask whose channels differ (a red lesion on black...);
* a lesion drawn only in the alpha channel, or an alpha channel that disagrees with the grey values;
* more than :data:`MAX_NON_BINARY_FRACTION` of pixels strictly between 0 and 255 (a soft or JPEG mask);
* 16-bit or 32-bit masks (their scale is ambiguous and the scorer refuses them).

Grey RGB / RGBA / LA / palette masks whose channels are all equal (and alpha opaque or equal to the grey) are
accepted: they hold the same values as the single-channel mask.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from helpers.runfolder import WRITE_CAUSES

#: File extension of the JPEG images the course writes (the synthetic set's, :mod:`helpers.data.synthetic`).
JPEG_EXTENSION = ".jpg"
#: File extensions read as images (case-insensitive).
IMAGE_EXTENSIONS: tuple[str, ...] = (JPEG_EXTENSION, ".jpeg", ".png")
#: Masks are named ``<id>_segmentation.png`` (ISIC convention): this suffix, then :data:`MASK_EXTENSION`.
MASK_SUFFIX = "_segmentation"
#: File extension of masks written by the course (PNG: lossless).
MASK_EXTENSION = ".png"
#: A mask value strictly above this is lesion (the official scorer's ``> 128``; 128 itself is background).
MASK_THRESHOLD = 128
#: Masks with more than this fraction of pixels valued 1-254 are refused (anti-aliased edges stay below it).
MAX_NON_BINARY_FRACTION = 0.01
#: How many items :func:`listing` shows before "... and N more".
LIST_LIMIT = 10

_HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_DECODE_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError)
_FIX = "save it as a single-channel 0/255 PNG (helpers.data.files.write_mask does)"



class DatasetError(ValueError):
    """A dataset folder or file the course cannot use; the message names the file(s) and the fix."""


class PairLike(Protocol):
    """Anything with an ``image`` and a ``mask`` path (e.g. :class:`helpers.data.layouts.Pair`)."""

    image: Path
    mask: Path


def listing(items: Sequence[Any], limit: int = LIST_LIMIT) -> str:
    """``a, b, c`` for the first ``limit`` items, then ``... and N more``: the one list format of every message."""
    items = list(items)
    shown = ", ".join(str(p) for p in items[:limit])
    return shown + (f" ... and {len(items) - limit} more" if len(items) > limit else "")


def mask_name(image_id: str) -> str:
    """The file name of the mask of ``image_id``: ``"<id>_segmentation.png"``."""
    return f"{image_id}{MASK_SUFFIX}{MASK_EXTENSION}"


# --------------------------------------------------------------------------------------------- atomic writes
def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class OutputWriteError(ValueError):
    """An output file could not be written (disk full, read-only, no permission); names the file and the fix."""


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an ``OSError`` in the block into :class:`OutputWriteError` naming ``path``, the cause and the fix."""
    try:
        yield
    except OSError as err:
        _, cause, fix = WRITE_CAUSES.get(err.errno, ("other", err.strerror or str(err),
                                                     "check the disk and the folder's permissions"))
        cause = f"{cause}: {fix}"
        raise OutputWriteError(f"cannot write {path}: {cause}, then rerun") from err


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed over ``path``, on failure removed.

    The caller creates a file *or a folder* at the yielded path. Readers therefore see either the old
    ``path`` or the complete new one, never a half-written file (a killed process leaves only a hidden
    ``.<name>.tmp-*`` behind). An existing folder at ``path`` is moved aside and deleted after the rename.
    The parent folder is created.

    Raises:
        OSError: the parent folder cannot be created or written (the message of the OS names the path).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists() or tmp.is_symlink():
            _remove(tmp)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`); returns ``path``."""
    path = Path(path)
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_mask(path: str | os.PathLike[str], mask: np.ndarray) -> Path:
    """Save a ``(H, W)`` bool or {0, 1} mask as a single-channel 0/255 PNG, atomically; returns ``path``.

    Raises:
        ValueError: ``mask`` is not 2-D, or holds values other than 0/1 (binarise probabilities first).
    """
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {arr.shape}")
    if arr.dtype != bool and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"mask for {path} holds values {np.unique(arr)[:5].tolist()}...: pass a bool or 0/1 "
                         "mask (threshold probabilities first, e.g. probs > 0.5)")
    with atomic_write(path) as tmp:
        Image.fromarray(arr.astype(np.uint8) * 255).save(tmp, format="PNG")  # 2-D uint8: mode L
    return Path(path)


# ------------------------------------------------------------------------------------------------- reading
def _unreadable(what: str, path: Path, reason: str) -> DatasetError:
    return DatasetError(f"{what} {path}: {reason}. Re-download the dataset or remove this pair from the folder "
                        "(`python -m helpers.data check DIR` lists every bad file).")


def _decode(path: Path, what: str) -> Image.Image:
    """Open and fully decode ``path`` with PIL; raises DatasetError naming the file."""
    if not path.is_file():
        raise _unreadable(what, path, "file does not exist")
    try:
        with Image.open(path) as im:
            im.load()
            return im
    except _DECODE_ERRORS as exc:
        raise _unreadable(what, path, f"cannot decode ({type(exc).__name__}: {exc}); the file is corrupt or "
                                      "truncated") from exc


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as ``(H, W, 3) uint8`` RGB.

    Grayscale, 16-bit (scaled by 1/257), RGBA / LA (alpha dropped), palette and CMYK images are converted to RGB.
    EXIF orientation is ignored on purpose: ISIC masks are aligned with the stored pixels.

    Raises:
        DatasetError: the file is missing, corrupt, truncated or in a colour mode PIL cannot convert.
    """
    path = Path(path)
    im = _decode(path, "image")
    if im.mode in _HIGH_BIT_MODES:
        arr = np.asarray(im).astype(np.float64)
        if arr.size and arr.max() > 255:
            arr = arr / 257.0
        grey = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    try:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except ValueError as exc:
        raise _unreadable("image", path, f"colour mode {im.mode!r} cannot be converted to RGB ({exc})") from exc


def _refuse(path: Path, reason: str) -> DatasetError:
    return DatasetError(f"mask {path}: {reason}")


def _grey_values(im: Image.Image, path: Path) -> np.ndarray:
    """The mask's 8-bit grey values ``(H, W) uint8`` (before thresholding); refuses ambiguous encodings."""
    if im.mode == "1":
        im = im.convert("L")  # 0/255, as the official scorer does
    if im.mode == "L":
        return np.asarray(im, dtype=np.uint8)
    if im.mode in _HIGH_BIT_MODES:
        raise _refuse(path, f"is a 16/32-bit image (mode {im.mode}), whose 0-255 scale is ambiguous and which the ISIC "
                            f"scorer refuses: {_FIX}")
    try:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.uint8)
    except ValueError as exc:
        raise _refuse(path, f"colour mode {im.mode!r} cannot be read as a mask ({exc}): {_FIX}") from exc
    grey, alpha = rgba[:, :, 0], rgba[:, :, 3]
    if not (np.array_equal(grey, rgba[:, :, 1]) and np.array_equal(grey, rgba[:, :, 2])):
        raise _refuse(path, f"is a colour ({im.mode}) mask whose channels differ (a coloured lesion?); the ISIC "
                            f"scorer refuses colour masks and the course will not guess which colour is lesion: {_FIX}")
    if (alpha == 255).all() or np.array_equal(alpha > MASK_THRESHOLD, grey > MASK_THRESHOLD):
        return grey.copy()
    if grey.min() == grey.max():
        raise _refuse(path, "has its lesion only in the alpha (transparency) channel; the colour channels are "
                            f"uniform, so the ISIC scorer would read no lesion: {_FIX}")
    raise _refuse(path, f"has an alpha (transparency) channel that disagrees with its grey values: {_FIX}")


def mask_values(path: str | os.PathLike[str]) -> np.ndarray:
    """The raw 8-bit grey values ``(H, W) uint8`` of a mask file, before the :func:`read_mask` checks.

    Raises:
        DatasetError: missing or corrupt file, or an encoding the mask rule refuses outright (colour, alpha,
            16-bit); see the module docstring.
    """
    path = Path(path)
    return _grey_values(_decode(path, "mask"), path)


def binarize_mask(values: np.ndarray, path: str | os.PathLike[str]) -> np.ndarray:
    """Apply the mask rule to 8-bit grey values: ``(H, W) uint8`` {0, 1}, lesion where ``value > 128``.

    Raises:
        DatasetError: a 0/1 mask (maximum 1) or more than :data:`MAX_NON_BINARY_FRACTION` of pixels valued
            1-254; the message names ``path`` and the fix.
    """
    if values.size and values.max() == 1:
        raise _refuse(Path(path), "is a 0/1 mask (its largest value is 1), which the ISIC scorer reads as empty "
                                  "(lesion is > 128): multiply it by 255 or save it with helpers.data.files.write_mask")
    between = float(np.mean((values > 0) & (values < 255))) if values.size else 0.0
    if between > MAX_NON_BINARY_FRACTION:
        raise _refuse(Path(path), f"is not binary: {between:.1%} of its pixels are between 1 and 254 (a soft or "
                                  f"JPEG-compressed mask?), more than the {MAX_NON_BINARY_FRACTION:.0%} tolerated: "
                                  f"threshold it and {_FIX}")
    return (values > MASK_THRESHOLD).astype(np.uint8)


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a lesion mask as ``(H, W) uint8`` in {0, 1} with THE mask rule (see the module docstring).

    On every valid ISIC mask (single channel, 0/255) this is exactly the official scorer's reading
    (``value > 128``).

    Raises:
        DatasetError: the file is missing, corrupt or truncated, or is a mask the rule refuses (0/1, colour,
            alpha-only, 16-bit, non-binary); the message names the file and the fix.
    """
    return binarize_mask(mask_values(path), path)


def frame_fraction(mask: np.ndarray) -> float:
    """Share of the image frame's pixels (first and last row and column) that are lesion, in [0, 1].

    A lesion mask rarely fills its frame (median 0.00 on isic-real and ham10000-small); an inverted mask
    (background white) fills it almost always (median 1.00), however large the lesions are.
    """
    m = np.asarray(mask) > 0
    if m.ndim != 2 or m.size == 0:
        return 0.0
    frame = np.concatenate([m[0], m[-1], m[1:-1, 0], m[1:-1, -1]])
    return float(frame.mean())


def _size_mismatch(pair: PairLike, image_shape: tuple[int, ...], mask_shape: tuple[int, ...]) -> str:
    return (f"mask {pair.mask} is {mask_shape[1]}x{mask_shape[0]} but its image {pair.image} is "
            f"{image_shape[1]}x{image_shape[0]} (width x height): regenerate the mask at the image's size "
            "or remove the pair from the dataset")


def check_sizes(pair: PairLike, image_shape: tuple[int, ...], mask_shape: tuple[int, ...]) -> None:
    """Raise DatasetError (naming both files) when the mask's ``(H, W)`` differs from the image's."""
    if tuple(image_shape[:2]) != tuple(mask_shape[:2]):
        raise DatasetError(_size_mismatch(pair, image_shape, mask_shape))


def load_pair(pair: PairLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one pair: ``(image (H, W, 3) uint8, mask (H, W) uint8 {0, 1})``.

    Raises:
        DatasetError: a file cannot be read or breaks the mask rule, or the sizes differ (both files named).
    """
    image, mask = read_image(pair.image), read_mask(pair.mask)
    check_sizes(pair, image.shape, mask.shape)
    return image, mask
