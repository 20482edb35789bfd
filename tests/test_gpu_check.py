"""The GPU check (``benchmarks/gpu_check.sh``): its CPU dry run, and the CUDA-only tests it runs on a GPU.

* ``test_dry_run_*`` runs the script's CPU path end to end (a smoke notebook 04, a tiny throughput run, the
  CUDA-only tests below, which skip here) and checks the exit status, the ``DRY RUN`` line and the JSON block.
  It took 3 min on the 2-core machine while other jobs loaded it (less when it is quiet), so it is
  marked ``slow``.
* ``test_cuda_*`` need a CUDA GPU and skip without one; ``gpu_check.sh`` runs them on the lent GPU machine
  (``-k "not dry_run"``) and reports whether they ran there or skipped. They check what changes on CUDA:
  the run profile and the recipe's autocast and memory-layout choices, training on the GPU with a checkpoint
  that loads on the CPU, float16 with a GradScaler, and GPU predictions against CPU ones.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import data, models, runtime
from helpers.course import profiles
from helpers.data import layouts
from helpers.evaluation import predict
from helpers.train import fit, loop
from helpers.train.loop import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
#: Top-level keys of the JSON block (benchmarks/README.md, "GPU check", documents them).
JSON_KEYS = {"gpu_check", "mode", "dry_run", "total_s", "budget_s", "gpu", "torch", "cuda", "cudnn", "env", "steps",
             "tests", "ok"}
STEPS = {"setup", "env", "data", "tests", "nb04_real", "throughput", "nb04_synth"}

pytestmark = pytest.mark.usefixtures("isolated_home")  # fixture in tests/conftest.py: runs and caches in a tmp home

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.sh "
                                                                       "runs these on the lent GPU machine)")


# ------------------------------------------------------------------------------------------------ dry run
@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="bash script")
def test_dry_run_exits_0_and_prints_the_json_block(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    for name in ("SKINSEG_DATA", "SKINSEG_PROFILE", "SKINSEG_SMOKE", "SKINSEG_HOME", "OUT"):
        env.pop(name, None)
    env["OUT"] = str(tmp_path / "out")
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--data", str(tmp_path / "no-data")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out[-6000:]}\n{proc.stderr[-2000:]}"
    expected = "DRY RUN: forced by --dry-run" if torch.cuda.is_available() else "DRY RUN: no CUDA"
    assert re.search(rf"^{expected}", out, re.M), out[:3000]
    assert "data: MISSING" in out and str(tmp_path / "no-data") in out      # the clear message, and it goes on
    block = re.search(r"^GPU_CHECK_JSON_BEGIN\n(.*?)^GPU_CHECK_JSON_END$", out, re.M | re.S)
    assert block, out[-3000:]
    result = json.loads(block.group(1))
    assert JSON_KEYS <= set(result) and result["dry_run"] is True and result["ok"] is True
    assert set(result["steps"]) == STEPS
    assert {n for n, s in result["steps"].items() if s["status"] == "ok"} == STEPS - {"data", "nb04_synth"}
    assert result["steps"]["data"]["status"] == "skipped"
    assert result["tests"]["failed"] == 0 and result["tests"]["cuda_only"]
    assert set(result["tests"]["cuda_only"].values()) == ({"skipped"} if not torch.cuda.is_available() else {"passed"})
    nb = result["nb04_real"]
    assert nb["profile"] == "smoke" and nb["data"] == "synthetic" and nb["seconds"] > 0
    assert set(nb["models"]) == {"resnet_unet_aspp", "se_unet"}
    assert all(0 <= m["val_dice_last"] <= 1 and m["epochs"] == 2 for m in nb["models"].values())
    assert nb["cells_run"] > 10                                  # the kernel's startup hook wrote after each cell
    assert result["throughput"]["train_images_per_s"] > 0 and len(result["throughput"]["precisions"]) == 4
    saved = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert saved["steps"] == result["steps"]
    assert (tmp_path / "out" / "gpu_check.log").read_text().count("GPU_CHECK_JSON_BEGIN") == 1


def test_script_rejects_unknown_arguments():
    proc = subprocess.run(["bash", str(SCRIPT), "--budegt", "10"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "unknown argument '--budegt'" in proc.stderr


# ------------------------------------------------------------------------------------------------ CUDA only
@pytest.fixture
def pairs(isic_dir):
    found = layouts.discover_pairs(isic_dir)
    return {"train": found[:6], "val": found[6:]}


@needs_cuda
def test_cuda_is_the_device_and_the_recipe_resolves_for_it(monkeypatch):
    cuda = torch.device("cuda")
    assert runtime.select_device() == cuda
    for name in ("SKINSEG_PROFILE", "SKINSEG_SMOKE"):
        monkeypatch.delenv(name, raising=False)
    assert profiles.active().name == "gpu" and profiles.gpu_available()
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    assert loop.resolve_amp("auto", cuda) is expected
    assert loop.resolve_amp("fp16", cuda) is torch.float16
    assert loop.resolve_channels_last(None, cuda) is True
    assert runtime.accelerator_name(cuda) == torch.cuda.get_device_name(0)


@needs_cuda
def test_cuda_fit_trains_on_the_gpu_and_best_loads_on_the_cpu(tmp_path, pairs):
    torch.cuda.reset_peak_memory_stats()
    cfg = TrainConfig(model="se_unet", model_kwargs={"base": 4}, img_size=32, epochs=2, batch_size=2, lr=3e-3,
                      num_workers=0, out=str(tmp_path / "run"), seed=0)
    devices = []
    result = fit.fit(cfg, splits=pairs, progress=False,
                     callbacks=[lambda event, info: devices.append(torch.cuda.memory_allocated()) if event == "batch_end"
                                else None])
    assert len(result.history) == 2 and np.isfinite(result.history[["train_loss", "val_loss", "val_dice"]]).all().all()
    assert min(devices) > 0 and torch.cuda.max_memory_allocated() > 0        # the weights and steps were on the GPU
    cpu_model = models.load_model(result.best_path)                        # map_location="cpu" by default
    assert next(cpu_model.parameters()).device.type == "cpu"
    gpu_model = models.load_model(result.best_path, map_location="cuda")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(gpu_model(x.cuda()).float().cpu(), cpu_model(x), atol=2e-2, rtol=2e-2)


@needs_cuda
def test_cuda_fp16_with_grad_scaler_takes_finite_steps(tmp_path, pairs):
    cfg = TrainConfig(model="se_unet", model_kwargs={"base": 4}, img_size=32, epochs=1, batch_size=2, amp="fp16",
                      num_workers=0, out=str(tmp_path / "fp16"), seed=0)
    cuda = torch.device("cuda")
    parts = fit.build_parts(cfg, fit.build_loaders(cfg, pairs), cuda)
    assert parts.amp_dtype is torch.float16 and parts.scaler.is_enabled() and parts.channels_last
    before = [p.detach().clone() for p in parts.model.parameters()]
    loss = loop.train_one_epoch(parts.net, parts.loaders["train"], parts.loss_fn, parts.optimizer, parts.scheduler,
                                    device=cuda, amp_dtype=parts.amp_dtype, scaler=parts.scaler,
                                    channels_last=parts.channels_last)
    assert np.isfinite(loss)
    assert any(not torch.equal(b, p) for b, p in zip(before, parts.model.parameters()))


@needs_cuda
def test_cuda_predictions_match_the_cpu(pairs):
    torch.manual_seed(0)
    model = models.build_model("se_unet", base=4).eval()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=shape, dtype=np.uint8) for shape in ((40, 56, 3), (33, 33, 3))]
    on_cpu = predict.predict_batch(model, images, 32, device="cpu", tta=True)
    on_gpu = predict.predict_batch(model, images, 32, device="cuda", tta=True)
    for cpu_prob, gpu_prob, image in zip(on_cpu, on_gpu, images):
        assert gpu_prob.shape == image.shape[:2] and gpu_prob.dtype == np.float32
        np.testing.assert_allclose(gpu_prob, cpu_prob, atol=1e-2)        # TF32 convolutions on the GPU
        assert ((gpu_prob > 0.5) == (cpu_prob > 0.5)).mean() > 0.99


@needs_cuda
def test_cuda_loaders_pin_memory(pairs):
    loaders = data.make_loaders(pairs, 32, 2, num_workers=0)
    assert loaders["train"].pin_memory is True
