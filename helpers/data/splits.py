"""From a dataset folder to leak-free splits: the resolved dataset, ``split_pairs``, ``course_splits``.

Introduced in notebook 01 (``01_data_exploration``), which calls :func:`course_splits`; notebook 06 uses
:func:`lesion_groups`, :func:`source_pairs` and :func:`split_pairs` for its leak and domain-shift lessons.
Reading files is :mod:`helpers.data.files`, finding them :mod:`helpers.data.layouts`; the torch Dataset and
loaders are :mod:`helpers.data.dataset`.

A folder is resolved once (:func:`resolve_dataset` -> :class:`ResolvedDataset`: root, layout, split folders,
lesion groups, sources), and every split, group and source comes from that one object. Splits are by
**group** when the dataset says which images show the same lesion (HAM10000's ``HAM10000_metadata.csv``, or a
``metadata.csv`` with ``image_id`` and ``lesion_id`` columns, see :mod:`helpers.data.layouts`): no lesion
then sits in two splits. :func:`find_leaks` / :func:`check_no_leak` is the one check that no id and no lesion
is in two splits (or an id twice), used by the splits given as folders, the preprocessing cache,
``python -m helpers.data check`` and the benchmarks.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from helpers import config
from helpers.data import synthetic
from helpers.data.files import DatasetError, listing
from helpers.data.layouts import (
    GROUP_COLUMN,
    SOURCE_COLUMN,
    Pair,
    detect_layout,
    discover_pairs,
    has_isic2018_truth,
    read_groups,
    read_sources,
    require_dir,
    split_folders,
)

__all__ = ["SPLITS", "DEFAULT_RATIOS", "SMOKE_MAX_PAIRS", "Leak", "find_leaks", "check_no_leak", "find_copies",
           "split_pairs", "subset_pairs", "ResolvedDataset", "resolve_dataset", "course_splits", "lesion_groups",
           "source_pairs"]

logger = logging.getLogger(__name__)

#: The split names every function returns.
SPLITS = ("train", "val", "test")
#: Default (train, val, test) ratios of :func:`split_pairs`.
DEFAULT_RATIOS = (0.8, 0.1, 0.1)



# ------------------------------------------------------------------------------------------------------- leaks
@dataclass(frozen=True)
class Leak:
    """One id seen more than once, or one lesion in more than one split: ``places`` lists ``(split, pair)``."""

    kind: str  # "id" or "lesion"
    key: str
    places: tuple[tuple[str, Pair], ...]

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits it is in, in order of first appearance (a split twice for an id twice in one split)."""
        return tuple(name for name, _ in self.places)

    def describe(self) -> str:
        """``"id 'a' in train and val"`` / ``"lesion_id 'HAM_1' in train (a) and test (b)"``."""
        if self.kind == "id":
            return f"id {self.key!r} in {' and '.join(self.splits)}"
        return f"{GROUP_COLUMN} {self.key!r} in " + " and ".join(f"{s} ({p.id})" for s, p in self.places)


def find_leaks(splits: Mapping[str, Sequence[Pair]], groups: Mapping[str, str] | None = None) -> list[Leak]:
    """Every id that appears more than once across ``splits`` (within one split too), and, with ``groups``
    (``{image_id: lesion_id}``), every lesion whose images are in more than one split. Sorted by kind and key."""
    ids: dict[str, list[tuple[str, Pair]]] = {}
    lesions: dict[str, list[tuple[str, Pair]]] = {}
    for name, pairs in splits.items():
        for pair in pairs:
            ids.setdefault(pair.id, []).append((name, pair))
            if groups and pair.id in groups:
                lesions.setdefault(groups[pair.id], []).append((name, pair))
    found = [Leak("id", key, tuple(places)) for key, places in sorted(ids.items()) if len(places) > 1]
    for key, places in sorted(lesions.items()):
        if len({name for name, _ in places}) > 1:
            firsts = {name: pair for name, pair in reversed(places)}  # the first image of each split
            found.append(Leak("lesion", key, tuple((name, firsts[name]) for name in dict.fromkeys(n for n, _ in places))))
    return found


def check_no_leak(splits: Mapping[str, Sequence[Pair]], groups: Mapping[str, str] | None = None, *,
                  where: str) -> None:
    """Raise :class:`~helpers.data.files.DatasetError` naming every leak :func:`find_leaks` finds in ``where``.

    Raises:
        DatasetError: an id is twice or in two splits, or a lesion in two splits (each named, with the fix).
    """
    leaks = find_leaks(splits, groups)
    if leaks:
        raise DatasetError(f"{len(leaks)} leak(s) in {where}: {listing([leak.describe() for leak in leaks])}. "
                           "Each id must be one pair, and a lesion's images one split's: remove the copies, or "
                           "move them into one split (a pair or lesion in two splits leaks test data).")


