"""benchmarks/ddp_parity.py (issue 24, "DDP learns worse than one process"): its settings, commands and summary.

The benchmark itself trains for minutes (figures in benchmarks/README.md); these tests run none of it. The
equivalence it relies on (synchronised BatchNorm: one DDP step = one process on the whole batch; the same
optimiser steps and images per epoch) is tested with real torchrun processes in tests/test_distributed.py.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from helpers.train import distributed

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def parity(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """benchmarks/ddp_parity.py imported with its folder on sys.path, SKINSEG_HOME in a temporary folder."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setenv("SKINSEG_HOME", str(tmp_path / "home"))
    return importlib.import_module("ddp_parity")


def test_bad_settings_are_one_error_line_and_exit_2(parity, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, expected in ((["--nproc", "1"], "--nproc must be >= 2"),
                           (["--batch-size", "7"], "--batch-size 7 is not a multiple of --nproc 2"),
                           (["--variants", "ddp,fast"], "unknown ['fast']"),
                           (["--seeds", "1", "1"], "repeats a seed"),
                           (["--epochs", "0"], "--epochs must be >= 1")):
        assert parity.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and expected in err and err.count("\n") == 1, err


def test_ddp_runs_get_the_same_images_per_step_split_over_the_processes(parity, tmp_path: Path) -> None:
    args = parity.build_parser().parse_args(["--batch-size", "8", "--nproc", "2", "--amp", "off"])
    single = parity.worker_spec(args, "single", 1, tmp_path / "data", tmp_path / "single")
    ddp = parity.worker_spec(args, "ddp", 1, tmp_path / "data", tmp_path / "ddp")
    assert (single["batch_size"], ddp["batch_size"]) == (8, 4)
    redraw = parity.worker_spec(args, "single_redraw", 1, tmp_path / "data", tmp_path / "redraw")
    assert (redraw["batch_size"], redraw["num_workers"], single["num_workers"]) == (8, 1, 0)
    cfg = parity.train_config(ddp)
    assert (cfg.batch_size, cfg.seed, cfg.amp, cfg.device, cfg.img_size, cfg.epochs) == (4, 1, "off", "cpu", 96, 3)
    assert cfg.run_dir() == tmp_path / "ddp"


def test_the_worker_command_gives_torchrun_no_option_of_its_own(parity, tmp_path: Path) -> None:
    """torchrun's parser reads options after the script too (``--nproc`` was "ambiguous"): one JSON object."""
    args = parity.build_parser().parse_args([])
    spec = parity.worker_spec(args, "ddp", 0, tmp_path, tmp_path / "run")
    command = parity.worker_command(args, "ddp", spec)
    script = command.index(str(BENCHMARKS / "ddp_parity.py"))
    assert command[:script][-2:] == ["--nproc_per_node", "2"] and command[script + 1:-1] == ["--worker"]
    assert json.loads(command[-1]) == spec
    assert parity.build_parser().parse_args(command[script + 1:]).worker == spec
    assert parity.worker_command(args, "single", spec)[1] == str(BENCHMARKS / "ddp_parity.py")


def test_the_local_bn_variant_turns_synchronisation_off_and_ddp_keeps_it(parity, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(parity, "fit", lambda cfg, progress: calls.append(distributed.wrap_model))
    monkeypatch.setattr(distributed, "wrap_model", distributed.wrap_model)   # restored after the test
    spec = {"variant": "ddp", "seed": 0, "data": "d", "run_dir": "r", "model": "se_unet", "model_kwargs": {},
            "img_size": 32, "epochs": 1, "batch_size": 2, "amp": "off", "num_workers": 0}
    assert parity.worker(spec) == 0
    assert calls[-1].__kwdefaults__["sync_batchnorm"] is True                # the default: synchronised
    assert parity.worker({**spec, "variant": "ddp_local_bn"}) == 0
    assert calls[-1].keywords == {"sync_batchnorm": False}


def test_summary_means_differences_and_verdict(parity) -> None:
    runs = [{"variant": v, "seed": s, "val_dice": d, "steps_per_epoch": 5}
            for v, s, d in (("single", 0, 0.80), ("single", 1, 0.70), ("ddp", 0, 0.78), ("ddp", 1, 0.68),
                            ("ddp_local_bn", 0, 0.60), ("ddp_local_bn", 1, 0.50))]
    summary = parity.summarise(runs, parity.DEFAULT_VARIANTS)
    assert summary["means"] == pytest.approx({"single": 0.75, "ddp": 0.73, "ddp_local_bn": 0.55})
    assert summary["differences"] == pytest.approx({"ddp": -0.02, "ddp_local_bn": -0.20})
    assert summary["ddp_within_tolerance"] is True and summary["tolerance"] == parity.TOLERANCE == 0.05
    text = parity.table(runs, parity.DEFAULT_VARIANTS, summary)
    assert "ddp - single = -0.0200 on the mean of 2 seed(s): within 0.05" in text
    assert text.splitlines()[2].split()[:4] == ["0", "0.8000", "0.7800", "0.6000"]
    far = parity.summarise([r for r in runs if r["variant"] != "ddp"] +
                           [{"variant": "ddp", "seed": 0, "val_dice": 0.6}], ["single", "ddp"])
    assert far["ddp_within_tolerance"] is False
    assert parity.summarise([r for r in runs if r["variant"] == "ddp"], ["ddp"])["ddp_within_tolerance"] is None
