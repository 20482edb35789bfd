"""helpers.runtime: device choice, the CPU's native-bf16 check, and the amp choice it drives."""
import pytest
import torch

from helpers import runtime
from helpers.train import loop


@pytest.mark.parametrize("caps,expected", [
    ({"avx512_bf16": True, "amx_bf16": False}, True),
    ({"avx512_bf16": False, "amx_bf16": True}, True),
    ({"avx512_bf16": False, "amx_bf16": False, "avx512_f": True}, False),  # AVX-512 alone emulates bf16
    ({"architecture": "arm64", "bf16": True}, False),  # ARM not counted: not measured there
])
def test_native_bf16_follows_torch_capabilities(monkeypatch, caps, expected):
    monkeypatch.setattr(runtime, "cpu_capabilities", lambda: caps)
    assert runtime.cpu_has_native_bf16() is expected


def test_capabilities_come_from_torch():
    caps = runtime.cpu_capabilities()
    assert caps == dict(torch.cpu.get_capabilities()) and "architecture" in caps


def _raise(*args):
    raise RuntimeError("CPU capability detection is not available in this build")


@pytest.mark.parametrize("replacement", [None, _raise], ids=["missing", "raises"])
def test_a_torch_that_cannot_tell_means_no_native_bf16(monkeypatch, replacement):
    """Older torch releases lack get_capabilities, some builds raise: float32 then, never a crash."""
    if replacement is None:
        monkeypatch.delattr(torch.cpu, "get_capabilities")
    else:
        monkeypatch.setattr(torch.cpu, "get_capabilities", replacement)
    assert runtime.cpu_capabilities() == {}
    assert runtime.cpu_has_native_bf16() is False
    assert loop.resolve_amp("auto", torch.device("cpu")) is None


def test_auto_amp_on_cpu_is_bf16_only_with_native_bf16(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert loop.resolve_amp("auto", cpu) is torch.bfloat16
    assert loop.resolve_amp("off", cpu) is None
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    assert loop.resolve_amp("auto", cpu) is None
    assert loop.resolve_amp("bf16", cpu) is torch.bfloat16  # asked for explicitly: honoured
    with pytest.raises(ValueError, match="fp16"):
        loop.resolve_amp("fp16", cpu)


def test_auto_amp_stays_off_on_mps_whatever_the_cpu(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert loop.resolve_amp("auto", torch.device("mps")) is None


def test_accelerator_name_of_the_cpu():
    assert runtime.accelerator_name(torch.device("cpu")) == f"CPU, {torch.get_num_threads()} threads"
