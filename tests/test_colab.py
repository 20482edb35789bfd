"""The notebooks' setup cell: installs on Colab only, a no-op import locally; `sync` keeps notebooks in line."""
import importlib.util
import os
import subprocess
import sys
import types

import nbformat
import pytest

from helpers import colab, config


def _run_cell(monkeypatch, *, colab_present: bool, helpers_installed: bool):
    """Execute the setup cell with google.colab faked (or absent); return the commands it would run."""
    calls = []
    real_find_spec = importlib.util.find_spec

    if colab_present:
        google = types.ModuleType("google")
        fake_colab = types.ModuleType("google.colab")
        google.colab = fake_colab
        monkeypatch.setitem(sys.modules, "google", google)
        monkeypatch.setitem(sys.modules, "google.colab", fake_colab)
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)

    def fake_find_spec(name, *args, **kw):
        if name == "helpers" and not helpers_installed:
            return None
        return real_find_spec(name, *args, **kw)

    monkeypatch.setattr(importlib.util, "find_spec", fake_find_spec)
    monkeypatch.setattr(subprocess, "run", lambda cmd, check=False, **kw: calls.append(cmd))
    monkeypatch.setattr(os, "chdir", lambda path: calls.append(["chdir", path]))
    monkeypatch.setattr(os.path, "isdir", lambda p: False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    namespace: dict = {}
    exec(compile(colab.setup_cell_source(), "<setup cell>", "exec"), namespace)
    return calls, namespace


def test_setup_cell_installs_on_colab(monkeypatch, capsys):
    calls, ns = _run_cell(monkeypatch, colab_present=True, helpers_installed=False)
    assert calls[0][:2] == ["git", "clone"] and config.REPO_URL in calls[0]
    assert calls[1][-1] == "segmentation-models-pytorch" and "pip" in calls[1]
    assert calls[2][-2:] == ["-e", colab.CLONE_DIR] and "--no-deps" in calls[2]
    assert calls[3] == ["chdir", f"{colab.CLONE_DIR}/notebooks"]
    assert colab.CLONE_DIR in sys.path
    assert ns["DEVICE"].type in {"cpu", "cuda", "mps"}
    out = capsys.readouterr().out
    assert "colab True" in out
    if ns["DEVICE"].type != "cuda":
        assert "Change runtime type" in out


def test_setup_cell_is_import_only_locally(monkeypatch, capsys):
    calls, ns = _run_cell(monkeypatch, colab_present=False, helpers_installed=True)
    assert calls == []
    assert "colab False" in capsys.readouterr().out


def test_setup_cell_skips_install_when_helpers_present_on_colab(monkeypatch):
    calls, _ = _run_cell(monkeypatch, colab_present=True, helpers_installed=True)
    assert calls == []


def test_setup_download_flag_points_data_at_download(monkeypatch, tmp_path):
    import helpers.download

    requested = []

    def fake_download(name, root):
        requested.append((name, root))
        return tmp_path

    monkeypatch.setattr(helpers.download, "download_dataset", fake_download)
    # setup() sets SKINSEG_DATA itself; registering the variable first makes monkeypatch restore its
    # original state afterwards, so the setting cannot leak into later tests or notebook kernels.
    monkeypatch.setenv("SKINSEG_DATA", "registered")
    monkeypatch.delenv("SKINSEG_DATA")
    colab.setup(download="ham10000", verbose=False)
    assert requested == [("ham10000", config.data_dir())]
    assert os.environ["SKINSEG_DATA"] == str(tmp_path)


def test_sync_inserts_and_is_idempotent(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 09 · Test"),
                                         nbformat.v4.new_code_cell("x = 1")])
    path = tmp_path / "09_test.ipynb"
    nbformat.write(nb, path)
    assert colab.sync_notebook(path) is True
    cells = nbformat.read(path, as_version=4).cells
    assert colab.BADGE_MARKER in cells[1].source and "09_test.ipynb" in cells[1].source
    assert cells[2].source == colab.setup_cell_source()
    assert cells[3].source == "x = 1"
    assert colab.sync_notebook(path) is False


def test_sync_replaces_a_stale_setup_cell(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 09 · Test"),
                                         nbformat.v4.new_markdown_cell(colab.badge_markdown("old.ipynb")),
                                         nbformat.v4.new_code_cell(colab.SETUP_MARKER + ": stale")])
    path = tmp_path / "09_test.ipynb"
    nbformat.write(nb, path)
    assert colab.sync_notebook(path)
    cells = nbformat.read(path, as_version=4).cells
    assert len(cells) == 3 and cells[2].source == colab.setup_cell_source()
    assert "09_test.ipynb" in cells[1].source


@pytest.mark.parametrize("value", ["https://gitlab.com/x/y"])
def test_badge_rejects_non_github(monkeypatch, value):
    monkeypatch.setattr(config, "REPO_URL", value)
    with pytest.raises(ValueError):
        config.colab_url("x.ipynb", value)


def test_setup_cell_runs_in_a_fresh_local_interpreter():
    """No fakes: a plain Python without google.colab runs the cell as a no-op import (regression test)."""
    result = subprocess.run([sys.executable, "-c", colab.setup_cell_source()], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "colab False" in result.stdout
