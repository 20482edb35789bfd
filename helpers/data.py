"""Where image/mask pairs come from: discovery in three layouts, splits, datasets, loaders, cache, checks.

Layouts understood by :func:`discover_pairs` (ids are file stems, e.g. ``ISIC_0024306``):

``isic``      ``root/images/<id>.{jpg,jpeg,png}`` + ``root/masks/<id>_segmentation.png``
              (what :mod:`helpers.synthetic` writes and what ``isic-challenge-scoring`` expects)
``isic2018``  official ISIC 2018 Task 1 folders: ``ISIC2018_Task1-2_{Training,Validation,Test}_Input/`` +
              ``ISIC2018_Task1_{Training,Validation,Test}_GroundTruth/``
``ham10000``  Harvard Dataverse HAM10000: ``HAM10000_images_part_1/``, ``HAM10000_images_part_2/`` +
              ``HAM10000_segmentations_lesion_tschandl/``

:func:`course_splits` is what notebooks call; it also accepts a folder with ``train/ val/ test|holdout/``
sub-folders, each in any layout. In memory, images are ``(H, W, 3) uint8`` RGB and masks ``(H, W) uint8``
in {0, 1}; :class:`SegmentationDataset` returns the model's tensors.

Command line (``python -m helpers.data --help``)::

    python -m helpers.data synth --out data/synth --n 200 --size 256 --seed 0
    python -m helpers.data check DIR          # exit 1 and a list of bad files if anything is wrong
    python -m helpers.data download isic2018 --out data
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import random
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from . import config
from .transforms import eval_transforms, resize_transform, train_transforms

logger = logging.getLogger(__name__)

#: File extensions read as images (case-insensitive).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
#: Masks are named ``<id>_segmentation.png`` (ISIC convention); a mask named ``<id>.png`` is accepted too.
MASK_SUFFIX = "_segmentation"
#: The split names every function returns.
SPLITS = ("train", "val", "test")
LAYOUTS = ("isic", "isic2018", "ham10000")
ISIC2018_SUBSETS = ("training", "validation", "test")
HAM_IMAGE_DIRS = ("HAM10000_images_part_1", "HAM10000_images_part_2")
HAM_MASK_DIR = "HAM10000_segmentations_lesion_tschandl"
#: Default (train, val, test) ratios of :func:`split_pairs`.
DEFAULT_RATIOS = (0.8, 0.1, 0.1)
#: A mask with more than this fraction of pixels valued 2-254 is not binary (0/1 and 0/255 masks are).
MAX_NON_BINARY_FRACTION = 0.01
_LIST_LIMIT = 10
_CACHE_VERSION = 1
_DECODE_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError)


class DatasetError(ValueError):
    """A dataset folder or file the course cannot use; the message names the file(s) and the fix."""


@dataclass(frozen=True)
class Pair:
    """One training example on disk: an image and its lesion mask, sharing ``id``."""

    id: str
    image: Path
    mask: Path


def _listing(paths: Sequence[Any], limit: int = _LIST_LIMIT) -> str:
    """``a, b, c`` for the first ``limit`` items, then ``... and N more``."""
    shown = ", ".join(str(p) for p in paths[:limit])
    return shown + (f" ... and {len(paths) - limit} more" if len(paths) > limit else "")


# ----------------------------------------------------------------------------------------------- reading files
class _DecodeError(Exception):
    """Internal: why a file could not be read, in a few words (wrapped into DatasetError by the public readers)."""


def _decode(path: Path) -> Image.Image:
    """Open and fully decode ``path`` with PIL; raises ``_DecodeError`` with a short reason."""
    if not path.is_file():
        raise _DecodeError("file does not exist")
    try:
        with Image.open(path) as im:
            im.load()
            return im
    except _DECODE_ERRORS as exc:
        raise _DecodeError(f"cannot decode ({type(exc).__name__}: {exc}); the file is corrupt or truncated") from exc


def _high_bit_depth_to_uint8(im: Image.Image) -> np.ndarray:
    """16-bit / 32-bit integer or float single-channel image -> (H, W) uint8 on the 0-255 scale."""
    arr = np.asarray(im).astype(np.float64)
    if arr.size and arr.max() > 255:
        arr = arr / 257.0
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def _unreadable(what: str, path: Path, reason: str) -> DatasetError:
    return DatasetError(f"{what} {path}: {reason}. Re-download the dataset or remove this pair from the folder "
                        f"(`python -m helpers.data check DIR` lists every bad file).")


def _image_values(path: Path) -> np.ndarray:
    """``(H, W, 3) uint8`` RGB pixels of ``path``; raises ``_DecodeError``."""
    im = _decode(path)
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return np.repeat(_high_bit_depth_to_uint8(im)[:, :, None], 3, axis=2)
    try:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except ValueError as exc:
        raise _DecodeError(f"colour mode {im.mode!r} cannot be converted to RGB ({exc})") from exc


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as ``(H, W, 3) uint8`` RGB.

    Grayscale, 16-bit, RGBA / LA (alpha dropped), palette and CMYK images are converted to RGB. EXIF orientation
    is ignored on purpose: ISIC masks are aligned with the stored pixels.

    Raises:
        DatasetError: the file is missing, corrupt, truncated or in a colour mode PIL cannot convert.
    """
    path = Path(path)
    try:
        return _image_values(path)
    except _DecodeError as exc:
        raise _unreadable("image", path, str(exc)) from exc