# ------------------------------------------------------------------------------------------------------ copies
def _file_digest(path: Path) -> str:
    """sha256 of a file's bytes; DatasetError naming the file when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise DatasetError(f"cannot read image {path} ({exc.strerror or exc}): fix its permissions or remove the "
                           "pair from the dataset folder.") from exc
    return digest.hexdigest()


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise DatasetError(f"cannot read image {path} ({exc.strerror or exc}): the dataset changed since "
                           "discovery; rediscover it.") from exc


def find_copies(pairs: Sequence[Pair]) -> list[list[Pair]]:
    """Every set of pairs (two ids or more) whose image files hold the same bytes: one picture under several ids.

    Cheap on 10,000 images: a file is read and hashed (sha256) only when another file has exactly its size.
    Each set is sorted by id, the sets by their first id. A copy saved in another format has other bytes: that
    is found by ``python -m helpers.data check`` (decoded pixels), which calls either a problem.

    Raises:
        DatasetError: an image file cannot be read.
    """
    by_size: dict[int, list[Pair]] = {}
    for pair in pairs:
        by_size.setdefault(_file_size(pair.image), []).append(pair)
    by_digest: dict[str, list[Pair]] = {}
    for same_size in by_size.values():
        if len(same_size) > 1:
            for pair in same_size:
                by_digest.setdefault(_file_digest(pair.image), []).append(pair)
    copies = [sorted(found, key=lambda p: p.id) for found in by_digest.values() if len({p.id for p in found}) > 1]
    return sorted(copies, key=lambda found: found[0].id)


def _describe_copies(copies: Sequence[Sequence[Pair]], split_of: Mapping[str, str] | None = None) -> str:
    """``a = b, c = d``, each id followed by its split when ``split_of`` is given (``a (train) = b (val)``)."""
    def name(pair: Pair) -> str:
        return f"{pair.id} ({split_of[pair.id]})" if split_of else pair.id
    return listing([" = ".join(map(name, found)) for found in copies])


def _merge_groups(pairs: Sequence[Pair], groups: Mapping[str, str] | None,
                  copies: Sequence[Sequence[Pair]]) -> dict[str, str]:
    """``{id: group}`` for ``pairs`` where each copy set joins one group, with every lesion of its members
    (union-find over group keys; a merged group is named by its smallest key, so the result is deterministic)."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while parent.get(key, key) != key:
            key = parent[key]
        return key

    def group(pair: Pair) -> str:
        return (groups or {}).get(pair.id, pair.id)

    for found in copies:
        keys = sorted({root(group(pair)) for pair in found})
        for key in keys[1:]:
            parent[key] = keys[0]
    return {**(groups or {}), **{pair.id: root(group(pair)) for pair in pairs}}


def _with_copies(pairs: Sequence[Pair], groups: Mapping[str, str] | None, where: Path
                 ) -> Mapping[str, str] | None:
    """``groups`` with every :func:`find_copies` set merged into one group (with its members' lesions), so
    :func:`split_pairs` keeps the copies in one split; logs a warning naming them. Unchanged without copies, or
    when each set's images already share one lesion (HAM10000's two such pairs: ``check`` warns about those)."""
    copies = [found for found in find_copies(pairs)
              if len({(groups or {}).get(pair.id, pair.id) for pair in found}) > 1]
    if not copies:
        return groups
    logger.warning("%s: %d set(s) of byte-identical images under different ids (%s): each set is kept in one "
                   "split, so no copy is in two; keep one copy of each (`python -m helpers.data check %s` lists "
                   "them)", where, len(copies), _describe_copies(copies), where)
    return _merge_groups(pairs, groups, copies)


