"""``python -m helpers.data synth|check|download``: make, check or fetch a dataset folder (notebook 01).

A thin layer over :mod:`helpers.data.synthetic`, :mod:`helpers.data.checks` and :mod:`helpers.data.download`::

    python -m helpers.data synth --out data/synth --n 200 --size 256 --seed 0
    python -m helpers.data check DIR          # exit 1 and a list of bad files if anything is wrong
    python -m helpers.data download isic2018 --out data
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from helpers import config
from helpers.data import checks, download, synthetic


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m helpers.data", description="Create, check or download "
                                     "skin-lesion segmentation datasets.")
    sub = parser.add_subparsers(dest="command", required=True)
    synth = sub.add_parser("synth", help="write a synthetic dataset in the ISIC layout")
    synth.add_argument("--out", required=True, type=Path, help="folder to write images/ and masks/ into")
    synth.add_argument("--n", type=int, default=200, help="number of pairs (default 200)")
    synth.add_argument("--size", type=int, default=256, help="image width in pixels (default 256)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    check = sub.add_parser("check", help="validate every pair of a dataset folder; exit 1 if any file is bad")
    check.add_argument("dir", type=Path, help="dataset folder (any layout, or train/val/test sub-folders)")
    check.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    fetch = sub.add_parser("download", help="download and extract a public dataset (resumable, verified)")
    fetch.add_argument("name", choices=sorted(download.REGISTRY))
    fetch.add_argument("--out", type=Path, default=None, help="parent folder (default: the course data folder)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m helpers.data``; returns the exit code (1 when ``check`` finds problems)."""
    args = _build_parser().parse_args(argv)
    if args.command == "synth":
        ids = synthetic.write_dataset(args.out, args.n, size=args.size, seed=args.seed)
        print(f"wrote {len(ids)} pairs to {args.out} (ISIC layout: images/ and masks/)")
        return 0
    if args.command == "check":
        report = checks.check_dataset(args.dir, progress=not args.no_progress)
        print(report.summary())
        return 0 if report.ok else 1
    folder = download.download_dataset(args.name, args.out if args.out is not None else config.data_dir())
    print(f"{args.name} ready in {folder}: use it with SKINSEG_DATA={folder}")
    return 0