def _read_mask_values(path: Path) -> np.ndarray:
    """The mask's raw values as ``(H, W) uint8`` on its own scale (0/1 or 0-255), before binarisation.

    Colour masks use the maximum over R, G, B (a white, red or green lesion on black all read as lesion);
    alpha is ignored. Raises ``_DecodeError``.
    """
    im = _decode(path)
    if im.mode == "1":
        return np.asarray(im, dtype=np.uint8)
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _high_bit_depth_to_uint8(im)
    if im.mode == "L":
        return np.asarray(im, dtype=np.uint8)
    if im.mode == "LA":
        return np.asarray(im.getchannel("L"), dtype=np.uint8)
    try:
        rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except ValueError as exc:
        raise _DecodeError(f"colour mode {im.mode!r} cannot be read as a mask ({exc})") from exc
    return rgb.max(axis=2)


def _binarize(values: np.ndarray) -> np.ndarray:
    """Raw mask values -> {0, 1} uint8: a mask whose max is 1 is already 0/1, otherwise ``> 127``."""
    if values.size == 0 or values.max() <= 1:
        return (values > 0).astype(np.uint8)
    return (values > 127).astype(np.uint8)


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a lesion mask as ``(H, W) uint8`` in {0, 1}.

    Accepts 0/1 and 0/255 single-channel masks, 16-bit masks, and RGB / RGBA / palette masks (lesion where the
    brightest channel is > 127). A mask whose maximum is 1 is taken as 0/1.

    Raises:
        DatasetError: the file is missing, corrupt or truncated.
    """
    path = Path(path)
    try:
        return _binarize(_read_mask_values(path))
    except _DecodeError as exc:
        raise _unreadable("mask", path, str(exc)) from exc


def _size_mismatch(pair: Pair, image_shape: tuple[int, ...], mask_shape: tuple[int, ...]) -> str:
    """The message for a mask whose size differs from its image's (sizes as width x height)."""
    return (f"mask {pair.mask} is {mask_shape[1]}x{mask_shape[0]} but its image {pair.image} is "
            f"{image_shape[1]}x{image_shape[0]} (width x height): regenerate the mask at the image's size "
            "or remove the pair from the dataset")


def load_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """Read one pair: ``(image (H, W, 3) uint8, mask (H, W) uint8 {0, 1})``.

    Raises:
        DatasetError: a file cannot be read, or the mask's size differs from the image's (both files named).
    """
    image, mask = read_image(pair.image), read_mask(pair.mask)
    if image.shape[:2] != mask.shape:
        raise DatasetError(_size_mismatch(pair, image.shape, mask.shape))
    return image, mask


# --------------------------------------------------------------------------------------------------- discovery
def _dataset_hint() -> str:
    return ("Supported layouts: `images/` + `masks/` (ISIC), the official ISIC 2018 Task 1 folders "
            "(`ISIC2018_Task1-2_Training_Input/` + `ISIC2018_Task1_Training_GroundTruth/`), or HAM10000 "
            f"(`{HAM_IMAGE_DIRS[0]}/`, `{HAM_IMAGE_DIRS[1]}/` + `{HAM_MASK_DIR}/`). "
            "`python -m helpers.data download {ham10000,isic2018} --out DIR` fetches one.")


def _require_dir(root: str | os.PathLike[str]) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist or is not a folder: check the path. "
                           + _dataset_hint())
    return root


def _subdirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _isic2018_dirs(root: Path, subset: str) -> tuple[Path, Path]:
    """(input folder, ground-truth folder) of an ISIC 2018 ``subset`` ("training", "validation", "test")."""
    cap = subset.capitalize()
    return root / f"ISIC2018_Task1-2_{cap}_Input", root / f"ISIC2018_Task1_{cap}_GroundTruth"


def detect_layout(root: str | os.PathLike[str]) -> str:
    """Which layout ``root`` is in: ``"isic"``, ``"isic2018"`` or ``"ham10000"`` (see the module docstring).

    Raises:
        DatasetError: the folder is missing or empty, matches no layout, or matches several.
    """
    root = _require_dir(root)
    names = set(_subdirs(root))
    found = []
    if {"images", "masks"} <= names:
        found.append("isic")
    if any(n.startswith("ISIC2018_Task1-2_") and n.endswith("_Input") for n in names):
        found.append("isic2018")
    if names & set(HAM_IMAGE_DIRS) or HAM_MASK_DIR in names:
        found.append("ham10000")
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise DatasetError(f"dataset folder {root} matches several layouts ({', '.join(found)}): move one "
                           "dataset elsewhere or pass layout=... explicitly.")
    if not any(root.iterdir()):
        raise DatasetError(f"dataset folder {root} is empty: put a dataset in it, e.g. `python -m helpers.data "
                           f"synth --out {root}` or `python -m helpers.data download isic2018 --out {root}`.")
    hint = ""
    if names & {"train", "val", "test", "holdout"}:
        hint = " It has train/val/test sub-folders: pass it to course_splits(), or point at one sub-folder."
    elif "images" in names:
        hint = " It has images/ but no masks/ folder: put <id>_segmentation.png masks in masks/."
    contents = _listing(sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir()))
    raise DatasetError(f"unknown dataset layout in {root} (it contains: {contents}).{hint} " + _dataset_hint())


