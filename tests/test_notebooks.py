"""Notebook hygiene: committed stripped, same opening everywhere, something real for nbval to check."""
import ast
import dataclasses
import importlib
import re
from pathlib import Path

import nbformat
import pytest

from helpers import config
from helpers.course import colab
from helpers.course.colab import notebook_paths
from helpers.course.exercises.base import STUB_MARKER

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
    assert book.cells[1].source == colab.badge_markdown(path.name), "run `python -m helpers.course sync`"
    assert book.cells[2].source == colab.setup_cell_source(), "run `python -m helpers.course sync`"


def test_has_parameters_cell_with_profile_picks(nb):
    path, book = nb
    params = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{path.name}: tag exactly one cell `parameters`"
    source = params[0].source
    assert "PROFILE = profiles.active()" in source and ("PROFILE.pick(" in source or "course_recipe(" in source), \
        f"{path.name}: the parameters cell uses the run profiles (PROFILE.pick(smoke=..., cpu=..., gpu=...))"


def test_checks_something_and_saves_figures(nb):
    path, book = nb
    code = "\n".join(c.source for c in book.cells if c.cell_type == "code")
    assert len(re.findall(r"^\s*assert ", code, flags=re.M)) >= 3, f"{path.name}: assert what must hold"
    assert "save_figure(" in code, f"{path.name}: save the figures it shows to figures/"
    assert "/work/" not in code and "C:\\" not in code, f"{path.name}: no machine-specific paths"


def _headings(book) -> list[str]:
    """The notebook's level-2 headings (``## ...``), in order."""
    return [line[3:].strip() for c in book.cells if c.cell_type == "markdown"
            for line in c.source.splitlines() if line.startswith("## ")]


def test_ends_with_recap_exercises_questions_further_reading(nb):
    path, book = nb
    headings = [h for h in _headings(book) if h != "Further research"]  # optional, right after the questions
    assert headings[-4:] == ["Recap", "Exercises", "Questions", "Further reading"], \
        f"{path.name}: end with ## Recap, ## Exercises, ## Questions, ## Further reading (in this order)"
    if "Further research" in _headings(book):
        assert _headings(book)[-3:] == ["Questions", "Further research", "Further reading"], \
            f"{path.name}: ## Further research sits between ## Questions and ## Further reading"
    questions = next(c.source for c in book.cells if c.source.startswith("## Questions"))
    count = len(re.findall(r"^\d+\. ", questions, flags=re.M))
    assert 6 <= count <= 10, f"{path.name}: {count} questions; ask 6-10"
    reading = next(c.source for c in book.cells if c.source.startswith("## Further reading"))
    assert len(re.findall(r"\]\(https://", reading)) >= 2, f"{path.name}: link the papers the notebook uses"
    assert book.cells[-1].source == reading, f"{path.name}: Further reading is the last cell"


def _is_stub(fn: ast.FunctionDef) -> bool:
    """A stub's body: an optional docstring, `...`, then `raise NotImplementedError`."""
    body = fn.body[1:] if ast.get_docstring(fn) is not None else fn.body
    return (len(body) == 2 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and body[0].value.value is Ellipsis
            and isinstance(body[1], ast.Raise) and "NotImplementedError" in ast.unparse(body[1]))


def _exercise_module(path: Path):
    return importlib.import_module(f"helpers.course.exercises.nb{path.name[:2]}")


def test_exercises_are_stubs_with_checkers(nb):
    path, book = nb
    cells, module = book.cells, _exercise_module(path)
    stubs = [i for i, c in enumerate(cells) if "exercise" in c.metadata.get("tags", [])]
    assert 2 <= len(stubs) <= 4, f"{path.name}: 2-4 exercises, each a stub cell tagged `exercise`"
    assert len(stubs) == len(module.EXERCISES.solutions), f"{path.name}: one reference solution per exercise"
    for k, i in enumerate(stubs, start=1):
        functions = [n for n in ast.walk(ast.parse(cells[i].source)) if isinstance(n, ast.FunctionDef)]
        assert any(_is_stub(f) for f in functions), f"{path.name}: cell {i} is not a stub (`...`, raise NotImplementedError)"
        assert all(_is_stub(f) or f.name == "__init__" for f in functions), f"{path.name}: cell {i} holds an answer"
        assert STUB_MARKER in cells[i].source
        following = cells[i + 1]
        assert following.cell_type == "code" and f"nb{path.name[:2]}.check_" in following.source, \
            f"{path.name}: the cell after stub cell {i} must call a helpers.course.exercises.nb{path.name[:2]} checker"
        prompt = cells[i - 1]
        assert prompt.cell_type == "markdown" and f"nb{path.name[:2]}.show_solution({k})" in prompt.source, \
            f"{path.name}: the prompt of exercise {k} says `nb{path.name[:2]}.show_solution({k})` shows a solution"


def _unparsed(source: str) -> str:
    """A code cell's source as Python re-prints it (comments dropped); cells that are not Python stay as they are."""
    try:
        return ast.unparse(ast.parse(source))
    except SyntaxError:
        return source


def _normalised(source: str) -> str:
    return re.sub(r"\s+", " ", source).strip()


