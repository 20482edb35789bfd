"""The preprocessing cache: each split decoded and resized once, stored as memory-mapped arrays.

Introduced in notebook 04 (``04_training``), where :func:`helpers.data.make_loaders` builds it so epochs after
the first read resized pairs instead of decoding JPEGs. Entries live under ``data/cache/`` and are keyed by the
image size and every file's path, size and modification time: editing a file rebuilds its entry in place.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from helpers import config
from helpers.data.files import DatasetError, atomic_write, frame_fraction, load_pair
from helpers.data.layouts import Pair
from helpers.data.splits import check_no_leak
from helpers.data.transforms import resize_transform

_CACHE_VERSION = 2  # 2: masks read with the one mask rule of helpers.data.files
#: Bytes a cache entry needs beyond its arrays: the two .npy headers and meta.json (ids and file paths).
_OVERHEAD_BYTES, _OVERHEAD_PER_PAIR = 1 << 20, 1024
#: Rows of masks counted at once by :meth:`PreprocessCache.lesion_fractions` (bounded memory).
_ROWS_PER_CHUNK = 256


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

    Raises:
        DatasetError: ``folder`` is not a cache (no ``meta.json``).
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

    def lesion_fractions(self) -> np.ndarray:
        """The lesion pixel fraction of every cached mask, ``(N,) float64`` in [0, 1] (read in chunks)."""
        return self.mask_fractions()[0]

    def mask_fractions(self) -> tuple[np.ndarray, np.ndarray]:
        """Every cached mask's lesion fraction and frame fraction (:func:`helpers.data.files.frame_fraction`),
        two ``(N,) float64`` arrays in [0, 1], read in chunks of :data:`_ROWS_PER_CHUNK` masks."""
        _, masks = self._open()
        pixels = max(1, self.img_size * self.img_size)
        areas, frames = [], []
        for i in range(0, len(masks), _ROWS_PER_CHUNK):
            chunk = np.asarray(masks[i:i + _ROWS_PER_CHUNK]) > 0
            areas.append(np.count_nonzero(chunk, axis=(1, 2)) / pixels)
            frames.append(np.array([frame_fraction(m) for m in chunk], dtype=np.float64))
        if not areas:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(areas).astype(np.float64), np.concatenate(frames)

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


def bytes_needed(n: int, img_size: int) -> int:
    """Disk bytes a cache entry of ``n`` pairs at ``img_size`` px takes: RGB images, masks, headers, meta.json."""
    return n * img_size * img_size * 4 + _OVERHEAD_BYTES + n * _OVERHEAD_PER_PAIR


def _size_text(n_bytes: float) -> str:
    """``1.5 GB``, ``340 MB``, ``12 kB``: a size for a message."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{int(n_bytes)} bytes"


def _no_space(parent: Path, needed: int, free: int) -> DatasetError:
    return DatasetError(f"the preprocessing cache needs {_size_text(needed)} in {parent} but only "
                        f"{_size_text(free)} are free there: free some space, set SKINSEG_HOME to a folder on a disk "
                        "with room (the cache lives in <SKINSEG_HOME>/data/cache) or pass another cache folder, or "
                        "train with cache=False (every file decoded every epoch: slower).")


def _require_space(parent: Path, needed: int) -> None:
    """Refuse (DatasetError: needed, free, where) before a memory map that the disk could not hold.

    A memory-mapped file on a full disk kills the process with SIGBUS ("Bus error"), with no Python error.
    """
    free = shutil.disk_usage(parent).free
    if needed > free:
        raise _no_space(parent, needed, free)


def _reserve(path: Path) -> None:
    """Allocate ``path``'s blocks now (posix_fallocate), so a disk filled meanwhile raises ENOSPC here instead of
    SIGBUS on a write through the memory map. A no-op where the OS or file system cannot."""
    if not hasattr(os, "posix_fallocate"):
        return
    with path.open("r+b") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, path.stat().st_size)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise
            # EINVAL / EOPNOTSUPP: this file system cannot reserve; the free-space check stands