def _layout_dirs(root: Path, layout: str, subset: str) -> tuple[list[Path], Path]:
    """The image folders and the mask folder of ``layout``; raises DatasetError naming a missing folder."""
    if layout == "isic":
        image_dirs, mask_dir = [root / "images"], root / "masks"
    elif layout == "isic2018":
        image_dir, mask_dir = _isic2018_dirs(root, subset)
        image_dirs = [image_dir]
    elif layout == "ham10000":
        image_dirs = [root / d for d in HAM_IMAGE_DIRS if (root / d).is_dir()] or [root / HAM_IMAGE_DIRS[0]]
        mask_dir = root / HAM_MASK_DIR
    else:
        raise ValueError(f"unknown layout {layout!r}: use one of {LAYOUTS} or 'auto'")
    for folder in [*image_dirs, mask_dir]:
        if not folder.is_dir():
            extra = " (the official Test/Validation ground truth may not be public: use subset='training')" \
                if layout == "isic2018" and folder == mask_dir else ""
            raise DatasetError(f"{layout} dataset {root} has no folder {folder.name}/{extra}: download or extract "
                               "it there. " + _dataset_hint())
    return image_dirs, mask_dir


def _is_data_file(path: Path) -> bool:
    """An image or mask file: known extension, not hidden (macOS ``._*``), not an ISIC 2017 superpixel map."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS \
        and not path.stem.endswith("_superpixels")


def _mask_id(path: Path) -> str:
    stem = path.stem
    return stem[: -len(MASK_SUFFIX)] if stem.endswith(MASK_SUFFIX) else stem


@dataclass
class _Scan:
    """What a layout's folders hold: complete pairs, orphans on either side, and ids seen more than once."""

    pairs: list[Pair]
    images_without_mask: list[Path]
    masks_without_image: list[Path]
    duplicates: dict[str, list[Path]]
    image_dirs: list[Path]
    mask_dir: Path


def _index(files: Iterable[Path], key: Callable[[Path], str]) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for path in sorted(files):
        out.setdefault(key(path), []).append(path)
    return out


def _scan(root: Path, layout: str, subset: str) -> _Scan:
    """Index the layout's folders without raising on orphans or duplicates (DatasetError on missing folders)."""
    image_dirs, mask_dir = _layout_dirs(root, layout, subset)
    images = _index((p for d in image_dirs for p in d.iterdir() if _is_data_file(p)), lambda p: p.stem)
    masks = _index((p for p in mask_dir.iterdir() if _is_data_file(p)), _mask_id)
    duplicates: dict[str, list[Path]] = {}
    for index in (images, masks):
        for ident, paths in index.items():
            if len(paths) > 1:
                duplicates.setdefault(ident, []).extend(paths)
    pairs = [Pair(i, images[i][0], masks[i][0]) for i in sorted(images.keys() & masks.keys())]
    return _Scan(pairs=pairs,
                 images_without_mask=[images[i][0] for i in sorted(images.keys() - masks.keys())],
                 masks_without_image=[masks[i][0] for i in sorted(masks.keys() - images.keys())],
                 duplicates=duplicates, image_dirs=image_dirs, mask_dir=mask_dir)


def _orphan_message(scan: _Scan) -> str:
    parts = []
    if scan.images_without_mask:
        parts.append(f"{len(scan.images_without_mask)} image(s) have no mask <id>{MASK_SUFFIX}.png in "
                     f"{scan.mask_dir}: {_listing([p.name for p in scan.images_without_mask])}")
    if scan.masks_without_image:
        parts.append(f"{len(scan.masks_without_image)} mask(s) have no image <id>.jpg/.png in "
                     f"{', '.join(map(str, scan.image_dirs))}: {_listing([p.name for p in scan.masks_without_image])}")
    return "; ".join(parts)


def discover_pairs(root: str | os.PathLike[str], layout: str = "auto", subset: str = "training", *,
                   on_missing: str = "error") -> list[Pair]:
    """All image/mask pairs of a dataset folder, sorted by id.

    Args:
        root: the dataset folder.
        layout: ``"auto"`` (see :func:`detect_layout`), ``"isic"``, ``"isic2018"`` or ``"ham10000"``.
        subset: ISIC 2018 only: ``"training"``, ``"validation"`` or ``"test"``.
        on_missing: ``"error"`` raises when an image has no mask or a mask no image; ``"skip"`` drops those
            files and logs a warning with their count and names.

    Raises:
        DatasetError: folder missing, empty or of unknown layout; a layout folder missing; an id found twice
            (e.g. ``a.jpg`` and ``a.png``, or in both HAM10000 parts); orphans with ``on_missing="error"``;
            no pair at all. The message lists the files (first 10 and a count) and the fix.
        ValueError: an unknown ``layout``, ``subset`` or ``on_missing``.
    """
    if on_missing not in ("error", "skip"):
        raise ValueError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
    if subset not in ISIC2018_SUBSETS:
        raise ValueError(f"subset must be one of {ISIC2018_SUBSETS}, got {subset!r}")
    root = _require_dir(root)
    layout = detect_layout(root) if layout == "auto" else layout
    scan = _scan(root, layout, subset)
    if scan.duplicates:
        listed = _listing([" and ".join(str(p) for p in ps) for _, ps in sorted(scan.duplicates.items())])
        raise DatasetError(f"{len(scan.duplicates)} id(s) appear more than once in {root}: {listed}. "
                           "Keep one file per id (delete or rename the others).")
    orphans = len(scan.images_without_mask) + len(scan.masks_without_image)
    if orphans and on_missing == "error":
        raise DatasetError(f"incomplete dataset {root}: {_orphan_message(scan)}. Add the missing files, remove "
                           "the orphans, or pass on_missing='skip' to drop them.")
    if orphans:
        logger.warning("dropped %d file(s) without a partner in %s: %s", orphans, root, _orphan_message(scan))
    if not scan.pairs:
        raise DatasetError(f"no image/mask pairs found in {root} ({layout} layout, folders "
                           f"{', '.join(str(d) for d in [*scan.image_dirs, scan.mask_dir])}): images must be "
                           f"<id>{{{','.join(IMAGE_EXTENSIONS)}}} and masks <id>{MASK_SUFFIX}.png.")
    return scan.pairs


