"""Where pairs live on disk: the three dataset layouts, discovery, split folders and the optional metadata CSV.

Introduced in notebook 01 (``01_data_exploration``), which discovers the course's pairs. Layouts understood by
:func:`discover_pairs` (ids are file stems, e.g. ``ISIC_0024306``):

``isic``      ``root/images/<id>.{jpg,jpeg,png}`` + ``root/masks/<id>_segmentation.png``
              (what :mod:`helpers.data.synthetic` writes and what ``isic-challenge-scoring`` expects)
``isic2018``  official ISIC 2018 Task 1 folders: ``ISIC2018_Task1-2_{Training,Validation,Test}_Input/`` +
              ``ISIC2018_Task1_{Training,Validation,Test}_GroundTruth/``
``ham10000``  Harvard Dataverse HAM10000: ``HAM10000_images_part_1/``, ``HAM10000_images_part_2/`` +
              ``HAM10000_segmentations_lesion_tschandl/`` (+ ``HAM10000_metadata.csv``)

A folder may instead hold ``train/ val/ test|holdout/`` sub-folders, each in any layout (:func:`split_folders`).

Any layout may carry a metadata CSV at its root (:data:`METADATA_FILES`: ``metadata.csv``, or HAM10000's own
``HAM10000_metadata.csv``) with an ``image_id`` column and a group column ``lesion_id`` (:data:`GROUP_COLUMN`):
images of one group (several photographs of one lesion) are kept in one split by :func:`helpers.data.split_pairs`.
An optional source column ``dataset`` (:data:`SOURCE_COLUMN`, as in HAM10000's metadata) says which clinic or
dermoscope an image comes from: notebook 06 trains on one source and tests on the others.
"""
from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from helpers.data.files import IMAGE_EXTENSIONS, MASK_EXTENSION, MASK_SUFFIX, DatasetError, listing

LAYOUTS = ("isic", "isic2018", "ham10000")
ISIC2018_SUBSETS = ("training", "validation", "test")
HAM_IMAGE_DIRS = ("HAM10000_images_part_1", "HAM10000_images_part_2")
HAM_MASK_DIR = "HAM10000_segmentations_lesion_tschandl"
#: HAM10000's metadata file (Dataverse file id 4338392), written beside the image folders by the download.
HAM_METADATA = "HAM10000_metadata.csv"
#: Metadata CSV names looked for at a dataset's root, in this order.
METADATA_FILES = ("metadata.csv", HAM_METADATA)
#: The metadata columns: the image id (file stem) and the group kept within one split.
ID_COLUMN, GROUP_COLUMN = "image_id", "lesion_id"
#: The optional metadata column naming where an image comes from (HAM10000: ``vidir_modern``, ``rosendahl`` ...).
SOURCE_COLUMN = "dataset"
#: Split sub-folder names and the split each stands for (``holdout/`` is the test split).
SPLIT_FOLDERS = {"train": "train", "val": "val", "test": "test", "holdout": "test"}


@dataclass(frozen=True)
class Pair:
    """One training example on disk: an image and its lesion mask, sharing ``id``."""

    id: str
    image: Path
    mask: Path


@dataclass
class LayoutScan:
    """What a layout's folders hold: complete pairs, orphans on either side, and ids seen more than once."""

    pairs: list[Pair]
    images_without_mask: list[Path]
    masks_without_image: list[Path]
    duplicates: dict[str, list[Path]]
    image_dirs: list[Path]
    mask_dir: Path
    bad_names: list[Path] = field(default_factory=list)  # image/mask files whose name is not valid UTF-8


def dataset_hint() -> str:
    """One sentence listing the supported layouts and how to fetch one (appended to layout errors)."""
    return ("Supported layouts: `images/` + `masks/` (ISIC), the official ISIC 2018 Task 1 folders "
            "(`ISIC2018_Task1-2_Training_Input/` + `ISIC2018_Task1_Training_GroundTruth/`), or HAM10000 "
            f"(`{HAM_IMAGE_DIRS[0]}/`, `{HAM_IMAGE_DIRS[1]}/` + `{HAM_MASK_DIR}/`). "
            "`python -m helpers.data download {ham10000,isic2018} --out DIR` fetches one.")


