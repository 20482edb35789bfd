"""The notebooks' setup cell: installs on Colab only, a no-op import locally; `sync` keeps notebooks in line."""
import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest

from helpers import config
from helpers.course import colab


def _run_cell(monkeypatch, *, colab_present: bool, helpers_installed: bool, clone_fails: bool = False):
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

    def fake_run(cmd, **kw):
        calls.append(cmd)
        failed = clone_fails and cmd[:2] == ["git", "clone"]
        return subprocess.CompletedProcess(cmd, 128 if failed else 0, "",
                                           "fatal: unable to access: Could not resolve host" if failed else "")

    monkeypatch.setattr(importlib.util, "find_spec", fake_find_spec)
    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(colab, "install_missing", lambda checkout: calls.append(["install_missing", checkout]))
    monkeypatch.setattr(os, "chdir", lambda path: calls.append(["chdir", path]))
    monkeypatch.setattr(os.path, "isdir", lambda p: False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    namespace: dict = {}
    exec(compile(colab.setup_cell_source(), "<setup cell>", "exec"), namespace)
    return calls, namespace


def test_setup_cell_installs_on_colab(monkeypatch, capsys):
    calls, ns = _run_cell(monkeypatch, colab_present=True, helpers_installed=False)
    assert calls[0][:2] == ["git", "clone"] and calls[0][-2:] == [config.REPO_URL, colab.CLONE_DIR]
    assert calls[1] == ["install_missing", colab.CLONE_DIR]
    assert calls[2] == ["chdir", f"{colab.CLONE_DIR}/notebooks"]
    assert colab.CLONE_DIR in sys.path
    assert ns["DEVICE"].type in {"cpu", "cuda", "mps"} and ns["DOWNLOAD"] is None and ns["USE_DRIVE"] is False
    out = capsys.readouterr().out
    assert "colab True" in out and "lost when Colab recycles it" in out
    if ns["DEVICE"].type != "cuda":
        assert "Change runtime type" in out


def test_a_failed_clone_says_what_failed_and_what_to_do(monkeypatch):
    with pytest.raises(RuntimeError, match=r"Could not download the course from https://github.com/.*"
                                           r"Could not resolve host.*Fix: check that this runtime is online"):
        _run_cell(monkeypatch, colab_present=True, helpers_installed=False, clone_fails=True)


def test_a_local_kernel_without_the_package_names_the_install_command(monkeypatch):
    with pytest.raises(ModuleNotFoundError, match=r"helpers package is not installed for this kernel .*"
                                                  r"pip install -e '.\[dev\]'.*restart the kernel"):
        _run_cell(monkeypatch, colab_present=False, helpers_installed=False)


def test_setup_cell_is_import_only_locally(monkeypatch, capsys):
    calls, ns = _run_cell(monkeypatch, colab_present=False, helpers_installed=True)
    assert calls == []
    assert "colab False" in capsys.readouterr().out


def test_setup_cell_skips_install_when_helpers_present_on_colab(monkeypatch):
    calls, _ = _run_cell(monkeypatch, colab_present=True, helpers_installed=True)
    assert calls == []


def _checkout(tmp_path, smp_pin: str = "segmentation-models-pytorch>=0.6,<0.7"):
    (tmp_path / "pyproject.toml").write_text(
        f'[project]\nname = "x"\ndependencies = ["torch==2.14.1", "{smp_pin}", "numpy>=1.26"]\n')
    return tmp_path


def test_extra_requirements_are_read_from_pyproject(tmp_path):
    assert colab.extra_requirements(_checkout(tmp_path)) == ["segmentation-models-pytorch>=0.6,<0.7"]
    assert colab.extra_requirements(config.repo_root()) == [
        d for d in __import__("tomllib").loads((config.repo_root() / "pyproject.toml").read_text())["project"][
            "dependencies"] if d.startswith("segmentation-models-pytorch")]
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["torch"]\n')
    with pytest.raises(RuntimeError, match="does not list every package of COLAB_EXTRA_PACKAGES"):
        colab.extra_requirements(tmp_path)


@pytest.mark.parametrize("installed, missing", [(None, True), ("0.4.1", True), ("0.5.0", True), ("0.6.0", False),
                                                ("0.7.0", True)])
def test_missing_requirements_checks_the_range(monkeypatch, installed, missing):
    monkeypatch.setattr(colab, "_installed_version", lambda name: installed)
    req = ["segmentation-models-pytorch>=0.6,<0.7"]
    assert colab.missing_requirements(req) == (req if missing else [])


def _record_pip(monkeypatch, returncode: int = 0):
    calls = []

    def fake_run(cmd, **kw):
        if "-c" in cmd:
            calls.append(("constraints", Path(cmd[cmd.index("-c") + 1]).read_text()))
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, returncode, "", "ERROR: ResolutionImpossible: torch==2.11.0")

    monkeypatch.setattr(subprocess, "run", fake_run)
    return calls