# ------------------------------------------------------------------------------------------------------ splits
def _check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(r) for r in ratios)
    if len(values) != 3 or any(not math.isfinite(r) or r < 0 for r in values) or abs(sum(values) - 1) > 1e-6:
        raise ValueError(f"ratios must be three numbers >= 0 (train, val, test) summing to 1, got {tuple(ratios)}")
    return values  # type: ignore[return-value]


def _split_counts(n: int, ratios: tuple[float, float, float]) -> list[int]:
    """Largest-remainder counts summing to ``n``; every positive ratio gets >= 1 item when ``n`` allows."""
    raw = [n * r for r in ratios]
    counts = [math.floor(x) for x in raw]
    for i in sorted(range(3), key=lambda i: (counts[i] - raw[i], i))[: n - sum(counts)]:
        counts[i] += 1
    positive = [i for i in range(3) if ratios[i] > 0]
    if n >= len(positive):
        for i in positive:
            if counts[i] == 0:
                donor = max(positive, key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] += 1
    return counts


def _check_unique_ids(pairs: Sequence[Pair], where: str) -> None:
    dup = sorted(i for i, c in Counter(p.id for p in pairs).items() if c > 1)
    if dup:
        raise DatasetError(f"ids appear more than once in {where}: {_listing(dup)}. Each id must be one pair, "
                           "in one split only.")


def split_pairs(pairs: Sequence[Pair], ratios: Sequence[float] = DEFAULT_RATIOS, seed: int = 0
                ) -> dict[str, list[Pair]]:
    """Split pairs into ``{"train", "val", "test"}`` deterministically by id.

    Each id is ranked by ``sha256(f"{seed}:{id}")`` and the ranking is cut at the ratio counts (largest
    remainder; every split with a positive ratio gets at least one pair when there are enough). The result
    depends only on the set of ids and ``seed``, not on the order of ``pairs``, and adding an id moves at most
    a couple of others. Each split is sorted by id.

    Raises:
        ValueError: ``ratios`` are not three numbers >= 0 summing to 1.
        DatasetError: an id appears twice in ``pairs``.
    """
    r = _check_ratios(ratios)
    _check_unique_ids(pairs, "the pairs to split")
    ranked = sorted(pairs, key=lambda p: hashlib.sha256(f"{seed}:{p.id}".encode()).hexdigest())
    n_train, n_val, _ = _split_counts(len(ranked), r)
    parts = [ranked[:n_train], ranked[n_train:n_train + n_val], ranked[n_train + n_val:]]
    return {name: sorted(part, key=lambda p: p.id) for name, part in zip(SPLITS, parts)}


def _split_folders(root: Path) -> dict[str, Path]:
    """``{"train": root/train, "val": ..., "test": root/test or root/holdout}`` for the sub-folders present."""
    names = set(_subdirs(root))
    if "test" in names and "holdout" in names:
        raise DatasetError(f"{root} has both test/ and holdout/: keep one (holdout/ is used as the test split).")
    found = {key: root / key for key in ("train", "val", "test") if key in names}
    if "holdout" in names:
        found["test"] = root / "holdout"
    if found and "train" not in found:
        raise DatasetError(f"{root} has {', '.join(sorted(p.name for p in found.values()))}/ but no train/ "
                           "sub-folder: add train/ or point at a single dataset folder instead.")
    return found


def _fill_missing(found: dict[str, list[Pair]], seed: int, root: Path) -> dict[str, list[Pair]]:
    """Carve the splits missing from ``found`` out of its train split (default ratios, renormalised)."""
    for a, b in [("train", "val"), ("train", "test"), ("val", "test")]:
        shared = sorted({p.id for p in found.get(a, [])} & {p.id for p in found.get(b, [])})
        if shared:
            raise DatasetError(f"{len(shared)} id(s) of {root} are in both {a} and {b}: {_listing(shared)}. "
                               "Remove them from one split (a pair in two splits leaks test data).")
    missing = [k for k in ("val", "test") if k not in found]
    if not missing:
        return {k: found[k] for k in SPLITS}
    weights = [DEFAULT_RATIOS[0]] + [DEFAULT_RATIOS[i] if SPLITS[i] in missing else 0.0 for i in (1, 2)]
    ratios = tuple(w / sum(weights) for w in weights)
    carved = split_pairs(found["train"], ratios, seed=seed)
    logger.info("%s: %s split(s) carved out of train with ratios %s", root, "+".join(missing), ratios)
    return {"train": carved["train"], **{k: found[k] if k in found else carved[k] for k in ("val", "test")}}


