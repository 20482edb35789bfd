"""From pairs to batches: the torch Dataset and the DataLoaders every training run reads.

Introduced in notebook 02 (``02_se_unet_from_scratch``), which builds a :class:`SegmentationDataset`;
notebook 04 calls :func:`make_loaders`. The pairs come from :mod:`helpers.data.splits`, the files are read by
:mod:`helpers.data.files` (the mask rule), resized pairs may come from :mod:`helpers.data.cache`, and the
albumentations pipelines are :mod:`helpers.data.transforms`. In memory, images are ``(H, W, 3) uint8`` RGB and
masks ``(H, W) uint8`` in {0, 1}; :class:`SegmentationDataset` returns the model's tensors.
"""
from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from helpers import config
from helpers.data.cache import PreprocessCache, build_cache
from helpers.data.checks import MAX_MEDIAN_LESION_FRACTION, inverted_masks
from helpers.data.files import DatasetError, frame_fraction, listing, load_pair, read_mask
from helpers.data.layouts import Pair
from helpers.data.splits import subset_pairs
from helpers.data.transforms import eval_transforms, train_transforms

__all__ = ["SegmentationDataset", "make_loaders", "default_num_workers"]


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
            :mod:`helpers.data.transforms`); None returns the pair as read, image scaled to [0, 1].
        cache: a :class:`~helpers.data.cache.PreprocessCache` built for exactly these pairs; items are then read from
            it (already resized) and the transform still runs on them, so training augmentation stays random.

    Raises:
        ValueError: ``cache`` was built for other pairs.
        DatasetError (on indexing): a file cannot be read, breaks the mask rule (:func:`helpers.data.files.read_mask`),
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


#: Masks read to estimate the train split's median lesion fraction when there is no cache (cache=False).
LESION_FRACTION_SAMPLE = 64


def _resolve_cache(pairs: Sequence[Pair], img_size: int, cache: bool | str | os.PathLike[str] | None,
                   progress: bool) -> PreprocessCache | None:
    if cache is None or cache is False or not pairs:
        return None
    return build_cache(pairs, img_size, None if cache is True else cache, progress=progress)


def mask_fractions(pairs: Sequence[Pair], cache: PreprocessCache | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Lesion fractions and frame fractions (:func:`helpers.data.files.frame_fraction`) of ``pairs``' masks:
    every cached mask when ``cache`` holds them, else the masks of :data:`LESION_FRACTION_SAMPLE` pairs chosen
    by :func:`helpers.data.splits.subset_pairs`."""
    if cache is not None:
        return cache.mask_fractions()
    masks = [read_mask(pair.mask) for pair in subset_pairs(pairs, min(len(pairs), LESION_FRACTION_SAMPLE))]
    return (np.array([m.mean() for m in masks], dtype=np.float64),
            np.array([frame_fraction(m) for m in masks], dtype=np.float64))


def refuse_inverted_masks(pairs: Sequence[Pair], cache: PreprocessCache | None, limit: float | None) -> None:
    """Raise DatasetError when the train masks look inverted by :func:`helpers.data.checks.inverted_masks`
    (median lesion fraction above ``limit`` and the lesion filling the image frame; None: no check).

    Lesions cover a fifth of a typical dermoscopy image and rarely touch its border; masks whose lesion fills
    more than half of the image and its border on the median are almost surely inverted (background white),
    which ``python -m helpers.data check`` warns about.
    """
    if limit is None or not pairs:
        return
    reason = inverted_masks(*mask_fractions(pairs, cache), limit=limit)
    if reason:
        folders = listing(sorted({str(pair.mask.parent) for pair in pairs}))
        raise DatasetError(f"the train masks in {folders} look inverted: {reason}. Lesion pixels must be white "
                           "(255) and background black (0): invert the masks (255 - value) and check them with "
                           "`python -m helpers.data check DIR`; if the lesions really fill most of each image, "
                           "pass max_median_lesion_fraction=None to make_loaders.")


def make_loaders(splits: Mapping[str, Sequence[Pair]], img_size: int, batch_size: int, *, augment: bool = True,
                 colour_augment: str = "mild", num_workers: int | None = None,
                 cache: bool | str | os.PathLike[str] = True, seed: int = 0,
                 persistent_workers: bool | None = None, samplers: Mapping[str, Sampler[int]] | None = None,
                 progress: bool | None = None,
                 max_median_lesion_fraction: float | None = MAX_MEDIAN_LESION_FRACTION) -> dict[str, DataLoader]:
    """One DataLoader per split, batches of ``{"image": (B, 3, S, S), "mask": (B, 1, S, S), "id": list[str]}``.

    ``"train"`` gets :func:`~helpers.data.transforms.train_transforms` (if ``augment``) and is shuffled with a
    generator seeded by ``seed``; every other split gets :func:`~helpers.data.transforms.eval_transforms`, in order.
    Memory is pinned when CUDA is available.

    Args:
        splits: e.g. ``course_splits()``.
        img_size: square side the model sees, in pixels.
        batch_size: pairs per batch.
        augment: False trains on resized, normalised pairs only.
        colour_augment: ``mild`` (the recipe) or ``strong`` colour changes of the train split
            (:func:`~helpers.data.transforms.colour_transforms`).
        num_workers: loader processes; default :func:`default_num_workers`.
        cache: True stores resized pairs under ``data/cache`` (see :func:`helpers.data.cache.build_cache`); a path
            stores them there; False decodes every file every epoch.
        seed: seeds shuffling and augmentation (same seed, same batches).
        persistent_workers: default True when ``num_workers > 0``.
        samplers: optional split -> index sampler (e.g. a ``DistributedSampler`` for multi-process training,
            see :mod:`helpers.train.distributed`); that split is then read in the sampler's order, not shuffled here.
        progress: show the "caching N pairs" bar while a cache is built; None (default): except in smoke mode.
        max_median_lesion_fraction: refuse a train split whose masks' median lesion fraction is above this
            while the lesion fills the image frame (inverted masks, see :func:`refuse_inverted_masks`); None
            accepts such data on purpose.

    Raises:
        DatasetError: the train split is empty, or its masks look inverted (median lesion fraction above
            ``max_median_lesion_fraction`` and frame filled); the cache cannot be built (see
            :func:`helpers.data.cache.build_cache`: a bad file, a full or read-only disk).
        ValueError: ``batch_size`` is not a positive int.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if "train" in splits and not splits["train"]:
        raise DatasetError("the train split is empty: check the dataset with `python -m helpers.data check DIR`.")
    workers = default_num_workers() if num_workers is None else num_workers
    persistent = (workers > 0) if persistent_workers is None else (persistent_workers and workers > 0)
    show = not config.smoke_mode() if progress is None else progress
    loaders = {}
    for name, pairs in splits.items():
        train = name == "train"
        transform = (train_transforms(img_size, seed=seed, colour=colour_augment) if train and augment
                     else eval_transforms(img_size))
        stored = _resolve_cache(pairs, img_size, cache, show)
        if train:
            refuse_inverted_masks(pairs, stored, max_median_lesion_fraction)
        dataset = SegmentationDataset(pairs, transform, cache=stored)
        generator = torch.Generator()
        generator.manual_seed(seed)
        sampler = (samplers or {}).get(name)
        loaders[name] = DataLoader(dataset, batch_size=batch_size, shuffle=train and sampler is None,
                                   sampler=sampler, num_workers=workers, pin_memory=torch.cuda.is_available(),
                                   persistent_workers=persistent, generator=generator,
                                   worker_init_fn=_seed_worker if workers > 0 else None)
    return loaders


