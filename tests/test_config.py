"""helpers.config: smoke switch, paths and the Colab address."""
from pathlib import Path

import pytest

from helpers import config


@pytest.mark.parametrize("value,expected", [("1", True), ("true", True), ("ON", True), ("0", False), ("", False),
                                            ("no", False)])
def test_smoke_mode_reads_environment(monkeypatch, value, expected):
    monkeypatch.setenv("SKINSEG_SMOKE", value)
    assert config.smoke_mode() is expected


def test_home_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SKINSEG_HOME", str(tmp_path))
    assert config.data_dir() == tmp_path / "data"
    assert config.runs_dir() == tmp_path / "runs"
    assert config.figures_dir() == tmp_path / "figures" and (tmp_path / "figures").is_dir()


def test_runs_folder_can_live_elsewhere(monkeypatch, tmp_path):
    """SKINSEG_RUNS (the Colab setup cell's USE_DRIVE) moves only the runs, not the data or the figures."""
    monkeypatch.setenv("SKINSEG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(config.RUNS_ENV, str(tmp_path / "drive" / "runs"))
    assert config.runs_dir() == tmp_path / "drive" / "runs"
    assert config.data_dir() == tmp_path / "home" / "data"


def test_home_dir_defaults_to_checkout(monkeypatch):
    monkeypatch.delenv("SKINSEG_HOME", raising=False)
    root = config.repo_root()
    assert root is not None and (root / "notebooks").is_dir()
    assert config.home_dir() == root


def test_user_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("SKINSEG_DATA", raising=False)
    assert config.user_data_dir() is None
    monkeypatch.setenv("SKINSEG_DATA", str(tmp_path))
    assert config.user_data_dir() == tmp_path.resolve()
    monkeypatch.setenv("SKINSEG_DATA", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="SKINSEG_DATA"):
        config.user_data_dir()


def test_colab_url():
    url = config.colab_url("01_data_exploration.ipynb", "https://github.com/me/fork", "dev")
    assert url == "https://colab.research.google.com/github/me/fork/blob/dev/notebooks/01_data_exploration.ipynb"
    with pytest.raises(ValueError, match="github.com"):
        config.colab_url("x.ipynb", "https://gitlab.com/me/fork")


def test_readme_and_config_share_the_repository_address():
    readme = (Path(config.repo_root()) / "README.md").read_text(encoding="utf-8")
    slug = config.REPO_URL.removeprefix("https://github.com/")
    assert config.REPO_URL in readme
    assert f"colab.research.google.com/github/{slug}/blob/{config.REPO_BRANCH}/notebooks/" in readme


def _root_conftest():
    """A fresh copy of the repository's root conftest.py (it holds the real-data folder lookup)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("root_conftest_copy", Path(config.repo_root()) / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("env, default, find", [("REAL_DATA_ENV", "REAL_DATA_DEFAULT", "find_real_data"),
                                                ("HAM_DATA_ENV", "HAM_DATA_DEFAULT", "find_ham_data")])
def test_real_data_lookup_follows_variable_then_repository(monkeypatch, tmp_path, env, default, find):
    conf = _root_conftest()
    name, finder = getattr(conf, env), getattr(conf, find)
    assert name in ("SKINSEG_REAL_DATA", "SKINSEG_HAM_DATA")
    monkeypatch.setenv(name, str(tmp_path))
    assert finder() == (tmp_path.resolve(), "")
    monkeypatch.setenv(name, str(tmp_path / "typo"))
    with pytest.raises(FileNotFoundError, match=name):
        finder()
    monkeypatch.delenv(name)
    monkeypatch.setattr(conf, default, Path("no-such-folder-here"))
    path, why = finder()
    assert path is None and f"{name} is unset" in why and "no-such-folder-here" in why
