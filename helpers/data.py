"""From a dataset folder to batches: leak-free splits, the torch Dataset, DataLoaders; ``python -m helpers.data``.

Introduced in notebook 01 (``01_data_exploration``), which calls :func:`course_splits`; notebook 02 builds a
:class:`SegmentationDataset` and notebook 04 :func:`make_loaders`. Reading files is :mod:`helpers.io`, finding
them :mod:`helpers.layouts`, the preprocessing cache :mod:`helpers.cache`, validating a folder
:mod:`helpers.checks`. The names notebooks use from those modules (``Pair``, ``read_image``, ``read_mask``,
``load_pair``, ``discover_pairs``, ``detect_layout``, ``DatasetError``) are importable from here too.

Splits are by **group** when the dataset says which images show the same lesion (HAM10000's
``HAM10000_metadata.csv``, or a ``metadata.csv`` with ``image_id`` and ``lesion_id`` columns, see
:mod:`helpers.layouts`): no lesion then sits in two splits. In memory, images are ``(H, W, 3) uint8`` RGB and
masks ``(H, W) uint8`` in {0, 1}; :class:`SegmentationDataset` returns the model's tensors.

Command line (``python -m helpers.data --help``)::

    python -m helpers.data synth --out data/synth --n 200 --size 256 --seed 0
    python -m helpers.data check DIR          # exit 1 and a list of bad files if anything is wrong
    python -m helpers.data download isic2018 --out data
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import math
import os
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from . import checks, config, download, synthetic
from .cache import PreprocessCache, build_cache, check_unique_ids
from .io import DatasetError, listing, load_pair, read_image, read_mask
from .layouts import (SOURCE_COLUMN, Pair, detect_layout, discover_pairs, has_isic2018_truth, read_groups,
                      read_sources, require_dir, split_folders)
from .transforms import eval_transforms, train_transforms

__all__ = ["SPLITS", "DEFAULT_RATIOS", "SMOKE_MAX_PAIRS", "split_pairs", "subset_pairs", "course_splits",
           "SegmentationDataset", "make_loaders", "default_num_workers", "main", "Pair", "DatasetError",
           "read_image", "read_mask", "load_pair", "discover_pairs", "detect_layout"]

logger = logging.getLogger(__name__)

#: The split names every function returns.
SPLITS = ("train", "val", "test")
#: Default (train, val, test) ratios of :func:`split_pairs`.
DEFAULT_RATIOS = (0.8, 0.1, 0.1)


# ------------------------------------------------------------------------------------------------------ splits
def _check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(r) for r in ratios)
    if len(values) != 3 or any(not math.isfinite(r) or r < 0 for r in values) or abs(sum(values) - 1) > 1e-6:
        raise ValueError(f"ratios must be three numbers >= 0 (train, val, test) summing to 1, got {tuple(ratios)}")
    return values  # type: ignore[return-value]


def _split_counts(n: int, ratios: tuple[float, float, float]) -> list[int]:
    """Largest-remainder counts summing to ``n``; every positive ratio gets >= 1 item as far as ``n`` allows
    (train first, then val, then test)."""
    raw = [n * r for r in ratios]
    counts = [math.floor(x) for x in raw]
    for i in sorted(range(3), key=lambda i: (counts[i] - raw[i], i))[: n - sum(counts)]:
        counts[i] += 1
    positive = [i for i in range(3) if ratios[i] > 0]
    for i in positive:  # train first, then val, then test, as far as the items go
        donor = max(positive, key=lambda j: counts[j])
        if counts[i] == 0 and counts[donor] > 1:
            counts[donor] -= 1
            counts[i] += 1
    return counts


def _rank(key: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def _cut(sizes: Sequence[int], ratios: tuple[float, float, float]) -> list[int]:
    """Split index (0, 1, 2) of each ranked unit of ``sizes`` images: a unit goes where its first image falls.

    With units of one image this is the plain ratio cut. When large units leave a split with a positive ratio
    empty, the smallest unit of the split with the most images (and at least two units) moves into it.
    """
    n_train, n_val, _ = _split_counts(sum(sizes), ratios)
    out, start = [], 0
    for size in sizes:
        out.append(0 if start < n_train else 1 if start < n_train + n_val else 2)
        start += size
    for empty in (i for i in range(3) if ratios[i] > 0):
        donors = [d for d in range(3) if out.count(d) >= 2]
        if empty in out or not donors:
            continue
        donor = max(donors, key=lambda d: sum(s for s, o in zip(sizes, out) if o == d))
        unit = min((k for k, o in enumerate(out) if o == donor), key=lambda k: (sizes[k], -k))
        out[unit] = empty
    return out


def split_pairs(pairs: Sequence[Pair], ratios: Sequence[float] = DEFAULT_RATIOS, seed: int = 0, *,
                groups: Mapping[str, str] | None = None) -> dict[str, list[Pair]]:
    """Split pairs into ``{"train", "val", "test"}`` deterministically, keeping each group in one split.

    Each group (by default each id is its own group; ``groups`` maps an id to e.g. its HAM10000 ``lesion_id``)
    is ranked by ``sha256(f"{seed}:{group}")``, and the ranking is cut at the ratio counts of images (largest
    remainder; a group goes to the split where its first image falls; every split with a positive ratio gets at
    least one group when there are enough). The result depends only on the ids, the groups and ``seed``, not on
    the order of ``pairs``; adding an id moves at most a couple of others. Each split is sorted by id.

    Raises:
        ValueError: ``ratios`` are not three numbers >= 0 summing to 1.
        DatasetError: an id appears twice in ``pairs``.
    """
    r = _check_ratios(ratios)
    check_unique_ids(pairs, "the pairs to split")
    members: dict[str, list[Pair]] = {}
    for pair in pairs:
        members.setdefault((groups or {}).get(pair.id, pair.id), []).append(pair)
    ranked = sorted(members, key=lambda g: _rank(g, seed))
    parts: list[list[Pair]] = [[], [], []]
    for group, index in zip(ranked, _cut([len(members[g]) for g in ranked], r)):
        parts[index] += members[group]
    return {name: sorted(part, key=lambda p: p.id) for name, part in zip(SPLITS, parts)}


def _fill_missing(found: dict[str, list[Pair]], seed: int, root: Path,
                  groups: Mapping[str, str] | None = None) -> dict[str, list[Pair]]:
    """Carve the splits missing from ``found`` out of its train split (default ratios, renormalised)."""
    for a, b in [("train", "val"), ("train", "test"), ("val", "test")]:
        shared = sorted({p.id for p in found.get(a, [])} & {p.id for p in found.get(b, [])})
        if shared:
            raise DatasetError(f"{len(shared)} id(s) of {root} are in both {a} and {b}: {listing(shared)}. "
                               "Remove them from one split (a pair in two splits leaks test data).")
    missing = [k for k in ("val", "test") if k not in found]
    if not missing:
        return {k: found[k] for k in SPLITS}
    weights = [DEFAULT_RATIOS[0]] + [DEFAULT_RATIOS[i] if SPLITS[i] in missing else 0.0 for i in (1, 2)]
    ratios = tuple(w / sum(weights) for w in weights)
    carved = split_pairs(found["train"], ratios, seed=seed, groups=groups)
    logger.info("%s: %s split(s) carved out of train with ratios %s", root, "+".join(missing), ratios)
    return {"train": carved["train"], **{k: found[k] if k in found else carved[k] for k in ("val", "test")}}


def _default_root() -> Path:
    """``SKINSEG_DATA`` if set, else the embedded synthetic set (small in smoke mode), generated once."""
    root = config.user_data_dir()
    if root is not None:
        return Path(root)
    params = synthetic.DEFAULT_SMOKE if config.smoke_mode() else synthetic.DEFAULT_FULL
    return synthetic.ensure_synthetic(**params, seed=0)


#: Pairs per split that smoke mode keeps of the learner's own data (``SKINSEG_DATA``): seconds per notebook.
SMOKE_MAX_PAIRS: Mapping[str, int] = {"train": 48, "val": 16, "test": 16}


def subset_pairs(pairs: Sequence[Pair], n: int, *, seed: int = 0) -> list[Pair]:
    """``n`` of ``pairs`` chosen by a seeded hash of their ids (the same ones on every machine), in input order.

    Raises:
        ValueError: ``n`` < 1.
    """
    if n < 1:
        raise ValueError(f"a subset needs n >= 1 pairs, got {n}")
    rank = sorted(range(len(pairs)), key=lambda i: hashlib.sha256(f"{seed}:{pairs[i].id}".encode()).hexdigest())
    keep = set(rank[:n])
    return [pair for i, pair in enumerate(pairs) if i in keep]


def course_splits(root: str | os.PathLike[str] | None = None, *, seed: int = 0,
                  max_pairs: Mapping[str, int] | None = None) -> dict[str, list[Pair]]:
    """The ``{"train", "val", "test"}`` pairs every notebook uses.

    Args:
        root: the dataset folder (see below).
        seed: seed of any split carved here and of the subsets.
        max_pairs: keep at most ``max_pairs[split]`` pairs of each split it names (the others keep all),
            chosen by :func:`subset_pairs`. None: every pair, except in smoke mode on the learner's own data
            (``root=None`` with ``SKINSEG_DATA`` set), where :data:`SMOKE_MAX_PAIRS` applies so each notebook
            still runs in seconds; pass ``{}`` to keep every pair there too.

    ``root=None`` means ``SKINSEG_DATA`` if set, otherwise the embedded synthetic set (generated once under
    ``data/``, small in smoke mode). Then, in order:

    * a folder with ``train/`` (and optionally ``val/``, ``test/`` or ``holdout/``) sub-folders, each in any
      layout, is used as given (``holdout`` becomes ``"test"``); missing splits are carved out of train (by
      the groups of ``train/``'s metadata CSV, else of the root's);
    * an official ISIC 2018 folder uses Training / Validation / Test where their ground truth is present and
      carves the others out of Training;
    * any other folder is discovered and split with :func:`split_pairs` (80/10/10, ``seed``), by lesion when
      the folder has a metadata CSV (HAM10000 after ``python -m helpers.data download ham10000``).

    Raises:
        DatasetError: the folder cannot be used (message names the file(s) and the fix), an id is in two
            given splits, or the metadata CSV is malformed.
        ValueError: ``max_pairs`` names an unknown split or a count below 1.
    """
    if max_pairs is None and root is None and config.smoke_mode() and config.user_data_dir() is not None:
        max_pairs = SMOKE_MAX_PAIRS
    unknown = sorted(set(max_pairs or {}) - set(SPLITS))
    if unknown:
        raise ValueError(f"max_pairs names unknown splits {unknown}: use {', '.join(SPLITS)}")
    splits = _all_splits(root, seed)
    return {key: subset_pairs(pairs, max_pairs[key], seed=seed) if max_pairs and key in max_pairs else pairs
            for key, pairs in splits.items()}


def _metadata_roots(root: Path) -> list[Path]:
    """Where a dataset's metadata CSV may live, first match wins: ``train/`` of a split-folder dataset, then the root."""
    folders = split_folders(root)
    return [folders["train"], root] if folders else [root]


