"""helpers.data and the modules behind it: readers (io), discovery (layouts), splits, dataset, cache, loaders, CLI.

The mask rule has its own tests in tests/test_io.py, ``check`` in tests/test_checks.py.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import data
from helpers.cli import data as data_cli
from helpers.data import cache as cache_module
from helpers.data import checks, layouts
from helpers.data.files import DatasetError
from helpers.data.layouts import Pair
from helpers.data.transforms import eval_transforms, train_transforms


def _pairs(n: int) -> list[Pair]:
    return [Pair(f"ID_{i:04d}", Path(f"/x/{i}.jpg"), Path(f"/x/{i}_segmentation.png")) for i in range(n)]


# ------------------------------------------------------------------------------------------------- readers
@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing"])
def test_corrupt_image_names_file_and_fix(isic_dir, damage):
    path = isic_dir / "images" / "ISIC_0000003.jpg"
    if damage == "garbage":
        path.write_bytes(b"this is not a jpeg")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    else:
        path.unlink()
    with pytest.raises(DatasetError, match="ISIC_0000003.jpg") as err:
        data.read_image(path)
    assert "re-download" in str(err.value).lower() or "remove" in str(err.value)


def test_corrupt_mask_raises_naming_it(isic_dir):
    path = isic_dir / "masks" / "ISIC_0000001_segmentation.png"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DatasetError, match="ISIC_0000001_segmentation.png"):
        data.read_mask(path)


# ----------------------------------------------------------------------------------------------- discovery
def test_detect_and_discover_each_layout(isic_dir, isic2018_dir, ham_dir):
    assert data.detect_layout(isic_dir) == "isic"
    assert data.detect_layout(isic2018_dir) == "isic2018"
    assert data.detect_layout(ham_dir) == "ham10000"
    isic = data.discover_pairs(isic_dir)
    assert [p.id for p in isic] == [f"ISIC_{i:07d}" for i in range(8)]
    assert all(p.image.parent.name == "images" and p.mask.name == f"{p.id}_segmentation.png" for p in isic)
    assert len(data.discover_pairs(isic2018_dir)) == 8  # training, the .txt files are ignored
    assert [p.id for p in data.discover_pairs(isic2018_dir, subset="validation")] == \
        [f"ISIC_{i:07d}" for i in (100, 101, 102)]
    ham = data.discover_pairs(ham_dir)
    assert len(ham) == 9 and {p.image.parent.name for p in ham} == {"HAM10000_images_part_1",
                                                                     "HAM10000_images_part_2"}
    assert ham == sorted(ham, key=lambda p: p.id)


def test_isic2018_subset_without_ground_truth_names_the_folder(isic2018_dir):
    with pytest.raises(DatasetError, match="ISIC2018_Task1_Test_GroundTruth"):
        data.discover_pairs(isic2018_dir, subset="test")
    with pytest.raises(ValueError, match="subset"):
        data.discover_pairs(isic2018_dir, subset="train")


def test_image_without_mask_raises_naming_the_images(isic_dir):
    (isic_dir / "masks" / "ISIC_0000002_segmentation.png").unlink()
    (isic_dir / "masks" / "ISIC_0000005_segmentation.png").unlink()
    with pytest.raises(DatasetError, match="2 image.*ISIC_0000002.jpg, ISIC_0000005.jpg") as err:
        data.discover_pairs(isic_dir)
    assert "move the orphans out" in str(err.value)


def test_mask_without_image_names_the_mask(isic_dir):
    (isic_dir / "images" / "ISIC_0000004.jpg").unlink()
    with pytest.raises(DatasetError, match="1 mask.*ISIC_0000004_segmentation.png"):
        data.discover_pairs(isic_dir)


def test_long_lists_are_truncated_with_a_count(isic_dir, write_pair):
    for i in range(20, 35):
        write_pair(isic_dir / "images" / f"EXTRA_{i}.jpg", None, i)
    with pytest.raises(DatasetError, match=r"15 image.*\.\.\. and 5 more"):
        data.discover_pairs(isic_dir)


def test_duplicate_ids_raise_naming_both_files(isic_dir, ham_dir, write_pair):
    write_pair(isic_dir / "images" / "ISIC_0000000.png", None, 0)
    with pytest.raises(DatasetError, match="ISIC_0000000.jpg and .*ISIC_0000000.png"):
        data.discover_pairs(isic_dir)
    write_pair(ham_dir / "HAM10000_images_part_2" / "ISIC_0024300.jpg", None, 0)
    with pytest.raises(DatasetError, match="HAM10000_images_part_1/ISIC_0024300.jpg and .*part_2/ISIC_0024300"):
        data.discover_pairs(ham_dir)


def test_empty_unknown_and_missing_folders(tmp_path):
    with pytest.raises(DatasetError, match="is empty"):
        data.discover_pairs(tmp_path)
    (tmp_path / "pictures").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"unknown dataset layout.*notes.txt, pictures/"):
        data.discover_pairs(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        data.discover_pairs(tmp_path / "nope")
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError, match="no masks/"):
        data.detect_layout(tmp_path)
    (tmp_path / "masks").mkdir()
    with pytest.raises(DatasetError, match="no image/mask pairs"):
        data.discover_pairs(tmp_path)


def test_ignores_hidden_and_non_image_files(isic_dir):
    (isic_dir / "images" / "._ISIC_0000000.jpg").write_bytes(b"macOS resource fork")
    (isic_dir / "masks" / "README.txt").write_text("masks")
    (isic_dir / "images" / "ISIC_0000001_superpixels.png").write_bytes(b"ISIC 2017 superpixel map")
    assert len(data.discover_pairs(isic_dir)) == 8


# -------------------------------------------------------------------------------------------------- splits
def test_split_pairs_disjoint_complete_and_ratios():
    pairs = _pairs(100)
    splits = data.split_pairs(pairs)
    assert {k: len(v) for k, v in splits.items()} == {"train": 80, "val": 10, "test": 10}
    ids = [{p.id for p in v} for v in splits.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert set().union(*ids) == {p.id for p in pairs}
    custom = data.split_pairs(pairs, ratios=(0.5, 0.25, 0.25))
    assert [len(v) for v in custom.values()] == [50, 25, 25]


def test_split_pairs_deterministic_order_invariant_and_seeded():
    pairs = _pairs(50)
    a = data.split_pairs(pairs, seed=3)
    b = data.split_pairs(list(reversed(pairs)), seed=3)
    assert a == b
    assert data.split_pairs(pairs, seed=4)["val"] != a["val"]
    assert all(v == sorted(v, key=lambda p: p.id) for v in a.values())
    # adding one id moves at most a couple of the others
    grown = data.split_pairs(pairs + _pairs(51)[50:], seed=3)
    moved = sum(p not in grown[k] for k, v in a.items() for p in v)
    assert moved <= 2


def test_small_sets_still_fill_every_split():
    assert [len(v) for v in data.split_pairs(_pairs(3)).values()] == [1, 1, 1]
    assert [len(v) for v in data.split_pairs(_pairs(7)).values()] == [5, 1, 1]
    assert [len(v) for v in data.split_pairs(_pairs(10), ratios=(1, 0, 0)).values()] == [10, 0, 0]


@pytest.mark.parametrize("ratios", [(0.8, 0.1), (0.8, 0.3, 0.1), (1.2, -0.1, -0.1), (0.5, 0.5, float("nan"))])
def test_split_pairs_rejects_bad_ratios(ratios):
    with pytest.raises(ValueError, match="ratios"):
        data.split_pairs(_pairs(10), ratios=ratios)


def test_split_pairs_rejects_duplicate_ids():
    with pytest.raises(DatasetError, match="ID_0001"):
        data.split_pairs(_pairs(5) + _pairs(2)[1:])


def _fake_ham(root: Path, write_pair, n_lesions: int = 16, sources: tuple[str, ...] = ("vidir_modern",)) -> dict[str, str]:
    """A HAM10000 folder whose lesions have 1-4 images each, with HAM10000_metadata.csv; returns {id: lesion}.

    Lesion ``k`` comes from ``sources[k % len(sources)]`` (the metadata's ``dataset`` column).
    """
    groups, rows = {}, ["lesion_id,image_id,dx,dx_type,age,sex,localization,dataset"]
    k = 0
    for lesion in range(n_lesions):
        for _ in range(1 + lesion % 4):
            ident = f"ISIC_{24300 + k:07d}"
            part = layouts.HAM_IMAGE_DIRS[k % 2]
            write_pair(root / part / f"{ident}.jpg", root / layouts.HAM_MASK_DIR / f"{ident}_segmentation.png", k)
            groups[ident] = f"HAM_{lesion:07d}"
            rows.append(f"HAM_{lesion:07d},{ident},nv,histo,40.0,female,back,{sources[lesion % len(sources)]}")
            k += 1
    (root / layouts.HAM_METADATA).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return groups


def _lesions_in(splits: dict[str, list[Pair]], groups: dict[str, str]) -> dict[str, set[str]]:
    return {name: {groups[p.id] for p in pairs} for name, pairs in splits.items()}


def test_issue14_ham10000_splits_keep_each_lesion_in_one_split(tmp_path, write_pair):
    groups = _fake_ham(tmp_path / "ham", write_pair)
    splits = data.course_splits(tmp_path / "ham", seed=0)
    lesions = _lesions_in(splits, groups)
    assert not (lesions["train"] & lesions["val"] or lesions["train"] & lesions["test"] or lesions["val"] & lesions["test"])
    assert sum(len(v) for v in splits.values()) == len(groups) and all(splits.values())
    assert data.course_splits(tmp_path / "ham", seed=0) == splits  # deterministic
    pairs = data.discover_pairs(tmp_path / "ham")
    assert data.split_pairs(list(reversed(pairs)), seed=0, groups=groups) == splits  # order does not matter
    # the fixture does exercise the leak: split by image, some lesion would sit in two splits
    by_image = _lesions_in(data.split_pairs(pairs, seed=0), groups)
    assert by_image["train"] & (by_image["val"] | by_image["test"])


def test_source_pairs_follow_the_metadata_dataset_column(tmp_path, write_pair):
    groups = _fake_ham(tmp_path / "ham", write_pair, n_lesions=6, sources=("vidir_modern", "rosendahl"))
    found = data.source_pairs(tmp_path / "ham")
    # lesions 0, 2, 4 (1 + 3 + 1 images) are vidir_modern, lesions 1, 3, 5 (2 + 4 + 2) rosendahl: largest first
    assert list(found) == ["rosendahl", "vidir_modern"] and [len(v) for v in found.values()] == [8, 5]
    assert sorted(p.id for pairs in found.values() for p in pairs) == sorted(groups)
    assert {groups[p.id] for p in found["vidir_modern"]} == {"HAM_0000000", "HAM_0000002", "HAM_0000004"}
    assert data.lesion_groups(tmp_path / "ham") == groups
    metadata = tmp_path / "ham" / layouts.HAM_METADATA
    rows = metadata.read_text(encoding="utf-8").splitlines()
    metadata.write_text("\n".join(rows[:-1]) + "\n", encoding="utf-8")  # the last image loses its row
    with pytest.raises(DatasetError, match=r"no 'dataset' for 1 of 13 images \(ISIC_0024312\)"):
        data.source_pairs(tmp_path / "ham")
    metadata.write_text("\n".join(r.rsplit(",", 1)[0] for r in rows) + "\n", encoding="utf-8")  # no dataset column
    assert data.source_pairs(tmp_path / "ham") == {} and data.lesion_groups(tmp_path / "ham") == groups


def test_source_pairs_is_empty_without_metadata(isic_dir):
    assert data.source_pairs(isic_dir) == {} and data.lesion_groups(isic_dir) is None


def test_metadata_csv_is_honoured_in_any_layout_and_checked(isic_dir):
    ids = [p.id for p in data.discover_pairs(isic_dir)]
    (isic_dir / "metadata.csv").write_text("image_id,lesion_id\n" + "".join(f"{i},L{k // 4}\n" for k, i in
                                                                          enumerate(ids)), encoding="utf-8")
    splits = data.course_splits(isic_dir)
    assert sorted(len(v) for v in splits.values()) == [0, 4, 4]  # two lesions of four images: one split each
    (isic_dir / "metadata.csv").write_text("image,lesion\nISIC_0000000,L0\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"metadata.csv has no column image_id, lesion_id .*image, lesion"):
        data.course_splits(isic_dir)


def test_group_split_fills_every_split_when_one_group_is_large():
    pairs = _pairs(10)
    groups = {p.id: "big" if i < 8 else p.id for i, p in enumerate(pairs)}
    splits = data.split_pairs(pairs, groups=groups)
    assert all(splits.values()) and len(splits["train"]) == 8


def test_course_splits_on_a_single_folder(isic_dir):
    splits = data.course_splits(isic_dir, seed=1)
    assert [len(v) for v in splits.values()] == [6, 1, 1]
    assert splits == data.split_pairs(data.discover_pairs(isic_dir), seed=1)


def test_course_splits_uses_given_split_folders(tmp_path, write_pair):
    for split, ids in {"train": range(6), "val": range(6, 8), "holdout": range(8, 10)}.items():
        for i in ids:
            write_pair(tmp_path / split / "images" / f"a{i}.jpg", tmp_path / split / "masks" /
                       f"a{i}_segmentation.png", i)
    splits = data.course_splits(tmp_path)
    assert [p.id for p in splits["test"]] == ["a8", "a9"] and len(splits["train"]) == 6
    assert [p.id for p in splits["val"]] == ["a6", "a7"]
    write_pair(tmp_path / "test" / "images" / "z.jpg", tmp_path / "test" / "masks" / "z_segmentation.png")
    with pytest.raises(DatasetError, match="both test/ and holdout/"):
        data.course_splits(tmp_path)


def test_course_splits_carves_missing_splits_and_rejects_leaks(tmp_path, write_pair):
    for i in range(10):
        write_pair(tmp_path / "train" / "images" / f"a{i}.jpg", tmp_path / "train" / "masks" /
                   f"a{i}_segmentation.png", i)
    splits = data.course_splits(tmp_path)
    assert [len(v) for v in splits.values()] == [8, 1, 1]
    write_pair(tmp_path / "val" / "images" / "a3.jpg", tmp_path / "val" / "masks" / "a3_segmentation.png", 3)
    with pytest.raises(DatasetError, match="id 'a3' in train and val"):
        data.course_splits(tmp_path)


def test_course_splits_official_isic2018(isic2018_dir):
    splits = data.course_splits(isic2018_dir)
    assert [p.id for p in splits["val"]] == [f"ISIC_{i:07d}" for i in (100, 101, 102)]
    # no public Test ground truth: test is carved out of Training
    assert len(splits["train"]) + len(splits["test"]) == 8 and len(splits["test"]) >= 1
    assert all(p.id < "ISIC_0000100" for p in splits["test"])


def test_course_splits_default_reads_skinseg_data_then_synthetic(isic_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SKINSEG_DATA", str(isic_dir))
    assert data.course_splits() == data.course_splits(isic_dir)
    monkeypatch.delenv("SKINSEG_DATA")
    monkeypatch.setenv("SKINSEG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SKINSEG_SMOKE", "1")
    from helpers.data import synthetic

    splits = data.course_splits()
    assert sum(len(v) for v in splits.values()) == synthetic.DEFAULT_SMOKE["n"]
    assert str(splits["train"][0].image).startswith(str(tmp_path / "home"))


def test_course_splits_on_real_isic_folder(real_data_dir):
    splits = data.course_splits(real_data_dir)
    assert {k: len(v) for k, v in splits.items()} == {"train": 1785, "val": 150, "test": 151}
    assert all(p.image.parent.parent.name == "holdout" for p in splits["test"])


# -------------------------------------------------------------------------------------------------- dataset
def test_dataset_items_have_contract_shapes(isic_dir):
    pairs = data.discover_pairs(isic_dir)
    item = data.SegmentationDataset(pairs, eval_transforms(32))[2]
    assert item["id"] == "ISIC_0000002"
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (1, 32, 32) and item["mask"].dtype == torch.float32
    assert set(item["mask"].unique().tolist()) == {0.0, 1.0}
    assert -2.2 < item["image"].min() < item["image"].max() < 2.7  # ImageNet-normalised
    raw = data.SegmentationDataset(pairs)[0]
    assert raw["image"].shape == (3, 36, 48) and 0 <= raw["image"].min() and raw["image"].max() <= 1


def test_augmented_masks_stay_binary(isic_dir):
    ds = data.SegmentationDataset(data.discover_pairs(isic_dir), train_transforms(40, seed=0))
    for _ in range(3):
        for i in range(len(ds)):
            assert set(ds[i]["mask"].unique().tolist()) <= {0.0, 1.0}


def test_size_mismatch_names_both_files_and_sizes(isic_dir):
    mask = isic_dir / "masks" / "ISIC_0000001_segmentation.png"
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(mask)
    ds = data.SegmentationDataset(data.discover_pairs(isic_dir), eval_transforms(32))
    with pytest.raises(DatasetError, match=r"ISIC_0000001_segmentation.png is 40x30 but its image .*"
                                           r"ISIC_0000001.jpg is 48x36"):
        ds[1]
    with pytest.raises(DatasetError, match="ISIC_0000001_segmentation.png is 40x30"):
        cache_module.build_cache(ds.pairs, 32, isic_dir.parent / "cache", progress=False)


# ---------------------------------------------------------------------------------------------------- cache
def test_cache_matches_uncached_items_and_is_reused(isic_dir, tmp_path, monkeypatch):
    pairs = data.discover_pairs(isic_dir)
    cache = cache_module.build_cache(pairs, 24, tmp_path / "cache", progress=False)
    assert len(cache) == 8 and cache.img_size == 24
    cached = data.SegmentationDataset(pairs, eval_transforms(24), cache=cache)
    plain = data.SegmentationDataset(pairs, eval_transforms(24))
    for i in (0, 5):
        assert torch.equal(cached[i]["image"], plain[i]["image"]) and torch.equal(cached[i]["mask"], plain[i]["mask"])

    def no_decoding(pair):
        raise AssertionError("a valid cache must not decode files")

    monkeypatch.setattr(cache_module, "load_pair", no_decoding)
    again = cache_module.build_cache(pairs, 24, tmp_path / "cache", progress=False)
    assert again.folder == cache.folder
    with pytest.raises(AssertionError):
        cache_module.build_cache(pairs, 16, tmp_path / "cache", progress=False)  # other size: new entry


def test_cache_rebuilds_when_a_file_changes(isic_dir, tmp_path, write_pair):
    pairs = data.discover_pairs(isic_dir)
    cache = cache_module.build_cache(pairs, 24, tmp_path / "cache", progress=False)
    before = cache[3][1].copy()
    write_pair(pairs[3].image, pairs[3].mask, seed=99)
    st = pairs[3].mask.stat()
    os.utime(pairs[3].mask, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    rebuilt = cache_module.build_cache(pairs, 24, tmp_path / "cache", progress=False)
    assert rebuilt.fingerprint != cache.fingerprint and rebuilt.folder == cache.folder
    assert not np.array_equal(rebuilt[3][1], before)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [cache.folder.name]  # no stale or temp entries


def test_cache_pickles_without_arrays_and_checks_ids(isic_dir, tmp_path):
    pairs = data.discover_pairs(isic_dir)
    cache = cache_module.build_cache(pairs, 16, tmp_path / "cache", progress=False)
    cache[0]
    clone = pickle.loads(pickle.dumps(cache))
    assert len(pickle.dumps(cache)) < 2000 and np.array_equal(clone[7][0], cache[7][0])
    with pytest.raises(ValueError, match="other pairs"):
        data.SegmentationDataset(pairs[:4], None, cache=cache)
    with pytest.raises(DatasetError, match="empty"):
        cache_module.build_cache([], 16, tmp_path / "cache")


# -------------------------------------------------------------------------------------------------- loaders
def test_make_loaders_shapes_and_seeded_order(isic_dir, tmp_path):
    splits = data.split_pairs(data.discover_pairs(isic_dir), ratios=(0.75, 0.25, 0.0))
    kw = dict(img_size=32, batch_size=4, cache=tmp_path / "cache")
    loaders = data.make_loaders(splits, **kw, seed=5)
    batch = next(iter(loaders["train"]))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["mask"].shape == (4, 1, 32, 32)
    assert len(loaders["test"].dataset) == 0 and loaders["val"].num_workers == 0  # smoke mode default
    again = next(iter(data.make_loaders(splits, **kw, seed=5)["train"]))
    assert batch["id"] == again["id"] and torch.equal(batch["image"], again["image"])
    orders = {tuple(next(iter(data.make_loaders(splits, **kw, seed=s)["train"]))["id"]) for s in range(6)}
    assert len(orders) > 1
    val_ids = [i for b in loaders["val"] for i in b["id"]]
    assert val_ids == [p.id for p in splits["val"]]  # not shuffled


def test_make_loaders_with_a_worker_is_reproducible(isic_dir):
    splits = {"train": data.discover_pairs(isic_dir)}

    def first_batch():
        loader = data.make_loaders(splits, 32, 8, num_workers=1, cache=False, seed=2)["train"]
        return next(iter(loader))

    a, b = first_batch(), first_batch()
    assert a["id"] == b["id"] and torch.equal(a["image"], b["image"])


def test_make_loaders_rejects_unusable_settings(isic_dir):
    pairs = data.discover_pairs(isic_dir)
    with pytest.raises(DatasetError, match="train split is empty"):
        data.make_loaders({"train": [], "val": pairs}, 32, 4, cache=False)
    with pytest.raises(ValueError, match="batch_size"):
        data.make_loaders({"train": pairs}, 32, 0, cache=False)


def test_default_num_workers(monkeypatch):
    monkeypatch.setenv("SKINSEG_SMOKE", "1")
    assert data.default_num_workers() == 0
    monkeypatch.setenv("SKINSEG_SMOKE", "0")
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert data.default_num_workers() == 4
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert data.default_num_workers() == 1


# ------------------------------------------------------------------------------------------------------ CLI
def test_cli_synth_writes_a_checkable_dataset(tmp_path, capsys):
    out = tmp_path / "synth"
    assert data_cli.main(["synth", "--out", str(out), "--n", "3", "--size", "32", "--seed", "1"]) == 0
    assert "wrote 3 pairs" in capsys.readouterr().out
    assert checks.check_dataset(out, progress=False).ok and len(data.discover_pairs(out)) == 3


def test_cli_download_calls_download_dataset(tmp_path, monkeypatch, capsys):
    from helpers.data import download

    calls = []
    monkeypatch.setattr(download, "download_dataset", lambda name, root: calls.append((name, root)) or root / name)
    assert data_cli.main(["download", "isic2018", "--out", str(tmp_path)]) == 0
    assert calls == [("isic2018", tmp_path)] and str(tmp_path / "isic2018") in capsys.readouterr().out
    with pytest.raises(SystemExit):
        data_cli.main(["download", "imagenet"])
