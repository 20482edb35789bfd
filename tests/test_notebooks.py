"""Notebook hygiene: committed stripped, same opening everywhere, something real for nbval to check."""
import re
from pathlib import Path

import nbformat
import pytest

from helpers import colab
from helpers.colab import notebook_paths

NOTEBOOKS = notebook_paths()
IDS = [p.name for p in NOTEBOOKS]


def test_course_has_its_numbered_notebooks():
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert numbers[:1] == ["01"], "the course starts with 01_data_exploration.ipynb"


@pytest.fixture(params=NOTEBOOKS, ids=IDS)
def nb(request):
    return request.param, nbformat.read(request.param, as_version=4)


def test_outputs_are_stripped(nb):
    path, book = nb
    dirty = [i for i, c in enumerate(book.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; run `python -m helpers.course strip`"


def test_opening_is_title_badge_setup(nb):
    path, book = nb
    assert book.cells[0].cell_type == "markdown" and book.cells[0].source.startswith(f"# {path.name[:2]}")
    assert "Learning goals" in book.cells[0].source
    assert book.cells[1].source == colab.badge_markdown(path.name), "run `python -m helpers.colab sync`"
    assert book.cells[2].source == colab.setup_cell_source(), "run `python -m helpers.colab sync`"


def test_has_parameters_cell_with_smoke_override(nb):
    path, book = nb
    params = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{path.name}: tag exactly one cell `parameters`"
    assert "smoke_mode()" in params[0].source


def test_checks_something_and_saves_figures(nb):
    path, book = nb
    code = "\n".join(c.source for c in book.cells if c.cell_type == "code")
    assert len(re.findall(r"^\s*assert ", code, flags=re.M)) >= 3, f"{path.name}: assert what must hold"
    assert "save_figure(" in code, f"{path.name}: save the figures it shows to figures/"
    assert "/work/" not in code and "C:\\" not in code, f"{path.name}: no machine-specific paths"


def test_exercises_have_hidden_solutions_and_checkers(nb):
    path, book = nb
    cells = book.cells
    assert any(c.cell_type == "markdown" and c.source.startswith("## Exercises") for c in cells)
    solutions = [i for i, c in enumerate(cells) if "solution" in c.metadata.get("tags", [])]
    assert 2 <= len(solutions) <= 4, f"{path.name}: 2-4 exercises, each with a solution cell"
    for i in solutions:
        assert cells[i].metadata.get("jupyter", {}).get("source_hidden") is True
        following = cells[i + 1] if i + 1 < len(cells) else None
        assert following is not None and following.cell_type == "code" and "check_" in following.source, \
            f"{path.name}: the cell after solution cell {i} must call a helpers.exercises checker"


def test_cells_are_short(nb):
    path, book = nb
    long = [(i, len(c.source.splitlines())) for i, c in enumerate(book.cells)
            if c.cell_type == "code" and len(c.source.splitlines()) > 25 and i != 2]
    assert not long, f"{path.name}: split long code cells {long}"
