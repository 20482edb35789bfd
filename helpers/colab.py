"""The notebooks' shared opening: Open-in-Colab badge and a Colab-aware setup cell.

Every notebook starts with the same two cells, kept identical by ``python -m helpers.colab sync``:

1. a markdown cell holding the Open-in-Colab badge (address from :data:`helpers.config.REPO_URL`);
2. the setup cell (:func:`setup_cell_source`). On Google Colab (``google.colab`` already imported, as
   Colab's kernel does at start) and only when the
   ``helpers`` package is missing, it clones the course repository, installs what Colab lacks and the
   package itself, then calls :func:`setup`. Locally it only imports and calls :func:`setup`.

A fork changes ``REPO_URL`` in ``helpers/config.py`` and the README, then runs
``python -m helpers.colab sync`` to rewrite the badges and setup cells of all notebooks.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path
from typing import Any

from . import config

#: Marker on the first line of the setup cell; ``sync`` finds the cell by it.
SETUP_MARKER = "# Setup (Colab-aware)"
BADGE_MARKER = "<!-- colab-badge -->"
#: What Colab lacks; everything else the course needs (torch, albumentations, seaborn, ...) is preinstalled.
COLAB_EXTRA_PACKAGES = ("segmentation-models-pytorch",)
CLONE_DIR = "/content/skinseg"

SETUP_TEMPLATE = '''{marker}: on Google Colab this installs what Colab lacks; locally it only imports.
import importlib.util, os, subprocess, sys
if "google.colab" in sys.modules and importlib.util.find_spec("helpers") is None:
    if not os.path.isdir("{clone}"):
        subprocess.run(["git", "clone", "--depth", "1", "--branch", "{branch}", "{repo}", "{clone}"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", {packages}], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", "{clone}"], check=True)
    sys.path.insert(0, "{clone}")
    os.chdir("{clone}/notebooks")
from helpers import colab
DOWNLOAD = None  # on Colab: "ham10000" or "isic2018" downloads the real data and uses it everywhere
DEVICE = colab.setup(download=DOWNLOAD)'''


def setup_cell_source(repo_url: str = config.REPO_URL, branch: str = config.REPO_BRANCH) -> str:
    """The exact source of the notebooks' setup cell for ``repo_url`` at ``branch``."""
    packages = ", ".join(f'"{p}"' for p in COLAB_EXTRA_PACKAGES)
    return SETUP_TEMPLATE.format(marker=SETUP_MARKER, clone=CLONE_DIR, branch=branch, repo=repo_url,
                                 packages=packages)


def badge_markdown(notebook: str) -> str:
    """Markdown for the Open-in-Colab badge of ``notebooks/<notebook>``."""
    url = config.colab_url(notebook)
    return (f"{BADGE_MARKER}\n[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})")


def in_colab() -> bool:
    """True when running inside Google Colab, whose kernel imports ``google.colab`` at start."""
    return "google.colab" in sys.modules


def setup(download: str | None = None, *, verbose: bool = True) -> Any:
    """Pick the device, report the environment and, on request, fetch a real dataset.

    Args:
        download: ``None`` (use ``SKINSEG_DATA`` or the embedded synthetic data), ``"ham10000"`` or
            ``"isic2018"``: download that dataset (cached, resumable) and set ``SKINSEG_DATA`` to it so
            every later call of :func:`helpers.data.course_splits` uses it.
        verbose: print one line per fact.

    Returns:
        The ``torch.device`` the notebook should use (CUDA, then Apple MPS, then CPU).
    """
    import torch

    from .runtime import select_device

    device = select_device()
    if download is not None:
        from .download import download_dataset

        root = download_dataset(download, config.data_dir())
        os.environ["SKINSEG_DATA"] = str(root)
    if verbose:
        print(f"python {platform.python_version()} | torch {torch.__version__} | device {device}"
              f" | smoke mode {'ON' if config.smoke_mode() else 'off'} | colab {in_colab()}")
        print(f"data: {config.user_data_dir() or 'embedded synthetic dermoscopy set'}")
        if in_colab() and device.type != "cuda":
            print("No GPU: in Colab choose Runtime > Change runtime type > GPU, then run again.")
    return device


def sync_notebook(path: Path) -> bool:
    """Rewrite the badge and setup cell of one notebook to the canonical ones; True if it changed.

    The badge goes in a markdown cell right after the title cell (marked by ``BADGE_MARKER``); the setup
    cell is the code cell whose source starts with ``SETUP_MARKER`` (inserted after the badge if absent).
    """
    import nbformat

    before = path.read_text(encoding="utf-8")
    nb = nbformat.reads(before, as_version=4)
    badge = badge_markdown(path.name)
    setup_src = setup_cell_source()
    badge_idx = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and BADGE_MARKER in c.source),
                     None)
    if badge_idx is None:
        nb.cells.insert(1, nbformat.v4.new_markdown_cell(badge))
        badge_idx = 1
    else:
        nb.cells[badge_idx].source = badge
    setup_idx = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"
                      and c.source.startswith(SETUP_MARKER)), None)
    if setup_idx is None:
        nb.cells.insert(badge_idx + 1, nbformat.v4.new_code_cell(setup_src))
    else:
        nb.cells[setup_idx].source = setup_src
    after = nbformat.writes(nb) + "\n"  # same form as `python -m helpers.course strip` writes
    if after != before:
        path.write_text(after, encoding="utf-8")
        return True
    return False


def notebook_paths() -> list[Path]:
    """The course notebooks, in order (``notebooks/NN_*.ipynb`` of the checkout)."""
    root = config.repo_root()
    if root is None:
        raise FileNotFoundError("helpers is not installed from a checkout: no notebooks/ folder to work on")
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers.colab sync``: rewrite every notebook's badge and setup cell."""
    parser = argparse.ArgumentParser(prog="python -m helpers.colab", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["sync"])
    args = parser.parse_args(argv)
    if args.command == "sync":
        for path in notebook_paths():
            print(f"{'updated' if sync_notebook(path) else 'unchanged'}: {path.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
