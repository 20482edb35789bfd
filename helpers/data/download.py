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
resumes with an HTTP Range request (just run again), is checked against :data:`REGISTRY`'s size and checksum (or
the server's Content-Length), then extracted or moved into place. A second call does no request. Introduced in
notebook 01 ("use real data"); CLI ``python -m helpers.data download {ham10000,isic2018} --out DIR``.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import shutil
import stat
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from tqdm.auto import tqdm

from helpers.data.files import DatasetError, atomic_write, write_text_atomic
from helpers.data.layouts import HAM_METADATA, ISIC2018_SUBSETS, scan

logger = logging.getLogger(__name__)

USER_AGENT = "skinseg-course/0.1 (+https://github.com/skinseg-course/skin-lesion-segmentation)"
HAM10000_DOI = "doi:10.7910/DVN/DBW86T"
DATAVERSE_SERVER = "https://dataverse.harvard.edu"
ISIC2018_BASE = "https://isic-challenge-data.s3.amazonaws.com/2018"
_TIMEOUT_S = 60
_RETRIES = 3
#: Seconds to wait before the n-th retry is ``n * RETRY_WAIT_S``.
RETRY_WAIT_S = 2.0


class DownloadError(DatasetError):
    """A download failed or its bytes are not the published ones; the message names the file and what to do."""


@dataclass(frozen=True)
class Resource:
    """One downloadable archive.

    Attributes:
        filename: the file's name (also its name on Dataverse).
        url: where to get it; None means "look its id up in the Dataverse record ``doi`` by file name".
        extract_to: the folder the archive's files must end up in, under the dataset folder; None for a plain
            file (not an archive), which is moved to ``<dataset folder>/<filename>``.
        size: expected size in bytes, or None to trust the server's Content-Length.
        sha256, md5: published checksums (hex), or None when unknown.
        source: where the size / checksum values come from.
        doi: Dataverse record for ``url=None`` look-ups.
    """

    filename: str
    url: str | None
    extract_to: str | None
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    source: str = ""
    doi: str | None = None


_ISIC_SRC = ("sha256: torch-em (constantinpape/torch-em, torch_em/data/datasets/medical/isic.py); sizes and md5: "
             "independent download manifests that agree with it where they overlap")

#: The datasets :func:`download_dataset` knows. Checksums are copied from the cited sources, never computed here.
REGISTRY: dict[str, list[Resource]] = {
    "ham10000": [
        Resource("HAM10000_images_part_1.zip", f"{DATAVERSE_SERVER}/api/access/datafile/3172585",
                 "HAM10000_images_part_1", md5="4639bfa73ab251610530a97c898e6e46",
                 source="Dataverse file id and MD5 as published by Dataverse", doi=HAM10000_DOI),
        Resource("HAM10000_images_part_2.zip", f"{DATAVERSE_SERVER}/api/access/datafile/3172584",
                 "HAM10000_images_part_2", md5="da43d6cc50f6613013be07e8986b384b",
                 source="Dataverse file id and MD5 as published by Dataverse", doi=HAM10000_DOI),
        Resource("HAM10000_segmentations_lesion_tschandl.zip", None, "HAM10000_segmentations_lesion_tschandl",
                 size=10_808_743, md5="6e8d252e09cfdb0189199f15985a5b84",
                 source="Dataverse record v4.0 (size and MD5); file id looked up at run time", doi=HAM10000_DOI),
        Resource(HAM_METADATA, f"{DATAVERSE_SERVER}/api/access/datafile/4338392?format=original", None,
                 size=690_218, md5="8f85fb1aa29d80a2797247e434deb79d",
                 source="Dataverse file id 4338392 and the MD5 of the original CSV as Dataverse publishes it (cited "
                        "by public HAM10000 projects); size of the original, not of Dataverse's re-exported TSV",
                 doi=HAM10000_DOI),
    ],
    "isic2018": [
        Resource("ISIC2018_Task1-2_Training_Input.zip", f"{ISIC2018_BASE}/ISIC2018_Task1-2_Training_Input.zip",
                 "ISIC2018_Task1-2_Training_Input", size=11_165_358_566,
                 sha256="80f98572347a2d7a376227fa9eb2e4f7459d317cb619865b8b9910c81446675f", source=_ISIC_SRC),
        Resource("ISIC2018_Task1_Training_GroundTruth.zip", f"{ISIC2018_BASE}/ISIC2018_Task1_Training_GroundTruth.zip",
                 "ISIC2018_Task1_Training_GroundTruth", size=27_402_895,
                 sha256="99f8b2bb3c4d6af483362010715f7e7d5d122d9f6c02cac0e0d15bef77c7604c", source=_ISIC_SRC),
        Resource("ISIC2018_Task1-2_Validation_Input.zip", f"{ISIC2018_BASE}/ISIC2018_Task1-2_Validation_Input.zip",
                 "ISIC2018_Task1-2_Validation_Input", size=239_231_159,
                 sha256="0ea920fcfe512d12a6e620b50b50233c059f67b10146e1479c82be58ff15a797", source=_ISIC_SRC),
        Resource("ISIC2018_Task1_Validation_GroundTruth.zip",
                 f"{ISIC2018_BASE}/ISIC2018_Task1_Validation_GroundTruth.zip",
                 "ISIC2018_Task1_Validation_GroundTruth", size=759_706,
                 sha256="f6911e9c0a64e6d687dd3ca466ca927dd5e82145cb2163b7a1e5b37d7a716285", source=_ISIC_SRC),
        Resource("ISIC2018_Task1-2_Test_Input.zip", f"{ISIC2018_BASE}/ISIC2018_Task1-2_Test_Input.zip",
                 "ISIC2018_Task1-2_Test_Input", size=2_370_457_338,
                 sha256="e59ae1f69f4ed16f09db2cb1d76c2a828487b63d28f6ab85997f5616869b127d", source=_ISIC_SRC),
        Resource("ISIC2018_Task1_Test_GroundTruth.zip", f"{ISIC2018_BASE}/ISIC2018_Task1_Test_GroundTruth.zip",
                 "ISIC2018_Task1_Test_GroundTruth", size=9_680_101,
                 sha256="2e8f6edce454a5bdee52485e39f92bd6eddf357e81f39018d05512175238ef82", source=_ISIC_SRC),
    ],
}


