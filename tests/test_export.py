"""ONNX export (issue 22): ONNX Runtime's logits equal PyTorch's within export.PARITY_ATOL on real-size inputs,
the training size travels in the file, and ``python -m helpers.predict --export-onnx / --onnx`` round-trips.
Needs the optional extra ``pip install -e ".[demo]"``; without it only the install-hint test runs."""
import sys

import numpy as np
import pytest
import torch

from helpers import models, runfolder
from helpers.cli.predict import main as predict_main
from helpers.data.files import read_mask
from helpers.data.synthetic import generate_pair
from helpers.evaluation import export
from helpers.evaluation.predict import predict_batch

pytestmark = pytest.mark.usefixtures("isolated_home")
KWARGS = {"encoder_name": "resnet18", "aspp_channels": 64, "decoder_channels": [64, 32, 16, 16, 8]}


def _have(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


needs_onnx = pytest.mark.skipif(not all(map(_have, ("onnx", "onnxscript", "onnxruntime"))),
                                reason='onnx / onnxscript / onnxruntime not installed: pip install -e ".[demo]"')


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A resnet_unet_aspp checkpoint (BatchNorm statistics not the defaults) and its ONNX export, 256 px."""
    torch.manual_seed(0)
    model = models.build_model("resnet_unet_aspp", **KWARGS)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
        head = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.out_channels == 1][-1]
        head.weight.mul_(300.0)   # logits spread like a trained model's (std about 1, not 0.005)
    model.eval()
    folder = tmp_path_factory.mktemp("export")
    ckpt = models.save_checkpoint(folder / runfolder.BEST_FILE, model, config={"img_size": 256})
    onnx_path = export.export_checkpoint(ckpt, folder / "model.onnx")
    return model, ckpt, onnx_path


@needs_onnx
@pytest.mark.slow
@pytest.mark.parametrize("shape", [(2, 3, 256, 256), (1, 3, 384, 512), (3, 3, 200, 150)])
def test_onnx_runtime_logits_equal_pytorch_within_the_stated_tolerance(exported, shape):
    model, _, onnx_path = exported
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x)
    out = export.OnnxModel(onnx_path)(x)
    assert out.shape == ref.shape == (shape[0], 1, *shape[2:])
    gap = float((out - ref).abs().max())
    assert gap < export.PARITY_ATOL, gap
    assert float(ref.std()) > 100 * export.PARITY_ATOL   # the logits vary: the tolerance is tight against them


@needs_onnx
@pytest.mark.slow
def test_predict_batch_runs_the_onnx_model_like_the_pytorch_one(exported):
    model, _, onnx_path = exported
    onnx_model = export.OnnxModel(onnx_path)
    assert onnx_model.img_size == 256 and onnx_model.size_multiple == 32
    images = [generate_pair(seed, 256)[0] for seed in (3, 4)] + [generate_pair(5, 512)[0]]
    torch_probs = predict_batch(model, images, 256, amp="off", tta=True)
    onnx_probs = predict_batch(onnx_model, images, 256, tta=True)    # amp does not apply to ONNX Runtime
    for a, b, image in zip(torch_probs, onnx_probs, images):
        assert b.shape == image.shape[:2] and float(np.abs(a - b).max()) < 1e-5


@needs_onnx
@pytest.mark.slow
def test_the_cli_exports_and_predicts_with_onnx_runtime(exported, tmp_path, capsys):
    _, ckpt, onnx_path = exported
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image
    pictures = {f"ISIC_{i:07d}": generate_pair(10 + i, 256)[0] for i in range(2)}
    for name, image in pictures.items():
        Image.fromarray(image).save(images / f"{name}.png")
    out_onnx = tmp_path / "again.onnx"
    assert predict_main(["--checkpoint", str(ckpt), "--export-onnx", str(out_onnx)]) == 0
    assert export.OnnxModel(out_onnx).img_size == 256
    assert predict_main(["--onnx", str(onnx_path), "--images", str(images), "--out", str(tmp_path / "pred")]) == 0
    assert "wrote 2 masks" in capsys.readouterr().out
    probs = predict_batch(export.OnnxModel(onnx_path), list(pictures.values()), 256)
    for (name, _), prob in zip(sorted(pictures.items()), probs):
        np.testing.assert_array_equal(read_mask(tmp_path / "pred" / f"{name}_segmentation.png"), prob > 0.5)


def test_a_missing_onnx_file_and_export_without_a_checkpoint_are_one_line_errors(tmp_path, capsys):
    if _have("onnxruntime"):
        assert predict_main(["--onnx", str(tmp_path / "no.onnx"), "--images", str(tmp_path),
                             "--out", str(tmp_path / "o")]) == 2
        assert "does not exist: export one with" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        predict_main(["--onnx", str(tmp_path / "no.onnx"), "--export-onnx", str(tmp_path / "x.onnx")])
    assert "--export-onnx needs --checkpoint" in capsys.readouterr().err


def test_without_the_extra_the_error_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)   # import onnxruntime now raises ImportError
    with pytest.raises(ImportError, match=r"pip install -e \"\.\[demo\]\""):
        export.OnnxModel(tmp_path / "model.onnx")
