"""Pytest configuration shared by unit tests and the nbval notebook run.

Smoke mode (``SKINSEG_SMOKE=1``) shrinks data, image size and epochs so every notebook runs on two CPU
cores; it is set here, before any notebook kernel starts, so kernels inherit it. Set ``SKINSEG_SMOKE=0``
(or ``SKINSEG_PROFILE=cpu``) in the environment to run the notebooks' bigger profiles under pytest instead.

Real images: tests that need the real ISIC folder take the ``real_data_dir`` fixture. It is
``$SKINSEG_REAL_DATA`` when set, else ``<repository root>/../shared/data/isic-real`` when that folder exists;
otherwise the test is skipped with a reason naming both.
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
_ROOT = Path(__file__).resolve().parent


def find_real_data() -> tuple[Path | None, str]:
    """``(folder, "")`` for the real images, or ``(None, why not)``.

    Raises:
        FileNotFoundError: ``SKINSEG_REAL_DATA`` is set but names no folder (a typo must not pass as a skip).
    """
    env = os.environ.get(REAL_DATA_ENV)
    if env:
        path = Path(env).expanduser().resolve()
        if not path.is_dir():
            raise FileNotFoundError(f"{REAL_DATA_ENV}={env!r} is not a folder: point it at the real ISIC folder "
                                    "(with train/ and val/) or unset it")
        return path, ""
    default = (_ROOT / REAL_DATA_DEFAULT).resolve()
    if default.is_dir():
        return default, ""
    return None, (f"real ISIC images not found: {REAL_DATA_ENV} is unset and {default} does not exist; "
                  f"set {REAL_DATA_ENV}=<folder with train/ and val/> to run this test")


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real ISIC folder (``train/ val/ holdout/``); skips the test, saying where it looked, when absent."""
    path, why = find_real_data()
    if path is None:
        pytest.skip(why)
    return path
