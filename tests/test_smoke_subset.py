"""data.course_splits in smoke mode on the learner's own data: a small deterministic subset of each split."""
from __future__ import annotations

import pytest

from helpers import data
from helpers.data import splits as splits_module


@pytest.fixture
def split_dir(tmp_path, write_pair):
    """train/ (30 pairs), val/ (12), holdout/ (12) in the ISIC layout."""
    root = tmp_path / "own"
    start = 0
    for split, n in (("train", 30), ("val", 12), ("holdout", 12)):
        for i in range(start, start + n):
            ident = f"ISIC_{i:07d}"
            write_pair(root / split / "images" / f"{ident}.jpg", root / split / "masks" / f"{ident}_segmentation.png", i)
        start += n
    return root


def test_subset_is_deterministic_seeded_and_keeps_order():
    pairs = [data.Pair(f"ID_{i:03d}", None, None) for i in range(50)]
    a = data.subset_pairs(pairs, 10, seed=0)
    assert a == data.subset_pairs(list(reversed(pairs)), 10, seed=0)[::-1]  # chosen by id, not by position
    assert len(a) == 10 and a == sorted(a, key=lambda p: p.id)
    assert a != data.subset_pairs(pairs, 10, seed=1)
    assert data.subset_pairs(pairs, 80) == pairs
    assert [p.id for p in a] != [f"ID_{i:03d}" for i in range(10)]  # not simply the first ten
    with pytest.raises(ValueError, match="n >= 1"):
        data.subset_pairs(pairs, 0)


def test_smoke_mode_on_user_data_takes_the_smoke_subset(monkeypatch, split_dir):
    monkeypatch.setenv("SKINSEG_DATA", str(split_dir))
    monkeypatch.delenv("SKINSEG_PROFILE", raising=False)
    monkeypatch.setattr(splits_module, "SMOKE_MAX_PAIRS", {"train": 8, "val": 4, "test": 3})
    monkeypatch.setenv("SKINSEG_SMOKE", "1")
    small = data.course_splits()
    assert {k: len(v) for k, v in small.items()} == {"train": 8, "val": 4, "test": 3}
    assert small == data.course_splits()
    full = data.course_splits(max_pairs={})
    assert {k: len(v) for k, v in full.items()} == {"train": 30, "val": 12, "test": 12}
    assert all(set(small[k]) <= set(full[k]) for k in data.SPLITS)
    monkeypatch.setenv("SKINSEG_SMOKE", "0")
    assert data.course_splits() == full  # outside smoke mode: every pair
    monkeypatch.setenv("SKINSEG_SMOKE", "1")
    assert data.course_splits(split_dir) == full  # an explicit folder is used whole


def test_max_pairs_limits_only_the_splits_it_names(split_dir):
    splits = data.course_splits(split_dir, max_pairs={"train": 5})
    assert [len(splits[k]) for k in data.SPLITS] == [5, 12, 12]
    with pytest.raises(ValueError, match="unknown splits"):
        data.course_splits(split_dir, max_pairs={"holdout": 5})
