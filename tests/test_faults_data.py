"""Issue 24, the data side: each fault of the 340 trials that reached the data stage, handled.

Items 2 (copies under other ids), 3 (inverted masks), 5 + 12 (a non-UTF-8 file name), 7 (the cache on a full
disk, its temp folder, its progress bar under --quiet), 11 (synth bounds, SKINSEG_DATA pointing nowhere) and the
CLI half of 8 (``python -m helpers.data`` prints one line, never a traceback). Tiny 48x36 px data only.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import data
from helpers.cli import data as data_cli
from helpers.cli.common import INTERRUPTED
from helpers.data import cache as cache_mod
from helpers.data import checks, download, layouts, splits
from helpers.data.files import DatasetError, frame_fraction, mask_name


def _copy_pair(root: Path, source: str, new: str) -> None:
    """Copy the pair ``source`` of an ISIC-layout folder under the id ``new`` (byte-identical files)."""
    shutil.copy(root / "images" / f"{source}.jpg", root / "images" / f"{new}.jpg")
    shutil.copy(root / "masks" / mask_name(source), root / "masks" / mask_name(new))


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------- item 2: one picture under two ids
def test_item2_split_keeps_byte_identical_copies_in_one_split_and_says_so(isic_dir, caplog):
    _copy_pair(isic_dir, "ISIC_0000003", "COPY_3")
    for seed in range(10):
        with caplog.at_level(logging.WARNING, logger=splits.__name__):
            caplog.clear()
            found = data.course_splits(isic_dir, seed=seed)
        where = {p.id: name for name, pairs in found.items() for p in pairs}
        assert where["COPY_3"] == where["ISIC_0000003"], f"seed {seed}: the copy went to another split"
        assert "COPY_3 = ISIC_0000003" in caplog.text and "one split" in caplog.text


def test_item2_split_follows_a_copy_into_its_lesion_group(isic_dir):
    """A copy of an image joins that image's lesion: all three stay in one split."""
    (isic_dir / "metadata.csv").write_text("image_id,lesion_id\nISIC_0000001,L1\nISIC_0000002,L1\n")
    _copy_pair(isic_dir, "ISIC_0000002", "COPY_2")
    for seed in range(10):
        where = {p.id: name for name, pairs in data.course_splits(isic_dir, seed=seed).items() for p in pairs}
        assert where["ISIC_0000001"] == where["ISIC_0000002"] == where["COPY_2"]


def test_item2_copies_in_two_given_split_folders_are_refused(tmp_path, write_pair):
    for split, ids in {"train": range(4), "val": range(4, 6)}.items():
        for i in ids:
            write_pair(tmp_path / split / "images" / f"a{i}.jpg", tmp_path / split / "masks" / mask_name(f"a{i}"), i)
    shutil.copy(tmp_path / "train" / "images" / "a2.jpg", tmp_path / "val" / "images" / "b2.jpg")
    shutil.copy(tmp_path / "train" / "masks" / mask_name("a2"), tmp_path / "val" / "masks" / mask_name("b2"))
    with pytest.raises(DatasetError, match=r"a2 \(train\) = b2 \(val\).*delete one copy"):
        data.course_splits(tmp_path)


def test_item2_find_copies_hashes_only_files_of_equal_size(isic_dir, monkeypatch):
    _copy_pair(isic_dir, "ISIC_0000005", "COPY_5")
    pairs = data.discover_pairs(isic_dir)
    sizes = Counter(p.image.stat().st_size for p in pairs)
    shared = sorted(p.image.name for p in pairs if sizes[p.image.stat().st_size] > 1)
    hashed = []
    original = splits._file_digest
    monkeypatch.setattr(splits, "_file_digest", lambda path: hashed.append(path.name) or original(path))
    assert [[p.id for p in c] for c in splits.find_copies(pairs)] == [["COPY_5", "ISIC_0000005"]]
    assert sorted(hashed) == shared and len(shared) < len(pairs)


def test_item2_check_same_pixels_within_one_lesion_is_a_warning_across_lesions_a_problem(isic_dir):
    (isic_dir / "metadata.csv").write_text("image_id,lesion_id\nISIC_0000001,L1\nCOPY_1,L1\n"
                                           "ISIC_0000002,L2\nCOPY_2,L3\n")
    _copy_pair(isic_dir, "ISIC_0000001", "COPY_1")
    _copy_pair(isic_dir, "ISIC_0000002", "COPY_2")
    report = checks.check_dataset(isic_dir, progress=False)
    assert [p.name for p, _ in report.problems] == ["ISIC_0000002.jpg"]
    copy_warnings = [(p.name, r) for p, r in report.warnings if "same pixels" in r]
    assert len(copy_warnings) == 1 and copy_warnings[0][0] == "ISIC_0000001.jpg"
    assert "lesion_id 'L1'" in copy_warnings[0][1] and "one split" in copy_warnings[0][1]


