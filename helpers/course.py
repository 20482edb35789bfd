"""Run the whole course headless: ``python -m helpers.course``.

Executes every ``notebooks/NN_*.ipynb`` in order with nbclient, in smoke mode unless ``--full`` is given,
writes the executed copies to ``runs/executed/`` (not tracked by git) and the figures to ``figures/``,
and prints each notebook's wall time. ``python -m helpers.course strip`` removes outputs and execution
counts from the notebooks in place (the form they are committed in).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import config
from .colab import notebook_paths


def strip_notebook(path: Path) -> bool:
    """Remove outputs, execution counts and run metadata from one notebook in place; True if it changed."""
    import nbformat

    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in ("execution", "collapsed", "scrolled", "ExecuteTime"):
            cell.metadata.pop(key, None)
    nb.metadata.pop("widgets", None)
    new = nbformat.writes(nb) + "\n"
    if new != text:
        path.write_text(new, encoding="utf-8")
        return True
    return False


def run_notebook(path: Path, out_dir: Path, *, timeout: int = 1800, kernel: str = "python3") -> float:
    """Execute ``path`` with its folder as working directory, save the executed copy in ``out_dir``.

    Returns:
        Wall time in seconds.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell failed; the message shows the cell and traceback.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    try:
        client.execute()
    finally:
        out_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out_dir / path.name)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.course", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="run", choices=["run", "strip", "list"])
    parser.add_argument("--full", action="store_true", help="run the full recipe instead of smoke mode")
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

    os.environ["SKINSEG_SMOKE"] = "0" if args.full else "1"
    os.environ.setdefault("MPLBACKEND", "Agg")
    out_dir = args.out or (config.runs_dir() / "executed")
    mode = "full recipe" if args.full else "smoke mode"
    print(f"Running {len(paths)} notebooks in {mode}; executed copies -> {out_dir}")
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


if __name__ == "__main__":
    raise SystemExit(main())