def _refuse_copies_across(found: Mapping[str, Sequence[Pair]], root: Path) -> None:
    """Raise DatasetError when byte-identical images under other ids sit in two of the given split folders."""
    split_of = {pair.id: name for name, pairs in found.items() for pair in pairs}
    across = [c for c in find_copies([p for pairs in found.values() for p in pairs])
              if len({split_of[p.id] for p in c}) > 1]
    if across:
        raise DatasetError(f"{len(across)} image(s) in the splits of {root} are byte-identical copies under other "
                           f"ids in two splits: {_describe_copies(across, split_of)}. A copy in two splits leaks test "
                           f"data: delete one copy of each (`python -m helpers.data check {root}` lists them).")


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
    check_no_leak({"the pairs to split": pairs}, where="the pairs to split")
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
    check_no_leak(found, groups, where=f"the split folders of {root}")
    _refuse_copies_across(found, root)
    missing = [k for k in ("val", "test") if k not in found]
    if not missing:
        return {k: found[k] for k in SPLITS}
    weights = [DEFAULT_RATIOS[0]] + [DEFAULT_RATIOS[i] if SPLITS[i] in missing else 0.0 for i in (1, 2)]
    ratios = tuple(w / sum(weights) for w in weights)
    carved = split_pairs(found["train"], ratios, seed=seed, groups=_with_copies(found["train"], groups, root))
    logger.info("%s: %s split(s) carved out of train with ratios %s", root, "+".join(missing), ratios)
    return {"train": carved["train"], **{k: found[k] if k in found else carved[k] for k in ("val", "test")}}


def _user_data() -> Path | None:
    """:func:`helpers.config.user_data_dir` (``SKINSEG_DATA``), its missing folder raised as DatasetError."""
    try:
        return config.user_data_dir()
    except FileNotFoundError as exc:
        raise DatasetError(str(exc)) from exc


def _default_root() -> Path:
    """``SKINSEG_DATA`` if set, else the embedded synthetic set (small in smoke mode), generated once."""
    root = _user_data()
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


@dataclass(frozen=True)
class ResolvedDataset:
    """A dataset folder resolved once: where it is, how it is laid out, and what its metadata says.

    Attributes:
        root: the folder. layout: ``"splits"`` (train/val/test|holdout sub-folders), or the layout of
            :func:`helpers.data.layouts.detect_layout`. folders: split name -> folder (``{}`` without split
            folders). groups: ``{image_id: lesion_id}`` or None without a metadata CSV that has them.
            sources: ``{image_id: source}`` (the CSV's ``dataset`` column), ``{}`` without one.
            user_data: True when the folder came from ``SKINSEG_DATA`` (``root=None`` with it set).
    """

    root: Path
    layout: str
    folders: dict[str, Path] = field(default_factory=dict)
    groups: dict[str, str] | None = None
    sources: dict[str, str] = field(default_factory=dict)
    user_data: bool = False

    def all_splits(self, seed: int = 0) -> dict[str, list[Pair]]:
        """Every pair, ``{"train", "val", "test"}``: the given splits as they are, the missing ones carved out of
        train (by lesion), or the whole folder split 80/10/10 by :func:`split_pairs` (seeded by ``seed``).

        Byte-identical images under different ids (:func:`find_copies`) are kept in one split, as a lesion's
        images are, with a logged warning naming them; in two given split folders they raise DatasetError."""
        if self.folders:
            return _fill_missing({k: discover_pairs(d) for k, d in self.folders.items()}, seed, self.root,
                                 self.groups)
        if self.layout == "isic2018":
            found = {"train": discover_pairs(self.root, "isic2018", "training")}
            for subset, key in (("validation", "val"), ("test", "test")):
                if has_isic2018_truth(self.root, subset):
                    found[key] = discover_pairs(self.root, "isic2018", subset)
            return _fill_missing(found, seed, self.root, self.groups)
        pairs = discover_pairs(self.root, self.layout)
        return split_pairs(pairs, seed=seed, groups=_with_copies(pairs, self.groups, self.root))


def resolve_dataset(root: str | os.PathLike[str] | ResolvedDataset | None = None) -> ResolvedDataset:
    """Resolve a dataset folder once (a :class:`ResolvedDataset` is returned as it is).

    ``root=None`` means ``SKINSEG_DATA`` if set, otherwise the embedded synthetic set (generated once under
    ``data/``, small in smoke mode). The metadata CSV (groups, sources) is ``train/``'s for a split-folder
    dataset when it has one, else the root's.

    Raises:
        DatasetError: the folder does not exist (``SKINSEG_DATA`` too), has no known layout, or its metadata CSV
            is malformed.
    """
    if isinstance(root, ResolvedDataset):
        return root
    user = _user_data() if root is None else None
    folder = require_dir(root if root is not None else user if user is not None else _default_root())
    folders = split_folders(folder)
    metadata_roots = [folders["train"], folder] if folders else [folder]
    groups = next((g for g in map(read_groups, metadata_roots) if g), None)
    sources = next((s for s in map(read_sources, metadata_roots) if s), {})
    return ResolvedDataset(folder, "splits" if folders else detect_layout(folder), folders, groups, sources,
                           user_data=user is not None)


