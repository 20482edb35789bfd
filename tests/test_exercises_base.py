"""The exercise machinery: a stub is reported, not raised; wrong answers still fail; solutions print."""
import __future__

import ast
import inspect
import re

import nbformat
import numpy as np
import pytest
import torch

from helpers.course.colab import notebook_paths
from helpers.course.exercises.base import STUB_MARKER, ExerciseFailed, Exercises

EX = Exercises("99")


@EX.solution(1)
def double(x: int) -> int:
    """Reference: twice x."""
    return 2 * x


@EX.checker(1, "write double(x) returning 2 * x")
def check_double(fn) -> None:
    assert fn(3) == 6, f"double(3) returned {fn(3)}, expected 6"
    EX.passed(1, "2 * x")


def stub(x: int) -> int:
    """The learner's cell as shipped."""
    ...  # your code here
    raise NotImplementedError


def test_stub_is_reported_in_one_line_without_raising(capsys):
    assert check_double(stub) is None
    assert capsys.readouterr().out == "exercise 1 not attempted yet: write double(x) returning 2 * x\n"


def test_wrong_answer_still_raises_its_hint(capsys):
    with pytest.raises(AssertionError, match="returned 4, expected 6"):
        check_double(lambda x: x + 1)
    assert "not attempted" not in capsys.readouterr().out


def test_right_answer_passes(capsys):
    check_double(double)
    assert capsys.readouterr().out == "exercise 1 passed: 2 * x\n"


def test_show_solution_prints_source_without_the_decorator(capsys):
    EX.show_solution(1)
    out = capsys.readouterr().out
    assert "def double(x: int) -> int:" in out and "return 2 * x" in out and "@EX" not in out
    namespace: dict = {}
    exec(EX.solution_source(1), namespace)  # the printed source runs as pasted
    assert namespace["double"](5) == 10


def test_unknown_exercise_and_duplicate_solution():
    with pytest.raises(KeyError, match=r"exercises are \[1\]"):
        EX.show_solution(7)
    with pytest.raises(ValueError, match="already"):
        EX.solution(1)(double)


def _stub_body(indent: str) -> str:
    """What :data:`STUB_MARKER` says a stub's body is: the marker, then ``raise NotImplementedError``."""
    return f"{indent}{STUB_MARKER}\n{indent}raise NotImplementedError"


def test_a_stub_written_with_the_marker_is_reported_not_attempted(capsys):
    namespace: dict = {}
    exec(f"def double(x):\n{_stub_body('    ')}\n", namespace)  # the marker is a statement a stub can hold
    assert check_double(namespace["double"]) is None
    assert capsys.readouterr().out == "exercise 1 not attempted yet: write double(x) returning 2 * x\n"


def _stub_functions(source: str) -> list[tuple[str, str | None]]:
    """``(function, class or None)`` of every function and method in a cell that holds the stub body."""
    found = []
    for node in ast.parse(source).body:
        methods = [(m, node.name) for m in node.body if isinstance(m, ast.FunctionDef)] \
            if isinstance(node, ast.ClassDef) else [(node, None)] if isinstance(node, ast.FunctionDef) else []
        found += [(fn.name, owner) for fn, owner in methods
                  if isinstance(fn.body[-1], ast.Raise) and "NotImplementedError" in ast.unparse(fn.body[-1])]
    return found


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.name[:2])
def test_every_notebook_stub_uses_the_marker_and_is_reported_not_attempted(path, capsys):
    """Each exercise cell's stubs end with the marker then the raise, and a checker reports them unattempted."""
    cells = [c.source for c in nbformat.read(path, as_version=4).cells if "exercise" in c.metadata.get("tags", [])]
    assert cells, f"{path.name} has no cell tagged `exercise`"
    for source in cells:
        stubs = _stub_functions(source)
        bodies = re.findall(rf"^(\s+){re.escape(STUB_MARKER)}\n\1raise NotImplementedError$", source, flags=re.M)
        assert stubs and len(bodies) == len(stubs), f"{path.name}: a stub without `{_stub_body('')}`:\n{source}"
        namespace = {"np": np, "torch": torch, "nn": torch.nn}
        exec(compile(source, path.name, "exec", flags=__future__.annotations.compiler_flag, dont_inherit=True), namespace)
        for name, owner in stubs:
            fn = getattr(namespace[owner], name) if owner else namespace[name]
            arguments = [None] * len(inspect.signature(fn).parameters)
            report = EX.checker(1, f"write {name}")(lambda fn=fn, arguments=arguments: fn(*arguments))
            assert report() is None, f"{path.name}: {name} returned instead of raising NotImplementedError"
            assert capsys.readouterr().out == f"exercise 1 not attempted yet: write {name}\n"


def test_a_wrong_answer_renders_as_one_line_in_ipython():
    """IPython shows ExerciseFailed through _render_traceback_: one line, no checker source, no other hints."""
    import contextlib
    import io

    from IPython.core.interactiveshell import InteractiveShell

    from helpers.course.exercises import nb02, nb06

    shell = InteractiveShell.instance()
    shell.user_ns.update(nb02=nb02, nb06=nb06, np=np, check_box=EX.checker(2, "box")(lambda fn: fn(np.zeros(3))))
    # a learner's cell: crashes on its third line when the mask is empty
    shell.run_cell("def box(mask):\n    rows = np.flatnonzero(mask)\n    return rows[0]\n")
    for cell, message in [("nb02.check_bottleneck_rf(lambda depth: 7)",
                           "ExerciseFailed: exercise 2 not passed yet: depth=1: you returned 7, expected 14. Start "
                           "from r=1, j=1; for each layer r <- r + (k - 1) * j, then j <- j * stride"),
                          ("check_box(box)", "ExerciseFailed: exercise 2 not passed yet: your code raised "
                                              "IndexError: index 0 is out of bounds for axis 0 with size 0 "
                                              "(in box, line 3: return rows[0])")]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            result = shell.run_cell(cell)
        assert isinstance(result.error_in_exec, ExerciseFailed)
        assert out.getvalue() == message + "\n"  # one line: no traceback through base.py or the checker


def test_a_crash_inside_the_checker_names_the_answer_not_the_learner():
    from helpers.course.exercises import nb01

    with pytest.raises(ExerciseFailed, match=r"^exercise 2 not passed yet: checking your answer raised TypeError"):
        nb01.check_pos_weight(lambda masks: (1.0, 2.0))  # a pair: the checker's float() cannot take it
    with pytest.raises(ExerciseFailed) as failed:
        check_double(lambda x: x + 1)
    assert failed.value.number == 1 and failed.value.__cause__ is None  # the checker's own frames are not chained


def test_answers_print_wrapped_and_unknown_questions_name_the_known_ones(capsys):
    book = Exercises("98")
    book.answers({1: "Dice   counts the overlap\n twice. " * 12, 2: "Two."})
    book.show_answer(1)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "# Notebook 98, question 1" and all(len(line) <= 110 for line in lines)
    assert " ".join(lines[2:]).startswith("Dice counts the overlap twice. Dice")  # whitespace normalised
    with pytest.raises(KeyError, match=r"questions are \[1, 2\]"):
        book.show_answer(3)
    with pytest.raises(ValueError, match="already has an answer"):
        book.answers({2: "again"})
