"""Run the whole course headless: ``python -m helpers.course`` (notebooks 01-06 in order).

Executes every ``notebooks/NN_*.ipynb`` in order with nbclient in the ``smoke`` run profile, or with
``--full`` in the profile this machine gets (``cpu`` without a GPU, ``gpu`` with one; ``--profile`` forces
one, see :mod:`helpers.course.profiles`), writes the executed copies to ``runs/executed/`` (not tracked by git) and
the figures to ``figures/``, and prints each notebook's wall time. ``python -m helpers.course strip`` removes
outputs and execution counts from the notebooks in place (the form they are committed in).
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from helpers import config
from helpers.course import profiles


def kernel_config(socket_dir: Path) -> "traitlets.config.Config":
    """Kernel-manager settings: local IPC sockets in ``socket_dir`` instead of TCP where the platform has them.

    The kernel and this process then talk over Unix sockets (not on Windows, which keeps TCP), and ipykernel
    no longer warns "Kernel is running over TCP without encryption" for every notebook. The socket path is
    absolute because the kernel runs in the notebook's folder, not in this process's working directory.
    """
    from traitlets.config import Config

    cfg = Config()
    if os.name == "posix":
        cfg.KernelManager.transport = "ipc"
        cfg.KernelManager.ip = str(Path(socket_dir).resolve() / "kernel")
    return cfg


def strip_notebook(path: Path) -> bool:
    """Remove outputs, execution counts and run metadata from one notebook in place; True if it changed."""
    import nbformat

    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in ("execution", "collapsed", "scrolled", "ExecuteTime"):
            cell.metadata.pop(key, None)
    nb.metadata.pop("widgets", None)
    new = nbformat.writes(nb) + "\n"
    if new != text:
        path.write_text(new, encoding="utf-8")
        return True
    return False


def run_notebook(path: Path, out_dir: Path, *, timeout: int = 1800, kernel: str = "python3") -> float:
    """Execute ``path`` with its folder as working directory, save the executed copy in ``out_dir``.

    Returns:
        Wall time in seconds.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell failed; the message shows the cell and traceback.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="skinseg-kernel-") as sockets:
            NotebookClient(nb, timeout=timeout, kernel_name=kernel, config=kernel_config(Path(sockets)),
                           resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        out_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out_dir / path.name)
    return time.perf_counter() - start


def choose_profile(*, full: bool, forced: str | None) -> profiles.Profile:
    """Set the environment the notebook kernels inherit and return the profile they will get.

    Args:
        full: False = smoke profile; True = the profile this machine gets.
        forced: a profile name to force (``--profile``), or None.

    Raises:
        ValueError: ``SKINSEG_PROFILE`` is already set to a value that names no profile.
    """
    os.environ[config.SMOKE_ENV] = "0" if full else "1"
    if forced is not None:
        os.environ[config.PROFILE_ENV] = forced
    return profiles.active()


def pin_data_folder() -> str | None:
    """Make a relative ``SKINSEG_DATA`` absolute, relative to this process's working directory.

    The kernels run in ``notebooks/``, so ``SKINSEG_DATA=../shared/data`` typed in the repository root would
    otherwise name another folder there. Returns the value the kernels will see (None when unset).
    """
    value = os.environ.get("SKINSEG_DATA")
    if value:
        os.environ["SKINSEG_DATA"] = value = str(Path(value).expanduser().resolve())
    return value or None
