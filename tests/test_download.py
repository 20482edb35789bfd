"""helpers.data.download against a local HTTP server on 127.0.0.1 (Range support switchable); no test touches the net."""
from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from helpers import data
from helpers.data import archives, checks, download, layouts
from helpers.data.download import DownloadError, Resource


class _State:
    """What the test server serves and what it saw."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.ignore_range = False
        self.cut_responses = 0  # the next N responses stop halfway
        self.content_types: dict[str, str] = {}  # path -> Content-Type header (none by default)
        self.statuses: dict[str, int] = {}  # path -> an error status to answer with (e.g. 500)
        self.no_length = False  # send no Content-Length: the body ends when the connection closes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        state: _State = self.server.state  # type: ignore[attr-defined]
        state.requests.append((self.path, self.headers.get("Range")))
        body = state.files.get(self.path)
        if body is None or self.path in state.statuses:
            self.send_response(state.statuses.get(self.path, 404))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, status = 0, 200
        rng = self.headers.get("Range")
        if rng and not state.ignore_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        payload = body[start:]
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        if self.path in state.content_types:
            self.send_header("Content-Type", state.content_types[self.path])
        if state.no_length:
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if state.cut_responses:
            state.cut_responses -= 1
            self.wfile.write(payload[: len(payload) // 2])
            self.close_connection = True
            return
        self.wfile.write(payload)


@pytest.fixture
def server():
    """A threaded HTTP server on 127.0.0.1 with Range support; ``server.state`` controls and records it."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = _State()  # type: ignore[attr-defined]
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    httpd.url = lambda path: f"http://127.0.0.1:{httpd.server_address[1]}{path}"  # type: ignore[attr-defined]
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _no_retry_wait(monkeypatch):
    monkeypatch.setattr(download, "RETRY_WAIT_S", 0.0)


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in entries.items():
            zf.writestr(name, content)
    return buf.getvalue()


PAYLOAD = bytes(range(256)) * 2000  # 512 kB, bigger than one chunk of the tests below


def _digests(blob: bytes) -> dict:
    return {"sha256": hashlib.sha256(blob).hexdigest(), "md5": hashlib.md5(blob).hexdigest(), "size": len(blob)}


# ----------------------------------------------------------------------------------------------- download_file
def test_full_download_is_verified_and_cached(server, tmp_path):
    server.state.files["/a.zip"] = PAYLOAD
    dest = tmp_path / "a.zip"
    out = download.download_file(server.url("/a.zip"), dest, progress=False, chunk=1 << 16, **_digests(PAYLOAD))
    assert out == dest and dest.read_bytes() == PAYLOAD and not (tmp_path / "a.zip.part").exists()
    assert server.state.requests == [("/a.zip", None)]
    download.download_file(server.url("/a.zip"), dest, progress=False, **_digests(PAYLOAD))
    download.download_file(server.url("/a.zip"), dest, progress=False)
    assert len(server.state.requests) == 1  # cache hits: no request
    (tmp_path / "a.zip.verified.json").unlink()  # without the stamp it re-hashes, still no request
    download.download_file(server.url("/a.zip"), dest, progress=False, **_digests(PAYLOAD))
    assert len(server.state.requests) == 1


