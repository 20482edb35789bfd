"""Issue 24, the download side: every download or extraction failure is one DownloadError that names the file or
URL, the cause and the fix (item 8); download_file is safe without a checksum (item 6); a zip bomb is refused
(leftover). Against the local 127.0.0.1 server of test_download.py; full disks and Ctrl-C are simulated."""
from __future__ import annotations

import builtins
import errno
import hashlib
import io
import os
import socket
import zipfile
from pathlib import Path

import pytest
import test_download
from test_download import PAYLOAD, _digests, _zip

from helpers.data import archives, download
from helpers.data.download import DownloadError, Resource

server = test_download.server  # the 127.0.0.1 test server fixture
_no_retry_wait = test_download._no_retry_wait  # autouse: retries do not sleep


def _fake_open(monkeypatch, hit, error: BaseException) -> None:
    """Make writes to files for which ``hit(path)`` is true raise ``error`` (builtins.open and Path.open alike)."""
    real = builtins.open

    class Failing:
        def __init__(self, f) -> None:
            self.f = f

        def write(self, block) -> int:
            raise error

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.f.close()

    def fake(file, mode="r", *args, **kwargs):
        f = real(file, mode, *args, **kwargs)
        writing = any(c in mode for c in "wa")
        return Failing(f) if writing and isinstance(file, (str, os.PathLike)) and hit(Path(file)) else f

    monkeypatch.setattr(builtins, "open", fake)
    monkeypatch.setattr(io, "open", fake)


def _disk_full() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


def _leftovers(root: Path) -> list[str]:
    """Temporary files or folders of an atomic write left anywhere under ``root``."""
    return [str(p) for p in root.rglob("*.tmp-*")]


# ------------------------------------------------------------------------------ item 6: safe without a checksum
@pytest.mark.parametrize("content_type, body", [
    ("text/html; charset=utf-8", b"<html><body>Please sign in</body></html>" * 50),
    (None, b"  <!DOCTYPE html>\n<html><head><title>404</title></head></html>" * 50),  # no Content-Type: sniffed
    ("text/plain", b"Access denied\n" * 50),
])
def test_a_web_page_is_refused_where_a_binary_is_expected(server, tmp_path, content_type, body):
    server.state.files["/a.zip"] = body
    if content_type:
        server.state.content_types["/a.zip"] = content_type
    with pytest.raises(DownloadError, match=r"127\.0\.0\.1.*/a\.zip answered with a web page .*not the file a\.zip.*"
                                            r"Check the address"):
        download.download_file(server.url("/a.zip"), tmp_path / "a.zip", progress=False)
    assert not (tmp_path / "a.zip").exists() and not (tmp_path / "a.zip.part").exists()


def test_a_text_file_may_come_as_text_but_not_as_a_web_page(server, tmp_path):
    csv = b"lesion_id,image_id\nHAM_1,ISIC_1\n"
    server.state.files["/meta.csv"] = csv
    server.state.content_types["/meta.csv"] = "text/csv"
    assert download.download_file(server.url("/meta.csv"), tmp_path / "m.csv", progress=False).read_bytes() == csv
    server.state.content_types["/meta.csv"] = "text/html"
    with pytest.raises(DownloadError, match="answered with a web page"):
        download.download_file(server.url("/meta.csv"), tmp_path / "n.csv", progress=False)