def _has_isic2018_truth(root: Path, subset: str) -> bool:
    image_dir, mask_dir = _isic2018_dirs(root, subset)
    return image_dir.is_dir() and mask_dir.is_dir()


def course_splits(root: str | os.PathLike[str] | None = None, *, seed: int = 0) -> dict[str, list[Pair]]:
    """The ``{"train", "val", "test"}`` pairs every notebook uses.

    ``root=None`` means ``SKINSEG_DATA`` if set, otherwise the embedded synthetic set (generated once under
    ``data/``, small in smoke mode). Then, in order:

    * a folder with ``train/`` (and optionally ``val/``, ``test/`` or ``holdout/``) sub-folders, each in any
      layout, is used as given (``holdout`` becomes ``"test"``); missing splits are carved out of train;
    * an official ISIC 2018 folder uses Training / Validation / Test where their ground truth is present and
      carves the others out of Training;
    * any other folder is discovered and split with :func:`split_pairs` (80/10/10, ``seed``).

    Raises:
        DatasetError: the folder cannot be used (message names the file(s) and the fix), or an id is in two
            given splits.
    """
    if root is None:
        root = config.user_data_dir()
    if root is None:
        from . import synthetic

        params = synthetic.DEFAULT_SMOKE if config.smoke_mode() else synthetic.DEFAULT_FULL
        root = synthetic.ensure_synthetic(**params, seed=0)
    root = _require_dir(root)
    folders = _split_folders(root)
    if folders:
        return _fill_missing({k: discover_pairs(d) for k, d in folders.items()}, seed, root)
    layout = detect_layout(root)
    if layout == "isic2018":
        found = {"train": discover_pairs(root, "isic2018", "training")}
        for subset, key in (("validation", "val"), ("test", "test")):
            if _has_isic2018_truth(root, subset):
                found[key] = discover_pairs(root, "isic2018", subset)
        return _fill_missing(found, seed, root)
    return split_pairs(discover_pairs(root, layout), seed=seed)


# ------------------------------------------------------------------------------------------ preprocessing cache
def _file_stamp(path: Path) -> list[Any]:
    try:
        st = path.stat()
    except OSError as exc:
        raise DatasetError(f"cannot read {path} ({exc}): the dataset changed since discovery; rediscover it."
                           ) from exc
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def _fingerprint(pairs: Sequence[Pair], img_size: int) -> str:
    """Cache key: version, img_size, and every file's absolute path, size and mtime."""
    payload = [_CACHE_VERSION, img_size, [[p.id, *_file_stamp(p.image), *_file_stamp(p.mask)] for p in pairs]]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


def _entry_name(pairs: Sequence[Pair], img_size: int) -> str:
    """Folder name of a cache entry: the file list (not sizes/mtimes) and img_size, so a change rebuilds in place."""
    names = [[p.id, str(p.image.resolve()), str(p.mask.resolve())] for p in pairs]
    return f"{hashlib.sha256(json.dumps(names).encode()).hexdigest()[:16]}-{img_size}px"


