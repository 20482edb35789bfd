"""Safe zip extraction for the dataset downloads of notebook 01 ("use real data"), and the download errors.

:func:`extract_into` unpacks an archive through :func:`helpers.data.files.atomic_write`, so ``folder`` appears
complete or not at all (an interrupted or refused extraction removes its temporary folder);
:func:`extract` unpacks into an existing folder and, on failure, removes the files it wrote. Both refuse, before
writing anything: member paths that are absolute or climb out with ``..``, a name that is both a file and a folder,
an archive that would expand to more than :data:`MAX_EXPANSION` times its own size or :data:`MAX_EXTRACTED_BYTES`
(a zip bomb), and more bytes than the disk has free. The size cap is enforced again while writing, in case the
headers understate the sizes. Every failure is a :class:`DownloadError` naming the archive, the cause and the fix;
:mod:`helpers.data.download` uses this module after each verified download.
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO

from helpers.data.files import DatasetError, atomic_write, listing

logger = logging.getLogger(__name__)

#: An archive may expand to at most this many times its own size (dermoscopy JPEGs and PNGs barely compress: the
#: course's archives expand about 1x; a zip bomb expands 1,000x or more).
MAX_EXPANSION = 100
#: ... and to at most this many bytes in all (the largest course archive, ISIC 2018 training input, is 11 GB).
MAX_EXTRACTED_BYTES = 64 * 10**9
_CHUNK = 1 << 20
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)  # CRC, codec, password
_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)
_IN_THE_WAY = (errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.ENOTEMPTY)


class DownloadError(DatasetError):
    """A download or its extraction failed, or its bytes are not the published ones; the message names the file,
    the cause and what to do. :mod:`helpers.data.download` raises it too (``download.DownloadError`` is this)."""


def human_size(n_bytes: float) -> str:
    """``1.2 GB``, ``3.4 MB``, ``5.6 kB`` or ``7 bytes``: sizes in messages."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{int(n_bytes)} bytes"


def os_error_cause(exc: OSError) -> str:
    """What a failed file operation means and its fix, for one-line messages (disk full, no permission ...)."""
    if exc.errno in _FULL:
        return "the disk is full (no space left on device): free some space or use a folder on another disk"
    if exc.errno in _DENIED:
        return "permission denied or a read-only disk: choose a folder you can write to"
    if exc.errno in _IN_THE_WAY:
        return "a file or folder of that name is in the way: move it away or choose another folder"
    return f"{exc.strerror or exc}: check that folder and its disk"


def _member_target(name: str, dest: Path, archive: Path) -> Path:
    """Where member ``name`` goes under ``dest``; raises DownloadError for absolute or escaping paths."""
    name = name.replace("\\", "/")
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or (len(name) > 1 and name[1] == ":"):
        raise DownloadError(f"{archive} contains an unsafe path {name!r} (absolute or with '..'): refusing to "
                            "extract it. Delete the archive and download it again from the official source.")
    target = (dest / pure).resolve()
    if dest.resolve() not in target.parents and target != dest.resolve():
        raise DownloadError(f"{archive} member {name!r} would be written outside {dest}: refusing to extract it. "
                            "Delete the archive and download it again from the official source.")
    return target


def _open_zip(archive: Path) -> zipfile.ZipFile:
    """Open ``archive`` as a zip; raises DownloadError (delete and re-download) when it is not one."""
    try:
        return zipfile.ZipFile(archive)
    except OSError as exc:
        raise DownloadError(f"cannot read {archive}: {os_error_cause(exc)}.") from exc
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as exc:
        raise DownloadError(f"{archive} is not a valid zip archive ({exc}): delete it and download it again."
                            ) from exc


