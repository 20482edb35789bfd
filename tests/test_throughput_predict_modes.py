"""benchmarks/throughput.py --predict-modes-only: fp32 / auto / ONNX Runtime rows with mask agreement (tiny model,
never timed). Needs the optional extra (ONNX Runtime) ``pip install -e ".[demo]"``."""
from __future__ import annotations

import json

import pytest

from helpers import models, runtime

pytest.importorskip("onnxruntime", reason='ONNX Runtime not installed: pip install -e ".[demo]"')
pytest.importorskip("onnxscript", reason='onnxscript (the ONNX exporter) not installed: pip install -e ".[demo]"')


@pytest.mark.slow
def test_predict_mode_rows_on_a_checkpoint_and_its_images(throughput, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)   # auto = bf16 + NHWC, on any CPU
    model = models.build_model("se_unet", base=4, depth=2)
    ckpt = models.save_checkpoint(tmp_path / "best.pt", model, config={"img_size": 32})
    status = throughput.main(["--predict-modes-only", "--checkpoint", str(ckpt), "--img-size", "48",
                              "--batch-size", "2", "--steps", "2", "--warmup", "1", "--device", "cpu", "--json"])
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    rows = {r["what"]: r for r in result["predict_modes"]}
    assert list(rows) == ["fp32", "auto", "onnxruntime"] and "at 32 px, 6 images" in result["predict_modes_on"]
    assert (rows["auto"]["amp"], rows["auto"]["channels_last"]) == ("bfloat16", True)
    assert rows["fp32"]["dice_vs_fp32"] == 1.0 and rows["fp32"]["max_prob_gap"] == 0.0
    assert rows["onnxruntime"]["max_prob_gap"] < 1e-4     # float32 both: the same numbers
    assert 0 < rows["auto"]["max_prob_gap"] < 0.05        # bf16 really ran, and stayed close
    assert all(r["images_per_s"] > 0 and 0 <= r["min_dice_vs_fp32"] <= r["dice_vs_fp32"] <= 1 for r in rows.values())
    assert "mask Dice vs fp32" in throughput.format_result(result)