def test_a_body_cut_short_without_content_length_is_resumed_when_the_size_is_known(server, tmp_path):
    server.state.files["/a.zip"] = PAYLOAD
    server.state.no_length, server.state.cut_responses = True, 1
    dest = download.download_file(server.url("/a.zip"), tmp_path / "a.zip", progress=False, size=len(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD
    assert server.state.requests == [("/a.zip", None), ("/a.zip", f"bytes={len(PAYLOAD) // 2}-")]


def test_a_body_always_cut_short_is_never_accepted_and_its_part_is_kept(server, tmp_path):
    server.state.files["/a.zip"] = PAYLOAD
    server.state.no_length, server.state.cut_responses = True, 10
    with pytest.raises(DownloadError, match=rf"failed 2 times \(the connection closed after [\d,]+ of "
                                            rf"{len(PAYLOAD):,} bytes\).*run the same command again to resume"):
        download.download_file(server.url("/a.zip"), tmp_path / "a.zip", progress=False, size=len(PAYLOAD),
                               retries=2)
    assert not (tmp_path / "a.zip").exists() and 0 < (tmp_path / "a.zip.part").stat().st_size < len(PAYLOAD)


def test_a_server_size_that_contradicts_the_registry_is_refused_before_downloading(server, tmp_path):
    server.state.files["/a.zip"] = PAYLOAD
    with pytest.raises(DownloadError, match=rf"sends {len(PAYLOAD):,} bytes for a\.zip but the course expects "
                                            rf"{len(PAYLOAD) + 10:,}"):
        download.download_file(server.url("/a.zip"), tmp_path / "a.zip", progress=False, size=len(PAYLOAD) + 10)
    assert not (tmp_path / "a.zip.part").exists()


@pytest.mark.parametrize("checksum", [True, False])
def test_a_cached_file_changed_in_place_is_rehashed_and_downloaded_again(server, tmp_path, checksum):
    server.state.files["/a.zip"] = PAYLOAD
    given = {"sha256": _digests(PAYLOAD)["sha256"]} if checksum else {}
    dest = download.download_file(server.url("/a.zip"), tmp_path / "a.zip", progress=False, **given)
    before = dest.stat()
    dest.write_bytes(b"X" + PAYLOAD[1:])  # same size ...
    os.utime(dest, ns=(before.st_atime_ns, before.st_mtime_ns))  # ... and the same time: the stamp would agree
    download.download_file(server.url("/a.zip"), dest, progress=False, **given)
    assert dest.read_bytes() == PAYLOAD and len(server.state.requests) == 2


# ----------------------------------------------------------- item 8: every failure of download_dataset, one line
def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed on exit: nothing listens there


def _one_archive(server, monkeypatch, blob: bytes, **resource) -> None:
    """The isic2018 registry reduced to one archive served at /in.zip."""
    server.state.files["/in.zip"] = blob
    fields = {"url": server.url("/in.zip"), "sha256": hashlib.sha256(blob).hexdigest(), **resource}
    monkeypatch.setitem(download.REGISTRY, "isic2018", [
        Resource("in.zip", fields.pop("url"), "ISIC2018_Task1-2_Training_Input", **fields)])


GOOD = _zip({"ISIC2018_Task1-2_Training_Input/ISIC_0000000.jpg": b"jpeg bytes" * 100})
FAULTS = {  # state of the server, fields of the Resource, archive served, the message
    "404": ({"statuses": {"/in.zip": 404}}, {}, GOOD,
            r"cannot download in\.zip from http://127.0.0.1:\d+/in\.zip: HTTP 404 .*Check the address"),
    "500": ({"statuses": {"/in.zip": 500}}, {}, GOOD,
            r"in\.zip from http://127.*/in\.zip failed 3 times \(HTTP 500 .*nothing arrived: check the connection"),
    "html": ({"content_types": {"/in.zip": "text/html"}}, {}, GOOD, r"/in\.zip answered with a web page"),
    "checksum": ({}, {"sha256": "0" * 64}, GOOD,
                 r"in\.zip is corrupt \(sha256 [0-9a-f]{64}, expected 0{64}\).*run the download again"),
    "unsafe path": ({}, {}, _zip({"../evil.jpg": b"x"}),
                    r"in\.zip contains an unsafe path '\.\./evil\.jpg'.*download it again"),
    "file/folder clash": ({}, {}, _zip({"Top/a": b"x", "Top/a/b.jpg": b"y"}),
                          r"in\.zip holds both a file and a folder named a: .*download it again"),
    "cut short": ({"cut_responses": 10}, {}, GOOD,
                  (r"in\.zip from .* failed 3 times \(.*\); .*in\.zip\.part keeps the [\d,]+ bytes that arrived: "
                   r".*run the same command again")),
    "refused": ({}, {"url": "refused"}, GOOD,
                r"in\.zip from http://127\.0\.0\.1:\d+/in\.zip failed 3 times \(cannot reach the server: .*refused"),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_every_download_failure_is_one_download_error_naming_the_file_and_the_fix(server, tmp_path, monkeypatch,
                                                                                  fault):
    state, resource, blob, message = FAULTS[fault]
    for name, value in state.items():
        setattr(server.state, name, value)
    if resource.get("url") == "refused":
        resource = {"url": f"http://127.0.0.1:{_refused_port()}/in.zip"}
    _one_archive(server, monkeypatch, blob, **resource)
    with pytest.raises(DownloadError, match=message):
        download.download_dataset("isic2018", tmp_path, progress=False)
    assert _leftovers(tmp_path) == [] and not (tmp_path / "isic2018" / "ISIC2018_Task1-2_Training_Input").exists()
    assert not (tmp_path / "evil.jpg").exists() and not (tmp_path / "isic2018" / "evil.jpg").exists()


def test_a_full_disk_while_downloading_is_not_retried_and_keeps_the_part(server, tmp_path, monkeypatch):
    _one_archive(server, monkeypatch, GOOD)
    _fake_open(monkeypatch, lambda p: p.name.endswith(".part"), _disk_full())
    with pytest.raises(DownloadError, match=r"cannot write .*in\.zip\.part: the disk is full \(no space left on "
                                            r"device\): free some space .*run the same command again to resume"):
        download.download_dataset("isic2018", tmp_path, progress=False)
    assert len(server.state.requests) == 1  # a full disk is not a network error: no retry


def test_a_full_disk_while_extracting_removes_the_temporary_folder(server, tmp_path, monkeypatch):
    _one_archive(server, monkeypatch, GOOD)
    folder = tmp_path / "isic2018"
    _fake_open(monkeypatch, lambda p: p.suffix == ".jpg" and folder in p.parents, _disk_full())
    with pytest.raises(DownloadError, match=r"cannot extract ISIC2018_Task1-2_Training_Input/ISIC_0000000\.jpg of "
                                            r".*in\.zip into .*: the disk is full"):
        download.download_dataset("isic2018", tmp_path, progress=False)
    assert _leftovers(tmp_path) == [] and not (folder / "ISIC2018_Task1-2_Training_Input").exists()
    assert (folder / "archives" / "in.zip").is_file()  # verified and kept: the next run only extracts


def test_a_full_disk_while_writing_the_dataset_files_is_one_download_error(server, tmp_path, monkeypatch):
    _one_archive(server, monkeypatch, GOOD)
    def full(path, text):
        raise _disk_full()

    monkeypatch.setattr(download, "write_text_atomic", full)
    with pytest.raises(DownloadError, match=r"cannot download isic2018 into .*isic2018: the disk is full"):
        download.download_dataset("isic2018", tmp_path, progress=False)


def test_an_unreadable_dataverse_listing_is_one_download_error(server, tmp_path):
    doi = download.HAM10000_DOI
    server.state.files[f"/api/datasets/:persistentId/?persistentId={doi}"] = b"[1, 2]"
    with pytest.raises(DownloadError, match=r"cannot list the files of doi:.* \(not a Dataverse file list"):
        download.resolve(Resource("masks.zip", None, "x", doi=doi), server.url(""))


def test_ctrl_c_while_extracting_leaves_no_temporary_folder(tmp_path, monkeypatch):
    archive = tmp_path / "in.zip"
    archive.write_bytes(_zip({"Top/a.jpg": b"a" * 1000, "Top/b.jpg": b"b" * 1000}))
    _fake_open(monkeypatch, lambda p: p.name == "b.jpg", KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        download.extract_into(archive, tmp_path / "Wanted")
    assert _leftovers(tmp_path) == [] and not (tmp_path / "Wanted").exists()


# --------------------------------------------------------------------------------- leftover: a zip bomb
def _bomb(path: Path, n_bytes: int = 10_000_000) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.jpg", bytes(n_bytes))  # 10 MB of zeros deflate to about 10 kB: 1,000-fold
    return path


def test_a_zip_bomb_is_refused_before_writing_when_extracted_directly(tmp_path):
    bomb = _bomb(tmp_path / "bomb.zip")
    with pytest.raises(DownloadError, match=r"bomb\.zip would expand to 10\.0 MB, [\d,]+ times its own [\d.]+ kB "
                                            r"\(the limit is 100 times.*\): a zip bomb"):
        archives.extract(bomb, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    with pytest.raises(DownloadError, match="a zip bomb"):
        archives.extract_into(bomb, tmp_path / "Wanted")
    assert not (tmp_path / "Wanted").exists() and _leftovers(tmp_path) == []


def test_the_size_cap_is_enforced_while_writing_too(tmp_path, monkeypatch):
    """Headers that understate the sizes pass the check before writing; the bytes written are counted as well."""
    monkeypatch.setattr(archives, "_check_room", lambda *args: None)
    with pytest.raises(DownloadError, match=r"bomb\.zip expands, while extracting, to more than .*: a zip bomb"):
        archives.extract(_bomb(tmp_path / "bomb.zip"), tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []  # the partly written member is removed


def test_an_archive_larger_than_the_free_space_is_refused_before_writing(tmp_path, monkeypatch):
    archive = tmp_path / "in.zip"
    archive.write_bytes(_zip({"a.jpg": b"a" * 5000}))
    usage = type("Usage", (), {"free": 100, "total": 0, "used": 0})()
    monkeypatch.setattr(archives.shutil, "disk_usage", lambda path: usage)
    with pytest.raises(DownloadError, match=r"extracting .*in\.zip needs 5\.0 kB but the disk holding .* has 100 "
                                            r"bytes free: free some space"):
        archives.extract(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
