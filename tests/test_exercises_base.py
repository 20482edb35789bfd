"""The exercise machinery: a stub is reported, not raised; wrong answers still fail; solutions print."""
import pytest

from helpers.exercises.base import STUB_MARKER, Exercises

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


def test_stub_marker_is_the_convention():
    assert STUB_MARKER == "...  # your code here"