def test_resume_from_partial_file_sends_range(server, tmp_path):
    server.state.files["/a.zip"] = PAYLOAD
    (tmp_path / "a.zip.part").write_bytes(PAYLOAD[:100_000])
    dest = download.download_file(server.url("/a.zip"), tmp_path / "a.zip", progress=False, **_digests(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD
    assert server.state.requests == [("/a.zip", "bytes=100000-")]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.state.files["/a.zip"] = PAYLOAD
    server.state.ignore_range = True
    (tmp_path / "a.zip.part").write_bytes(PAYLOAD[:100_000])
    dest = download.download_file(server.url("/a.zip"), tmp_path / "a.zip", progress=False, **_digests(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD and server.state.requests == [("/a.zip", "bytes=100000-")]


def test_complete_partial_file_gets_416_and_is_verified(server, tmp_path):
    server.state.files["/a.zip"] = PAYLOAD
    (tmp_path / "a.zip.part").write_bytes(PAYLOAD)
    dest = download.download_file(server.url("/a.zip"), tmp_path / "a.zip", progress=False,
                                  sha256=_digests(PAYLOAD)["sha256"])
    assert dest.read_bytes() == PAYLOAD


def test_dropped_connection_resumes(server, tmp_path):
    server.state.files["/a.zip"] = PAYLOAD
    server.state.cut_responses = 1
    dest = download.download_file(server.url("/a.zip"), tmp_path / "a.zip", progress=False, **_digests(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD
    assert server.state.requests[0] == ("/a.zip", None)
    assert server.state.requests[1] == ("/a.zip", f"bytes={len(PAYLOAD) // 2}-")


def test_repeated_drops_keep_the_part_and_say_how_to_resume(server, tmp_path):
    server.state.files["/a.zip"] = PAYLOAD
    server.state.cut_responses = 5
    with pytest.raises(DownloadError, match=r"failed 2 times.*run the same command again to resume"):
        download.download_file(server.url("/a.zip"), tmp_path / "a.zip", progress=False, retries=2)
    assert 0 < (tmp_path / "a.zip.part").stat().st_size < len(PAYLOAD)


@pytest.mark.parametrize("field", ["sha256", "md5", "size"])
def test_mismatch_deletes_part_and_names_expected_and_actual(server, tmp_path, field):
    server.state.files["/a.zip"] = PAYLOAD
    server.state.no_length = True  # else a size that contradicts Content-Length is refused before downloading
    wrong = {"sha256": "0" * 64, "md5": "f" * 32, "size": len(PAYLOAD) + 1}[field]
    actual = _digests(PAYLOAD)[field]
    with pytest.raises(DownloadError, match=rf"a\.zip is corrupt.*{field}.*{actual:,}.*expected {wrong:,}"
                       if field == "size" else rf"a\.zip is corrupt.*{field} {actual}, expected {wrong}"):
        download.download_file(server.url("/a.zip"), tmp_path / "a.zip", progress=False, **{field: wrong})
    assert not (tmp_path / "a.zip").exists() and not (tmp_path / "a.zip.part").exists()


def test_corrupt_cached_file_is_downloaded_again(server, tmp_path):
    server.state.files["/a.zip"] = PAYLOAD
    (tmp_path / "a.zip").write_bytes(b"stale")
    download.download_file(server.url("/a.zip"), tmp_path / "a.zip", progress=False, **_digests(PAYLOAD))
    assert (tmp_path / "a.zip").read_bytes() == PAYLOAD and len(server.state.requests) == 1


def test_http_error_names_file_and_url(server, tmp_path):
    with pytest.raises(DownloadError, match=r"cannot download missing.zip from http://127.0.0.1.*HTTP 404"):
        download.download_file(server.url("/missing.zip"), tmp_path / "missing.zip", progress=False)


# ------------------------------------------------------------------------------------------------------ extract
@pytest.mark.parametrize("evil", ["../evil.txt", "/abs/evil.txt", "ok/../../evil.txt"])
def test_extract_refuses_path_traversal(tmp_path, evil):
    archive = tmp_path / "bad.zip"
    archive.write_bytes(_zip({"fine.txt": b"x", evil: b"y"}))
    with pytest.raises(DownloadError, match="unsafe path|outside"):
        archives.extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out" / "fine.txt").exists()


def test_extract_into_flattens_one_top_folder_and_skips_mac_junk(tmp_path):
    nested = tmp_path / "nested.zip"
    nested.write_bytes(_zip({"Top/a.png": b"a", "Top/sub/b.png": b"b", "__MACOSX/Top/._a.png": b"junk",
                             "Top/._a.png": b"junk"}))
    out = archives.extract_into(nested, tmp_path / "Wanted")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["a.png", "sub/b.png"]
    flat = tmp_path / "flat.zip"
    flat.write_bytes(_zip({"a.jpg": b"a", "b.jpg": b"b"}))
    out = archives.extract_into(flat, tmp_path / "Flat")
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "b.jpg"]
    (tmp_path / "broken.zip").write_bytes(b"PK not really")
    with pytest.raises(DownloadError, match="broken.zip is not a valid zip"):
        archives.extract_into(tmp_path / "broken.zip", tmp_path / "X")


# ---------------------------------------------------------------------------------------------- download_dataset
def _pair_bytes(write_pair, tmp_path: Path, ident: str, seed: int) -> tuple[bytes, bytes]:
    image, mask = tmp_path / "src" / f"{ident}.jpg", tmp_path / "src" / f"{ident}_segmentation.png"
    write_pair(image, mask, seed)
    return image.read_bytes(), mask.read_bytes()


def _serve(server, path: str, blob: bytes) -> str:
    server.state.files[path] = blob
    return server.url(path)


def test_download_ham10000_into_a_discoverable_layout(server, tmp_path, monkeypatch, write_pair):
    pairs = {f"ISIC_{24300 + k:07d}": _pair_bytes(write_pair, tmp_path, f"ISIC_{24300 + k:07d}", k) for k in range(5)}
    ids = sorted(pairs)
    part1 = _zip({f"{i}.jpg": pairs[i][0] for i in ids[:3]})  # Dataverse image zips are flat
    part2 = _zip({f"{i}.jpg": pairs[i][0] for i in ids[3:]})
    masks = _zip({**{f"HAM10000_segmentations_lesion_tschandl/{i}_segmentation.png": pairs[i][1] for i in ids},
                  "HAM10000_segmentations_lesion_tschandl/ISIC_9999999_segmentation.png": pairs[ids[0]][1],
                  "__MACOSX/HAM10000_segmentations_lesion_tschandl/._x.png": b"junk"})
    doi = download.HAM10000_DOI
    listing = {"status": "OK", "data": {"latestVersion": {"files": [
        {"label": "HAM10000_segmentations_lesion_tschandl.zip",
         "dataFile": {"id": 77, "filename": "HAM10000_segmentations_lesion_tschandl.zip",
                      "md5": hashlib.md5(masks).hexdigest(), "filesize": len(masks)}}]}}}
    server.state.files[f"/api/datasets/:persistentId/?persistentId={doi}"] = json.dumps(listing).encode()
    server.state.files["/api/access/datafile/77"] = masks
    # two images of one lesion (HAM_0000001), the rest one lesion each: the split must keep them together
    lesions = ["HAM_0000001", "HAM_0000001", "HAM_0000002", "HAM_0000003", "HAM_0000004"]
    metadata = ("lesion_id,image_id,dx,dx_type,age,sex,localization,dataset\n" + "".join(
        f"{lesion},{i},nv,histo,45.0,male,back,vidir_modern\n" for lesion, i in zip(lesions, ids))).encode()
    monkeypatch.setitem(download.REGISTRY, "ham10000", [
        Resource(layouts.HAM_METADATA, _serve(server, "/api/access/datafile/4338392?format=original", metadata),
                 None, size=len(metadata), md5=hashlib.md5(metadata).hexdigest()),
        Resource("HAM10000_images_part_1.zip", _serve(server, "/p1", part1), "HAM10000_images_part_1",
                 md5=hashlib.md5(part1).hexdigest()),
        Resource("HAM10000_images_part_2.zip", _serve(server, "/p2", part2), "HAM10000_images_part_2",
                 sha256=hashlib.sha256(part2).hexdigest(), size=len(part2)),
        Resource("HAM10000_segmentations_lesion_tschandl.zip", None, "HAM10000_segmentations_lesion_tschandl",
                 md5=hashlib.md5(masks).hexdigest(), doi=doi),
    ])
    folder = download.download_dataset("ham10000", tmp_path / "data", progress=False, server=server.url(""))
    assert folder == tmp_path / "data" / "ham10000"
    found = data.discover_pairs(folder)
    assert [p.id for p in found] == ids and data.detect_layout(folder) == "ham10000"
    assert (folder / "unpaired" / "HAM10000_segmentations_lesion_tschandl" / "ISIC_9999999_segmentation.png").is_file()
    assert checks.check_dataset(folder, progress=False).ok
    assert not list((folder / "archives").iterdir())  # archives deleted after extraction
    assert (folder / layouts.HAM_METADATA).read_bytes() == metadata  # a plain file: moved, not extracted
    assert layouts.read_groups(folder) == dict(zip(ids, lesions))
    assert ("/api/access/datafile/4338392?format=original", None) in server.state.requests
    n_requests = len(server.state.requests)
    assert download.download_dataset("ham10000", tmp_path / "data", progress=False, server=server.url("")) == folder
    assert len(server.state.requests) == n_requests  # everything in place: no request


def test_download_isic2018_gives_official_splits(server, tmp_path, monkeypatch, write_pair):
    resources = []
    for subset, start in (("Training", 0), ("Validation", 100)):
        pairs = {f"ISIC_{start + k:07d}": _pair_bytes(write_pair, tmp_path, f"ISIC_{start + k:07d}", start + k)
                 for k in range(4)}
        inputs = _zip({**{f"ISIC2018_Task1-2_{subset}_Input/{i}.jpg": b[0] for i, b in pairs.items()},
                       f"ISIC2018_Task1-2_{subset}_Input/LICENSE.txt": b"CC-0"})
        truth = _zip({f"ISIC2018_Task1_{subset}_GroundTruth/{i}_segmentation.png": b[1] for i, b in pairs.items()})
        resources += [
            Resource(f"in-{subset}.zip", _serve(server, f"/in-{subset}", inputs), f"ISIC2018_Task1-2_{subset}_Input",
                     sha256=hashlib.sha256(inputs).hexdigest()),
            Resource(f"gt-{subset}.zip", _serve(server, f"/gt-{subset}", truth),
                     f"ISIC2018_Task1_{subset}_GroundTruth", size=len(truth)),
        ]
    monkeypatch.setitem(download.REGISTRY, "isic2018", resources)
    folder = download.download_dataset("isic2018", tmp_path, progress=False)
    splits = data.course_splits(folder)
    assert [p.id for p in splits["val"]] == [f"ISIC_{100 + k:07d}" for k in range(4)]
    assert len(splits["train"]) + len(splits["test"]) == 4
    assert not list((folder / "archives").glob("*.zip"))  # deleted once extracted
    assert sorted(p.name for p in folder.glob(".extracted-*")) == sorted(f".extracted-{r.filename}" for r in resources)


def test_ham10000_metadata_is_registered_with_its_published_md5():
    """Dataverse file 4338392, the original CSV (not the re-exported TSV Dataverse serves by default)."""
    (meta,) = [r for r in download.REGISTRY["ham10000"] if r.filename == "HAM10000_metadata.csv"]
    assert meta.url == "https://dataverse.harvard.edu/api/access/datafile/4338392?format=original"
    assert meta.md5 == "8f85fb1aa29d80a2797247e434deb79d" and meta.extract_to is None


def test_a_metadata_file_with_other_bytes_is_refused_naming_both_md5s(server, tmp_path, monkeypatch):
    served = b"lesion_id,image_id\nHAM_1,ISIC_1\n"
    monkeypatch.setitem(download.REGISTRY, "ham10000", [
        Resource(layouts.HAM_METADATA, _serve(server, "/meta", served), None, md5="8f85fb1aa29d80a2797247e434deb79d")])
    with pytest.raises(DownloadError, match=f"HAM10000_metadata.csv is corrupt .*md5 {hashlib.md5(served).hexdigest()}"
                                            ", expected 8f85fb1aa29d80a2797247e434deb79d"):
        download.download_dataset("ham10000", tmp_path, progress=False)
    assert not (tmp_path / "ham10000" / layouts.HAM_METADATA).exists()


def test_dataverse_lookup_errors(server, tmp_path):
    doi = download.HAM10000_DOI
    listing = {"data": {"latestVersion": {"files": [
        {"dataFile": {"id": 5, "filename": "masks.zip", "md5": "a" * 32, "filesize": 3}}]}}}
    server.state.files[f"/api/datasets/:persistentId/?persistentId={doi}"] = json.dumps(listing).encode()
    with pytest.raises(DownloadError, match="publishes MD5 a{32} for masks.zip, the course expects b{32}"):
        download.resolve(Resource("masks.zip", None, "x", md5="b" * 32, doi=doi), server.url(""))
    with pytest.raises(DownloadError, match="other.zip is not in the Dataverse record.*masks.zip"):
        download.resolve(Resource("other.zip", None, "x", doi=doi), server.url(""))
    resolved = download.resolve(Resource("masks.zip", None, "x", doi=doi), server.url(""))
    assert resolved.url == server.url("/api/access/datafile/5") and resolved.size == 3


def test_registry_is_complete_and_unknown_names_are_refused(tmp_path):
    for name, resources in download.REGISTRY.items():
        for r in resources:
            assert r.url is None or r.url.startswith("https://"), r
            assert r.sha256 or r.md5, f"{r.filename}: no checksum"
            assert r.source, f"{r.filename}: cite where its checksum comes from"
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        download.download_dataset("imagenet", tmp_path)


def test_not_enough_disk_is_reported_before_any_request(tmp_path, monkeypatch):
    usage = type("Usage", (), {"free": 5 * 10**9, "total": 0, "used": 0})()
    monkeypatch.setattr(download.shutil, "disk_usage", lambda path: usage)
    with pytest.raises(DownloadError, match=r"5\.0 GB free but the download and extraction need about 2\d\.\d GB"):
        download.download_dataset("isic2018", tmp_path)


def test_kept_archives_let_a_new_runtime_unpack_without_downloading(server, tmp_path, monkeypatch, write_pair):
    """``archives=`` (Google Drive on Colab): archives stay there; an empty data folder is refilled from them."""
    pairs = {f"ISIC_{k:07d}": _pair_bytes(write_pair, tmp_path, f"ISIC_{k:07d}", k) for k in range(3)}
    inputs = _zip({f"ISIC2018_Task1-2_Training_Input/{i}.jpg": b[0] for i, b in pairs.items()})
    truth = _zip({f"ISIC2018_Task1_Training_GroundTruth/{i}_segmentation.png": b[1] for i, b in pairs.items()})
    monkeypatch.setitem(download.REGISTRY, "isic2018", [
        Resource("in.zip", _serve(server, "/in", inputs), "ISIC2018_Task1-2_Training_Input",
                 sha256=hashlib.sha256(inputs).hexdigest()),
        Resource("gt.zip", _serve(server, "/gt", truth), "ISIC2018_Task1_Training_GroundTruth", size=len(truth))])
    drive = tmp_path / "drive" / "archives"
    folder = download.download_dataset("isic2018", tmp_path / "runtime1", progress=False, archives=drive)
    assert sorted(p.name for p in drive.glob("*.zip")) == ["gt.zip", "in.zip"]  # kept, not deleted
    assert not (folder / "archives").exists()
    n_requests = len(server.state.requests)
    again = download.download_dataset("isic2018", tmp_path / "runtime2", progress=False, archives=drive)
    assert len(server.state.requests) == n_requests  # unpacked from the kept archives: no request
    assert [p.id for p in data.discover_pairs(again)] == sorted(pairs)
