"""predict_batch resolves precision and memory layout as training does (issue 22): bf16 autocast and NHWC inputs
where the hardware runs them natively, float32 probabilities always, and the caller's model left untouched."""
import numpy as np
import pytest
import torch
from torch import nn

from helpers import models, runtime
from helpers.evaluation import metrics
from helpers.evaluation.predict import predict_batch, predict_probabilities


class Probe(nn.Module):
    """A 3x3 convolution that records, for each forward pass, the autocast state and the input's layout."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 1, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator) * 0.3)
        self.seen: list[tuple[bool, torch.dtype, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"),
                          x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()))
        return self.conv(x)


def _images(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(40 + 7 * i, 52, 3), dtype=np.uint8) for i in range(n)]


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bf16_and_nhwc_exactly_where_the_cpu_has_native_bf16(monkeypatch, native):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    probe = Probe()
    probs = predict_batch(probe, _images(), 32)
    assert probe.seen == [(native, torch.bfloat16 if native else probe.seen[0][1], native)]
    assert all(p.dtype == np.float32 for p in probs)


def test_off_is_float32_and_channels_last_false_is_contiguous_with_the_same_numbers(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    probe = Probe()
    image = _images(1)[0]
    off = predict_probabilities(probe, image, 32, amp="off")   # layout still follows the CPU: NHWC
    plain = predict_batch(probe, [image], 32, amp="off", channels_last=False)[0]
    assert [s[0] for s in probe.seen] == [False, False] and [s[2] for s in probe.seen] == [True, False]
    np.testing.assert_allclose(off, plain, atol=1e-6)


def test_bf16_changes_the_numbers_slightly_and_every_tta_view_is_autocast(monkeypatch):
    probe = Probe()
    images = _images()
    fp32 = predict_batch(probe, images, 32, amp="off", tta=True)
    bf16 = predict_batch(probe, images, 32, amp="bf16", channels_last=True, tta=True)
    assert [s[:1] + s[2:] for s in probe.seen[4:]] == [(True, True)] * 4 and probe.seen[4][1] == torch.bfloat16
    gaps = [float(np.abs(a - b).max()) for a, b in zip(fp32, bf16)]
    assert 0 < max(gaps) < 0.02   # bf16 really ran (not bit-identical), and stays close


def test_the_callers_model_keeps_its_dtype_layout_and_training_flag():
    torch.manual_seed(0)
    model = models.build_model("se_unet", base=4).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    predict_batch(model, _images(2), 32, amp="bf16", channels_last=True)
    assert model.training
    for name, tensor in model.state_dict().items():
        assert tensor.dtype == before[name].dtype and tensor.is_contiguous(), name
        torch.testing.assert_close(tensor, before[name], rtol=0, atol=0)


def test_a_trained_like_model_gives_the_same_masks_in_bf16():
    """On a model whose logits are far from 0 almost everywhere (as a trained one's are), bf16 masks agree."""
    torch.manual_seed(0)
    model = models.build_model("se_unet", base=4)
    images = _images(4, seed=3)
    fp32 = [p > 0.5 for p in predict_batch(model, images, 32, amp="off")]
    bf16 = [p > 0.5 for p in predict_batch(model, images, 32, amp="bf16", channels_last=True)]
    dice = [metrics.image_scores(b, a)["dice"] for a, b in zip(fp32, bf16)]
    assert min(dice) > 0.9


def test_fp16_off_cuda_and_unknown_amp_are_refused():
    with pytest.raises(ValueError, match="fp16"):
        predict_batch(Probe(), _images(1), 32, amp="fp16")
    with pytest.raises(ValueError, match="amp must be one of"):
        predict_batch(Probe(), _images(1), 32, amp="half")