class PreprocessCache:
    """Pairs resized once to ``img_size x img_size``, stored as two memory-mapped ``.npy`` arrays.

    ``images.npy`` is ``(N, S, S, 3) uint8`` and ``masks.npy`` ``(N, S, S) uint8`` {0, 1}, rows in the order of
    ``ids``. Build one with :func:`build_cache`; ``cache[i] -> (image, mask)`` copies row ``i``. The arrays are
    opened lazily in each process, so DataLoader workers share the page cache instead of pickled copies.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        meta_path = self.folder / "meta.json"
        if not meta_path.is_file():
            raise DatasetError(f"{self.folder} is not a preprocessing cache (no meta.json): delete the folder "
                               "and call build_cache() again.")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        self.ids: list[str] = list(meta["ids"])
        self.img_size: int = int(meta["img_size"])
        self.fingerprint: str = meta["fingerprint"]
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    def _open(self) -> tuple[np.ndarray, np.ndarray]:
        if self._arrays is None:
            self._arrays = (np.load(self.folder / "images.npy", mmap_mode="r"),
                            np.load(self.folder / "masks.npy", mmap_mode="r"))
        return self._arrays

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        images, masks = self._open()
        return np.array(images[index]), np.array(masks[index])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": None}

    def __repr__(self) -> str:
        return f"PreprocessCache({len(self)} pairs at {self.img_size}px in {self.folder})"


def default_cache_dir() -> Path:
    """Where preprocessing caches live by default: ``<data_dir>/cache``."""
    return config.data_dir() / "cache"


def _valid_entry(folder: Path, fingerprint: str) -> bool:
    try:
        return PreprocessCache(folder).fingerprint == fingerprint and (folder / "images.npy").is_file() \
            and (folder / "masks.npy").is_file()
    except (DatasetError, OSError, ValueError, KeyError):
        return False


def _write_entry(tmp: Path, pairs: Sequence[Pair], img_size: int, fingerprint: str, progress: bool) -> None:
    """Decode, resize and store every pair in ``tmp`` (meta.json written last marks it complete)."""
    tmp.mkdir(parents=True)
    n = len(pairs)
    images = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8,
                                       shape=(n, img_size, img_size, 3))
    masks = np.lib.format.open_memmap(tmp / "masks.npy", mode="w+", dtype=np.uint8, shape=(n, img_size, img_size))
    resize = resize_transform(img_size)
    for i, pair in enumerate(tqdm(pairs, desc=f"caching {n} pairs at {img_size}px", disable=not progress)):
        image, mask = load_pair(pair)
        out = resize(image=image, mask=mask)
        images[i], masks[i] = out["image"], out["mask"]
    images.flush()
    masks.flush()
    del images, masks
    meta = {"version": _CACHE_VERSION, "img_size": img_size, "fingerprint": fingerprint,
            "ids": [p.id for p in pairs], "sources": [[str(p.image), str(p.mask)] for p in pairs]}
    (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")


def build_cache(pairs: Sequence[Pair], img_size: int, cache_dir: str | os.PathLike[str] | None = None,
                progress: bool = True) -> PreprocessCache:
    """Resize ``pairs`` to ``img_size`` once and store them under ``cache_dir`` (reused while files are unchanged).

    The entry's key covers ``img_size`` and every file's path, size and modification time: editing,
    replacing or touching a file rebuilds the entry (in place). Entries are written to a temporary folder
    and renamed, so an interrupted build never leaves a half-written cache.

    Args:
        pairs: the pairs to store, in the order the dataset will index them.
        img_size: side of the square arrays, in pixels.
        cache_dir: parent folder; default :func:`default_cache_dir`.
        progress: show a tqdm bar while building.

    Raises:
        DatasetError: no pairs, or a file cannot be read / a mask's size differs from its image's.
        ValueError: ``img_size`` is not a positive int.
    """
    if not pairs:
        raise DatasetError("no pairs to cache: the split is empty (check the dataset with "
                           "`python -m helpers.data check DIR`).")
    resize_transform(img_size)  # validates img_size
    _check_unique_ids(pairs, "the pairs to cache")
    parent = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    entry = parent / _entry_name(pairs, img_size)
    fingerprint = _fingerprint(pairs, img_size)
    if _valid_entry(entry, fingerprint):
        return PreprocessCache(entry)
    tmp = parent / f".tmp-{entry.name}-{uuid.uuid4().hex[:8]}"
    try:
        _write_entry(tmp, pairs, img_size, fingerprint, progress)
        if entry.exists():
            shutil.rmtree(entry, ignore_errors=True)
        try:
            os.replace(tmp, entry)
        except OSError:  # another process finished the same entry first
            if not _valid_entry(entry, fingerprint):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return PreprocessCache(entry)


# ------------------------------------------------------------------------------------------ dataset and loaders
def _image_tensor(image: Any) -> torch.Tensor:
    """Transform output image -> float32 (3, H, W) tensor (uint8 arrays are scaled to [0, 1])."""
    if isinstance(image, torch.Tensor):
        return image.float()
    arr = np.asarray(image)
    tensor = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    return tensor.float() / 255.0 if arr.dtype == np.uint8 else tensor.float()


def _mask_tensor(mask: Any) -> torch.Tensor:
    """Transform output mask -> float32 (1, H, W) tensor."""
    tensor = mask if isinstance(mask, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(mask))
    tensor = tensor.float()
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor


class SegmentationDataset(Dataset):
    """A torch Dataset of pairs: ``ds[i] -> {"image": (3, S, S) float32, "mask": (1, S, S) float32, "id": str}``.

    Args:
        pairs: the pairs, e.g. ``course_splits()["train"]``.
        transform: an albumentations pipeline called as ``transform(image=..., mask=...)`` (see
            :mod:`helpers.transforms`); None returns the pair as read, image scaled to [0, 1].
        cache: a :class:`PreprocessCache` built for exactly these pairs; items are then read from it (already
            resized) and the transform still runs on them, so training augmentation stays random.

    Raises:
        ValueError: ``cache`` was built for other pairs.
        DatasetError (on indexing): a file cannot be read or a mask's size differs from its image's.
    """

    def __init__(self, pairs: Sequence[Pair], transform: Callable[..., dict[str, Any]] | None = None,
                 cache: PreprocessCache | None = None) -> None:
        self.pairs = list(pairs)
        self.transform = transform
        self.cache = cache
        if cache is not None and cache.ids != [p.id for p in self.pairs]:
            raise ValueError(f"{cache!r} was built for other pairs than this dataset's {len(self.pairs)}: "
                             "call build_cache() with the same pairs, in the same order.")

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Pair ``index`` before the transform: ``(image (H, W, 3) uint8, mask (H, W) uint8 {0, 1})``."""
        if self.cache is not None:
            return self.cache[index]
        return load_pair(self.pairs[index])

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, mask = self.load(index)
        if self.transform is not None:
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        return {"image": _image_tensor(image), "mask": _mask_tensor(mask), "id": self.pairs[index].id}