def lesion_groups(root: str | os.PathLike[str] | None = None) -> dict[str, str] | None:
    """``{image_id: lesion_id}`` of the dataset (``train/``'s metadata CSV, else the root's), or None without one.

    ``root=None``: the course's dataset (``SKINSEG_DATA``, else the embedded synthetic set).
    """
    root = require_dir(_default_root() if root is None else root)
    return next((g for g in map(read_groups, _metadata_roots(root)) if g), None)


def source_pairs(root: str | os.PathLike[str] | None = None, *, seed: int = 0) -> dict[str, list[Pair]]:
    """Every pair of the dataset (all splits), by the source its metadata CSV names; ``{}`` when it names none.

    The source is the CSV's ``dataset`` column (:data:`helpers.layouts.SOURCE_COLUMN`; HAM10000 has
    ``vidir_molemax``, ``vidir_modern``, ``rosendahl`` and ``vienna_dias``). Sources are ordered largest first
    (ties by name), pairs as :func:`course_splits` lists them (train, val, test). Introduced in notebook 06.

    Raises:
        DatasetError: the CSV names a source for some images but not for others (the missing ones are named).
    """
    root = require_dir(_default_root() if root is None else root)
    sources = next((s for s in map(read_sources, _metadata_roots(root)) if s), {})
    if not sources:
        return {}
    pairs = [pair for split in _all_splits(root, seed).values() for pair in split]
    missing = [pair.id for pair in pairs if pair.id not in sources]
    if missing:
        raise DatasetError(f"{root}: the metadata CSV gives no {SOURCE_COLUMN!r} for {len(missing)} of {len(pairs)} "
                           f"images ({listing(missing)}): add their rows, or drop the column to use no sources.")
    found: dict[str, list[Pair]] = {}
    for pair in pairs:
        found.setdefault(sources[pair.id], []).append(pair)
    return dict(sorted(found.items(), key=lambda item: (-len(item[1]), item[0])))


