"""Paths, smoke mode and the repository address: the only settings the course reads from the environment.

Introduced in notebook 01, whose setup cell (like every notebook's) reports the data and runs folders it resolves.

Environment variables (all optional):

``SKINSEG_SMOKE``   ``1`` shrinks data, image size and epochs so the whole course runs on two CPU cores
                    in minutes (pytest and ``python -m helpers.course`` set it): the ``smoke`` run profile.
                    Unset or ``0``: the profile this machine gets (``cpu`` or ``gpu``, see
                    :mod:`helpers.course.profiles`).
``SKINSEG_PROFILE`` ``smoke``, ``cpu`` or ``gpu`` forces that run profile (and wins over ``SKINSEG_SMOKE``).
``SKINSEG_DATA``    a dataset folder in any supported layout (ISIC folder, official ISIC 2018, HAM10000,
                    or a folder with ``train/ val/ test|holdout/`` sub-folders). Unset: the embedded
                    synthetic dataset, generated on first use under ``data/``.
``SKINSEG_HOME``    where generated data, runs and figures go. Unset: the repository root when the
                    package sits in a checkout, else ``~/skinseg``.
``SKINSEG_RUNS``    where training runs go instead of ``<home>/runs`` (the Colab setup cell's ``USE_DRIVE``
                    sets it to a folder in Google Drive, so checkpoints outlive the runtime).

Nothing here changes global state on import.
"""
from __future__ import annotations

import os
from pathlib import Path

#: The course's public repository. Forks change this line and the README badge links; then
#: ``python -m helpers.course sync`` rewrites the badges and setup cells of every notebook.
REPO_URL = "https://github.com/skinseg-course/skin-lesion-segmentation"
#: Branch the Colab badges and the Colab setup cell use.
REPO_BRANCH = "main"

_PACKAGE_DIR = Path(__file__).resolve().parent


def _checkout_root() -> Path | None:
    """The repository root when ``helpers`` is imported from a checkout (editable install), else None."""
    root = _PACKAGE_DIR.parent
    if (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir():
        return root
    return None


#: The run profiles, smallest first (see :mod:`helpers.course.profiles`).
PROFILE_NAMES = ("smoke", "cpu", "gpu")
#: Environment variable that forces a run profile.
PROFILE_ENV = "SKINSEG_PROFILE"
#: Environment variable that switches smoke mode on (pytest and ``python -m helpers.course`` set it).
SMOKE_ENV = "SKINSEG_SMOKE"


def forced_profile() -> str | None:
    """The run profile ``SKINSEG_PROFILE`` forces (``"smoke"``, ``"cpu"`` or ``"gpu"``), or None when unset.

    Raises:
        ValueError: ``SKINSEG_PROFILE`` names no profile.
    """
    value = os.environ.get(PROFILE_ENV, "").strip().lower()
    if not value:
        return None
    if value not in PROFILE_NAMES:
        raise ValueError(f"{PROFILE_ENV}={os.environ[PROFILE_ENV]!r} is not a run profile: "
                         f"use one of {', '.join(PROFILE_NAMES)}, or unset it to let the machine choose.")
    return value


def smoke_requested() -> bool:
    """True when ``SKINSEG_SMOKE`` is set to a true value (``1``, ``true``, ``yes``, ``on``)."""
    return os.environ.get(SMOKE_ENV, "0").strip().lower() in {"1", "true", "yes", "on"}


def smoke_mode() -> bool:
    """True when the run profile is ``smoke``: ``SKINSEG_PROFILE=smoke``, or ``SKINSEG_SMOKE`` true and no profile forced.

    Raises:
        ValueError: ``SKINSEG_PROFILE`` names no profile.
    """
    forced = forced_profile()
    return forced == "smoke" if forced is not None else smoke_requested()


def home_dir() -> Path:
    """Root for generated data, runs and figures (``SKINSEG_HOME``, the checkout root, or ``~/skinseg``)."""
    env = os.environ.get("SKINSEG_HOME")
    if env:
        return Path(env).expanduser().resolve()
    return _checkout_root() or (Path.home() / "skinseg")


def repo_root() -> Path | None:
    """The repository checkout that holds ``notebooks/``, or None when installed without one."""
    return _checkout_root()


def data_dir() -> Path:
    """Folder for generated and downloaded datasets (``<home>/data``)."""
    return home_dir() / "data"


#: Environment variable that moves the runs folder (checkpoints, histories) away from ``<home>/runs``.
RUNS_ENV = "SKINSEG_RUNS"


def runs_dir() -> Path:
    """Folder for training runs, checkpoints and executed notebooks: ``SKINSEG_RUNS``, else ``<home>/runs``."""
    env = os.environ.get(RUNS_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return home_dir() / "runs"


def figures_dir() -> Path:
    """Folder every notebook saves its figures to (``<home>/figures``); created on demand."""
    path = home_dir() / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path


#: Environment variable naming the learner's dataset folder (unset: the embedded synthetic set).
DATA_ENV = "SKINSEG_DATA"


def user_data_dir() -> Path | None:
    """The dataset folder named by ``SKINSEG_DATA``, or None to use the embedded synthetic data.

    Raises:
        FileNotFoundError: ``SKINSEG_DATA`` is set but names no folder; the message names the variable, the
            folder and the fix (:func:`helpers.data.splits.resolve_dataset` raises it as a ``DatasetError``).
    """
    env = os.environ.get(DATA_ENV)
    if not env:
        return None
    path = Path(env).expanduser().resolve()
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "does not exist"
        raise FileNotFoundError(
            f"{DATA_ENV}={env!r} names no dataset folder: {path} {what}. Point {DATA_ENV} at a dataset folder "
            f"(check it with `python -m helpers.data check DIR`), or unset {DATA_ENV} to use the embedded "
            "synthetic data."
        )
    return path


def colab_url(notebook: str, repo_url: str = REPO_URL, branch: str = REPO_BRANCH) -> str:
    """The Open-in-Colab address of ``notebooks/<notebook>`` in the course repository."""
    if not repo_url.startswith("https://github.com/"):
        raise ValueError(f"REPO_URL must be a https://github.com/ address, got {repo_url!r}")
    slug = repo_url.removeprefix("https://github.com/").rstrip("/")
    return f"https://colab.research.google.com/github/{slug}/blob/{branch}/notebooks/{notebook}"