# --------------------------------------------------------------------------------------------------- download
def _request(url: str, headers: dict[str, str] | None = None, timeout: float = _TIMEOUT_S) -> Any:
    """Open ``url`` with the course's User-Agent (Dataverse refuses urllib's default one)."""
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity",
                                               **(headers or {})})
    return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 - URLs come from REGISTRY or the caller


def _hashers(sha256: str | None, md5: str | None) -> dict[str, Any]:
    return {**({"sha256": hashlib.sha256()} if sha256 else {}),
            **({"md5": hashlib.md5(usedforsecurity=False)} if md5 else {})}


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
    for algo, h in hashers.items():
        if h.hexdigest() != str(expected[algo]).lower():
            problems.append(f"{algo} {h.hexdigest()}, expected {expected[algo]}")
    if problems:
        path.unlink(missing_ok=True)
        raise DownloadError(f"download of {name} is corrupt ({'; '.join(problems)}): the partial file was "
                            "deleted, run the download again. If it fails the same way, the server's file changed: "
                            "report it (the expected values are in helpers/data/download.py REGISTRY).")


def _stamp_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".verified.json")


def _write_stamp(dest: Path, expected: dict[str, str | int | None]) -> None:
    st = dest.stat()
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, **{k: v for k, v in expected.items() if v}}
    write_text_atomic(_stamp_path(dest), json.dumps(stamp))


def _cached(dest: Path, expected: dict[str, str | int | None], chunk: int) -> bool:
    """True when ``dest`` exists and matches ``expected`` (a stamp file spares re-hashing unchanged files)."""
    if not dest.is_file():
        return False
    st = dest.stat()
    try:
        stamp = json.loads(_stamp_path(dest).read_text(encoding="utf-8"))
        if stamp["size"] == st.st_size and stamp["mtime_ns"] == st.st_mtime_ns and \
                all(stamp.get(k) == v for k, v in expected.items() if v):
            return True
    except (OSError, ValueError, KeyError):
        pass
    hashers = _hashers(expected.get("sha256"), expected.get("md5"))  # type: ignore[arg-type]
    if not hashers and expected.get("size") is None:
        return True  # a file only ever appears at dest after a complete download
    if hashers:
        _feed_file(dest, hashers, chunk)
    try:
        _verify(dest, dest.name, hashers, expected)
    except DownloadError:
        logger.warning("%s does not match its checksum: downloading it again", dest)
        return False
    _write_stamp(dest, expected)
    return True