def test_no_code_cell_holds_a_reference_solution(nb):
    path, book = nb
    module = _exercise_module(path)
    assert not [c for c in book.cells if "solution" in c.metadata.get("tags", [])], f"{path.name}: no solution cells"
    code = _normalised("\n".join(_unparsed(c.source) for c in book.cells if c.cell_type == "code"))
    for k in module.EXERCISES.solutions:
        tree = ast.parse(module.EXERCISES.solution_source(k))
        target = tree.body[0]
        bodies = [f for f in ast.walk(target) if isinstance(f, ast.FunctionDef) and f.name != "__init__"]
        for fn in bodies:
            body = fn.body[1:] if ast.get_docstring(fn) is not None else fn.body
            text = _normalised("\n".join(ast.unparse(stmt) for stmt in body))
            assert text not in code, f"{path.name}: a code cell holds the reference solution of exercise {k}"


def test_cells_are_short(nb):
    path, book = nb
    long = [(i, len(c.source.splitlines())) for i, c in enumerate(book.cells)
            if c.cell_type == "code" and len(c.source.splitlines()) > 25 and i != 2]
    assert not long, f"{path.name}: split long code cells {long}"


def _parameter_values(number: str, profile: str, monkeypatch) -> dict:
    """Execute one notebook's parameters cell under ``profile`` and return its names."""
    path = next(p for p in NOTEBOOKS if p.name.startswith(number))
    cell = next(c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    monkeypatch.setenv(config.PROFILE_ENV, profile)
    namespace: dict = {}
    prelude = ("from pathlib import Path\nfrom helpers import config\nfrom helpers.course import profiles\n"
               "from helpers.evaluation import metrics\n")
    exec(prelude + cell.source, namespace)
    return namespace


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_notebooks_05_and_06_train_or_load_notebook04s_runs(profile, monkeypatch, capsys):
    """05 and 06 hand train_or_load notebook 04's configs (same run folder runs/04_<model>), so they reuse its runs."""
    from helpers.course import profiles
    nb04, nb05, nb06 = (_parameter_values(n, profile, monkeypatch) for n in ("04", "05", "06"))
    expected = {name: profiles.course_recipe(name, profiles.active(profile)) for name in profiles.RECIPE_MODELS}
    assert nb04["RECIPE"] == expected and nb06["RECIPE"] == expected
    assert nb05["RECIPE"] == expected["resnet_unet_aspp"]
    assert nb05["RUN_DIR"] == config.runs_dir() / "04_resnet_unet_aspp"
    code = {n: "\n".join(c.source for c in nbformat.read(p, as_version=4).cells if c.cell_type == "code")
            for n, p in ((p.name[:2], p) for p in NOTEBOOKS)}
    assert "train_or_load(RECIPE, " in code["05"]
    assert all(f'train_or_load(RECIPE["{name}"], ' in code["06"] for name in profiles.RECIPE_MODELS)
    # Notebook 04 trains with recipe(): the course recipe with its parameters cell's values, so by default
    # exactly what 05 and 06 reuse, and a value a learner edits there reaches the run.
    source = next(c.source for c in nbformat.read(next(p for p in NOTEBOOKS if p.name.startswith("04")), as_version=4).cells if "def recipe(" in c.source)
    (definition,) = [n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == "recipe"]
    exec("import dataclasses\nfrom helpers.train.loop import TrainConfig\n" + ast.unparse(definition), nb04)
    for name in profiles.RECIPE_MODELS:
        assert nb04["recipe"](name) == dataclasses.replace(expected[name], resume=nb04["RESUME"])
        assert f'recipe("{name}")' in code["04"]
    nb04["EPOCHS"] = 7
    assert nb04["recipe"]("se_unet").epochs == 7 and nb04["recipe"]("se_unet", epochs=3).epochs == 3


#: The notebooks whose questions have answers one click away (``nbNN.show_answer(K)``) and further-research prompts.
ANSWERED = ("01", "02", "03", "04", "05", "06", "07")


@pytest.mark.parametrize("number", ANSWERED)
def test_every_question_has_an_answer_one_click_away_and_research_prompts(number, capsys):
    path = next(p for p in notebook_paths() if p.name.startswith(number))
    book = nbformat.read(path, as_version=4)
    module = importlib.import_module(f"helpers.course.exercises.nb{number}")
    questions = next(c.source for c in book.cells if c.source.startswith("## Questions"))
    numbers = [int(n) for n in re.findall(r"^(\d+)\. ", questions, flags=re.M)]
    assert sorted(module.EXERCISES.question_answers) == numbers, f"{path.name}: one answer per question"
    assert f"nb{number}.show_answer(K)" in questions, f"{path.name}: the questions say how to see an answer"
    for k in numbers:
        module.show_answer(k)
        out = capsys.readouterr().out
        assert out.startswith(f"# Notebook {number}, question {k}\n\n") and len(out.splitlines()[2]) > 20
    code = "\n".join(c.source for c in book.cells if c.cell_type == "code")
    assert "show_answer(" not in code, f"{path.name}: no cell that Run All executes shows an answer"
    research = next(c.source for c in book.cells if c.source.startswith("## Further research"))
    assert 1 <= len(re.findall(r"^\d+\. ", research, flags=re.M)) <= 2, f"{path.name}: one or two open prompts"