def default_num_workers() -> int:
    """DataLoader workers: 0 in smoke mode (no process start-up cost), else ``min(4, cpu_count - 1)``."""
    if config.smoke_mode():
        return 0
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def _seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: give each worker's augmentation pipeline its own reproducible seed.

    ``info.seed`` is drawn from the loader's seeded generator plus ``worker_id``, so runs repeat exactly.
    """
    info = torch.utils.data.get_worker_info()
    seed = info.seed % 2**32
    random.seed(seed)
    np.random.seed(seed)
    transform = getattr(info.dataset, "transform", None)
    if hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed)


def _resolve_cache(pairs: Sequence[Pair], img_size: int, cache: bool | str | os.PathLike[str] | None
                   ) -> PreprocessCache | None:
    if cache is None or cache is False or not pairs:
        return None
    return build_cache(pairs, img_size, None if cache is True else cache, progress=not config.smoke_mode())


def make_loaders(splits: Mapping[str, Sequence[Pair]], img_size: int, batch_size: int, *, augment: bool = True,
                 num_workers: int | None = None, cache: bool | str | os.PathLike[str] = True, seed: int = 0,
                 pin_memory: bool | None = None, persistent_workers: bool | None = None,
                 drop_last_train: bool = False,
                 samplers: Mapping[str, Sampler[int]] | None = None) -> dict[str, DataLoader]:
    """One DataLoader per split, batches of ``{"image": (B, 3, S, S), "mask": (B, 1, S, S), "id": list[str]}``.

    ``"train"`` gets :func:`~helpers.transforms.train_transforms` (if ``augment``) and is shuffled with a
    generator seeded by ``seed``; every other split gets :func:`~helpers.transforms.eval_transforms`, in order.

    Args:
        splits: e.g. ``course_splits()``.
        img_size: square side the model sees, in pixels.
        batch_size: pairs per batch.
        augment: False trains on resized, normalised pairs only.
        num_workers: loader processes; default :func:`default_num_workers`.
        cache: True stores resized pairs under ``data/cache`` (see :func:`build_cache`); a path stores them
            there; False decodes every file every epoch.
        seed: seeds shuffling and augmentation (same seed, same batches).
        pin_memory: default True when CUDA is available.
        persistent_workers: default True when ``num_workers > 0``.
        drop_last_train: drop the last, smaller training batch.
        samplers: optional split -> index sampler (e.g. a ``DistributedSampler`` for multi-process training,
            see :mod:`helpers.distributed`); that split is then read in the sampler's order, not shuffled here.

    Raises:
        DatasetError: the train split is empty, or smaller than ``batch_size`` with ``drop_last_train``.
        ValueError: ``batch_size`` is not a positive int.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if "train" in splits and not splits["train"]:
        raise DatasetError("the train split is empty: check the dataset with `python -m helpers.data check DIR`.")
    if drop_last_train and len(splits.get("train", [])) and len(splits["train"]) < batch_size:
        raise DatasetError(f"the train split has {len(splits['train'])} pairs, fewer than batch_size={batch_size}, "
                           "and drop_last_train=True would give no batch: lower batch_size.")
    workers = default_num_workers() if num_workers is None else num_workers
    pin = torch.cuda.is_available() if pin_memory is None else pin_memory
    persistent = (workers > 0) if persistent_workers is None else (persistent_workers and workers > 0)
    loaders = {}
    for name, pairs in splits.items():
        train = name == "train"
        transform = train_transforms(img_size, seed=seed) if train and augment else eval_transforms(img_size)
        dataset = SegmentationDataset(pairs, transform, cache=_resolve_cache(pairs, img_size, cache))
        generator = torch.Generator()
        generator.manual_seed(seed)
        sampler = (samplers or {}).get(name)
        loaders[name] = DataLoader(dataset, batch_size=batch_size, shuffle=train and sampler is None,
                                   sampler=sampler, num_workers=workers,
                                   pin_memory=pin, persistent_workers=persistent, drop_last=train and drop_last_train,
                                   generator=generator, worker_init_fn=_seed_worker if workers > 0 else None)
    return loaders


# ------------------------------------------------------------------------------------------------------ checks
@dataclass
class CheckReport:
    """What :func:`check_dataset` found. ``ok`` is True when ``problems`` is empty.

    Attributes:
        root: the folder checked. layout: its layout (``"splits"`` for train/val/test sub-folders).
        parts: pairs per part (``{"all": n}``, ``{"train": ..., "val": ...}`` or ISIC 2018 subsets).
        problems: ``(file, reason)`` for every unusable file (undecodable, orphan, duplicate, size mismatch,
            non-binary mask). warnings: ``(file, reason)`` for suspicious but usable masks (empty or full).
        image_sizes: ``Counter`` of ``(width, height)`` over readable images.
        lesion_fractions: lesion pixel fraction of every readable mask, in [0, 1].
    """

    root: Path
    layout: str = "unknown"
    parts: dict[str, int] = field(default_factory=dict)
    problems: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[tuple[Path, str]] = field(default_factory=list)
    image_sizes: Counter = field(default_factory=Counter)
    lesion_fractions: list[float] = field(default_factory=list)

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
        return "\n".join(lines)


def _check_parts(root: Path) -> tuple[str, list[tuple[str, Path, str, str]]]:
    """(layout label, [(part name, folder, layout, subset)]) of everything check_dataset should visit."""
    folders = _split_folders(root)
    if folders:
        return "splits", [(name, folder, "auto", "training") for name, folder in folders.items()]
    layout = detect_layout(root)
    if layout == "isic2018":
        subsets = [s for s in ISIC2018_SUBSETS if s == "training" or _has_isic2018_truth(root, s)]
        return layout, [(s, root, layout, s) for s in subsets]
    return layout, [("all", root, layout, "training")]