def _content_range_start(response: Any) -> int | None:
    """First byte of a 206 response's ``Content-Range: bytes START-END/TOTAL`` header, or None."""
    value = response.headers.get("Content-Range", "")
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _stream_once(url: str, part: Path, hashers: dict[str, Any], progress: bool, chunk: int, label: str) -> None:
    """One HTTP request appending to ``part`` (resumed with Range when it has bytes); raises OSError if cut short."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _request(url, {"Range": f"bytes={offset}-"} if offset else None)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the .part is already complete
            return
        raise
    with response:
        if offset and (response.status != 206 or _content_range_start(response) != offset):
            logger.info("%s: the server ignored the Range request, restarting from byte 0", label)
            offset = 0
            for name in list(hashers):
                hashers[name] = hashlib.new(name)
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        received = 0
        with part.open("ab" if offset else "wb") as out, \
                tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=label, disable=not progress) as bar:
            while block := response.read(chunk):
                out.write(block)
                for h in hashers.values():
                    h.update(block)
                received += len(block)
                bar.update(len(block))
    if length is not None and received != int(length):
        raise OSError(f"connection closed after {offset + received:,} of {total:,} bytes")


def download_file(url: str, dest: str | os.PathLike[str], *, sha256: str | None = None, md5: str | None = None,
                  size: int | None = None, progress: bool = True, chunk: int = 1 << 20,
                  retries: int = _RETRIES) -> Path:
    """Download ``url`` to ``dest``, resumably and verified; return ``dest``.

    Bytes go to ``dest + ".part"``; an interrupted download resumes from it with an HTTP Range request (or
    restarts if the server ignores Range), retrying up to ``retries`` times. The finished file is checked
    against ``size`` (bytes) and the given checksums (hex), then renamed to ``dest``. If ``dest`` already exists
    and matches, nothing is requested. The ``.part`` file is not :func:`helpers.data.files.atomic_write`'s temporary
    file on purpose: it has a fixed name and survives a failure, so the next call can resume from it (an
    atomic write throws its temporary away); ``dest`` still only ever appears complete and verified.

    Raises:
        DownloadError: the bytes do not match ``size`` / ``sha256`` / ``md5`` (the .part is deleted; the message
            names the file, the expected and the actual values), or the network failed ``retries`` times
            (the .part is kept: call again to resume).
    """
    if retries < 1:
        raise ValueError(f"retries must be >= 1, got {retries}")
    dest = Path(dest)
    expected: dict[str, str | int | None] = {"size": size, "sha256": sha256 and sha256.lower(),
                                             "md5": md5 and md5.lower()}
    if _cached(dest, expected, chunk):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if size is not None and part.exists() and part.stat().st_size > size:
        part.unlink()
    hashers = _hashers(sha256, md5)
    if part.exists():
        _feed_file(part, hashers, chunk)
    for attempt in range(1, retries + 1):
        try:
            _stream_once(url, part, hashers, progress, chunk, dest.name)
            break
        except (OSError, http.client.HTTPException) as exc:  # URLError and HTTPError are OSErrors
            if isinstance(exc, urllib.error.HTTPError) and exc.code < 500 and exc.code != 408:
                raise DownloadError(f"cannot download {dest.name} from {url}: HTTP {exc.code} {exc.reason}. "
                                    "Check the address (helpers/data/download.py REGISTRY) or try later.") from exc
            if attempt == retries:
                raise DownloadError(f"download of {dest.name} from {url} failed {retries} times ({exc}); "
                                    f"{part} keeps what arrived: run the same command again to resume.") from exc
            logger.warning("%s: %s; resuming (attempt %d of %d)", dest.name, exc, attempt + 1, retries)
            time.sleep(RETRY_WAIT_S * attempt)
            hashers = _hashers(sha256, md5)
            if part.exists():
                _feed_file(part, hashers, chunk)
    _verify(part, dest.name, hashers, expected)
    os.replace(part, dest)
    _write_stamp(dest, expected)
    return dest


# ---------------------------------------------------------------------------------------------------- extract
def _member_target(member: zipfile.ZipInfo, dest: Path, archive: Path) -> Path:
    """Where ``member`` goes under ``dest``; raises DownloadError for absolute or escaping paths."""
    name = member.filename.replace("\\", "/")
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or (len(name) > 1 and name[1] == ":"):
        raise DownloadError(f"{archive} contains an unsafe path {member.filename!r} (absolute or with '..'): "
                            "refusing to extract it. Delete the archive and download it again from the official "
                            "source.")
    target = (dest / pure).resolve()
    if dest.resolve() not in target.parents and target != dest.resolve():
        raise DownloadError(f"{archive} member {member.filename!r} would be written outside {dest}: refusing.")
    return target


def _open_zip(archive: Path) -> zipfile.ZipFile:
    """Open ``archive`` as a zip; raises DownloadError (delete and re-download) when it is not one."""
    try:
        return zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DownloadError(f"{archive} is not a valid zip archive ({exc}): delete it and download it again."
                            ) from exc


def _is_junk(name: str) -> bool:
    """macOS metadata (``__MACOSX/``, ``._*``, ``.DS_Store``) that archives built on a Mac carry."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return bool(parts) and (parts[0] == "__MACOSX" or parts[-1].startswith("._") or parts[-1] == ".DS_Store")


