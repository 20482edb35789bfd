"""The Colab twin's own rules (tests/colab_twin): what it counts as a warning or a changed package, and its pins.

The twin itself (``bash tests/colab_twin/run.sh``, minutes and 6 GB) runs from ``.ci/run`` after pytest; these
tests check, in milliseconds, that its checks can fail.
"""
import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

from helpers.course import colab

TWIN = Path(__file__).resolve().parent / "colab_twin"


def _driver():
    spec = importlib.util.spec_from_file_location("colab_twin_drive", TWIN / "drive.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_changes_tells_added_from_changed_and_removed():
    drive = _driver()
    before = {"torch": "2.11.0", "numpy": "2.1.3", "ipywidgets": "7.7.1"}
    after = {"torch": "2.14.1", "numpy": "2.1.3", "segmentation-models-pytorch": "0.6.0"}
    assert drive.changes(before, after) == (["segmentation-models-pytorch"],
                                            ["ipywidgets 7.7.1 -> removed", "torch 2.11.0 -> 2.14.1"])
    assert drive.changes(before, dict(before)) == ([], [])


def _nb(*outputs):
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output(kind, **fields) for kind, fields in outputs]
    return nbformat.v4.new_notebook(cells=[cell])


@pytest.mark.parametrize("output, flagged", [
    (("stream", {"name": "stderr", "text": "anything on stderr\n"}), True),
    (("stream", {"name": "stdout", "text": "UserWarning: A new version of Albumentations is available\n"}), True),
    (("stream", {"name": "stdout", "text": "FutureWarning: `x` is deprecated\n"}), True),
    (("display_data", {"data": {"text/plain": "IProgress not found. Please update jupyter and ipywidgets."}}), True),
    (("stream", {"name": "stdout", "text": "val Dice 0.81 after epoch 2\n"}), False),
    (("stream", {"name": "stdout", "text": "exercise 2 not attempted yet: write calibration_error(...)\n"}), False),
    (("stream", {"name": "stderr",
                 "text": "WARNING: Location 'file:///opt/pypi/simple/torch/' is ignored: it is neither\n"}), False),
])
def test_what_reads_as_a_warning(output, flagged):
    drive = _driver()
    assert bool(drive.suspicious(drive.output_lines(_nb(output)))) is flagged


def test_the_twin_refuses_a_notebook_whose_setup_cell_is_stale(tmp_path):
    drive = _driver()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(colab.SETUP_MARKER + ": stale")])
    source = tmp_path / "09_x.ipynb"
    nbformat.write(nb, source)
    with pytest.raises(SystemExit, match="python -m helpers.course sync"):
        drive.twin_notebook(source, tmp_path / "out.ipynb", "new", colab.setup_cell_source(), use_drive=False)


def test_the_twin_clones_its_snapshot_and_turns_drive_on(tmp_path):
    drive = _driver()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(colab.setup_cell_source())])
    source = tmp_path / "04_x.ipynb"
    nbformat.write(nb, source)
    twin_src = colab.setup_cell_source(repo_url="file:///tmp/origin.git", clone_dir=str(tmp_path / "content/skinseg"))
    drive.twin_notebook(source, tmp_path / "out.ipynb", twin_src, colab.setup_cell_source(), use_drive=True)
    cell = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[0].source
    assert "file:///tmp/origin.git" in cell and str(tmp_path / "content/skinseg") in cell
    assert "USE_DRIVE = True" in cell and f'"{colab.CLONE_DIR}"' not in cell


def _pins(name: str) -> dict[str, str]:
    lines = (TWIN / name).read_text().splitlines()
    return dict(line.split("==", 1) for line in lines if line and not line.startswith("#"))


def test_the_twin_installs_colabs_versions_and_they_are_tested_ones():
    base, constraints = _pins("colab-base.txt"), _pins("colab-constraints.txt")
    for name in ("torch", "torchvision", "numpy", "albumentations", "ipywidgets", "ipython"):
        assert name in base
    for name, version in base.items():  # the base list never contradicts Colab's own list
        assert constraints.get(name, version) == version, name
    assert "segmentation-models-pytorch" not in base  # Colab lacks it: the setup cell must install it
    assert colab.untested_versions({k: base.get(k) for k in colab.TESTED_VERSIONS}) == []
    assert not [line for line in (TWIN / "colab-constraints.txt").read_text().splitlines() if not line.startswith("#")
                if re.search(r" @ |\+cu\d+", line)]  # nothing pip cannot take from an index