# -------------------------------------------------------------------------- item 3: inverted masks
def _invert_masks(root: Path) -> None:
    for path in (root / "masks").iterdir():
        Image.fromarray(255 - np.asarray(Image.open(path))).save(path)


@pytest.mark.parametrize("cache", [True, False])
def test_item3_make_loaders_refuses_inverted_train_masks(isic_dir, tmp_path, cache):
    _invert_masks(isic_dir)
    pairs = data.discover_pairs(isic_dir)
    with pytest.raises(DatasetError, match=r"masks in .*masks look inverted: their median lesion fraction is "
                                           r"0\.\d\d \(above 0\.50\) and the lesion fills 100% of the image "
                                           r"border.*invert the masks"):
        data.make_loaders({"train": pairs}, 32, 4, num_workers=0, cache=tmp_path / "cache" if cache else False)
    loaders = data.make_loaders({"train": pairs}, 32, 4, num_workers=0, cache=False, max_median_lesion_fraction=None)
    assert len(loaders["train"].dataset) == len(pairs)


@pytest.mark.parametrize("cache", [True, False])
def test_item3_big_lesions_inside_the_frame_are_not_called_inverted(tmp_path, cache):
    """A subset of real images can have big lesions (16 isic-real train images: median 0.52): with the image
    border free of lesion, training takes them and check does not warn."""
    root = tmp_path / "big"
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
    mask = np.zeros((40, 40), np.uint8)
    mask[3:37, 3:37] = 255  # 72 % of the image, frame untouched
    for k in range(6):
        Image.fromarray(np.full((40, 40, 3), 40 * k, np.uint8)).save(root / "images" / f"ISIC_{k:07d}.jpg")
        Image.fromarray(mask).save(root / "masks" / mask_name(f"ISIC_{k:07d}"))
    pairs = data.discover_pairs(root)
    store = tmp_path / "cache" if cache else False
    assert len(data.make_loaders({"train": pairs}, 32, 4, num_workers=0, cache=store)["train"].dataset) == 6
    assert not [r for _, r in checks.check_dataset(root, progress=False).warnings if "inverted" in r]


def test_frame_fraction_counts_the_border_pixels_once():
    mask = np.zeros((4, 5), np.uint8)
    assert frame_fraction(mask) == 0.0
    mask[0, :] = 1  # 5 of the frame's 14 pixels
    assert frame_fraction(mask) == pytest.approx(5 / 14)
    assert frame_fraction(np.ones((4, 5))) == 1.0 and frame_fraction(np.zeros((0, 0))) == 0.0


def test_item3_make_loaders_accepts_normal_masks_and_an_inverted_val_split(isic_dir, tmp_path):
    pairs = data.discover_pairs(isic_dir)
    loaders = data.make_loaders({"train": pairs[:6], "val": pairs[6:]}, 32, 4, num_workers=0, cache=tmp_path)
    fractions = loaders["train"].dataset.cache.lesion_fractions()
    assert fractions.shape == (6,) and 0.05 < np.median(fractions) < 0.5


# ------------------------------------------------------------------ items 5 + 12: non-UTF-8 file names
def _latin1_pair(root: Path, write_pair) -> Path:
    """A pair named ``b"caf\\xe9"`` (Latin-1 bytes, not UTF-8) in an ISIC-layout folder; returns the image."""
    stem = os.fsdecode(b"caf\xe9")
    image = root / "images" / f"{stem}.jpg"
    write_pair(image, root / "masks" / mask_name(stem), 42)
    return image


def test_item5_check_reports_a_non_utf8_file_name_and_prints_it(isic_dir, write_pair):
    image = _latin1_pair(isic_dir, write_pair)
    report = checks.check_dataset(isic_dir, progress=False)
    assert not report.ok
    reasons = {path: reason for path, reason in report.problems}
    assert image in reasons and "file name caf\\xe9.jpg is not valid UTF-8: rename it" in reasons[image]
    assert "caf\\xe9.jpg" in report.summary()
    report.summary().encode("utf-8")  # printable: no lone surrogate


def test_item12_discovery_names_the_non_utf8_file_and_the_fix(isic_dir, write_pair):
    _latin1_pair(isic_dir, write_pair)
    for call in (data.discover_pairs, data.course_splits):
        with pytest.raises(DatasetError, match=r"not valid UTF-8: images/caf\\xe9\.jpg, masks/caf\\xe9_segmentation"
                                               r"\.png\. Rename each"):
            call(isic_dir)