def _open_array(path: Path, shape: tuple[int, ...]) -> np.memmap:
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    _reserve(path)
    return array


def _write_entry(tmp: Path, pairs: Sequence[Pair], img_size: int, fingerprint: str, progress: bool) -> None:
    """Decode, resize and store every pair in the new folder ``tmp``."""
    tmp.mkdir(parents=True)
    n = len(pairs)
    images = _open_array(tmp / "images.npy", (n, img_size, img_size, 3))
    masks = _open_array(tmp / "masks.npy", (n, img_size, img_size))
    resize = resize_transform(img_size)
    for i, pair in enumerate(tqdm(pairs, desc=f"caching {n} pairs at {img_size}px", disable=not progress)):
        image, mask = load_pair(pair)
        out = resize(image=image, mask=mask)
        images[i], masks[i] = out["image"], out["mask"]
    images.flush()
    masks.flush()
    del images, masks
    _write_meta(tmp, {"version": _CACHE_VERSION, "img_size": img_size, "fingerprint": fingerprint,
                      "ids": [p.id for p in pairs], "sources": [[str(p.image), str(p.mask)] for p in pairs]})


def _write_meta(folder: Path, meta: dict[str, Any]) -> None:
    """``folder/meta.json``, written last: a folder with it is a complete entry."""
    (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")


def build_cache(pairs: Sequence[Pair], img_size: int, cache_dir: str | os.PathLike[str] | None = None,
                progress: bool = True) -> PreprocessCache:
    """Resize ``pairs`` to ``img_size`` once and store them under ``cache_dir`` (reused while files are unchanged).

    The entry's key covers ``img_size`` and every file's path, size and modification time: editing,
    replacing or touching a file rebuilds the entry (in place). Entries are written with
    :func:`helpers.data.files.atomic_write`, so an interrupted build never leaves a half-written cache.

    Args:
        pairs: the pairs to store, in the order the dataset will index them.
        img_size: side of the square arrays, in pixels.
        cache_dir: parent folder; default :func:`default_cache_dir`.
        progress: show a tqdm bar while building.

    Before the memory-mapped arrays are created, the free space of the cache folder is checked against
    :func:`bytes_needed`; whatever fails while writing (a full disk, Ctrl-C) removes the hidden temporary folder.

    Raises:
        DatasetError: no pairs, a repeated id, a file cannot be read / breaks the mask rule / a mask's size
            differs from its image's, or the cache folder cannot be created or written or has too little free
            space (the message says how much is needed, how much is free and where).
        ValueError: ``img_size`` is not a positive int.
    """
    if not pairs:
        raise DatasetError("no pairs to cache: the split is empty (check the dataset with "
                           "`python -m helpers.data check DIR`).")
    resize_transform(img_size)  # validates img_size
    check_no_leak({"the pairs to cache": pairs}, where="the pairs to cache")
    parent = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    entry = parent / _entry_name(pairs, img_size)
    fingerprint = _fingerprint(pairs, img_size)
    if _valid_entry(entry, fingerprint):
        return PreprocessCache(entry)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cannot_write(parent, exc) from exc
    needed = bytes_needed(len(pairs), img_size)
    _require_space(parent, needed)
    try:
        with atomic_write(entry) as tmp:
            _write_entry(tmp, pairs, img_size, fingerprint, progress)
    except OSError as exc:
        if _valid_entry(entry, fingerprint):  # another process finished the same entry first
            return PreprocessCache(entry)
        if exc.errno == errno.ENOSPC:
            raise _no_space(parent, needed, shutil.disk_usage(parent).free) from exc
        raise _cannot_write(parent, exc) from exc
    return PreprocessCache(entry)


def _cannot_write(parent: Path, exc: OSError) -> DatasetError:
    return DatasetError(f"cannot write the preprocessing cache in {parent} ({exc.strerror or exc}"
                        f"{': ' + str(exc.filename) if exc.filename else ''}): set SKINSEG_HOME to a folder you can "
                        "write to (the cache lives in <SKINSEG_HOME>/data/cache) or pass another cache folder, or "
                        "train with cache=False.")