def _check_pair(pair: Pair, report: CheckReport) -> None:
    """Validate one pair, appending to ``report``: decodable files, equal sizes, binary and non-empty mask.

    Image sizes are counted for every readable image; lesion fractions and empty/full warnings only for pairs
    without a problem.
    """
    image = values = None
    try:
        image = _image_values(pair.image)
        report.image_sizes[(image.shape[1], image.shape[0])] += 1
    except _DecodeError as exc:
        report.problems.append((pair.image, str(exc)))
    try:
        values = _read_mask_values(pair.mask)
    except _DecodeError as exc:
        report.problems.append((pair.mask, str(exc)))
    if values is None:
        return
    if image is not None and image.shape[:2] != values.shape:
        report.problems.append((pair.mask, _size_mismatch(pair, image.shape, values.shape)))
        return
    between = float(np.mean((values > 1) & (values < 255))) if values.size else 0.0
    if between > MAX_NON_BINARY_FRACTION:
        report.problems.append((pair.mask, f"mask is not binary: {between:.1%} of pixels are between 2 and 254 "
                                           "(soft or JPEG-compressed mask?); save it as a 0/255 PNG"))
        return
    fraction = float(_binarize(values).mean()) if values.size else 0.0
    report.lesion_fractions.append(fraction)
    if fraction == 0.0:
        report.warnings.append((pair.mask, "mask is empty (no lesion pixel)"))
    elif fraction == 1.0:
        report.warnings.append((pair.mask, "mask covers the whole image"))


def _check_part(name: str, folder: Path, layout: str, subset: str, report: CheckReport, progress: bool) -> None:
    """Check one part (a split folder or an ISIC 2018 subset); raises DatasetError when it cannot be read."""
    scan = _scan(folder, detect_layout(folder) if layout == "auto" else layout, subset)
    report.problems += [(p, f"image has no mask ({p.stem}{MASK_SUFFIX}.png expected in {scan.mask_dir})")
                        for p in scan.images_without_mask]
    report.problems += [(p, f"mask has no image (expected {_mask_id(p)}.jpg/.png in "
                            f"{', '.join(map(str, scan.image_dirs))})") for p in scan.masks_without_image]
    for ident, paths in sorted(scan.duplicates.items()):
        report.problems += [(p, f"duplicate id {ident!r}: also {', '.join(str(q) for q in paths if q != p)}")
                            for p in paths[1:]]
    report.parts[name] = len(scan.pairs)
    for pair in tqdm(scan.pairs, desc=f"checking {name}", disable=not progress):
        _check_pair(pair, report)


def check_dataset(root: str | os.PathLike[str], *, progress: bool = True) -> CheckReport:
    """Validate every pair of a dataset folder (any layout, or train/val/test sub-folders) and summarise it.

    Checks that each image and mask decodes, that sizes match, that masks are binary (at most 1% of pixels
    with values 2-254), and that no file lacks its partner or shares an id; empty or full masks are
    warnings. Collects every problem instead of stopping at the first; never raises on a bad dataset (an
    unknown layout or a missing folder is itself reported as a problem).
    """
    report = CheckReport(root=Path(root))
    try:
        report.layout, parts = _check_parts(_require_dir(root))
    except DatasetError as exc:
        report.problems.append((Path(root), str(exc)))
        return report
    for name, folder, layout, subset in parts:
        try:
            _check_part(name, folder, layout, subset, report, progress)
        except DatasetError as exc:
            report.problems.append((folder, str(exc)))
    return report


# --------------------------------------------------------------------------------------------------------- CLI
def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m helpers.data", description="Create, check or download "
                                     "skin-lesion segmentation datasets.")
    sub = parser.add_subparsers(dest="command", required=True)
    synth = sub.add_parser("synth", help="write a synthetic dataset in the ISIC layout")
    synth.add_argument("--out", required=True, type=Path, help="folder to write images/ and masks/ into")
    synth.add_argument("--n", type=int, default=200, help="number of pairs (default 200)")
    synth.add_argument("--size", type=int, default=256, help="image width in pixels (default 256)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    check = sub.add_parser("check", help="validate every pair of a dataset folder; exit 1 if any file is bad")
    check.add_argument("dir", type=Path, help="dataset folder (any layout, or train/val/test sub-folders)")
    check.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    download = sub.add_parser("download", help="download and extract a public dataset (resumable, verified)")
    download.add_argument("name", choices=["ham10000", "isic2018"])
    download.add_argument("--out", type=Path, default=None, help="parent folder (default: the course data folder)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m helpers.data``; returns the exit code (1 when ``check`` finds problems)."""
    args = _build_parser().parse_args(argv)
    if args.command == "synth":
        from . import synthetic

        ids = synthetic.write_dataset(args.out, args.n, size=args.size, seed=args.seed)
        print(f"wrote {len(ids)} pairs to {args.out} (ISIC layout: images/ and masks/)")
        return 0
    if args.command == "check":
        report = check_dataset(args.dir, progress=not args.no_progress)
        print(report.summary())
        return 0 if report.ok else 1
    from . import download

    folder = download.download_dataset(args.name, args.out if args.out is not None else config.data_dir())
    print(f"{args.name} ready in {folder}: use it with SKINSEG_DATA={folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
