"""The notebooks' shared opening: Open-in-Colab badge and a Colab-aware setup cell.

Notebook 01 is the first to open with them: every notebook starts with the same two cells, kept identical by ``python -m helpers.course sync``:

1. a markdown cell holding the Open-in-Colab badge (address from :data:`helpers.config.REPO_URL`);
2. the setup cell (:func:`setup_cell_source`). On Google Colab (``google.colab`` already imported, as
   Colab's kernel does at start) and only when the
   ``helpers`` package is missing, it clones the course repository, installs what Colab lacks and the
   package itself, then calls :func:`setup`. Locally it only imports and calls :func:`setup`.

A fork changes ``REPO_URL`` in ``helpers/config.py`` and the README, then runs
``python -m helpers.course sync`` to rewrite the badges and setup cells of all notebooks.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from helpers import config

#: Marker on the first line of the setup cell; ``sync`` finds the cell by it.
SETUP_MARKER = "# Setup (Colab-aware)"
BADGE_MARKER = "<!-- colab-badge -->"
#: What Colab lacks; everything else the course needs (torch, albumentations, seaborn, ...) is preinstalled.
#: Installed at the version range ``pyproject.toml`` allows, and only when the installed one is outside it.
COLAB_EXTRA_PACKAGES = ("segmentation-models-pytorch",)
#: Colab's working folder (``/content``) holds the clone and the Drive mount point;
#: ``SKINSEG_COLAB_ROOT`` moves it (the Colab twin, tests/colab_twin, runs outside a real Colab).
COLAB_ROOT_ENV = "SKINSEG_COLAB_ROOT"
CLONE_DIR = "/content/skinseg"
#: The folder inside Google Drive that keeps downloads and runs when the setup cell's ``USE_DRIVE`` is True.
DRIVE_FOLDER = "skinseg"
#: Versions the course is tested with, as ``[lowest, first untested)``: CI's pins (pyproject.toml) at the top,
#: the Colab twin's (tests/colab_twin: Colab's own stack) at the bottom. :func:`setup` warns outside them.
TESTED_VERSIONS = {
    "torch": ("2.11", "2.15"),
    "torchvision": ("0.26", "0.30"),
    "albumentations": ("2.0", "2.1"),
    "segmentation-models-pytorch": ("0.6", "0.7"),
}

SETUP_TEMPLATE = """{marker}: on Google Colab this installs what Colab lacks; locally it only imports.
DOWNLOAD = None    # "ham10000" or "isic2018": download that real dataset (once, cached) and use it here
USE_DRIVE = False  # Colab: keep downloads and training runs in your Google Drive, so they outlive the runtime
import importlib.util, os, subprocess, sys
if "google.colab" in sys.modules and importlib.util.find_spec("helpers") is None:
    if not os.path.isdir("{clone}"):
        done = subprocess.run(["git", "clone", "-q", "--depth", "1", "--branch", "{branch}", "{repo}", "{clone}"],
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError("Could not download the course from {repo} (git: " + done.stderr.strip()
                               + "). Fix: check that this runtime is online, then run this cell again.")
    sys.path.insert(0, "{clone}")
    from helpers.course import colab
    colab.install_missing("{clone}")
    os.chdir("{clone}/notebooks")
elif importlib.util.find_spec("helpers") is None:
    raise ModuleNotFoundError("The course's helpers package is not installed for this kernel (" + sys.executable
                              + "). Fix: at the repository root run  pip install -e '.[dev]'  with that Python, "
                              "then restart the kernel (or open the notebook in Colab).")
from helpers.course import colab
DEVICE = colab.setup(download=DOWNLOAD, drive=USE_DRIVE)"""


def setup_cell_source(repo_url: str = config.REPO_URL, branch: str = config.REPO_BRANCH,
                      clone_dir: str = CLONE_DIR) -> str:
    """The exact source of the notebooks' setup cell for ``repo_url`` at ``branch``, cloned into ``clone_dir``.

    The notebooks hold the defaults; the Colab twin (tests/colab_twin) asks for its own address and folder.
    """
    return SETUP_TEMPLATE.format(marker=SETUP_MARKER, clone=clone_dir, branch=branch, repo=repo_url)


def badge_markdown(notebook: str) -> str:
    """Markdown for the Open-in-Colab badge of ``notebooks/<notebook>``."""
    url = config.colab_url(notebook)
    return (f"{BADGE_MARKER}\n[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})")


def in_colab() -> bool:
    """True when running inside Google Colab, whose kernel imports ``google.colab`` at start."""
    return "google.colab" in sys.modules


def colab_root() -> Path:
    """Colab's working folder: ``/content``, or ``SKINSEG_COLAB_ROOT`` where the Colab twin puts it."""
    return Path(os.environ.get(COLAB_ROOT_ENV) or "/content")


class UntestedVersionWarning(UserWarning):
    """A package the course depends on is installed at a version no test has run with."""


def _installed_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def untested_versions(installed: Mapping[str, str | None] | None = None) -> list[str]:
    """One line for each package of :data:`TESTED_VERSIONS` installed at a version outside its tested range.

    Args:
        installed: package -> version (None: not installed); None reads this environment's versions.
    """
    from packaging.specifiers import SpecifierSet

    if installed is None:
        installed = {name: _installed_version(name) for name in TESTED_VERSIONS}
    lines = []
    for name, (low, high) in TESTED_VERSIONS.items():
        version = installed.get(name)
        if version is None:
            continue
        if not SpecifierSet(f">={low},<{high}").contains(version, prereleases=True):  # local tags (+cu128) ignored
            lines.append(f"{name} {version} is outside the versions this course is tested with "
                         f"(>={low},<{high}): if a cell fails, install a tested one with "
                         f"pip install \"{name}>={low},<{high}\" and restart the kernel.")
    return lines


def extra_requirements(checkout: str | os.PathLike[str]) -> list[str]:
    """The requirement strings of :data:`COLAB_EXTRA_PACKAGES` as ``pyproject.toml`` in ``checkout`` gives them."""
    import tomllib
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    path = Path(checkout) / "pyproject.toml"
    with open(path, "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    wanted = {canonicalize_name(n) for n in COLAB_EXTRA_PACKAGES}
    found = [d for d in deps if canonicalize_name(Requirement(d).name) in wanted]
    if len(found) != len(wanted):
        raise RuntimeError(f"{path} does not list every package of COLAB_EXTRA_PACKAGES {COLAB_EXTRA_PACKAGES} "
                           "in its dependencies: add the missing ones there (with their version range).")
    return found


def missing_requirements(requirements: Sequence[str]) -> list[str]:
    """The requirements that what is installed does not satisfy (absent, or at a version outside the range)."""
    from packaging.requirements import Requirement

    missing = []
    for text in requirements:
        req = Requirement(text)
        version = _installed_version(req.name)
        if version is None or not req.specifier.contains(version, prereleases=True):
            missing.append(text)
    return missing


def freeze_constraints() -> str:
    """``name==version`` for every installed distribution: a pip constraints file that lets pip add packages
    but change none of those installed."""
    from packaging.version import InvalidVersion, Version

    lines = {}
    for dist in importlib.metadata.distributions():
        name, version = dist.metadata["Name"], dist.version
        try:
            Version(version)
        except (InvalidVersion, TypeError):
            continue  # pip could not parse it either; such a package cannot take part in a resolution
        if name:
            lines[name.lower()] = f"{name}=={version}"
    return "\n".join(sorted(lines.values())) + "\n"


def _pip_install(args: Sequence[str], what: str) -> None:
    """Run ``python -m pip install -q ARGS``; on failure raise with pip's own last lines and the fix."""
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise RuntimeError(f"installing {what} failed:\n{tail}\nFix: Runtime > Restart session, then run this "
                           "cell again; if it fails again, report it with the lines above.")


def install_missing(checkout: str | os.PathLike[str], *, verbose: bool = True) -> list[str]:
    """Install what Colab lacks, then the course's package from ``checkout`` without its dependencies.

    Only the requirements of :data:`COLAB_EXTRA_PACKAGES` that the environment does not satisfy are installed,
    at the range ``pyproject.toml`` allows, with every installed package held at its version (a constraints
    file), so pip can add packages but never upgrade or downgrade torch, torchvision, numpy or the widget stack
    that Colab ships: a conflict fails here, with pip's message, instead of breaking the runtime.

    Returns:
        The requirements that were installed (empty when everything was already there).

    Raises:
        RuntimeError: pip failed (the message holds pip's last lines and what to do).
    """
    from packaging.requirements import Requirement

    todo = missing_requirements(extra_requirements(checkout))
    if todo:
        with tempfile.TemporaryDirectory(prefix="skinseg-pip-") as tmp:
            constraints = Path(tmp) / "installed.txt"
            constraints.write_text(freeze_constraints(), encoding="utf-8")
            _pip_install(["-c", str(constraints), *todo], " and ".join(todo))
    _pip_install(["--no-deps", "-e", str(checkout)], f"the course package from {checkout}")
    importlib.invalidate_caches()
    if verbose:
        names = [Requirement(r).name for r in todo]
        got = ", ".join(f"{name} {_installed_version(name)}" for name in names)
        print(f"installed what Colab lacks ({got or 'nothing was missing'}) and the course's helpers package;"
              " nothing that Colab ships was changed")
    return todo


def install_optional(extra: str, *, verbose: bool = True) -> list[str]:
    """Install the requirements of the optional extra ``extra`` (``pyproject.toml``) that are missing, holding
    every installed package at its version (as :func:`install_missing`): notebook 07 on Colab gets the ONNX
    packages of ``.[demo]`` and keeps Colab's gradio. Returns what it installed (empty when nothing was missing).

    Raises:
        RuntimeError: pip failed, or no checkout / no such extra.
    """
    import tomllib

    root = config.repo_root()
    if root is None:
        raise RuntimeError("helpers is not installed from a checkout: no pyproject.toml to read the extra from")
    with open(root / "pyproject.toml", "rb") as f:
        extras = tomllib.load(f)["project"].get("optional-dependencies", {})
    if extra not in extras:
        raise RuntimeError(f"pyproject.toml has no optional extra {extra!r}: it has {sorted(extras)}")
    todo = missing_requirements(extras[extra])
    if todo:
        with tempfile.TemporaryDirectory(prefix="skinseg-pip-") as tmp:
            constraints = Path(tmp) / "installed.txt"
            constraints.write_text(freeze_constraints(), encoding="utf-8")
            _pip_install(["-c", str(constraints), *todo], " and ".join(todo))
        importlib.invalidate_caches()
    if verbose:
        print(f"extra {extra!r}: " + (f"installed {', '.join(todo)}" if todo else "everything was already there"))
    return todo


def mount_drive() -> Path:
    """Mount Google Drive (Colab asks for permission) and return the course's folder in it, created if needed."""
    from google.colab import drive  # type: ignore[import-not-found]

    mount = colab_root() / "drive"
    drive.mount(str(mount))
    folder = mount / "MyDrive" / DRIVE_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _runs_note(drive: bool) -> str:
    """What happens to the runs folder when the runtime ends."""
    if in_colab():
        return (" (Google Drive: kept when the runtime is recycled)" if drive else
                " (this runtime's disk: lost when Colab recycles it; USE_DRIVE = True keeps runs in Google Drive)")
    return " (USE_DRIVE only applies on Colab)" if drive else ""


def setup(download: str | None = None, *, drive: bool = False, verbose: bool = True) -> Any:
    """Pick the device, report the environment and, on request, keep work in Drive and fetch a real dataset.

    Args:
        download: ``None`` (use ``SKINSEG_DATA`` or the embedded synthetic data), ``"ham10000"`` or
            ``"isic2018"``: download that dataset (cached, resumable) and set ``SKINSEG_DATA`` to it so
            every later call of :func:`helpers.data.course_splits` in this kernel uses it.
        drive: on Colab, mount Google Drive and keep the runs (``SKINSEG_RUNS``) and the downloaded archives in
            ``MyDrive/skinseg``; the archives are unpacked to the runtime's local disk (many small files on Drive
            are slow). A new runtime then finds notebook 04's checkpoints and unpacks the data without
            downloading it again. Ignored (with a note) outside Colab.
        verbose: print one line per fact.

    Returns:
        The ``torch.device`` the notebook should use (CUDA, then Apple MPS, then CPU).
    """
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # its update check at import needs the network
    import torch

    from helpers.runtime import select_device

    device = select_device()
    archives = None
    if drive and in_colab():
        folder = mount_drive()
        os.environ[config.RUNS_ENV] = str(folder / "runs")
        archives = folder / "archives"
    if download is not None:
        from helpers.data.download import download_dataset

        root = download_dataset(download, config.data_dir(),
                                archives=archives / download if archives is not None else None)
        os.environ["SKINSEG_DATA"] = str(root)
    for line in untested_versions():
        warnings.warn(line, UntestedVersionWarning, stacklevel=2)
    if verbose:
        print(f"python {platform.python_version()} | torch {torch.__version__} | device {device}"
              f" | smoke mode {'ON' if config.smoke_mode() else 'off'} | colab {in_colab()}")
        print(f"data: {config.user_data_dir() or 'embedded synthetic dermoscopy set'}")
        print(f"runs: {config.runs_dir()}{_runs_note(drive)}")
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
