"""benchmarks/throughput.py --precisions: the fp32 and bf16 rows (tiny model, never timed)."""
from __future__ import annotations

import json

import numpy as np
import pytest



def test_precision_rows_are_fp32_and_bf16_with_and_without_channels_last(throughput, capsys):
    status = throughput.main(["--model", "se_unet", "--model-kwargs", '{"base": 4, "depth": 2}', "--img-size", "32",
                              "--batch-size", "2", "--steps", "2", "--warmup", "1", "--device", "cpu",
                              "--precisions", "--json"])
    assert status == 0
    rows = json.loads(capsys.readouterr().out)["precisions"]
    assert [(r["amp"], r["channels_last"]) for r in rows] == [("off", False), ("off", True), ("bfloat16", False),
                                                              ("bfloat16", True)]
    assert rows[0]["speedup"] == 1.0 and rows[0]["pair_speedups"] == [1.0, 1.0]
    for row in rows:
        assert row["images_per_s"] > 0 and len(row["pair_speedups"]) == 2
        assert row["speedup"] == pytest.approx(float(np.median(row["pair_speedups"])))


def test_precision_table_is_printed_only_when_asked(throughput):
    base = {"model": "m", "img_size": 32, "batch_size": 2, "workers": 0, "amp": "off", "channels_last": False,
            "compile": False, "torch": "x", "device": "cpu", "threads": 1, "train_images_per_s": 1.0,
            "train_bare_images_per_s": 1.0, "train_ratio": 1.0, "infer_images_per_s": 1.0,
            "infer_bare_images_per_s": 1.0, "infer_ratio": 1.0, "infer_files_images_per_s": 1.0,
            "infer_files_bare_images_per_s": 1.0, "infer_files_ratio": 1.0, "train_first_batch_s": 0.1,
            "target_ratio": 0.9, "meets_target": True}
    assert "by precision" not in throughput.format_result(base)
    rows = [{"what": "fp32", "amp": "off", "images_per_s": 2.0, "speedup": 1.0},
            {"what": "autocast", "amp": "bfloat16", "images_per_s": 3.8, "speedup": 1.9}]
    text = throughput.format_result({**base, "precisions": rows})
    assert "by precision" in text and "bfloat16" in text and "1.9" in text
