"""Issue 24, the training command: faults and bad inputs, each one line on stderr and a clear exit status.

Items: 1 (two runs into one --out: the run folder's lock), 9 (a full disk or a read-only folder while a
checkpoint or the history is saved), 10 (Ctrl-C), 11 and 12 (--img-size, --warmup, --seed out of range), and
the leftover temporary files of a killed save. Everything runs in-process on a tiny synthetic set (10 images,
48 px, an SE-U-Net with base 4 at 32 px): a full disk, a read-only folder and Ctrl-C are simulated with
monkeypatch, never made real.
"""
import errno
import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from helpers import models, runfolder
from helpers.cli.train import main as train_main
from helpers.data import files
from helpers.train import distributed, loop, resume
from helpers.train.fit import fit
from helpers.train.loop import TrainConfig, TrainingInterrupted

pytestmark = pytest.mark.usefixtures("isolated_home")  # fixture in tests/conftest.py


def cli_args(root, out, *extra: str) -> list[str]:
    return ["--data", str(root), "--model", "se_unet", "--model-kwargs", '{"base": 4}', "--img-size", "32",
            "--epochs", "2", "--batch-size", "4", "--workers", "0", "--quiet", "--out", str(out), *extra]


def tiny_config(root, out, **overrides) -> TrainConfig:
    values = dict(model="se_unet", model_kwargs={"base": 4}, img_size=32, epochs=2, batch_size=4, num_workers=0,
                  data=str(root), out=str(out), seed=0)
    return TrainConfig(**{**values, **overrides})


def one_error_line(capsys, prefix: str = "error: ") -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(prefix) and "\n" not in err and "Traceback" not in err, err
    return err


def no_temp_files(run_dir) -> bool:
    return not [p for p in run_dir.iterdir() if ".tmp-" in p.name]


