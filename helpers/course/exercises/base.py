"""What every notebook's exercises share (introduced in notebook 01): stubs, checkers, reference solutions.

The convention (docs/NOTEBOOKS.md):

* The learner's cell is a **stub**: a function (or class) with its signature and docstring whose body is
  ``...  # your code here`` then ``raise NotImplementedError``.
* The next cell calls a **checker**, ``nbNN.check_<name>(fn, ...)``. Given a stub (calling it raises
  ``NotImplementedError``) the checker prints one line, ``exercise K not attempted yet: <what to do>``, and
  returns without raising, so "Run All" completes. Given a wrong answer it raises :class:`ExerciseFailed` (an
  ``AssertionError``) naming the mistake, which Jupyter shows as one line, ``ExerciseFailed: exercise K not
  passed yet: <hint>``, not a traceback through the checker; an exception raised inside the learner's code
  becomes one such line too, naming the learner's function and line. Given a right one it prints
  ``exercise K passed: ...``.
* The **answers to the questions** at a notebook's end live beside them, registered with :meth:`Exercises.answers`;
  ``nbNN.show_answer(K)`` prints the answer to question K, one click away like the solutions.
* The **reference solution** lives once, in ``helpers/course/exercises/nbNN.py``, registered with
  :meth:`Exercises.solution`; ``nbNN.show_solution(K)`` prints its source, one click away from the learner and
  never in a cell that "Run All" executes.

A notebook's module creates one registry and decorates its checkers and solutions::

    EXERCISES = Exercises("01")
    show_solution = EXERCISES.show_solution

    @EXERCISES.solution(1)
    def lesion_box(mask): ...

    @EXERCISES.checker(1, "write lesion_box(mask) returning the lesion's bounding box")
    def check_lesion_box(fn): ...
        EXERCISES.passed(1, "mask[r0:r1, c0:c1] holds the whole lesion")
"""
from __future__ import annotations

import functools
import inspect
import re
import textwrap
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_SOLUTION_DECORATOR = re.compile(r"^\s*@\w+\.solution\(")
#: The line a stub's body holds before ``raise NotImplementedError``.
STUB_MARKER = "...  # your code here"


#: The folder of the checker modules: traceback frames outside it are the learner's code.
_EXERCISES_DIR = Path(__file__).resolve().parent


class ExerciseFailed(AssertionError):
    """A wrong answer to exercise ``number``: ``exercise K not passed yet: <hint>``.

    IPython renders an exception through its ``_render_traceback_`` method when it has one, so this shows as
    one line in Jupyter, without the traceback through :mod:`base` and the checker's source (whose other hints
    would give answers away). It is an ``AssertionError``, so ``pytest.raises(AssertionError)`` still holds.
    """

    def __init__(self, number: int, hint: str) -> None:
        super().__init__(f"exercise {number} not passed yet: {hint}")
        self.number, self.hint = number, hint

    def _render_traceback_(self) -> list[str]:
        """The lines IPython shows instead of a traceback: just the message."""
        return [f"ExerciseFailed: {self}"]


def crash_hint(err: BaseException) -> str:
    """One line for an exception raised while checking: the learner's line that raised it, when there is one.

    ``"your code raised IndexError: index 0 is out of bounds ... (in lesion_box, line 5: return rows[0])"``;
    when no frame of the traceback lies outside the checker modules, the checker could not use the answer
    (``"checking your answer raised TypeError: ..."``).
    """
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if not Path(f.filename).resolve().is_relative_to(_EXERCISES_DIR)]
    what = f"{type(err).__name__}: {err}"
    if not frames:
        return f"checking your answer raised {what}: is it the type and shape the exercise asks for?"
    last = frames[-1]
    line = f": {last.line.strip()}" if last.line else ""
    return f"your code raised {what} (in {last.name}, line {last.lineno}{line})"


def not_attempted_message(number: int, todo: str) -> str:
    """The one line a checker prints for an unattempted exercise: ``exercise K not attempted yet: <todo>``."""
    return f"exercise {number} not attempted yet: {todo}"


def passed_message(number: int, message: str) -> str:
    """The line a checker prints for a right answer: ``exercise K passed: <message>``."""
    return f"exercise {number} passed: {message}"


