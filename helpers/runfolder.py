"""The run folder of a training run: the names of its files, their paths, and its lock (introduced in notebook 04).

:func:`helpers.train.fit.fit` keeps one folder per run (``TrainConfig.run_dir()``, ``runs/<model>`` by default)::

    <run_dir>/config.json   CONFIG_FILE   the TrainConfig, as JSON
    <run_dir>/history.csv   HISTORY_FILE  one row per finished epoch
    <run_dir>/best.pt       BEST_FILE     the weights with the best validation Dice so far
    <run_dir>/last.pt       LAST_FILE     everything needed to resume

Every module, command line, benchmark and test names these files through this module (the constants, or the
path helpers :func:`best_path`, :func:`last_path`, :func:`history_path`, :func:`config_path`), so a name is
written once.

While a run writes the folder it holds :data:`LOCK_FILE` (:class:`RunLock`: created with ``O_EXCL``, holding the
writer's pid and host), so a second run into the same folder is refused (:class:`RunFolderLocked`) instead of
silently overwriting the first run's files; a lock left by a killed run is detected and taken over, and the
hidden temporary files of a save the kill cut short are removed then (:func:`remove_temp_files`). A file
that cannot be written (full disk, read-only folder) is reported by :func:`write_error` with its cause.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

#: The TrainConfig of the run, as JSON.
CONFIG_FILE = "config.json"
#: One row per finished epoch (``helpers.train.fit.HISTORY_COLUMNS``).
HISTORY_FILE = "history.csv"
#: The checkpoint with the best validation Dice (what prediction loads).
BEST_FILE = "best.pt"
#: The resumable state after the last finished epoch.
LAST_FILE = "last.pt"
#: The two checkpoints of a run folder, the one to predict with first.
CHECKPOINT_FILES: tuple[str, ...] = (BEST_FILE, LAST_FILE)
#: Every file a finished run folder holds.
RUN_FILES: tuple[str, ...] = (CONFIG_FILE, HISTORY_FILE, BEST_FILE, LAST_FILE)
#: Present while a run writes the folder: JSON ``{"pid", "host", "pid_start", "started"}`` of the writer.
LOCK_FILE = ".lock"
#: How :func:`helpers.data.files.atomic_write` names its temporary file beside ``<name>``: ``.<name>.tmp-<hex>``.
TEMP_PATTERN = ".{name}.tmp-*"


def config_path(run_dir: str | os.PathLike) -> Path:
    """``<run_dir>/config.json``."""
    return Path(run_dir) / CONFIG_FILE


def history_path(run_dir: str | os.PathLike) -> Path:
    """``<run_dir>/history.csv``."""
    return Path(run_dir) / HISTORY_FILE


def best_path(run_dir: str | os.PathLike) -> Path:
    """``<run_dir>/best.pt``."""
    return Path(run_dir) / BEST_FILE


def last_path(run_dir: str | os.PathLike) -> Path:
    """``<run_dir>/last.pt``."""
    return Path(run_dir) / LAST_FILE


def lock_path(run_dir: str | os.PathLike) -> Path:
    """``<run_dir>/.lock``."""
    return Path(run_dir) / LOCK_FILE


# --------------------------------------------------------------------------------------------------------
# Errors: a locked folder, a file that could not be written
# --------------------------------------------------------------------------------------------------------
class RunFolderError(ValueError):
    """The run folder cannot be used or written; the message names the file, the cause and the fix."""


class RunFolderLocked(RunFolderError):
    """Another training run, still alive (or on another machine), holds the run folder's :data:`LOCK_FILE`."""


class RunFolderWriteError(RunFolderError):
    """A file of the run folder could not be written (full disk, read-only folder, no permission)."""


#: What a failed write's errno means, ``errno -> (kind, cause, fix)``: the one table of :func:`write_failure` (run
#: folders) and :func:`helpers.data.files.writing` (every other output). Kind ``"space"`` or ``"read-only"``.
WRITE_CAUSES: dict[int, tuple[str, str, str]] = {
    errno.ENOSPC: ("space", "no space left on the device", "free some space or choose a folder on another disk"),
    errno.EDQUOT: ("space", "the disk quota is exceeded", "free some space or choose a folder on another disk"),
    errno.EROFS: ("read-only", "the file system is read-only", "choose a folder on a writable disk"),
    errno.EACCES: ("read-only", "permission denied (the folder is read-only)",
                   "choose a folder you can write to, or fix its permissions"),
    errno.EPERM: ("read-only", "operation not permitted (the folder is read-only)",
                  "choose a folder you can write to, or fix its permissions"),
}
#: torch's zip writer hides the errno of a full disk behind these words ("[enforce fail at inline_container.cc]").
_TORCH_SHORT_WRITE = ("unexpected pos", "file write failed")
#: Below this much free space, a failed checkpoint write is put down to a full disk.
_LOW_SPACE_BYTES = 64 * 2**20