def printable(text: object) -> str:
    """``str(text)`` safe to print and encode: bytes of a file name that is not valid UTF-8 (which Python keeps
    as lone surrogates, e.g. ``caf\\udce9.jpg``) are shown as ``\\xNN`` escapes (``caf\\xe9.jpg``)."""
    text = str(text)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            return text.encode("utf-8", "backslashreplace").decode("utf-8")


def is_utf8_name(path: Path) -> bool:
    """True when ``path``'s name is valid UTF-8 (False for e.g. ``b"caf\\xe9.jpg"`` written in Latin-1)."""
    try:
        path.name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _relative(path: Path, root: Path) -> Path:
    return path.relative_to(root) if path.is_relative_to(root) else path


def bad_names_message(root: Path, bad: list[Path]) -> str:
    """The DatasetError message for files whose names are not valid UTF-8: each named, and the fix."""
    names = listing([printable(_relative(p, root)) for p in bad])
    return (f"{len(bad)} file name(s) in {printable(root)} are not valid UTF-8: {names}. Rename each (and its image "
            "or mask to match) with a UTF-8 name; ASCII letters, digits, '-' and '_' are safest: the course keys "
            "pairs by file name and cannot store or print these.")


def require_dir(root: str | os.PathLike[str]) -> Path:
    """``root`` as a Path; raises DatasetError when it is not an existing folder."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist or is not a folder: check the path. "
                           + dataset_hint())
    return root


def _subdirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def isic2018_dirs(root: Path, subset: str) -> tuple[Path, Path]:
    """(input folder, ground-truth folder) of an ISIC 2018 ``subset`` ("training", "validation", "test")."""
    cap = subset.capitalize()
    return root / f"ISIC2018_Task1-2_{cap}_Input", root / f"ISIC2018_Task1_{cap}_GroundTruth"


def has_isic2018_truth(root: Path, subset: str) -> bool:
    """True when the ISIC 2018 ``subset`` has both its input and its ground-truth folder."""
    image_dir, mask_dir = isic2018_dirs(root, subset)
    return image_dir.is_dir() and mask_dir.is_dir()


def detect_layout(root: str | os.PathLike[str]) -> str:
    """Which layout ``root`` is in: ``"isic"``, ``"isic2018"`` or ``"ham10000"`` (see the module docstring).

    Raises:
        DatasetError: the folder is missing or empty, matches no layout, or matches several.
    """
    root = require_dir(root)
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
    if names & set(SPLIT_FOLDERS):
        hint = " It has train/val/test sub-folders: pass it to course_splits(), or point at one sub-folder."
    elif "images" in names:
        hint = f" It has images/ but no masks/ folder: put <id>{MASK_SUFFIX}{MASK_EXTENSION} masks in masks/."
    contents = listing(sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir()))
    raise DatasetError(f"unknown dataset layout in {root} (it contains: {contents}).{hint} " + dataset_hint())


def layout_dirs(root: Path, layout: str, subset: str = "training") -> tuple[list[Path], Path]:
    """The image folders and the mask folder of ``layout``; raises DatasetError naming a missing folder."""
    if layout == "isic":
        image_dirs, mask_dir = [root / "images"], root / "masks"
    elif layout == "isic2018":
        image_dir, mask_dir = isic2018_dirs(root, subset)
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
                               "it there. " + dataset_hint())
    return image_dirs, mask_dir


def _is_data_file(path: Path) -> bool:
    """An image or mask file: known extension, not hidden (macOS ``._*``), not an ISIC 2017 superpixel map."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS \
        and not path.stem.endswith("_superpixels")


