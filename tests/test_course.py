"""helpers.course: the headless runner executes notebooks and strips them for committing."""
import nbformat
import pytest

from helpers.cli import course as course_cli
from helpers.course import runner


def _notebook(tmp_path, *sources):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "01_tiny.ipynb"
    nbformat.write(nb, path)
    return path


def test_run_then_strip_roundtrip(tmp_path, capfd):
    path = _notebook(tmp_path, "import os\nprint(os.environ.get('SKINSEG_SMOKE'))", "x = 6 * 7\nx")
    out = tmp_path / "executed"
    seconds = runner.run_notebook(path, out)
    assert seconds > 0
    assert "without encryption" not in capfd.readouterr().err  # the kernel talks over IPC, so no TCP warning
    executed = nbformat.read(out / path.name, as_version=4)
    assert executed.cells[1].outputs[0]["data"]["text/plain"] == "42"
    assert executed.cells[0].execution_count == 1
    copy = tmp_path / "copy.ipynb"
    copy.write_text((out / path.name).read_text())
    assert runner.strip_notebook(copy) is True
    stripped = nbformat.read(copy, as_version=4)
    assert all(c.outputs == [] and c.execution_count is None for c in stripped.cells)
    assert runner.strip_notebook(copy) is False


def test_failing_cell_raises_and_keeps_partial_copy(tmp_path):
    from nbclient.exceptions import CellExecutionError

    path = _notebook(tmp_path, "a = 1", "assert a == 2, 'a must be 2'")
    with pytest.raises(CellExecutionError, match="a must be 2"):
        runner.run_notebook(path, tmp_path / "executed")
    assert (tmp_path / "executed" / path.name).exists()


def test_kernel_config_uses_ipc_sockets_with_an_absolute_path_on_posix(monkeypatch, tmp_path):
    monkeypatch.setattr(runner.os, "name", "posix")
    settings = runner.kernel_config(tmp_path).KernelManager
    assert settings.transport == "ipc" and settings.ip == str(tmp_path.resolve() / "kernel")
    monkeypatch.setattr(runner.os, "name", "nt")  # Windows has no IPC transport: TCP stays
    assert "transport" not in runner.kernel_config(tmp_path).KernelManager


@pytest.mark.parametrize("full,forced,gpu,expected", [
    (False, None, False, "smoke"), (False, None, True, "smoke"),
    (True, None, False, "cpu"), (True, None, True, "gpu"), (True, "smoke", True, "smoke"), (False, "gpu", False, "gpu"),
])
def test_choose_profile_sets_what_the_kernels_inherit(monkeypatch, full, forced, gpu, expected):
    # choose_profile writes os.environ itself: register the variable first so monkeypatch restores it afterwards
    # (delenv of an absent variable records nothing, and a leaked SKINSEG_PROFILE would change later tests).
    monkeypatch.setenv("SKINSEG_PROFILE", "unset-by-test")
    monkeypatch.delenv("SKINSEG_PROFILE")
    monkeypatch.setenv("SKINSEG_SMOKE", "1")
    monkeypatch.setattr(runner.profiles, "gpu_available", lambda: gpu)
    monkeypatch.setattr(runner.profiles.runtime, "accelerator_name", lambda device: "Fake GPU")
    assert runner.choose_profile(full=full, forced=forced).name == expected
    assert runner.os.environ["SKINSEG_SMOKE"] == ("0" if full else "1")
    assert runner.profiles.active().name == expected  # what a notebook kernel started now would get


def test_main_rejects_an_unknown_profile_in_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("SKINSEG_PROFILE", "turbo")
    monkeypatch.setenv("SKINSEG_SMOKE", "1")
    assert course_cli.main(["run", "--only", "01"]) == 2
    assert "SKINSEG_PROFILE='turbo'" in capsys.readouterr().err


def test_relative_data_folder_is_pinned_for_kernels_that_run_elsewhere(monkeypatch, tmp_path):
    (tmp_path / "real").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SKINSEG_DATA", "real")
    assert runner.pin_data_folder() == str(tmp_path.resolve() / "real")
    assert runner.os.environ["SKINSEG_DATA"] == str(tmp_path.resolve() / "real")
    monkeypatch.delenv("SKINSEG_DATA")
    assert runner.pin_data_folder() is None