def _free_bytes(folder: Path) -> int | None:
    """Free bytes on the disk of ``folder`` (or of its nearest existing parent); None when unknown."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def write_failure(err: BaseException, folder: Path) -> tuple[str, str]:
    """``(kind, cause)`` of a failed write into ``folder``: kind ``"space"``, ``"read-only"`` or ``"other"``.

    An OSError's errno decides; torch's RuntimeError carries none, so the disk's free space and the folder's
    permissions are probed (``"unexpected pos"`` is how torch reports a write cut short by a full disk).
    """
    code = getattr(err, "errno", None)
    if code in WRITE_CAUSES:
        kind, cause, _ = WRITE_CAUSES[code]
        return kind, cause
    free = _free_bytes(folder)
    text = str(err).strip().splitlines()[-1][:200] if str(err).strip() else type(err).__name__
    if (free is not None and free < _LOW_SPACE_BYTES) or any(w in str(err) for w in _TORCH_SHORT_WRITE):
        left = f", {free / 2**20:.1f} MiB free" if free is not None else ""
        return "space", f"no space left on the device (the write was cut short: {text}{left})"
    if folder.is_dir() and not os.access(folder, os.W_OK):
        return "read-only", f"{folder} is not writable (read-only or no permission)"
    return "other", f"{type(err).__name__}: {text}"


def write_error(path: Path, err: BaseException, *, kept: str = "", then: str = "") -> RunFolderWriteError:
    """The :class:`RunFolderWriteError` for ``err`` raised while writing ``path``.

    Args:
        kept: what is still intact, e.g. ``"best.pt (epoch 2) and last.pt (epoch 2) are unchanged"``.
        then: what to do once the cause is fixed, e.g. ``"then run the same command with --resume"``.
    """
    kind, cause = write_failure(err, path.parent)
    fix = {"space": "Free some space on that disk, or choose an output folder (--out) on another disk",
           "read-only": f"Make {path.parent} writable again (chmod u+w), or choose another output folder (--out)",
           "other": "Check the disk and the folder, or choose another output folder (--out)"}[kind]
    return RunFolderWriteError(f"could not write {path}: {cause}" + (f"; {kept}" if kept else "") + f". {fix}"
                               + (f", {then}" if then else ""))


def checked_write(path: Path, write: Callable[[], object], *, kept: str = "", then: str = "") -> None:
    """Call ``write`` (which writes or removes ``path``); turn a failure of the disk into one clear error.

    Raises:
        RunFolderWriteError: ``write`` raised OSError or RuntimeError (torch's "unexpected pos" on a full
            disk); the message names ``path``, the cause, ``kept`` (what is intact), the fix and ``then``.
    """
    try:
        write()
    except (OSError, RuntimeError) as err:
        raise write_error(path, err, kept=kept, then=then) from err


def intact(run_dir: str | os.PathLike, best_epoch: int, last_epoch: int) -> str:
    """What the checkpoints hold after a failed write (saves are atomic: the previous files stay whole)."""
    held = [f"{path} (epoch {epoch})" for path, epoch in ((best_path(run_dir), best_epoch),
                                                         (last_path(run_dir), last_epoch)) if epoch]
    return f"{' and '.join(held)} {'is' if len(held) == 1 else 'are'} intact" if held else "no epoch was saved yet"


def resume_hint(last_epoch: int) -> str:
    """How to go on once the cause is fixed, given the epoch ``last.pt`` holds (0: none)."""
    return (f"then run the same command with --resume (resume=True) to continue after epoch {last_epoch}"
            if last_epoch else "then run the command again")


# --------------------------------------------------------------------------------------------------------
# The lock
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LockOwner:
    """Who holds a run folder's lock: process id, host name, the process's start time (Linux), when."""

    pid: int
    host: str
    pid_start: str | None
    started: str

    def describe(self) -> str:
        """``process 1234 on host-a (started 2026-01-02 10:11:12 UTC)``."""
        return f"process {self.pid} on {self.host} (started {self.started})"


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat``); None off Linux or when gone.

    Recorded in the lock so a pid that a new, unrelated process has reused is not taken for the lock's owner.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None


def _this_process() -> LockOwner:
    """The :class:`LockOwner` describing this process."""
    return LockOwner(pid=os.getpid(), host=socket.gethostname(), pid_start=_process_start(os.getpid()),
                     started=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))


def read_lock(path: Path) -> LockOwner | None:
    """The owner written in lock file ``path``; None when its content cannot be read as one.

    Raises:
        FileNotFoundError: there is no lock file.
    """
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        return LockOwner(pid=int(values["pid"]), host=str(values["host"]), pid_start=values.get("pid_start"),
                         started=str(values.get("started", "at an unknown time")))
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, TypeError):
        return None


def owner_alive(owner: LockOwner) -> bool | None:
    """Whether ``owner`` still runs: True, False, or None when it cannot be told (another host, Windows)."""
    if owner.host != socket.gethostname() or os.name == "nt" or owner.pid <= 0:
        return None  # os.kill(pid, 0) would end the process on Windows
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    start = _process_start(owner.pid)
    return not (owner.pid_start and start and start != owner.pid_start)  # else the pid was reused


def remove_temp_files(run_dir: str | os.PathLike) -> list[Path]:
    """Remove the temporary files (:data:`TEMP_PATTERN`) a killed save left beside the run folder's files."""
    removed = []
    for name in RUN_FILES:
        for tmp in sorted(Path(run_dir).glob(TEMP_PATTERN.format(name=name))):
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