def _is_junk(name: str) -> bool:
    """macOS metadata (``__MACOSX/``, ``._*``, ``.DS_Store``) that archives built on a Mac carry."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return bool(parts) and (parts[0] == "__MACOSX" or parts[-1].startswith("._") or parts[-1] == ".DS_Store")


def _plan(zf: zipfile.ZipFile, archive: Path, dest: Path, strip: str | None) -> list[tuple[zipfile.ZipInfo, Path]]:
    """``(member, target)`` of every file to write, all validated: safe paths, no name both a file and a folder."""
    plan, folders = [], set()
    for member in zf.infolist():
        if _is_junk(member.filename):
            continue
        _member_target(member.filename, dest, archive)
        name = member.filename[len(strip):] if strip and member.filename.startswith(strip) else member.filename
        if not name.strip("/"):
            continue  # the stripped top folder itself
        target = _member_target(name, dest, archive)
        if member.is_dir():
            folders.add(target)
        elif stat.S_ISLNK(member.external_attr >> 16):
            logger.warning("%s: skipping symbolic link %s", archive.name, member.filename)
        else:
            plan.append((member, target))
    folders |= {parent for _, target in plan for parent in target.parents}
    clashes = sorted(str(target.relative_to(dest.resolve())) for _, target in plan if target in folders)
    if clashes:
        raise DownloadError(f"{archive} holds both a file and a folder named {listing(clashes)}: it cannot be "
                            "extracted (a damaged or unofficial archive). Delete it and download it again from the "
                            "official source.")
    return plan


def _too_big(archive: Path, total: int, max_ratio: float, max_bytes: int, when: str) -> DownloadError:
    size = archive.stat().st_size
    return DownloadError(
        f"{archive} {when} {human_size(total)}, {total / max(size, 1):,.0f} times its own {human_size(size)} (the "
        f"limit is {max_ratio:g} times and {human_size(max_bytes)} in all): a zip bomb or a damaged archive, refusing "
        "to extract it. Delete it and download it again from the official source (if you trust it, raise max_ratio "
        "/ max_bytes of helpers.data.archives.extract).")


def _check_room(archive: Path, dest: Path, total: int, limit: int, max_ratio: float, max_bytes: int) -> None:
    """Refuse, before writing, more than ``limit`` bytes in all or more than the disk holding ``dest`` has free."""
    if total > limit:
        raise _too_big(archive, total, max_ratio, max_bytes, "would expand to")
    free = shutil.disk_usage(dest).free
    if total > free:
        raise DownloadError(f"extracting {archive} needs {human_size(total)} but the disk holding {dest} has "
                            f"{human_size(free)} free: free some space or extract to another disk, then run again.")


def _copy_member(src: IO[bytes], target: Path, room: int) -> int:
    """Copy ``src`` to a new file ``target``; returns the bytes written, raises OverflowError beyond ``room``."""
    written = 0
    with open(target, "wb") as out:
        while block := src.read(_CHUNK):
            written += len(block)
            if written > room:
                raise OverflowError(written)
            out.write(block)
    return written


def _remove(paths: list[Path]) -> None:
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            logger.warning("could not remove the partly extracted %s", path)


def _write_all(zf: zipfile.ZipFile, archive: Path, dest: Path, plan: list[tuple[zipfile.ZipInfo, Path]],
               caps: tuple[int, float, int]) -> list[Path]:
    """Write the planned members (the size cap enforced while writing); on any failure remove what was written."""
    limit, max_ratio, max_bytes = caps
    written: list[Path] = []
    member, total = None, 0
    try:
        for member, target in plan:
            target.parent.mkdir(parents=True, exist_ok=True)
            written.append(target)
            with zf.open(member) as src:
                total += _copy_member(src, target, limit - total)
    except BaseException as exc:
        _remove(written)
        name = member.filename if member is not None else "?"
        if isinstance(exc, OverflowError):
            raise _too_big(archive, limit, max_ratio, max_bytes, "expands, while extracting, to more than"
                           ) from None
        if isinstance(exc, _DAMAGED):
            raise DownloadError(f"{archive} is damaged at {name} ({exc}): delete it and download it again.") from exc
        if isinstance(exc, OSError):
            raise DownloadError(f"cannot extract {name} of {archive} into {dest}: {os_error_cause(exc)}; then run "
                                "again.") from exc
        raise
    return written


def extract(archive: str | os.PathLike[str], dest: str | os.PathLike[str], *, strip: str | None = None,
            max_ratio: float = MAX_EXPANSION, max_bytes: int = MAX_EXTRACTED_BYTES) -> list[Path]:
    """Extract a zip archive into ``dest`` safely and return the extracted files.

    Members with absolute paths or ``..`` are refused (path traversal), symbolic links and macOS metadata
    (``__MACOSX/``, ``._*``) are skipped. ``strip="top/"`` removes that leading folder from member names.
    The files may total at most ``max_ratio`` times the archive's size and ``max_bytes``, checked on the
    declared sizes before writing and on the bytes while writing. On failure the files written are removed.

    Raises:
        DownloadError: the file is not a valid zip or is damaged, a member would land outside ``dest``, a name
            is both a file and a folder, the size cap or the free disk space is exceeded, or a write failed.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {dest} to extract {archive.name}: {os_error_cause(exc)}.") from exc
    with _open_zip(archive) as zf:
        limit = int(min(max_bytes, max_ratio * max(archive.stat().st_size, 1)))
        plan = _plan(zf, archive, dest, strip)
        _check_room(archive, dest, sum(m.file_size for m, _ in plan), limit, max_ratio, max_bytes)
        return _write_all(zf, archive, dest, plan, (limit, max_ratio, max_bytes))


def _single_top_folder(archive: Path) -> str | None:
    """``"name/"`` when every (non-junk) member of the zip sits in one top-level folder, else None."""
    with _open_zip(archive) as zf:
        names = [m.filename.replace("\\", "/") for m in zf.infolist() if not _is_junk(m.filename)]
    tops = {PurePosixPath(n).parts[0] for n in names if "/" in n.rstrip("/")}
    flat = any("/" not in n.rstrip("/") and not n.endswith("/") for n in names)
    return f"{tops.pop()}/" if len(tops) == 1 and not flat else None


def extract_into(archive: str | os.PathLike[str], folder: str | os.PathLike[str], *,
                 max_ratio: float = MAX_EXPANSION, max_bytes: int = MAX_EXTRACTED_BYTES) -> Path:
    """Extract ``archive`` so its files end up directly in ``folder`` (zip root or one top-level folder), through
    :func:`helpers.data.files.atomic_write`: a failed or interrupted extraction leaves no half-filled ``folder``
    and no temporary folder.

    Raises:
        DownloadError: see :func:`extract`; also when ``folder`` cannot be created or replaced.
    """
    archive, folder = Path(archive), Path(folder)
    strip = _single_top_folder(archive)
    try:
        with atomic_write(folder) as tmp:
            extract(archive, tmp, strip=strip, max_ratio=max_ratio, max_bytes=max_bytes)
    except OSError as exc:
        raise DownloadError(f"cannot put the files of {archive.name} into {folder}: {os_error_cause(exc)}; then "
                            "run again.") from exc
    return folder
