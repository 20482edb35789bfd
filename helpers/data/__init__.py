"""The data stage: from a dataset folder (or the embedded synthetic set) to batches the model reads.

One module per concept, in the order data flows (notebook 01 introduces the stage):

- :mod:`~helpers.data.files`: naming constants, atomic writes, ``read_image``, THE mask rule (``read_mask``),
  ``write_mask``, ``load_pair``, ``DatasetError``: every file the package reads or writes goes through here.
- :mod:`~helpers.data.layouts`: ``Pair``, the three dataset layouts, split folders, the metadata CSV.
- :mod:`~helpers.data.splits`: the resolved dataset (``resolve_dataset``), leak-free splits (``split_pairs``,
  ``course_splits``, ``check_no_leak``), lesion groups and sources.
- :mod:`~helpers.data.dataset`: ``SegmentationDataset`` and ``make_loaders``.
- :mod:`~helpers.data.cache`, :mod:`~helpers.data.checks`, :mod:`~helpers.data.download` (with
  :mod:`~helpers.data.registry` and :mod:`~helpers.data.archives`),
  :mod:`~helpers.data.synthetic`, :mod:`~helpers.data.transforms`.

The names notebooks call are re-exported here (``from helpers import data``; ``data.course_splits()``); code
inside ``helpers`` imports them from their home module. ``python -m helpers.data`` is :mod:`helpers.cli.data`.
"""
from helpers.data.dataset import SegmentationDataset, default_num_workers, make_loaders
from helpers.data.files import (
                                DatasetError,
                                atomic_write,
                                load_pair,
                                mask_name,
                                read_image,
                                read_mask,
                                write_mask,
                                write_text_atomic,
)
from helpers.data.layouts import Pair, detect_layout, discover_pairs
from helpers.data.splits import (
                                SPLITS,
                                ResolvedDataset,
                                check_no_leak,
                                course_splits,
                                lesion_groups,
                                resolve_dataset,
                                source_pairs,
                                split_pairs,
                                subset_pairs,
)

__all__ = ["SegmentationDataset", "default_num_workers", "make_loaders", "DatasetError", "atomic_write",
           "load_pair", "mask_name", "read_image", "read_mask", "write_mask", "write_text_atomic", "Pair",
           "detect_layout", "discover_pairs", "SPLITS", "ResolvedDataset", "check_no_leak", "course_splits",
           "lesion_groups", "resolve_dataset", "source_pairs", "split_pairs", "subset_pairs"]