def _all_splits(root: str | os.PathLike[str] | None, seed: int) -> dict[str, list[Pair]]:
    """Every pair of :func:`course_splits`' splits, before any subset."""
    root = require_dir(_default_root() if root is None else root)
    groups = lesion_groups(root)
    folders = split_folders(root)
    if folders:
        return _fill_missing({k: discover_pairs(d) for k, d in folders.items()}, seed, root, groups)
    layout = detect_layout(root)
    if layout == "isic2018":
        found = {"train": discover_pairs(root, "isic2018", "training")}
        for subset, key in (("validation", "val"), ("test", "test")):
            if has_isic2018_truth(root, subset):
                found[key] = discover_pairs(root, "isic2018", subset)
        return _fill_missing(found, seed, root, groups)
    return split_pairs(discover_pairs(root, layout), seed=seed, groups=groups)


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
        cache: a :class:`~helpers.cache.PreprocessCache` built for exactly these pairs; items are then read from
            it (already resized) and the transform still runs on them, so training augmentation stays random.

    Raises:
        ValueError: ``cache`` was built for other pairs.
        DatasetError (on indexing): a file cannot be read, breaks the mask rule (:func:`helpers.io.read_mask`),
            or a mask's size differs from its image's.
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
                 persistent_workers: bool | None = None,
                 samplers: Mapping[str, Sampler[int]] | None = None) -> dict[str, DataLoader]:
    """One DataLoader per split, batches of ``{"image": (B, 3, S, S), "mask": (B, 1, S, S), "id": list[str]}``.

    ``"train"`` gets :func:`~helpers.transforms.train_transforms` (if ``augment``) and is shuffled with a
    generator seeded by ``seed``; every other split gets :func:`~helpers.transforms.eval_transforms`, in order.
    Memory is pinned when CUDA is available.

    Args:
        splits: e.g. ``course_splits()``.
        img_size: square side the model sees, in pixels.
        batch_size: pairs per batch.
        augment: False trains on resized, normalised pairs only.
        num_workers: loader processes; default :func:`default_num_workers`.
        cache: True stores resized pairs under ``data/cache`` (see :func:`helpers.cache.build_cache`); a path
            stores them there; False decodes every file every epoch.
        seed: seeds shuffling and augmentation (same seed, same batches).
        persistent_workers: default True when ``num_workers > 0``.
        samplers: optional split -> index sampler (e.g. a ``DistributedSampler`` for multi-process training,
            see :mod:`helpers.distributed`); that split is then read in the sampler's order, not shuffled here.

    Raises:
        DatasetError: the train split is empty.
        ValueError: ``batch_size`` is not a positive int.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if "train" in splits and not splits["train"]:
        raise DatasetError("the train split is empty: check the dataset with `python -m helpers.data check DIR`.")
    workers = default_num_workers() if num_workers is None else num_workers
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
                                   sampler=sampler, num_workers=workers, pin_memory=torch.cuda.is_available(),
                                   persistent_workers=persistent, generator=generator,
                                   worker_init_fn=_seed_worker if workers > 0 else None)
    return loaders


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
    fetch = sub.add_parser("download", help="download and extract a public dataset (resumable, verified)")
    fetch.add_argument("name", choices=sorted(download.REGISTRY))
    fetch.add_argument("--out", type=Path, default=None, help="parent folder (default: the course data folder)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m helpers.data``; returns the exit code (1 when ``check`` finds problems)."""
    args = _build_parser().parse_args(argv)
    if args.command == "synth":
        ids = synthetic.write_dataset(args.out, args.n, size=args.size, seed=args.seed)
        print(f"wrote {len(ids)} pairs to {args.out} (ISIC layout: images/ and masks/)")
        return 0
    if args.command == "check":
        report = checks.check_dataset(args.dir, progress=not args.no_progress)
        print(report.summary())
        return 0 if report.ok else 1
    folder = download.download_dataset(args.name, args.out if args.out is not None else config.data_dir())
    print(f"{args.name} ready in {folder}: use it with SKINSEG_DATA={folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