class Exercises:
    """The exercises of one notebook: its checkers (stub-aware) and its reference solutions.

    Args:
        notebook: the notebook's two-digit number, e.g. ``"01"`` (used in messages).
    """

    def __init__(self, notebook: str) -> None:
        self.notebook = notebook
        self.solutions: dict[int, Callable[..., Any] | type] = {}
        self.todos: dict[int, str] = {}
        self.question_answers: dict[int, str] = {}

    def solution(self, number: int) -> Callable[[F], F]:
        """Decorator registering the reference solution of exercise ``number`` (a function or a class).

        Raises:
            ValueError: exercise ``number`` already has a solution.
        """
        def register(obj: F) -> F:
            if number in self.solutions:
                raise ValueError(f"notebook {self.notebook}: exercise {number} already has a reference solution")
            self.solutions[number] = obj
            return obj
        return register

    def checker(self, number: int, todo: str) -> Callable[[F], F]:
        """Decorator making a checker report an unattempted stub instead of failing.

        When the wrapped checker raises ``NotImplementedError`` (the learner's stub was called), it prints
        :func:`not_attempted_message` and returns None. A checker's ``AssertionError`` (its hint) is raised
        again as :class:`ExerciseFailed`, one line in Jupyter; any other exception (the learner's code
        crashed) as :class:`ExerciseFailed` with :func:`crash_hint`. The pass message is the checker's own.

        Args:
            number: the exercise's number in the notebook.
            todo: what the learner has to do, in a few words ("write lesion_box(mask) ...").
        """
        self.todos[number] = todo

        def wrap(check: F) -> F:
            @functools.wraps(check)
            def run(*args: Any, **kwargs: Any) -> Any:
                try:
                    return check(*args, **kwargs)
                except NotImplementedError:
                    print(not_attempted_message(number, todo))
                    return None
                except ExerciseFailed:
                    raise
                except AssertionError as err:
                    raise ExerciseFailed(number, str(err)) from None
                except Exception as err:
                    raise ExerciseFailed(number, crash_hint(err)) from err
            run.exercise = number  # type: ignore[attr-defined]
            return run  # type: ignore[return-value]
        return wrap

    def passed(self, number: int, message: str) -> None:
        """Print :func:`passed_message` for exercise ``number``."""
        print(passed_message(number, message))

    def solution_source(self, number: int) -> str:
        """The source code of exercise ``number``'s reference solution, decorator line removed.

        Raises:
            KeyError: with the numbers that exist, when exercise ``number`` has no reference solution.
        """
        if number not in self.solutions:
            raise KeyError(f"notebook {self.notebook} has no exercise {number}: its exercises are "
                           f"{sorted(self.solutions)}")
        source = textwrap.dedent(inspect.getsource(self.solutions[number]))
        lines = [line for line in source.splitlines() if not _SOLUTION_DECORATOR.match(line)]
        return "\n".join(lines).strip() + "\n"

    def show_solution(self, number: int) -> None:
        """Print the reference solution of exercise ``number``, ready to paste into the stub's cell."""
        print(f"# Reference solution of notebook {self.notebook}, exercise {number}\n")
        print(self.solution_source(number))

    def answers(self, answers: Mapping[int, str]) -> None:
        """Register the short answers to the notebook's questions: question number -> answer text.

        Raises:
            ValueError: a question already has an answer, or an answer is empty.
        """
        for number, text in answers.items():
            if number in self.question_answers or not text.strip():
                raise ValueError(f"notebook {self.notebook}: question {number} already has an answer or the "
                                 "answer is empty")
            self.question_answers[number] = " ".join(text.split())

    def show_answer(self, number: int) -> None:
        """Print the answer to question ``number`` of the notebook's questions, wrapped at 110 characters.

        Raises:
            KeyError: with the numbers that exist, when question ``number`` has no answer.
        """
        if number not in self.question_answers:
            raise KeyError(f"notebook {self.notebook} has no question {number}: its questions are "
                           f"{sorted(self.question_answers)}")
        print(f"# Notebook {self.notebook}, question {number}\n")
        print(textwrap.fill(self.question_answers[number], width=110))