def mask_id(path: Path) -> str:
    """The image id a mask file belongs to: ``ISIC_1_segmentation.png -> ISIC_1`` (a bare ``<id>.png`` too)."""
    stem = path.stem
    return stem[: -len(MASK_SUFFIX)] if stem.endswith(MASK_SUFFIX) else stem


def _index(files: Iterable[Path], key: Callable[[Path], str]) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for path in sorted(files):
        out.setdefault(key(path), []).append(path)
    return out


def scan(root: Path, layout: str, subset: str = "training") -> LayoutScan:
    """Index a layout's folders without raising on orphans or duplicates (DatasetError on missing folders)."""
    image_dirs, mask_dir = layout_dirs(root, layout, subset)
    image_files = [p for d in image_dirs for p in d.iterdir() if _is_data_file(p)]
    mask_files = [p for p in mask_dir.iterdir() if _is_data_file(p)]
    bad = sorted(p for p in [*image_files, *mask_files] if not is_utf8_name(p))
    images = _index((p for p in image_files if is_utf8_name(p)), lambda p: p.stem)
    masks = _index((p for p in mask_files if is_utf8_name(p)), mask_id)
    duplicates: dict[str, list[Path]] = {}
    for index in (images, masks):
        for ident, paths in index.items():
            if len(paths) > 1:
                duplicates.setdefault(ident, []).extend(paths)
    pairs = [Pair(i, images[i][0], masks[i][0]) for i in sorted(images.keys() & masks.keys())]
    return LayoutScan(pairs=pairs,
                      images_without_mask=[images[i][0] for i in sorted(images.keys() - masks.keys())],
                      masks_without_image=[masks[i][0] for i in sorted(masks.keys() - images.keys())],
                      duplicates=duplicates, image_dirs=image_dirs, mask_dir=mask_dir, bad_names=bad)


def _orphan_message(found: LayoutScan) -> str:
    parts = []
    if found.images_without_mask:
        parts.append(f"{len(found.images_without_mask)} image(s) have no mask <id>{MASK_SUFFIX}{MASK_EXTENSION} "
                     f"in {found.mask_dir}: {listing([p.name for p in found.images_without_mask])}")
    if found.masks_without_image:
        parts.append(f"{len(found.masks_without_image)} mask(s) have no image <id>.jpg/.png in "
                     f"{', '.join(map(str, found.image_dirs))}: "
                     f"{listing([p.name for p in found.masks_without_image])}")
    return "; ".join(parts)


def discover_pairs(root: str | os.PathLike[str], layout: str = "auto", subset: str = "training") -> list[Pair]:
    """All image/mask pairs of a dataset folder, sorted by id.

    Args:
        root: the dataset folder.
        layout: ``"auto"`` (see :func:`detect_layout`), ``"isic"``, ``"isic2018"`` or ``"ham10000"``.
        subset: ISIC 2018 only: ``"training"``, ``"validation"`` or ``"test"``.

    Raises:
        DatasetError: folder missing, empty or of unknown layout; a layout folder missing; a file name that is
            not valid UTF-8 (named, with the fix: rename it); an id found twice
            (e.g. ``a.jpg`` and ``a.png``, or in both HAM10000 parts); an image without a mask or a mask
            without an image; no pair at all. The message lists the files (first 10 and a count) and the fix.
        ValueError: an unknown ``layout`` or ``subset``.
    """
    if subset not in ISIC2018_SUBSETS:
        raise ValueError(f"subset must be one of {ISIC2018_SUBSETS}, got {subset!r}")
    root = require_dir(root)
    layout = detect_layout(root) if layout == "auto" else layout
    found = scan(root, layout, subset)
    if found.bad_names:
        raise DatasetError(bad_names_message(root, found.bad_names))
    if found.duplicates:
        listed = listing([" and ".join(str(p) for p in ps) for _, ps in sorted(found.duplicates.items())])
        raise DatasetError(f"{len(found.duplicates)} id(s) appear more than once in {root}: {listed}. "
                           "Keep one file per id (delete or rename the others).")
    if found.images_without_mask or found.masks_without_image:
        raise DatasetError(f"incomplete dataset {root}: {_orphan_message(found)}. Add the missing files or move "
                           "the orphans out of the dataset folder.")
    if not found.pairs:
        raise DatasetError(f"no image/mask pairs found in {root} ({layout} layout, folders "
                           f"{', '.join(str(d) for d in [*found.image_dirs, found.mask_dir])}): images must be "
                           f"<id>{{{','.join(IMAGE_EXTENSIONS)}}} and masks <id>{MASK_SUFFIX}{MASK_EXTENSION}.")
    return found.pairs


