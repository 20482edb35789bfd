"""Pytest configuration shared by unit tests and the nbval notebook run.

Smoke mode (``SKINSEG_SMOKE=1``) shrinks data, image size and epochs so every notebook runs on two CPU
cores; it is set here, before any notebook kernel starts, so kernels inherit it. Set ``SKINSEG_SMOKE=0``
(or ``SKINSEG_PROFILE=cpu``) in the environment to run the notebooks' bigger profiles under pytest instead.

Real images: tests that need the real ISIC folder take the ``real_data_dir`` fixture. It is
``$SKINSEG_REAL_DATA`` when set, else ``<repository root>/../shared/data/isic-real`` when that folder exists;
otherwise the test is skipped with a reason naming both. Tests that need HAM10000 in its own layout take
``ham_data_dir``: ``$SKINSEG_HAM_DATA``, else ``../shared/data/ham10000-small``, by the same rules.
"""
import os
from pathlib import Path

import pytest

os.environ.setdefault("SKINSEG_SMOKE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

#: Environment variable naming a folder of real images (``train/ val/`` sub-folders) for the real-data tests.
REAL_DATA_ENV = "SKINSEG_REAL_DATA"
#: Where the real-data tests look when the variable is unset, relative to the repository root.
REAL_DATA_DEFAULT = Path("..") / "shared" / "data" / "isic-real"
#: The same two for HAM10000 in its own Dataverse layout (images, masks, HAM10000_metadata.csv with lesion_id).
HAM_DATA_ENV = "SKINSEG_HAM_DATA"
HAM_DATA_DEFAULT = Path("..") / "shared" / "data" / "ham10000-small"
_ROOT = Path(__file__).resolve().parent


def _find(env_name: str, default_path: Path, what: str, expects: str) -> tuple[Path | None, str]:
    env = os.environ.get(env_name)
    if env:
        path = Path(env).expanduser().resolve()
        if not path.is_dir():
            raise FileNotFoundError(f"{env_name}={env!r} is not a folder: point it at the {what} folder "
                                    f"({expects}) or unset it")
        return path, ""
    default = (_ROOT / default_path).resolve()
    if default.is_dir():
        return default, ""
    return None, (f"{what} not found: {env_name} is unset and {default} does not exist; "
                  f"set {env_name}=<{expects}> to run this test")


def find_real_data() -> tuple[Path | None, str]:
    """``(folder, "")`` for the real images, or ``(None, why not)``.

    Raises:
        FileNotFoundError: ``SKINSEG_REAL_DATA`` is set but names no folder (a typo must not pass as a skip).
    """
    return _find(REAL_DATA_ENV, REAL_DATA_DEFAULT, "real ISIC images", "folder with train/ and val/")


def find_ham_data() -> tuple[Path | None, str]:
    """``(folder, "")`` for HAM10000 in its own layout, or ``(None, why not)``; raises like :func:`find_real_data`."""
    return _find(HAM_DATA_ENV, HAM_DATA_DEFAULT, "HAM10000 images", "folder with HAM10000_metadata.csv")


def _folder_or_skip(found: tuple[Path | None, str]) -> Path:
    path, why = found
    if path is None:
        pytest.skip(why)
    return path


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real ISIC folder (``train/ val/ holdout/``); skips the test, saying where it looked, when absent."""
    return _folder_or_skip(find_real_data())


@pytest.fixture(scope="session")
def ham_data_dir() -> Path:
    """HAM10000 in its own layout (four clinics, ``lesion_id``); skips, saying where it looked, when absent."""
    return _folder_or_skip(find_ham_data())