def test_item12_cli_check_prints_the_non_utf8_name(isic_dir, write_pair, capsys):
    _latin1_pair(isic_dir, write_pair)
    assert data_cli.main(["check", str(isic_dir), "--no-progress"]) == 1
    assert "caf\\xe9.jpg" in capsys.readouterr().out


def test_printable_shows_undecodable_bytes_as_escapes():
    assert layouts.printable(os.fsdecode(b"/d/caf\xe9.jpg")) == "/d/caf\\xe9.jpg"
    assert layouts.printable("café.jpg") == "café.jpg"


# ---------------------------------------------------------------- item 7: the cache on a full disk
def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_item7_cache_refuses_a_disk_without_room_before_the_memory_map(isic_dir, tmp_path, monkeypatch):
    pairs = data.discover_pairs(isic_dir)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(cache_mod.shutil, "disk_usage", lambda path: usage._replace(free=1000))
    monkeypatch.setattr(cache_mod, "_open_array", lambda *a: pytest.fail("memory map created on a full disk"))
    folder = tmp_path / "cache"
    needed = cache_mod.bytes_needed(len(pairs), 32)
    expected = rf"needs {needed / 1e6:.1f} MB in {re.escape(str(folder))} but only 1.0 kB are free.*SKINSEG_HOME"
    with pytest.raises(DatasetError, match=expected):
        cache_mod.build_cache(pairs, 32, folder, progress=False)
    assert _leftovers(folder) == []


@pytest.mark.parametrize("where", ["reserve", "pair", "meta"])
def test_item7_a_disk_filling_while_caching_leaves_no_temp_folder(isic_dir, tmp_path, monkeypatch, where):
    pairs = data.discover_pairs(isic_dir)
    full = OSError(errno.ENOSPC, "No space left on device")
    if where == "reserve":
        monkeypatch.setattr(cache_mod.os, "posix_fallocate", lambda *a: (_ for _ in ()).throw(full))
    elif where == "pair":
        calls = []
        original = cache_mod.load_pair
        monkeypatch.setattr(cache_mod, "load_pair", lambda p: original(p) if calls.append(p) or len(calls) < 3
                            else (_ for _ in ()).throw(full))
    else:
        monkeypatch.setattr(cache_mod, "_write_meta", lambda *a: (_ for _ in ()).throw(full))
    folder = tmp_path / "cache"
    with pytest.raises(DatasetError, match=rf"cache needs .* in {re.escape(str(folder))} but only .* are free"):
        cache_mod.build_cache(pairs, 32, folder, progress=False)
    assert _leftovers(folder) == []