def split_folders(root: Path) -> dict[str, Path]:
    """``{"train": root/train, "val": ..., "test": root/test or root/holdout}`` for the sub-folders present.

    Raises:
        DatasetError: both ``test/`` and ``holdout/``, or split folders without ``train/``.
    """
    names = set(_subdirs(root))
    if "test" in names and "holdout" in names:
        raise DatasetError(f"{root} has both test/ and holdout/: keep one (holdout/ is used as the test split).")
    found = {split: root / name for name, split in SPLIT_FOLDERS.items() if name in names}
    if found and "train" not in found:
        raise DatasetError(f"{root} has {', '.join(sorted(p.name for p in found.values()))}/ but no train/ "
                           "sub-folder: add train/ or point at a single dataset folder instead.")
    return found


def metadata_path(root: str | os.PathLike[str]) -> Path | None:
    """The metadata CSV at ``root`` (first of :data:`METADATA_FILES` present), or None."""
    for name in METADATA_FILES:
        if (Path(root) / name).is_file():
            return Path(root) / name
    return None


def read_column(root: str | os.PathLike[str], column: str, *, required: bool = True) -> dict[str, str] | None:
    """``{image_id: value of column}`` from the dataset's metadata CSV, or None when it has no CSV.

    Empty values are left out; ``required=False`` gives ``{}`` when the CSV has no ``column``. Raises:
        DatasetError: the CSV lacks the ``image_id`` column (or a required ``column``), or gives one image two
            values.
    """
    path = metadata_path(root)
    if path is None:
        return None
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not required and column not in (reader.fieldnames or []):
            return {}
        missing = [c for c in (ID_COLUMN, column) if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(f"metadata {path} has no column {', '.join(missing)} (it has "
                               f"{listing(reader.fieldnames or [])}): it needs the columns {ID_COLUMN!r} and {column!r}; "
                               "rename them, or remove the file.")
        values: dict[str, str] = {}
        for row in reader:
            ident, value = row[ID_COLUMN].strip(), (row[column] or "").strip()
            if value and values.setdefault(ident, value) != value:
                raise DatasetError(f"metadata {path}: image {ident} is listed with two {column}s "
                                   f"({values[ident]} and {value}): keep one row per image.")
    return values


def read_groups(root: str | os.PathLike[str]) -> dict[str, str] | None:
    """``{image_id: lesion_id}`` from the dataset's metadata CSV, or None when it has none.

    An image with an empty ``lesion_id`` is its own group (it is left out of the mapping). Raises:
        DatasetError: the CSV lacks the ``image_id`` or ``lesion_id`` column, or gives one image two groups.
    """
    return read_column(root, GROUP_COLUMN)


def read_sources(root: str | os.PathLike[str]) -> dict[str, str]:
    """``{image_id: source}`` from the metadata CSV's :data:`SOURCE_COLUMN` (HAM10000's ``dataset``), or ``{}``.

    ``{}`` when the dataset has no metadata CSV or its CSV has no such column (sources are optional).
    Raises:
        DatasetError: one image is given two sources.
    """
    return read_column(root, SOURCE_COLUMN, required=False) or {}
