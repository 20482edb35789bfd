"""Every notebook once more, in smoke mode, on real dermoscopy images instead of the synthetic set: the ISIC
layout (isic-real: train/val/holdout folders) and HAM10000's own layout (ham10000-small: one folder, four clinics,
``lesion_id`` groups for the split).

Runs only where the folder exists (``SKINSEG_REAL_DATA`` or ``../shared/data/isic-real``; ``SKINSEG_HAM_DATA`` or
``../shared/data/ham10000-small``; see the fixtures in the root conftest.py) and says plainly when it skips. Smoke
mode takes a small deterministic subset of each real split (:func:`helpers.data.course_splits`), so the whole
course runs in a few minutes on two CPU cores.
"""
from __future__ import annotations

import pytest

from helpers.course import runner
from helpers.course.colab import notebook_paths

NOTEBOOKS = notebook_paths()


@pytest.fixture(scope="module", params=["real_data_dir", "ham_data_dir"], ids=["isic-real", "ham10000-small"])
def real_course_env(request, tmp_path_factory):
    """Smoke mode on one real dataset, with runs, caches and figures in a temporary SKINSEG_HOME."""
    folder = request.getfixturevalue(request.param)
    home = tmp_path_factory.mktemp("real-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKINSEG_DATA", str(folder))
        mp.setenv("SKINSEG_SMOKE", "1")
        mp.delenv("SKINSEG_PROFILE", raising=False)
        mp.setenv("SKINSEG_HOME", str(home))
        mp.setenv("MPLBACKEND", "Agg")
        yield home


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_on_real_images(real_course_env, path):
    """The notebook runs top to bottom (its own asserts included) on the real images; 05 reuses 04's run."""
    out = real_course_env / "executed"
    runner.run_notebook(path, out, timeout=600)
    assert (out / path.name).is_file()
