"""What the command-line entry points share: output paths checked before any work, one-line errors.

``python -m helpers.train`` (notebook 04), ``python -m helpers.predict`` and ``python -m helpers.evaluate``
(notebook 05) call :func:`check_output_path` on every path they will write (``--out``, ``--per-image``)
before they train or predict, so an impossible path costs a second, not a training run. The check creates
nothing. Each CLI prints an :class:`OutputPathError` with :func:`fail`: one line on stderr, exit status 2,
no traceback; after Ctrl-C, :func:`interrupted` prints one line saying what was kept and exits with 130.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

#: Exit status of a CLI refused a setting (argparse uses 2 for usage errors too).
USAGE_ERROR = 2
#: Exit status after Ctrl-C (SIGINT): 128 + 2, what a shell reports for a program stopped by SIGINT.
INTERRUPTED = 130


class OutputPathError(ValueError):
    """An output path cannot be written; the message names the path, the reason and what to do."""


def _nearest_existing(path: Path) -> Path:
    """``path`` itself or its closest ancestor that exists (``.`` at worst for a relative path)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _can_write_in(folder: Path) -> bool:
    """True when a file can really be created in ``folder`` (probed with a temporary file, then removed)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def check_output_path(path: str | os.PathLike[str], option: str, *, folder: bool) -> Path:
    """Refuse an output path that cannot be written, before any work and without creating anything.

    Args:
        path: the folder (``folder=True``) or file (``folder=False``) a CLI will write.
        option: the command-line option it came from, for the message (``"--out"``).
        folder: whether ``path`` is to be a folder (created with its parents) or a file.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputPathError: ``path`` is a file where a folder is wanted (or the reverse), lies under an
            existing file, or its nearest existing folder cannot be written to.
    """
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise OutputPathError(f"{option} {path} is a file, not a folder: choose a folder path")
    if not folder and path.is_dir():
        raise OutputPathError(f"{option} {path} is a folder: give a file name, e.g. {path / 'scores.csv'}")
    base = _nearest_existing(path if folder else path.parent)
    if not base.is_dir():
        raise OutputPathError(f"{option} {path} cannot be created: {base} is a file, and nothing can be created "
                              "under a file. Choose another path")
    if not _can_write_in(base):
        raise OutputPathError(f"{option} {path} cannot be written: no permission to create files in {base}. "
                              "Choose a folder you can write to (e.g. under runs/ or your home folder)")
    return path


def fail(message: object) -> int:
    """Print ``error: <message>`` as one line on stderr and return :data:`USAGE_ERROR` (for ``return fail(err)``)."""
    print(f"error: {message}", file=sys.stderr)
    return USAGE_ERROR


def interrupted(message: str) -> int:
    """After Ctrl-C: print ``message`` (``"interrupted ..."``: where it stopped, what was kept, how to go on) as
    one line on stderr, no traceback, and return :data:`INTERRUPTED` (``except KeyboardInterrupt: return
    interrupted(...)``). Like ``python -m helpers.data``'s ``interrupted: ...``, no ``error:`` prefix: the user
    stopped the command, nothing went wrong."""
    print(message if message.startswith("interrupted") else f"interrupted: {message}", file=sys.stderr)
    return INTERRUPTED


def json_object_arg(text: str) -> dict:
    """argparse type for ``--model-kwargs``: a JSON object such as ``{"base": 16}`` (also used by the benchmarks)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON ({err}): write it like '{{\"base\": 16}}'") from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"base\": 16}}', got {text!r}")
    return value
