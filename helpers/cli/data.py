"""``python -m helpers.data synth|check|download``: make, check or fetch a dataset folder (notebook 01).

A thin layer over :mod:`helpers.data.synthetic`, :mod:`helpers.data.checks` and :mod:`helpers.data.download`::

    python -m helpers.data synth --out data/synth --n 200 --size 256 --seed 0
    python -m helpers.data check DIR          # exit 1 and a list of bad files if anything is wrong
    python -m helpers.data download isic2018 --out data

A bad setting, a dataset error (a failed download included), a disk error: one line ``error: ...`` on stderr,
exit status 2, no traceback. Ctrl-C: one line ``interrupted: ...``, exit status 130.
"""
from __future__ import annotations

import argparse
import errno
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from helpers import config
from helpers.cli.common import OutputPathError, check_output_path, fail, interrupted
from helpers.data import checks, download, synthetic
from helpers.data.files import DatasetError
from helpers.data.layouts import printable

#: Valid ``synth --n`` (pairs) and ``synth --size`` (image width, px; the height is 3/4 of it).
SYNTH_N_RANGE, SYNTH_SIZE_RANGE = (1, 100_000), (32, 4096)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m helpers.data", description="Create, check or download "
                                     "skin-lesion segmentation datasets.")
    sub = parser.add_subparsers(dest="command", required=True)
    synth = sub.add_parser("synth", help="write a synthetic dataset in the ISIC layout")
    synth.add_argument("--out", required=True, type=Path, help="folder to write images/ and masks/ into")
    synth.add_argument("--n", type=int, default=200, help=f"number of pairs, {'-'.join(map(str, SYNTH_N_RANGE))} "
                       "(default 200)")
    synth.add_argument("--size", type=int, default=256, help="image width in pixels, "
                       f"{'-'.join(map(str, SYNTH_SIZE_RANGE))} (default 256)")
    synth.add_argument("--seed", type=int, default=0, help="random seed, >= 0 (default 0)")
    check = sub.add_parser("check", help="validate every pair of a dataset folder; exit 1 if any file is bad")
    check.add_argument("dir", type=Path, help="dataset folder (any layout, or train/val/test sub-folders)")
    check.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    fetch = sub.add_parser("download", help="download and extract a public dataset (resumable, verified)")
    fetch.add_argument("name", choices=sorted(download.REGISTRY))
    fetch.add_argument("--out", type=Path, default=None, help="parent folder (default: the course data folder)")
    return parser


def synth_setting_error(n: int, size: int, seed: int) -> str | None:
    """What is wrong with ``synth``'s ``--n`` / ``--size`` / ``--seed`` (the setting and its valid range), or None."""
    for option, value, (low, high), what in (("--n", n, SYNTH_N_RANGE, "pairs"),
                                             ("--size", size, SYNTH_SIZE_RANGE, "pixels of image width")):
        if not low <= value <= high:
            return f"{option} {value} is out of range: give {low} to {high} {what} (e.g. {option} " \
                   f"{200 if option == '--n' else 256})"
    if seed < 0:
        return f"--seed {seed} is negative: give a seed >= 0"
    return None


def _move_into(source: Path, target: Path) -> None:
    """Move every file of the folder tree ``source`` to the same place under ``target`` (folders created), files
    in sub-folders first, so the top-level ``attributes.csv`` arrives last, as :func:`synthetic.write_dataset`
    writes it."""
    for path in sorted(source.rglob("*"), key=lambda p: (len(p.relative_to(source).parts) == 1, str(p))):
        if path.is_file():
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, destination)


def _synth(out: Path, n: int, size: int, seed: int) -> int:
    """Draw the set in a hidden folder beside ``out``, then move its files in: a failure leaves nothing."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        ids = synthetic.write_dataset(tmp, n, size=size, seed=seed)
        _move_into(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {len(ids)} pairs to {out} (ISIC layout: images/ and masks/)")
    return 0


def _os_error(err: OSError, command: str) -> str:
    """One line for an OSError: what failed, on which file, and the fix."""
    where = f" ({printable(err.filename)})" if err.filename else ""
    if isinstance(err, (ConnectionError, TimeoutError)):
        fix = "check the network connection and run the same command again (a download resumes)"
    elif err.errno == errno.ENOSPC:
        fix = "free some space there, or choose a folder on another disk"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "choose a folder you can write to"
    else:
        fix = "check the path and try again"
    return f"{command} failed: {err.strerror or err}{where}: {fix}"


def _run(args: argparse.Namespace) -> int:
    if args.command == "synth":
        problem = synth_setting_error(args.n, args.size, args.seed)
        if problem:
            return fail(problem)
        return _synth(check_output_path(args.out, "--out", folder=True), args.n, args.size, args.seed)
    if args.command == "check":
        report = checks.check_dataset(args.dir, progress=not args.no_progress)
        print(report.summary())
        return 0 if report.ok else 1
    out = args.out if args.out is not None else config.data_dir()
    folder = download.download_dataset(args.name, check_output_path(out, "--out", folder=True))
    print(printable(f"{args.name} ready in {folder}: use it with SKINSEG_DATA={folder}"))
    return 0


def _interrupted(command: str) -> str:
    if command == "download":
        return "download stopped; run the same command again to resume it (finished files are kept, verified)"
    if command == "synth":
        return "synth stopped; no half-written file is left in --out (files are moved in once all are drawn)"
    return "check stopped before it finished; run it again for the full report"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m helpers.data``; returns the exit code (1 when ``check`` finds problems,
    2 for a bad setting or a failure, said in one line on stderr, 130 after Ctrl-C)."""
    args = _build_parser().parse_args(argv)
    try:
        return _run(args)
    except (DatasetError, OutputPathError, ValueError) as err:  # DownloadError is a DatasetError
        return fail(printable(err))
    except OSError as err:
        return fail(_os_error(err, args.command))
    except KeyboardInterrupt:
        return interrupted(_interrupted(args.command))
