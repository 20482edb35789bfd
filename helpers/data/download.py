"""Download the public dermoscopy datasets: resumable, verified, cached, extracted into a layout the course reads.

``download_dataset("ham10000", root)`` fetches, from the Harvard Dataverse record doi:10.7910/DVN/DBW86T
(Tschandl et al., Sci Data 2018; masks: Tschandl et al., Nat Med 2020; licence CC BY-NC 4.0):

* ``HAM10000_images_part_1.zip`` and ``HAM10000_images_part_2.zip`` (10,015 JPEG images, about 5 GB)
* ``HAM10000_segmentations_lesion_tschandl.zip`` (the lesion masks, 11 MB)
* ``HAM10000_metadata.csv`` (``image_id``, ``lesion_id``, diagnosis, source ``dataset``...), beside the image
  folders, so :func:`helpers.data.course_splits` splits by ``lesion_id``. Dataverse serves a re-exported TSV of
  it by default; ``?format=original`` asks for the original bytes, which the published MD5 describes.

``download_dataset("isic2018", root)`` fetches ISIC 2018 Task 1 (Codella et al., arXiv:1902.03368; CC-0 / CC-BY-NC)
from https://isic-challenge-data.s3.amazonaws.com/2018/: Training (2,594 pairs, 11 GB of images), Validation
(100 pairs) and Test (1,000 pairs) inputs and ground truth.

Each file goes to ``<root>/<name>/archives/<file>.part`` (or a kept ``archives`` folder, e.g. on Google Drive),
resumes with an HTTP Range request (just run again), is checked against the size and checksum that
:mod:`helpers.data.registry` lists (or the server's Content-Length), then extracted (:mod:`helpers.data.archives`:
safe paths, a size cap) or moved into place. A second call does no request. A web page where a file is expected
is refused; a kept file is re-hashed before it is used. Every failure (HTTP error, unreachable server, corrupt
bytes, full disk, unsafe archive) is a :class:`DownloadError` naming the file or URL, the cause and the fix; the
``.part`` survives it, for the next call to resume. Introduced in notebook 01 ("use real data"); CLI
``python -m helpers.data download {ham10000,isic2018} --out DIR``.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import mimetypes
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tqdm.auto import tqdm

from helpers.data.archives import DownloadError, extract_into, os_error_cause
from helpers.data.files import DatasetError, write_text_atomic
from helpers.data.layouts import ISIC2018_SUBSETS, scan
from helpers.data.registry import DATAVERSE_SERVER, HAM10000_DOI, REGISTRY, Resource

logger = logging.getLogger(__name__)

USER_AGENT = "skinseg-course/0.1 (+https://github.com/skinseg-course/skin-lesion-segmentation)"
_TIMEOUT_S = 60
_RETRIES = 3
#: Seconds to wait before the n-th retry is ``n * RETRY_WAIT_S``.
RETRY_WAIT_S = 2.0
_PAGE_TYPES = ("text/html", "application/xhtml+xml")
_PAGE_STARTS = (b"<!doctype html", b"<html")


# --------------------------------------------------------------------------------------------------- download
def _request(url: str, headers: dict[str, str] | None = None, timeout: float = _TIMEOUT_S) -> Any:
    """Open ``url`` with the course's User-Agent (Dataverse refuses urllib's default one)."""
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity",
                                               **(headers or {})})
    return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 - URLs come from REGISTRY or the caller


@dataclass(frozen=True)
class _Job:
    """What one :func:`download_file` call fetches, and how."""

    url: str
    part: Path
    name: str
    size: int | None
    binary: bool
    progress: bool
    chunk: int


def _hashers(algos: Iterable[str]) -> dict[str, Any]:
    """Fresh hash objects (checksums, not security) for ``algos``, e.g. ``("sha256", "md5")``."""
    return {algo: hashlib.new(algo, usedforsecurity=False) for algo in algos}


def _known(expected: dict[str, str | int | None]) -> list[str]:
    """The checksum algorithms ``expected`` gives a value for."""
    return [algo for algo in ("sha256", "md5") if expected.get(algo)]


def _feed_file(path: Path, hashers: dict[str, Any], chunk: int) -> None:
    with path.open("rb") as f:
        while block := f.read(chunk):
            for h in hashers.values():
                h.update(block)


def _verify(path: Path, name: str, hashers: dict[str, Any], expected: dict[str, str | int | None]) -> None:
    """Compare size and digests with ``expected``; on mismatch delete ``path`` and raise DownloadError."""
    problems = []
    actual_size = path.stat().st_size
    if expected.get("size") is not None and actual_size != expected["size"]:
        problems.append(f"size {actual_size:,} bytes, expected {expected['size']:,}")
    for algo in _known(expected):
        if hashers[algo].hexdigest() != str(expected[algo]).lower():
            problems.append(f"{algo} {hashers[algo].hexdigest()}, expected {expected[algo]}")
    if problems:
        path.unlink(missing_ok=True)
        raise DownloadError(f"download of {name} is corrupt ({'; '.join(problems)}): the partial file was "
                            "deleted, run the download again. If it fails the same way, the server's file changed: "
                            "report it (the expected values are in helpers/data/registry.py).")


def _stamp_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".verified.json")


def _write_stamp(dest: Path, sha256: str, expected: dict[str, str | int | None]) -> None:
    """Record ``dest``'s size and sha256 (checked on every later use); a failure only costs that check."""
    stamp = {**{k: v for k, v in expected.items() if v}, "size": dest.stat().st_size, "sha256": sha256}
    try:
        write_text_atomic(_stamp_path(dest), json.dumps(stamp))
    except OSError as exc:
        logger.warning("could not write %s (%s)", _stamp_path(dest), exc)


