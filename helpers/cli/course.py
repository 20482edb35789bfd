"""``python -m helpers.course``: run notebooks 01-06 headless and print the times; strip, list or sync them.

A thin layer over :mod:`helpers.course.runner` (executing and stripping notebooks) and
:func:`helpers.course.colab.sync_notebook` (each notebook's Open-in-Colab badge and setup cell)::

    python -m helpers.course                   # smoke profile, every notebook
    python -m helpers.course --full --only 04  # the profile this machine gets (cpu or gpu)
    python -m helpers.course strip             # outputs removed: the form notebooks are committed in
    python -m helpers.course sync              # rewrite every badge and setup cell from helpers.course.colab
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from helpers import config
from helpers.course.colab import notebook_paths, sync_notebook
from helpers.course.runner import choose_profile, pin_data_folder, run_notebook, strip_notebook


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 a notebook failed, 2 bad arguments)."""
    parser = argparse.ArgumentParser(prog="python -m helpers.course", description="Run the whole course headless, or strip, list or sync its notebooks.")
    parser.add_argument("command", nargs="?", default="run", choices=["run", "strip", "list", "sync"],
                        help="run (default) the notebooks; strip their outputs; list them; sync their badge and setup cell")
    parser.add_argument("--full", action="store_true",
                        help="run in the profile this machine gets (cpu, or gpu with a GPU) instead of smoke")
    parser.add_argument("--profile", choices=config.PROFILE_NAMES, default=None,
                        help="force a run profile (sets SKINSEG_PROFILE for the notebooks)")
    parser.add_argument("--only", nargs="*", default=None, help="notebook name prefixes to run, e.g. 01 04")
    parser.add_argument("--out", type=Path, default=None, help="folder for executed notebooks")
    args = parser.parse_args(argv)

    paths = notebook_paths()
    if args.only:
        paths = [p for p in paths if any(p.name.startswith(o) for o in args.only)]
    if not paths:
        print("no notebooks matched", file=sys.stderr)
        return 2
    if args.command == "list":
        for p in paths:
            print(p.name)
        return 0
    if args.command == "strip":
        for p in paths:
            print(f"{'stripped' if strip_notebook(p) else 'clean'}: {p.name}")
        return 0
    if args.command == "sync":
        for p in paths:
            print(f"{'updated' if sync_notebook(p) else 'unchanged'}: {p.name}")
        return 0

    try:
        profile = choose_profile(full=args.full, forced=args.profile)
    except ValueError as err:  # SKINSEG_PROFILE names no profile
        print(f"error: {err}", file=sys.stderr)
        return 2
    os.environ.setdefault("MPLBACKEND", "Agg")
    out_dir = args.out or (config.runs_dir() / "executed")
    data = pin_data_folder() or "the synthetic set"
    print(f"Running {len(paths)} notebooks in the {profile.name} run profile ({profile.reason}) on {data}; "
          f"executed copies -> {out_dir}")
    times: list[tuple[str, float]] = []
    for p in paths:
        try:
            seconds = run_notebook(p, out_dir)
        except Exception as exc:  # report which notebook failed, then the cell's own error
            print(f"  {p.name} FAILED\n{exc}", file=sys.stderr)
            print(f"The partly executed copy is {out_dir / p.name}", file=sys.stderr)
            return 1
        times.append((p.name, seconds))
        print(f"  {p.name:<36} {seconds:6.1f} s", flush=True)
    print(f"Total {sum(t for _, t in times):.1f} s. Figures -> {config.figures_dir()}")
    return 0