def test_install_missing_adds_only_what_is_missing_and_pins_everything_installed(monkeypatch, tmp_path, capsys):
    checkout = _checkout(tmp_path)
    real_version = colab._installed_version
    monkeypatch.setattr(colab, "_installed_version",
                        lambda name: None if name == "segmentation-models-pytorch" else real_version(name))
    calls = _record_pip(monkeypatch)
    assert colab.install_missing(checkout) == ["segmentation-models-pytorch>=0.6,<0.7"]
    (_, constraints), pip_smp, pip_pkg = calls
    assert pip_smp[:4] == [sys.executable, "-m", "pip", "install"] and pip_smp[-1] == "segmentation-models-pytorch>=0.6,<0.7"
    import importlib.metadata
    pins = {line.lower() for line in constraints.splitlines()}
    for held in ("torch", "numpy", "ipywidgets"):  # installed packages cannot be upgraded or downgraded
        assert f"{held}=={importlib.metadata.version(held)}" in pins
    assert pip_pkg[-3:] == ["--no-deps", "-e", str(checkout)]
    assert "installed what Colab lacks" in capsys.readouterr().out


def test_install_missing_installs_nothing_that_is_already_there(monkeypatch, tmp_path):
    monkeypatch.setattr(colab, "_installed_version", lambda name: "0.6.0")
    calls = _record_pip(monkeypatch)
    assert colab.install_missing(_checkout(tmp_path), verbose=False) == []
    assert len(calls) == 1 and calls[0][-3:] == ["--no-deps", "-e", str(tmp_path)]


def test_a_pip_failure_shows_pips_words_and_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(colab, "_installed_version", lambda name: None)
    _record_pip(monkeypatch, returncode=1)
    with pytest.raises(RuntimeError, match=r"(?s)installing segmentation-models-pytorch.* failed:\n"
                                           r"ERROR: ResolutionImpossible.*Fix: Runtime > Restart session"):
        colab.install_missing(_checkout(tmp_path), verbose=False)


@pytest.mark.parametrize("versions, flagged", [
    ({"torch": "2.11.0+cu128", "torchvision": "0.26.0+cu128", "albumentations": "2.0.8"}, []),
    ({"torch": "2.14.1", "segmentation-models-pytorch": "0.6.0"}, []),
    ({"torch": "2.10.0"}, ["torch"]),
    ({"torch": "2.15.0", "albumentations": "2.1.0", "segmentation-models-pytorch": "0.4.0"},
     ["torch", "albumentations", "segmentation-models-pytorch"]),
    ({"torch": None}, []),
])
def test_untested_versions(versions, flagged):
    lines = colab.untested_versions(versions)
    assert [line.split()[0] for line in lines] == flagged
    for line in lines:
        assert "outside the versions this course is tested with" in line and "pip install" in line


def test_this_environment_is_a_tested_one():
    assert colab.untested_versions() == []


def test_setup_warns_about_an_untested_version(monkeypatch):
    monkeypatch.setattr(colab, "untested_versions", lambda: ["torch 9.0 is outside the versions ..."])
    with pytest.warns(colab.UntestedVersionWarning, match="torch 9.0"):
        colab.setup(verbose=False)


def _fake_drive(monkeypatch, tmp_path):
    """google.colab with a drive.mount that makes the mount point a folder, under SKINSEG_COLAB_ROOT=tmp_path."""
    google = types.ModuleType("google")
    fake_colab = types.ModuleType("google.colab")
    drive = types.ModuleType("google.colab.drive")
    mounted = []
    drive.mount = lambda path: (mounted.append(path), (Path(path) / "MyDrive").mkdir(parents=True))
    fake_colab.drive = drive
    google.colab = fake_colab
    for name, module in (("google", google), ("google.colab", fake_colab), ("google.colab.drive", drive)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setenv(colab.COLAB_ROOT_ENV, str(tmp_path))
    for var in (config.RUNS_ENV, "SKINSEG_DATA"):  # registered, so monkeypatch restores them after the test
        monkeypatch.setenv(var, "registered")
        monkeypatch.delenv(var)
    return mounted


def test_use_drive_keeps_runs_and_archives_in_drive(monkeypatch, tmp_path, capsys):
    mounted = _fake_drive(monkeypatch, tmp_path)
    import helpers.data.download

    requested = []
    monkeypatch.setattr(helpers.data.download, "download_dataset",
                        lambda name, root, archives=None: requested.append((name, root, archives)) or tmp_path)
    colab.setup(download="isic2018", drive=True)
    drive_folder = tmp_path / "drive" / "MyDrive" / colab.DRIVE_FOLDER
    assert mounted == [str(tmp_path / "drive")]
    assert config.runs_dir() == drive_folder / "runs"
    assert requested == [("isic2018", config.data_dir(), drive_folder / "archives" / "isic2018")]
    assert "Google Drive: kept when the runtime is recycled" in capsys.readouterr().out


def test_use_drive_outside_colab_changes_nothing(monkeypatch, tmp_path, capsys):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setenv(config.RUNS_ENV, "registered")
    monkeypatch.delenv(config.RUNS_ENV)
    colab.setup(drive=True)
    assert config.RUNS_ENV not in os.environ
    assert "USE_DRIVE only applies on Colab" in capsys.readouterr().out


def test_setup_download_flag_points_data_at_download(monkeypatch, tmp_path):
    import helpers.data.download

    requested = []

    def fake_download(name, root, archives=None):
        requested.append((name, root, archives))
        return tmp_path

    monkeypatch.setattr(helpers.data.download, "download_dataset", fake_download)
    # setup() sets SKINSEG_DATA itself; registering the variable first makes monkeypatch restore its
    # original state afterwards, so the setting cannot leak into later tests or notebook kernels.
    monkeypatch.setenv("SKINSEG_DATA", "registered")
    monkeypatch.delenv("SKINSEG_DATA")
    colab.setup(download="ham10000", verbose=False)
    assert requested == [("ham10000", config.data_dir(), None)]
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