def extract(archive: str | os.PathLike[str], dest: str | os.PathLike[str], *, strip: str | None = None) -> list[Path]:
    """Extract a zip archive into ``dest`` safely and return the extracted files.

    Members with absolute paths or ``..`` are refused (path traversal), symbolic links and macOS metadata
    (``__MACOSX/``, ``._*``) are skipped. ``strip="top/"`` removes that leading folder from member names.

    Raises:
        DownloadError: the file is not a valid zip, or a member would land outside ``dest``.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    with _open_zip(archive) as zf:
        members = [m for m in zf.infolist() if not m.is_dir() and not _is_junk(m.filename)]
        targets = [_member_target(m, dest, archive) for m in members]  # validate all before writing anything
        for member, target in zip(members, targets):
            if stat.S_ISLNK(member.external_attr >> 16):
                logger.warning("%s: skipping symbolic link %s", archive.name, member.filename)
                continue
            if strip and member.filename.startswith(strip):
                target = _member_target(zipfile.ZipInfo(member.filename[len(strip):]), dest, archive)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(member) as src, target.open("wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                raise DownloadError(f"{archive} is damaged at {member.filename} ({exc}): delete it and download "
                                    "it again.") from exc
            written.append(target)
    return written


def _single_top_folder(archive: Path) -> str | None:
    """``"name/"`` when every (non-junk) member of the zip sits in one top-level folder, else None."""
    with _open_zip(archive) as zf:
        tops = {PurePosixPath(m.filename.replace("\\", "/")).parts[0] for m in zf.infolist()
                if not _is_junk(m.filename) and not m.is_dir() and "/" in m.filename.replace("\\", "/")}
        flat = any("/" not in m.filename.replace("\\", "/") for m in zf.infolist() if not _is_junk(m.filename))
    return f"{tops.pop()}/" if len(tops) == 1 and not flat else None


def extract_into(archive: str | os.PathLike[str], folder: str | os.PathLike[str]) -> Path:
    """Extract ``archive`` so its files end up directly in ``folder`` (zip root or one top-level folder), through
    :func:`helpers.data.files.atomic_write`: an interrupted extraction leaves no half-filled ``folder``.

    Raises:
        DownloadError: see :func:`extract`.
    """
    archive, folder = Path(archive), Path(folder)
    with atomic_write(folder) as tmp:
        extract(archive, tmp, strip=_single_top_folder(archive))
    return folder


# ----------------------------------------------------------------------------------------------- datasets
def _dataverse_files(doi: str, server: str = DATAVERSE_SERVER) -> dict[str, dict[str, Any]]:
    """``{filename: {"id", "md5", "size"}}`` of a Dataverse record's latest version (one small JSON request)."""
    url = f"{server}/api/datasets/:persistentId/?persistentId={urllib.parse.quote(doi, safe=':/')}"
    try:
        with _request(url) as response:
            payload = json.loads(response.read().decode("utf-8"))
    except (OSError, urllib.error.URLError, ValueError) as exc:
        raise DownloadError(f"cannot list the files of {doi} at {server} ({exc}): check the connection and retry."
                            ) from exc
    data = payload.get("data", {})
    files = data.get("latestVersion", {}).get("files", []) if isinstance(data, dict) else data
    out = {}
    for entry in files:
        f = entry.get("dataFile", {})
        md5 = f.get("md5") or (f.get("checksum", {}).get("value") if f.get("checksum", {}).get("type") == "MD5"
                               else None)
        out[f.get("filename", entry.get("label"))] = {"id": f.get("id"), "md5": md5, "size": f.get("filesize")}
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
                            f"{', '.join(sorted(files)) or 'nothing'}): the record changed; update REGISTRY.")
    if resource.md5 and info.get("md5") and info["md5"].lower() != resource.md5:
        raise DownloadError(f"Dataverse now publishes MD5 {info['md5']} for {resource.filename}, the course expects "
                            f"{resource.md5}: the file changed; update REGISTRY in helpers/data/download.py.")
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
    keep = archives is not None
    archives = Path(archives).expanduser() if keep else folder / "archives"
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
        if not keep:  # a kept archive keeps its stamp too: the next runtime trusts it without re-hashing
            archive.unlink(missing_ok=True)
            _stamp_path(archive).unlink(missing_ok=True)
        write_text_atomic(folder / f".extracted-{resource.filename}", json.dumps(
            {"url": resource.url, "sha256": resource.sha256, "md5": resource.md5, "size": resource.size}))
    if todo:
        _set_aside_unpaired(folder, name)  # each dataset's name is its layout's
    return folder