def dead_pid() -> int:
    """The pid of a process that has ended (a child started and reaped here)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def write_lock(run_dir, **owner) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    values = {"pid": os.getpid(), "host": socket.gethostname(), "pid_start": None, "started": "earlier", **owner}
    runfolder.lock_path(run_dir).write_text(json.dumps(values))


# ------------------------------------------------------------------------------------- item 1: the lock
def test_a_second_run_into_the_folder_of_a_running_one_is_refused_naming_it(tiny_root, tmp_path, capsys):
    out = tmp_path / "run"
    second = {}

    def start_a_second_run(event, info):
        if event == "batch_end" and not second:
            second["code"] = train_main(cli_args(tiny_root, out, "--seed", "5"))
            second["err"] = capsys.readouterr().err
            second["lock"] = runfolder.lock_path(out).read_text() if runfolder.lock_path(out).exists() else None

    fit(tiny_config(tiny_root, out), progress=False, callbacks=[start_a_second_run])
    assert second["code"] == 2, second
    assert json.loads(second["lock"])["pid"] == os.getpid()               # the first run held the lock
    err = second["err"].strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert f"process {os.getpid()} on {socket.gethostname()}" in err and "another output folder (--out)" in err
    assert TrainConfig.load(runfolder.config_path(out)).seed == 0          # every file is the first run's
    assert len(pd.read_csv(runfolder.history_path(out))) == 2
    assert not runfolder.lock_path(out).exists()                          # released at the end


@pytest.mark.parametrize("owner", ["dead pid", pytest.param("reused pid", marks=pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="process start times are read from /proc")), "unreadable"])
def test_a_stale_lock_of_a_killed_run_is_taken_over_and_said_so(tiny_root, tmp_path, capsys, owner):
    out = tmp_path / "run"
    if owner == "unreadable":   # killed between creating the lock file and writing it
        out.mkdir()
        runfolder.lock_path(out).write_text("")
    else:   # a pid that is gone, or our own pid with another start time (a new process reused the number)
        write_lock(out, **({"pid": dead_pid()} if owner == "dead pid" else {"pid_start": "1"}))
    assert train_main(cli_args(tiny_root, out, "--epochs", "1")) == 0
    assert "taking over" in capsys.readouterr().out
    assert not runfolder.lock_path(out).exists() and runfolder.last_path(out).is_file()


def test_a_lock_on_another_host_is_refused_with_how_to_remove_it(tiny_root, tmp_path, capsys):
    out = tmp_path / "run"
    write_lock(out, host="another-machine", pid=12345)
    assert train_main(cli_args(tiny_root, out)) == 2
    err = one_error_line(capsys)
    assert "process 12345 on another-machine" in err and f"delete {runfolder.lock_path(out)}" in err
    assert runfolder.lock_path(out).exists() and not runfolder.config_path(out).exists()


@pytest.mark.parametrize("outcome", ["error", "ctrl-c"])
def test_the_lock_is_released_on_every_exit_path(tiny_root, tmp_path, monkeypatch, outcome):
    out = tmp_path / "run"
    held = []

    def stop(event, info):
        held.append(runfolder.lock_path(out).is_file())
        raise KeyboardInterrupt if outcome == "ctrl-c" else RuntimeError("a callback failed")

    with pytest.raises(KeyboardInterrupt if outcome == "ctrl-c" else RuntimeError):
        fit(tiny_config(tiny_root, out), progress=False, callbacks=[stop])
    assert held == [True] and not out.exists()   # a fresh run that saved nothing leaves no folder


def test_only_rank_0_takes_the_lock_and_every_rank_learns_a_refusal(tmp_path, monkeypatch):
    monkeypatch.setattr(distributed, "is_main_process", lambda: False)
    monkeypatch.setattr(distributed, "all_gather_objects", lambda obj: ["run folder x is being written by ..."])
    lock = runfolder.RunLock(tmp_path / "run")
    with pytest.raises(runfolder.RunFolderError, match="is being written by"):
        resume.take_lock(lock, fresh=True)
    assert not (tmp_path / "run").exists()   # rank 1 never touched the folder


# ------------------------------------------------------------------------------------- leftover temp files
def test_temp_files_of_a_killed_save_are_removed_when_a_resume_takes_the_lock(tiny_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(cli_args(tiny_root, out, "--epochs", "1")) == 0
    with pytest.raises(RuntimeError):   # the name atomic_write gives its temporary file, as a kill leaves it
        with files.atomic_write(runfolder.last_path(out)) as tmp:
            name = tmp.name
            raise RuntimeError("killed")
    (out / name).write_bytes(b"half a checkpoint")
    (out / f".{runfolder.BEST_FILE}.tmp-0badc0de").write_bytes(b"half")
    write_lock(out, pid=dead_pid())
    capsys.readouterr()
    assert train_main(cli_args(tiny_root, out, "--epochs", "1", "--resume")) == 0
    printed = capsys.readouterr().out
    assert "removed 2 temporary file(s)" in printed and name in printed and "taking over" in printed
    assert no_temp_files(out) and models.load_checkpoint(runfolder.last_path(out))["epoch"] == 1


# ------------------------------------------------------------------------------------- item 9: disk full, read-only
def fail_saving_epoch_2(monkeypatch, error):
    """torch.save writes half a checkpoint, then raises ``error`` when it saves epoch 2."""
    real_save = torch.save

    def save(obj, path, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("epoch") == 2:
            with open(path, "wb") as handle:
                handle.write(b"PK\x03\x04 half a zip")
            raise error
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def assert_epoch_1_intact(out) -> None:
    assert models.load_checkpoint(runfolder.last_path(out))["epoch"] == 1
    assert models.load_checkpoint(runfolder.best_path(out))["epoch"] == 1
    assert no_temp_files(out) and not runfolder.lock_path(out).exists()


def test_disk_full_while_saving_a_checkpoint_is_one_line_and_keeps_the_last_good_one(tiny_root, tmp_path,
                                                                                       monkeypatch, capsys):
    out = tmp_path / "run"
    fail_saving_epoch_2(monkeypatch, RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos "
                                                  "4352 vs 4240"))
    assert train_main(cli_args(tiny_root, out)) == 2
    err = one_error_line(capsys)
    assert "could not write" in err and ".pt: no space left on the device" in err, err
    assert f"{runfolder.last_path(out)} (epoch 1)" in err and "--resume" in err and "after epoch 1" in err
    assert_epoch_1_intact(out)


@pytest.mark.parametrize("code, cause", [(errno.ENOSPC, "no space left on the device"),
                                         (errno.EROFS, "the file system is read-only"),
                                         (errno.EACCES, "permission denied")])
def test_a_failed_history_or_checkpoint_write_names_the_file_and_the_cause(tiny_root, tmp_path, monkeypatch,
                                                                           capsys, code, cause):
    out = tmp_path / "run"
    real_replace, history_writes = os.replace, []

    def replace(src, dst):   # the folder turns read-only (or full) after epoch 1: epoch 2's history fails
        if str(dst).endswith(runfolder.HISTORY_FILE):
            history_writes.append(dst)
            if len(history_writes) == 3:   # the empty history of the new run, epoch 1's, epoch 2's
                raise OSError(code, os.strerror(code), str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    assert train_main(cli_args(tiny_root, out)) == 2
    err = one_error_line(capsys)
    assert f"could not write {runfolder.history_path(out)}: {cause}" in err, err
    assert ("Free some space" if code == errno.ENOSPC else "writable again (chmod u+w)") in err
    assert f"{runfolder.last_path(out)} (epoch 2)" in err   # last.pt was written before the history
    assert no_temp_files(out) and not runfolder.lock_path(out).exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write into read-only folders")
def test_a_run_folder_made_read_only_mid_run(tiny_root, tmp_path, capsys):
    out = tmp_path / "run"

    def lock_after_epoch_1(event, info):
        if event == "epoch_end" and info["epoch"] == 1:
            out.chmod(0o500)

    try:
        with pytest.raises(runfolder.RunFolderWriteError, match="not writable|read-only|permission"):
            fit(tiny_config(tiny_root, out), progress=False, callbacks=[lock_after_epoch_1])
    finally:
        out.chmod(0o700)
    assert_epoch_1_intact(out)


def test_torch_write_errors_are_put_down_to_a_full_disk_when_little_space_is_left(tmp_path, monkeypatch):
    monkeypatch.setattr(runfolder.shutil, "disk_usage", lambda path: SimpleNamespace(free=1024))
    kind, cause = runfolder.write_failure(RuntimeError("PytorchStreamWriter failed writing file data/3"), tmp_path)
    assert kind == "space" and cause.startswith("no space left on the device")
    monkeypatch.setattr(runfolder.shutil, "disk_usage", lambda path: SimpleNamespace(free=2**40))
    assert runfolder.write_failure(RuntimeError("something else"), tmp_path)[0] == "other"


# ------------------------------------------------------------------------------------- item 10: Ctrl-C
def interrupt_epoch(monkeypatch, epoch: int) -> None:
    """Ctrl-C arrives during the training pass of ``epoch``."""
    real = loop.train_one_epoch

    def train_one_epoch(*args, **kwargs):
        if kwargs.get("epoch") == epoch:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "train_one_epoch", train_one_epoch)


def run_cli(argv):
    try:
        return train_main(argv)
    except KeyboardInterrupt:
        pytest.fail("a KeyboardInterrupt escaped: a traceback on the command line")


def test_ctrl_c_prints_one_line_with_the_resume_command_and_exits_130(tiny_root, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    argv = cli_args(tiny_root, out)
    interrupt_epoch(monkeypatch, 2)
    assert run_cli(argv) == 130
    err = one_error_line(capsys, prefix="interrupted")
    assert err.startswith(f"interrupted at epoch 2: {runfolder.last_path(out)} holds epoch 1; resume with "
                          "python -m helpers.train "), err
    command = shlex.split(err.split("resume with ", 1)[1])
    assert command[:3] == ["python", "-m", "helpers.train"] and command[-1] == "--resume"
    assert not runfolder.lock_path(out).exists()
    monkeypatch.undo()
    assert train_main(command[3:]) == 0 and len(pd.read_csv(runfolder.history_path(out))) == 2


def test_ctrl_c_before_any_epoch_was_saved_says_so_and_leaves_no_folder(tiny_root, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    interrupt_epoch(monkeypatch, 1)
    assert run_cli(cli_args(tiny_root, out)) == 130
    assert "interrupted at epoch 1, before any epoch was saved" in one_error_line(capsys, prefix="interrupted")
    assert not out.exists()


def test_fit_raises_a_keyboard_interrupt_that_says_what_last_pt_holds(tiny_root, tmp_path, monkeypatch):
    interrupt_epoch(monkeypatch, 2)
    with pytest.raises(TrainingInterrupted, match="interrupted at epoch 2: .* holds epoch 1") as caught:
        fit(tiny_config(tiny_root, tmp_path / "run"), progress=False)
    assert isinstance(caught.value, KeyboardInterrupt) and caught.value.saved_epoch == 1


# ------------------------------------------------------------------------------------- items 11, 12: ranges
@pytest.mark.parametrize("option, value, expected", [
    ("--img-size", "7", "--img-size 7 is below the smallest size se_unet trains at, 17 px: it downsamples 16 times"),
    ("--img-size", "100000", "--img-size 100000 is above 2048 px, the largest training size"),
    ("--warmup", "nan", "--warmup nan must be a finite number >= 0"),
    ("--warmup", "inf", "--warmup inf must be a finite number >= 0"),
    ("--seed", "-1", "--seed -1 must be an integer from 0 to 4294967295"),
    ("--seed", "4294967296", "--seed 4294967296 must be an integer from 0 to 4294967295"),
])
def test_out_of_range_settings_are_one_line_naming_the_option_and_the_range(tmp_path, capsys, option, value,
                                                                             expected):
    empty = tmp_path / "empty"   # on today's code the run would start: an empty folder makes it fail fast
    empty.mkdir()
    assert run_cli([*cli_args(empty, tmp_path / "run"), option, value]) == 2
    assert one_error_line(capsys).startswith(f"error: {expected}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name, kwargs, factor", [("se_unet", {"base": 4}, 16), ("se_unet", {"base": 4, "depth": 2}, 4),
                                                 ("resnet_unet_aspp", {"encoder_name": "resnet18"}, 32)])
def test_the_smallest_size_is_where_batch_norm_stops_failing(name, kwargs, factor):
    smallest = loop.smallest_img_size(name, kwargs)
    assert smallest == factor + 1
    model = models.build_model(name, **kwargs).train()
    model(torch.randn(1, 3, smallest, smallest))                     # a one-image batch trains at the smallest
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        model(torch.randn(1, 3, smallest - 1, smallest - 1))          # and fails just below it
    with pytest.raises(loop.ConfigError, match=f"smallest size {name} trains at, {smallest} px"):
        TrainConfig(model=name, model_kwargs=kwargs, img_size=smallest - 1)


# ------------------------------------------------------------------------------------- leftover: --quiet
def test_quiet_hides_the_caching_bar(tiny_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SKINSEG_PROFILE", "cpu")   # outside smoke mode the bar shows by default
    assert train_main(cli_args(tiny_root, tmp_path / "quiet", "--epochs", "1", "--img-size", "36")) == 0
    assert "caching" not in capsys.readouterr().err
    loud = [a for a in cli_args(tiny_root, tmp_path / "loud", "--epochs", "1", "--img-size", "40") if a != "--quiet"]
    assert train_main(loud) == 0
    assert "caching" in capsys.readouterr().err    # the same run without --quiet shows it
