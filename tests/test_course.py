"""helpers.course: the headless runner executes notebooks and strips them for committing."""
import nbformat
import pytest

from helpers import course


def _notebook(tmp_path, *sources):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "01_tiny.ipynb"
    nbformat.write(nb, path)
    return path


def test_run_then_strip_roundtrip(tmp_path):
    path = _notebook(tmp_path, "import os\nprint(os.environ.get('SKINSEG_SMOKE'))", "x = 6 * 7\nx")
    out = tmp_path / "executed"
    seconds = course.run_notebook(path, out)
    assert seconds > 0
    executed = nbformat.read(out / path.name, as_version=4)
    assert executed.cells[1].outputs[0]["data"]["text/plain"] == "42"
    assert executed.cells[0].execution_count == 1
    copy = tmp_path / "copy.ipynb"
    copy.write_text((out / path.name).read_text())
    assert course.strip_notebook(copy) is True
    stripped = nbformat.read(copy, as_version=4)
    assert all(c.outputs == [] and c.execution_count is None for c in stripped.cells)
    assert course.strip_notebook(copy) is False


def test_failing_cell_raises_and_keeps_partial_copy(tmp_path):
    from nbclient.exceptions import CellExecutionError

    path = _notebook(tmp_path, "a = 1", "assert a == 2, 'a must be 2'")
    with pytest.raises(CellExecutionError, match="a must be 2"):
        course.run_notebook(path, tmp_path / "executed")
    assert (tmp_path / "executed" / path.name).exists()
