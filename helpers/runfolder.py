"""The run folder of a training run: the names of its four files and their paths (introduced in notebook 04).

:func:`helpers.train.fit.fit` keeps one folder per run (``TrainConfig.run_dir()``, ``runs/<model>`` by default)::

    <run_dir>/config.json   CONFIG_FILE   the TrainConfig, as JSON
    <run_dir>/history.csv   HISTORY_FILE  one row per finished epoch
    <run_dir>/best.pt       BEST_FILE     the weights with the best validation Dice so far
    <run_dir>/last.pt       LAST_FILE     everything needed to resume

Every module, command line, benchmark and test names these files through this module (the constants, or the
path helpers :func:`best_path`, :func:`last_path`, :func:`history_path`, :func:`config_path`), so a name is
written once.
"""
from __future__ import annotations

import os
from pathlib import Path

#: The TrainConfig of the run, as JSON.
CONFIG_FILE = "config.json"
#: One row per finished epoch (``helpers.train.fit.HISTORY_COLUMNS``).
HISTORY_FILE = "history.csv"
#: The checkpoint with the best validation Dice (what prediction loads).
BEST_FILE = "best.pt"
#: The resumable state after the last finished epoch.
LAST_FILE = "last.pt"
#: The two checkpoints of a run folder, the one to predict with first.
CHECKPOINT_FILES: tuple[str, ...] = (BEST_FILE, LAST_FILE)
#: Every file a finished run folder holds.
RUN_FILES: tuple[str, ...] = (CONFIG_FILE, HISTORY_FILE, BEST_FILE, LAST_FILE)


def config_path(run_dir: str | os.PathLike) -> Path:
    """``<run_dir>/config.json``."""
    return Path(run_dir) / CONFIG_FILE


def history_path(run_dir: str | os.PathLike) -> Path:
    """``<run_dir>/history.csv``."""
    return Path(run_dir) / HISTORY_FILE


def best_path(run_dir: str | os.PathLike) -> Path:
    """``<run_dir>/best.pt``."""
    return Path(run_dir) / BEST_FILE


def last_path(run_dir: str | os.PathLike) -> Path:
    """``<run_dir>/last.pt``."""
    return Path(run_dir) / LAST_FILE