def test_item7_ctrl_c_while_caching_leaves_no_temp_folder(isic_dir, tmp_path, monkeypatch):
    def interrupted(pair):
        raise KeyboardInterrupt
    monkeypatch.setattr(cache_mod, "load_pair", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cache_mod.build_cache(data.discover_pairs(isic_dir), 32, tmp_path / "cache", progress=False)
    assert _leftovers(tmp_path / "cache") == []


def test_item7_an_unwritable_cache_folder_is_a_dataset_error(isic_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod, "atomic_write", lambda path: (_ for _ in ()).throw(
        PermissionError(errno.EACCES, "Permission denied", str(path))))
    with pytest.raises(DatasetError, match=r"cannot write the preprocessing cache in .*Permission denied.*"
                                           "SKINSEG_HOME"):
        cache_mod.build_cache(data.discover_pairs(isic_dir), 32, tmp_path / "cache", progress=False)


@pytest.mark.parametrize("progress", [False, True])
def test_quiet_hides_the_caching_bar(isic_dir, tmp_path, monkeypatch, capsys, progress):
    monkeypatch.setenv("SKINSEG_SMOKE", "0")
    monkeypatch.delenv("SKINSEG_PROFILE", raising=False)
    data.make_loaders({"train": data.discover_pairs(isic_dir)}, 32, 4, num_workers=0, cache=tmp_path,
                      progress=progress)
    assert ("caching 8 pairs" in capsys.readouterr().err) is progress


# ------------------------------------------------------ item 11: synth bounds, SKINSEG_DATA pointing nowhere
@pytest.mark.parametrize("args, expected", [
    (["--n", "0"], "--n 0 is out of range: give 1 to 100000 pairs"),
    (["--n", "-5"], "--n -5 is out of range: give 1 to 100000 pairs"),
    (["--size", "0"], "--size 0 is out of range: give 32 to 4096 pixels"),
    (["--size", "100000"], "--size 100000 is out of range: give 32 to 4096 pixels"),
    (["--seed", "-1"], "--seed -1 is negative"),
])
def test_item11_synth_out_of_range_is_one_line_naming_the_range(tmp_path, capsys, args, expected):
    out = tmp_path / "synth"
    assert data_cli.main(["synth", "--out", str(out), *args]) == 2
    assert expected in _one_error_line(capsys.readouterr().err)
    assert not out.exists()


def test_item11_skinseg_data_pointing_at_a_missing_folder_is_a_dataset_error(tmp_path, monkeypatch):
    missing = tmp_path / "nope"
    monkeypatch.setenv("SKINSEG_DATA", str(missing))
    for call in (data.course_splits, data.resolve_dataset, data.lesion_groups):
        with pytest.raises(DatasetError, match=rf"SKINSEG_DATA=.* names no dataset folder: {re.escape(str(missing))} "
                                               r"does not exist\. Point SKINSEG_DATA at a dataset folder"):
            call()


# ----------------------------------------------------------- item 8 (CLI half): one line, never a traceback
@pytest.mark.parametrize("failure, expected", [
    (lambda: download.DownloadError("https://x/isic.zip: HTTP 404 Not Found: check the address"), "HTTP 404"),
    (lambda: OSError(errno.ENOSPC, "No space left on device", "/data/isic.zip.part"),
     "download failed: No space left on device (/data/isic.zip.part): free some space"),
    (lambda: ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
     "download failed: Connection refused: check the network connection"),
])
def test_item8_download_failures_are_one_line(tmp_path, monkeypatch, capsys, failure, expected):
    def fails(*args, **kwargs):
        raise failure()
    monkeypatch.setattr(data_cli.download, "download_dataset", fails)
    assert data_cli.main(["download", "isic2018", "--out", str(tmp_path)]) == 2
    assert expected in _one_error_line(capsys.readouterr().err)


def test_item8_ctrl_c_in_download_and_check_is_one_line_exit_130(tmp_path, isic_dir, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(data_cli.download, "download_dataset", interrupted)
    monkeypatch.setattr(data_cli.checks, "check_dataset", interrupted)
    for argv in (["download", "isic2018", "--out", str(tmp_path)], ["check", str(isic_dir)]):
        assert data_cli.main(argv) == INTERRUPTED == 130
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("interrupted: ")


def test_item8_synth_interrupted_or_on_a_full_disk_leaves_nothing(tmp_path, monkeypatch, capsys):
    calls = []
    original = data_cli.synthetic.generate_sample

    def fails_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise failure
        return original(*args, **kwargs)
    monkeypatch.setattr(data_cli.synthetic, "generate_sample", fails_on_third)
    for failure, code in ((KeyboardInterrupt(), 130), (OSError(errno.ENOSPC, "No space left on device"), 2)):
        calls.clear()
        assert data_cli.main(["synth", "--out", str(tmp_path / "synth"), "--n", "5", "--size", "32"]) == code
        err = capsys.readouterr().err
        expected = "interrupted: synth stopped" if code == 130 else "error: synth failed: No space left on device"
        assert "Traceback" not in err and any(line.startswith(expected) for line in err.splitlines()), err
        assert _leftovers(tmp_path) == []


def test_synth_writes_into_an_existing_folder_and_keeps_its_files(tmp_path, capsys):
    out = tmp_path / "synth"
    out.mkdir()
    (out / "README.txt").write_text("mine\n")
    assert data_cli.main(["synth", "--out", str(out), "--n", "3", "--size", "32"]) == 0
    assert (out / "README.txt").read_text() == "mine\n" and len(data.discover_pairs(out)) == 3
    assert (out / "attributes.csv").is_file() and _leftovers(tmp_path) == ["synth"]


def test_item2_copies_within_one_lesion_are_left_to_the_lesion_and_not_logged(isic_dir, caplog):
    """HAM10000's two copies share their lesion_id: the lesion already keeps them together, no warning."""
    (isic_dir / "metadata.csv").write_text("image_id,lesion_id\nISIC_0000004,L4\nCOPY_4,L4\n")
    _copy_pair(isic_dir, "ISIC_0000004", "COPY_4")
    with caplog.at_level(logging.WARNING, logger=splits.__name__):
        after = data.course_splits(isic_dir)
    assert "byte-identical" not in caplog.text
    where = {p.id: name for name, pairs in after.items() for p in pairs}
    assert where["COPY_4"] == where["ISIC_0000004"]