def _read_stamp(dest: Path) -> dict[str, Any]:
    try:
        stamp = json.loads(_stamp_path(dest).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def _cached(dest: Path, expected: dict[str, str | int | None], chunk: int) -> bool:
    """True when ``dest`` exists and matches ``expected``, re-hashed every time (a stamp's word is not enough).

    Without a checksum it is compared with the sha256 its stamp recorded at download (a file changed in place
    since is caught), and with ``expected``'s size or the stamp's.
    """
    if not dest.is_file():
        return False
    stamp, want = _read_stamp(dest), dict(expected)
    if not _known(want) and isinstance(stamp.get("sha256"), str):
        want["sha256"] = stamp["sha256"]
    if want.get("size") is None and isinstance(stamp.get("size"), int):
        want["size"] = stamp["size"]
    hashers = _hashers(_known(want) or ["sha256"])
    logger.info("verifying %s before using it", dest)
    _feed_file(dest, hashers, chunk)
    try:
        _verify(dest, dest.name, hashers, want)
    except DownloadError:
        logger.warning("%s does not match its checksum or size: downloading it again", dest)
        return False
    if not stamp and "sha256" in hashers:
        _write_stamp(dest, hashers["sha256"].hexdigest(), expected)
    return True


def _content_range_start(response: Any) -> int | None:
    """First byte of a 206 response's ``Content-Range: bytes START-END/TOTAL`` header, or None."""
    value = response.headers.get("Content-Range", "")
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _expects_text(name: str) -> bool:
    """Whether a file named ``name`` is text (``.csv``, ``.txt``, ``.json`` ...); archives and images are not."""
    kind = mimetypes.guess_type(name)[0] or ""
    return kind.startswith("text/") or kind in ("application/json", "application/xml")


def _page_error(job: _Job, content_type: str) -> DownloadError:
    return DownloadError(f"{job.url} answered with a web page (Content-Type {content_type or 'none'}), not the file "
                         f"{job.name}: the address serves an error, sign-in or moved page instead. Check the address "
                         "(helpers/data/registry.py) or try later; nothing was saved.")


def _check_answer(response: Any, job: _Job, offset: int) -> int | None:
    """Refuse a web page (or any text for a binary file) and a size that contradicts ``job.size``; return the
    total size the server announces (``offset`` + Content-Length), None when it sends no Content-Length."""
    content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    page = content_type in _PAGE_TYPES and content_type != mimetypes.guess_type(job.name)[0]
    if page or (job.binary and content_type.startswith("text/")):
        raise _page_error(job, content_type)
    length = response.headers.get("Content-Length", "")
    total = offset + int(length) if length.strip().isdigit() else None
    if total is not None and job.size is not None and total != job.size:
        raise DownloadError(f"{job.url} sends {total:,} bytes for {job.name} but the course expects {job.size:,}: "
                            "the server's file changed or the address is wrong. Check the address "
                            "(helpers/data/registry.py) or report it.")
    return total


def _part_error(part: Path, exc: OSError) -> DownloadError:
    return DownloadError(f"cannot write {part}: {os_error_cause(exc)}; it keeps what arrived: run the same command "
                         "again to resume.")


@contextlib.contextmanager
def _part_file(part: Path, append: bool) -> Iterator[IO[bytes]]:
    """``part`` opened to append to (or from scratch); a failed open, write or close is a DownloadError, not a
    network error to retry."""
    try:
        out = open(part, "ab" if append else "wb")  # noqa: SIM115 - closed below, its errors converted
    except OSError as exc:
        raise _part_error(part, exc) from exc
    try:
        yield out
    finally:
        try:
            out.close()
        except OSError as exc:
            raise _part_error(part, exc) from exc  # a full disk on the last flush


def _append(out: IO[bytes], block: bytes, part: Path) -> None:
    try:
        out.write(block)
    except OSError as exc:
        raise _part_error(part, exc) from exc


def _stream_once(job: _Job, hashers: dict[str, Any]) -> None:
    """One HTTP request appending to ``job.part`` (resumed with Range when it has bytes); raises ConnectionError
    when the body stops before the announced (or the registry's) size."""
    offset = job.part.stat().st_size if job.part.exists() else 0
    try:
        response = _request(job.url, {"Range": f"bytes={offset}-"} if offset else None)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the .part is already complete
            return
        raise
    with response:
        if offset and (response.status != 206 or _content_range_start(response) != offset):
            logger.info("%s: the server ignored the Range request, restarting from byte 0", job.name)
            offset = 0
            hashers.update(_hashers(hashers))
        total = _check_answer(response, job, offset)
        expected_total = total if total is not None else job.size
        block, received = response.read(job.chunk), 0
        if offset == 0 and job.binary and block[:512].lstrip().lower().startswith(_PAGE_STARTS):
            raise _page_error(job, response.headers.get("Content-Type", ""))
        with _part_file(job.part, append=bool(offset)) as out, \
                tqdm(total=expected_total, initial=offset, unit="B", unit_scale=True, desc=job.name,
                     disable=not job.progress) as bar:
            while block:
                _append(out, block, job.part)
                for h in hashers.values():
                    h.update(block)
                received += len(block)
                bar.update(len(block))
                block = response.read(job.chunk)
    if expected_total is not None and offset + received < expected_total:
        raise ConnectionError(f"the connection closed after {offset + received:,} of {expected_total:,} bytes")


def _network_cause(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot reach the server: {exc.reason}"
    if isinstance(exc, http.client.IncompleteRead):
        return "the connection closed before the end of the file"
    return str(exc) or type(exc).__name__


def _gave_up(job: _Job, exc: BaseException, retries: int) -> DownloadError:
    kept = job.part.stat().st_size if job.part.exists() else 0
    resume = (f"{job.part} keeps the {kept:,} bytes that arrived: check the connection and run the same command "
              "again to resume" if kept else "nothing arrived: check the connection and the address, then run it "
              "again")
    return DownloadError(f"download of {job.name} from {job.url} failed {retries} time{'s' * (retries > 1)} "
                         f"({_network_cause(exc)}); {resume}.")


def _fetch(job: _Job, algos: list[str], retries: int) -> dict[str, Any]:
    """Bring ``job.part`` to its full length (resuming, retrying); return the hashers fed with all of its bytes."""
    hashers = _hashers(algos)
    if job.part.exists():
        _feed_file(job.part, hashers, job.chunk)
    for attempt in range(1, retries + 1):
        try:
            _stream_once(job, hashers)
            return hashers
        except (OSError, http.client.HTTPException) as exc:  # URLError and HTTPError are OSErrors
            if isinstance(exc, urllib.error.HTTPError) and exc.code < 500 and exc.code not in (408, 429):
                raise DownloadError(f"cannot download {job.name} from {job.url}: HTTP {exc.code} {exc.reason}. "
                                    "Check the address (helpers/data/registry.py) or try later.") from exc
            if attempt == retries:
                raise _gave_up(job, exc, retries) from exc
            logger.warning("%s: %s; retrying (attempt %d of %d)", job.name, _network_cause(exc), attempt + 1,
                           retries)
        time.sleep(RETRY_WAIT_S * attempt)
        hashers = _hashers(algos)
        if job.part.exists():
            _feed_file(job.part, hashers, job.chunk)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def _download(job: _Job, dest: Path, expected: dict[str, str | int | None], retries: int) -> Path:
    if _cached(dest, expected, job.chunk):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    if job.size is not None and job.part.exists() and job.part.stat().st_size > job.size:
        job.part.unlink()
    hashers = _fetch(job, ["sha256", *(["md5"] if expected["md5"] else [])], retries)
    _verify(job.part, job.name, hashers, expected)
    os.replace(job.part, dest)
    _write_stamp(dest, hashers["sha256"].hexdigest(), expected)
    return dest


def download_file(url: str, dest: str | os.PathLike[str], *, sha256: str | None = None, md5: str | None = None,
                  size: int | None = None, progress: bool = True, chunk: int = 1 << 20,
                  retries: int = _RETRIES, binary: bool | None = None) -> Path:
    """Download ``url`` to ``dest``, resumably and verified; return ``dest``.

    Bytes go to ``dest + ".part"``; an interrupted download resumes from it with an HTTP Range request (or
    restarts if the server ignores Range), retrying up to ``retries`` times. The finished file is checked
    against ``size`` (bytes) and the given checksums (hex), then renamed to ``dest``. If ``dest`` already exists
    it is re-hashed (against the checksum, or the sha256 recorded when it was downloaded) and, if it matches,
    nothing is requested. The ``.part`` file is not :func:`helpers.data.files.atomic_write`'s temporary
    file on purpose: it has a fixed name and survives a failure, so the next call can resume from it (an
    atomic write throws its temporary away); ``dest`` still only ever appears complete and verified.

    Safe without a checksum too: a web page (``text/html``) is refused, and any ``text/*`` answer when
    ``binary`` (None: guessed from ``dest``'s name, ``.csv``/``.txt``/``.json`` are text); a body that ends
    before its Content-Length or, without one, before ``size`` is resumed, never accepted.

    Raises:
        DownloadError: the bytes do not match ``size`` / ``sha256`` / ``md5`` (the .part is deleted; the message
            names the file, the expected and the actual values), the server answered with an error or a web
            page, the network failed ``retries`` times, or the disk refused a write (the .part is kept: call
            again to resume). Never a raw OSError.
    """
    if retries < 1:
        raise ValueError(f"retries must be >= 1, got {retries}")
    dest = Path(dest)
    expected: dict[str, str | int | None] = {"size": size, "sha256": sha256 and sha256.lower(),
                                             "md5": md5 and md5.lower()}
    job = _Job(url, dest.with_name(dest.name + ".part"), dest.name, size,
               not _expects_text(dest.name) if binary is None else binary, progress, chunk)
    try:
        return _download(job, dest, expected, retries)
    except OSError as exc:
        raise DownloadError(f"cannot download {dest.name} into {dest.parent}: {os_error_cause(exc)}; then run "
                            "again.") from exc


# ----------------------------------------------------------------------------------------------- datasets
def _dataverse_files(doi: str, server: str = DATAVERSE_SERVER) -> dict[str, dict[str, Any]]:
    """``{filename: {"id", "md5", "size"}}`` of a Dataverse record's latest version (one small JSON request)."""
    url = f"{server}/api/datasets/:persistentId/?persistentId={urllib.parse.quote(doi, safe=':/')}"
    try:
        with _request(url) as response:
            payload = json.loads(response.read().decode("utf-8"))
        data = payload.get("data", {})
        files = data.get("latestVersion", {}).get("files", []) if isinstance(data, dict) else data
        out = {}
        for entry in files:
            f = entry.get("dataFile", {})
            checksum = f.get("checksum") or {}
            md5 = f.get("md5") or (checksum.get("value") if checksum.get("type") == "MD5" else None)
            out[f.get("filename", entry.get("label"))] = {"id": f.get("id"), "md5": md5, "size": f.get("filesize")}
    except (OSError, http.client.HTTPException, ValueError, AttributeError, TypeError) as exc:
        cause = _network_cause(exc) if isinstance(exc, OSError) else f"not a Dataverse file list: {exc}"
        raise DownloadError(f"cannot list the files of {doi} at {server} ({cause}): check the connection and retry."
                            ) from exc
    return out


def resolve(resource: Resource, server: str = DATAVERSE_SERVER) -> Resource:
    """``resource`` with a concrete URL (looked up on Dataverse by file name when ``url`` is None).

    Raises:
        DownloadError: the record has no such file, or publishes a different MD5 than the registry.
    """
    if resource.url is not None:
        return resource
    files = _dataverse_files(resource.doi or HAM10000_DOI, server)
    info = files.get(resource.filename)
    if info is None or info.get("id") is None:
        raise DownloadError(f"{resource.filename} is not in the Dataverse record {resource.doi} (it lists "
                            f"{', '.join(sorted(map(str, files))) or 'nothing'}): the record changed; update "
                            "helpers/data/registry.py.")
    if resource.md5 and info.get("md5") and info["md5"].lower() != resource.md5:
        raise DownloadError(f"Dataverse now publishes MD5 {info['md5']} for {resource.filename}, the course expects "
                            f"{resource.md5}: the file changed; update helpers/data/registry.py.")
    return Resource(resource.filename, f"{server}/api/access/datafile/{info['id']}", resource.extract_to,
                    size=resource.size or info.get("size"), sha256=resource.sha256,
                    md5=resource.md5 or info.get("md5"), source=resource.source, doi=resource.doi)


def _check_disk(folder: Path, archives: Path, resources: Iterable[Resource]) -> None:
    """Raise early when the archives plus their extracted copies clearly cannot fit on the disk(s)."""
    def have(r: Resource) -> int:
        return sum(f.stat().st_size for f in (archives / r.filename, archives / f"{r.filename}.part") if f.is_file())

    to_fetch = sum(r.size - have(r) for r in resources if r.size)
    unpacked = sum(r.size for r in resources if r.size)
    same_disk = os.stat(folder).st_dev == os.stat(archives).st_dev  # else Google Drive: each disk its share
    for where, need in [(folder, to_fetch + unpacked)] if same_disk else [(archives, to_fetch), (folder, unpacked)]:
        free = shutil.disk_usage(where).free
        if need > 0 and free < need:
            raise DownloadError(f"{where} has {free / 1e9:.1f} GB free but the download and extraction need about "
                                f"{need / 1e9:.1f} GB there: free some space or pass another folder (--out).")


def _set_aside_unpaired(folder: Path, layout: str) -> int:
    """Move images without a mask and masks without an image to ``folder/unpaired/`` (logged); return how many."""
    subsets = ISIC2018_SUBSETS if layout == "isic2018" else ("training",)
    moved = 0
    for subset in subsets:
        try:
            found = scan(folder, layout, subset)  # the same discovery the course uses
        except DatasetError:
            continue  # this subset is not part of the download
        for path in found.images_without_mask + found.masks_without_image:
            target = folder / "unpaired" / path.parent.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            moved += 1
    if moved:
        logger.warning("%s: moved %d file(s) without a partner to %s", folder, moved, folder / "unpaired")
    return moved


def download_dataset(name: str, root: str | os.PathLike[str], *, progress: bool = True,
                     server: str = DATAVERSE_SERVER, archives: str | os.PathLike[str] | None = None) -> Path:
    """Download and extract a public dataset into ``<root>/<name>/`` and return that folder.

    Args:
        name: ``"ham10000"`` or ``"isic2018"`` (see the module docstring for what each contains).
        root: parent folder, e.g. :func:`helpers.config.data_dir`.
        progress: show tqdm progress bars.
        server: Dataverse server for file-id look-ups (tests point it at a local server).
        archives: a folder that keeps the downloads after extraction (Google Drive, with the Colab setup
            cell's ``USE_DRIVE``), so a call with an empty ``root`` (a new runtime) unpacks without downloading.
            None: ``<root>/<name>/archives``, whose archives are deleted once extracted (half the disk use).

    Returns:
        The dataset folder, in the layout :func:`helpers.data.layouts.discover_pairs` reads; files without a partner
        are moved to its ``unpaired/`` sub-folder; a marker ``.extracted-<file>`` remembers each verified file.

    Raises:
        ValueError: unknown ``name``. DownloadError: a download or extraction failed (the message says what to do).
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(REGISTRY)}")
    folder = Path(root).expanduser() / name
    try:
        return _fetch_dataset(name, folder, Path(archives).expanduser() if archives is not None else None, progress,
                              server)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise DownloadError(f"cannot download {name} into {folder}{where}: {os_error_cause(exc)}; then run again."
                            ) from exc


def _fetch_dataset(name: str, folder: Path, archives: Path | None, progress: bool, server: str) -> Path:
    """:func:`download_dataset` once its arguments are checked (OSErrors left to it)."""
    keep = archives is not None
    archives = archives if archives is not None else folder / "archives"
    for made in (folder, archives):
        made.mkdir(parents=True, exist_ok=True)
    todo = [r for r in REGISTRY[name] if not (folder / f".extracted-{r.filename}").is_file()]
    _check_disk(folder, archives, todo)
    for resource in todo:
        resource = resolve(resource, server)
        archive = download_file(resource.url, archives / resource.filename, sha256=resource.sha256,
                                md5=resource.md5, size=resource.size, progress=progress)
        if resource.extract_to is None:
            (shutil.copyfile if keep else os.replace)(archive, folder / resource.filename)
        else:
            extract_into(archive, folder / resource.extract_to)
        write_text_atomic(folder / f".extracted-{resource.filename}", json.dumps(
            {"url": resource.url, "sha256": resource.sha256, "md5": resource.md5, "size": resource.size}))
        if not keep:  # a kept archive keeps its stamp too: the next runtime re-hashes it, no download
            archive.unlink(missing_ok=True)
            _stamp_path(archive).unlink(missing_ok=True)
    if todo:
        _set_aside_unpaired(folder, name)  # each dataset's name is its layout's
    return folder