class RunLock:
    """The lock of one run folder, held while a run writes it (``with RunLock(run_dir):``).

    :meth:`acquire` creates :data:`LOCK_FILE` with ``O_EXCL`` (so of two runs exactly one gets it), writes
    this process's :class:`LockOwner` into it, and removes the temporary files of an unfinished save
    (:func:`remove_temp_files`). A lock whose owner is no longer running on this host is taken over
    (:attr:`taken_over`; :meth:`notice` says so). :meth:`release` removes the file if it is still this
    process's. Under torchrun only rank 0 writes the run folder, so only rank 0 takes the lock.
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.path = lock_path(run_dir)
        self.owner = _this_process()
        self.held = False
        self.taken_over: LockOwner | str | None = None   # the owner of a stale lock, or "unreadable"
        self.temp_removed: list[Path] = []

    def acquire(self) -> RunLock:
        """Take the lock (creating the run folder); returns ``self``.

        Raises:
            RunFolderLocked: a live process holds it (the message names it and what to do).
            OSError: the folder or the lock file cannot be created (full disk, read-only folder).
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            if self._create():
                self.held = True
                self.temp_removed = remove_temp_files(self.run_dir)
                return self
            try:
                owner = read_lock(self.path)
            except FileNotFoundError:
                continue  # released in the meantime: try again
            if owner is not None and owner_alive(owner) is not False:
                raise RunFolderLocked(self._locked_message(owner))
            self._remove_stale(owner)
        raise RunFolderLocked(f"could not take the lock {self.path} of run folder {self.run_dir}: other runs kept "
                              "taking it. Make sure one training run at a time writes this folder (--out)")

    def _create(self) -> bool:
        """Create the lock file holding :attr:`owner` if none exists; True when this process now holds it."""
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(asdict(self.owner)) + "\n")
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise
        try:  # a process that took the file for stale while it was still empty wins; then this one is refused
            return read_lock(self.path) == self.owner
        except FileNotFoundError:
            return False

    def _remove_stale(self, owner: LockOwner | None) -> None:
        """Delete the lock file of a run that is gone, if it still is that run's."""
        try:
            if read_lock(self.path) == owner:
                self.path.unlink()
                self.taken_over = owner or "unreadable"
        except FileNotFoundError:
            pass

    def _locked_message(self, owner: LockOwner) -> str:
        """Why the folder is refused, and what to do."""
        where = (" on another machine, so this one cannot tell whether it still runs"
                 if owner.host != socket.gethostname() else "")
        return (f"run folder {self.run_dir} is being written by another training run, {owner.describe()}{where}: "
                "wait for it to finish, or choose another output folder (--out). If that run has ended, "
                f"delete {self.path}")

    def notice(self) -> str | None:
        """What :meth:`acquire` cleaned up after a killed run, for the log; None when there was nothing."""
        parts = []
        if isinstance(self.taken_over, LockOwner):
            parts.append(f"taking over {self.run_dir}: its lock was left by {self.taken_over.describe()}, which "
                         "is no longer running")
        elif self.taken_over is not None:
            parts.append(f"taking over {self.run_dir}: its lock file was empty or unreadable (left by a run killed "
                         "as it started)")
        if self.temp_removed:
            parts.append(f"removed {len(self.temp_removed)} temporary file(s) of an unfinished save: "
                         + ", ".join(p.name for p in self.temp_removed))
        return "; ".join(parts) or None

    def release(self) -> None:
        """Remove the lock file if this process holds it (quietly: a read-only folder keeps it, and the next
        run then finds this process gone and takes it over)."""
        if not self.held:
            return
        self.held = False
        try:
            if read_lock(self.path) == self.owner:
                self.path.unlink()
        except OSError:
            pass

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