def course_splits(root: str | os.PathLike[str] | ResolvedDataset | None = None, *, seed: int = 0,
                  max_pairs: Mapping[str, int] | None = None) -> dict[str, list[Pair]]:
    """The ``{"train", "val", "test"}`` pairs every notebook uses.

    Args:
        root: the dataset folder (see below), or a :class:`ResolvedDataset` already resolved.
        seed: seed of any split carved here and of the subsets.
        max_pairs: keep at most ``max_pairs[split]`` pairs of each split it names (the others keep all),
            chosen by :func:`subset_pairs`. None: every pair, except in smoke mode on the learner's own data
            (``root=None`` with ``SKINSEG_DATA`` set), where :data:`SMOKE_MAX_PAIRS` applies so each notebook
            still runs in seconds; pass ``{}`` to keep every pair there too.

    The folder is resolved once (:func:`resolve_dataset`); ``root=None`` means ``SKINSEG_DATA`` if set,
    otherwise the embedded synthetic set. Then, in order:

    * a folder with ``train/`` (and optionally ``val/``, ``test/`` or ``holdout/``) sub-folders, each in any
      layout, is used as given (``holdout`` becomes ``"test"``); missing splits are carved out of train (by
      the groups of ``train/``'s metadata CSV, else of the root's);
    * an official ISIC 2018 folder uses Training / Validation / Test where their ground truth is present and
      carves the others out of Training;
    * any other folder is discovered and split with :func:`split_pairs` (80/10/10, ``seed``), by lesion when
      the folder has a metadata CSV (HAM10000 after ``python -m helpers.data download ham10000``).

    Raises:
        DatasetError: the folder cannot be used (message names the file(s) and the fix), an id or a lesion is
            in two given splits (:func:`check_no_leak`), or the metadata CSV is malformed.
        ValueError: ``max_pairs`` names an unknown split or a count below 1.
    """
    unknown = sorted(set(max_pairs or {}) - set(SPLITS))
    if unknown:
        raise ValueError(f"max_pairs names unknown splits {unknown}: use {', '.join(SPLITS)}")
    dataset = resolve_dataset(root)
    if max_pairs is None and dataset.user_data and config.smoke_mode():
        max_pairs = SMOKE_MAX_PAIRS
    splits = dataset.all_splits(seed)
    return {key: subset_pairs(pairs, max_pairs[key], seed=seed) if max_pairs and key in max_pairs else pairs
            for key, pairs in splits.items()}


def lesion_groups(root: str | os.PathLike[str] | ResolvedDataset | None = None) -> dict[str, str] | None:
    """``{image_id: lesion_id}`` of the dataset (``train/``'s metadata CSV, else the root's), or None without one.

    ``root=None``: the course's dataset (``SKINSEG_DATA``, else the embedded synthetic set).
    """
    return resolve_dataset(root).groups


def source_pairs(root: str | os.PathLike[str] | ResolvedDataset | None = None, *, seed: int = 0
                 ) -> dict[str, list[Pair]]:
    """Every pair of the dataset (all splits), by the source its metadata CSV names; ``{}`` when it names none.

    The source is the CSV's ``dataset`` column (:data:`helpers.data.layouts.SOURCE_COLUMN`; HAM10000 has
    ``vidir_molemax``, ``vidir_modern``, ``rosendahl`` and ``vienna_dias``). Sources are ordered largest first
    (ties by name), pairs as :func:`course_splits` lists them (train, val, test). Introduced in notebook 06.

    Raises:
        DatasetError: the CSV names a source for some images but not for others (the missing ones are named).
    """
    dataset = resolve_dataset(root)
    if not dataset.sources:
        return {}
    pairs = [pair for split in dataset.all_splits(seed).values() for pair in split]
    missing = [pair.id for pair in pairs if pair.id not in dataset.sources]
    if missing:
        raise DatasetError(f"{dataset.root}: the metadata CSV gives no {SOURCE_COLUMN!r} for {len(missing)} of "
                           f"{len(pairs)} images ({listing(missing)}): add their rows, or drop the column to use "
                           "no sources.")
    found: dict[str, list[Pair]] = {}
    for pair in pairs:
        found.setdefault(dataset.sources[pair.id], []).append(pair)
    return dict(sorted(found.items(), key=lambda item: (-len(item[1]), item[0])))
