"""Device choice, CPU capabilities and seeding: the run-time state every notebook and script needs.

Introduced by the setup cell of every notebook (``DEVICE = runtime.select_device()``); notebook 04 uses
:func:`cpu_has_native_bf16` to explain why ``amp="auto"`` picks bfloat16 on some CPUs. :func:`resolve_amp`,
:func:`resolve_channels_last` and :func:`autocast` are the one home of precision and memory layout for training
(notebook 04) and prediction (notebook 07).
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

#: The device types :func:`select_device` accepts, in the order it tries them when none is named; every
#: ``--device`` option (``choices=DEVICE_CHOICES``, default None = the first available) uses this list.
DEVICE_CHOICES: tuple[str, ...] = ("cuda", "mps", "cpu")
#: ``amp`` settings of training (TrainConfig, ``--amp``) and prediction (``predict_batch(amp=...)``).
AMP_CHOICES: tuple[str, ...] = ("auto", "off", "bf16", "fp16")


def _available(device_type: str) -> bool:
    """Whether this machine has a device of type ``device_type`` (one of :data:`DEVICE_CHOICES`)."""
    if device_type == "cuda":
        return torch.cuda.is_available()
    if device_type == "mps":
        return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    return device_type == "cpu"


def select_device(prefer: str | None = None) -> torch.device:
    """The device to train and predict on.

    Args:
        prefer: one of :data:`DEVICE_CHOICES` (``"cuda"``, ``"mps"``, ``"cpu"``) to force one; None picks
            the first available of them: CUDA, then Apple MPS, then CPU.

    Raises:
        RuntimeError: ``prefer`` names a device this machine does not have.
    """
    if prefer is not None:
        prefer = prefer.lower()
        if prefer not in DEVICE_CHOICES:
            raise RuntimeError(f"unknown device {prefer!r}: use one of {', '.join(DEVICE_CHOICES)}")
        if not _available(prefer):
            raise RuntimeError(f"device {prefer!r} is not available here: drop --device to pick one automatically")
        return torch.device(prefer)
    return torch.device(next(choice for choice in DEVICE_CHOICES if _available(choice)))


#: :func:`torch.cpu.get_capabilities` flags of x86 CPUs that compute in bfloat16 natively.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_capabilities() -> dict[str, object]:
    """This CPU's instruction-set flags as torch detects them (:func:`torch.cpu.get_capabilities`).

    Empty when this torch build cannot tell (the function is missing in older releases, and it raises on
    builds without CPU-capability detection): callers then treat the CPU as having no native bf16.
    """
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is None:
        return {}
    try:
        return dict(get())
    except (RuntimeError, TypeError, ValueError):
        return {}


def cpu_has_native_bf16() -> bool:
    """True when this CPU has bfloat16 arithmetic units (AVX512-BF16 or AMX-BF16), by torch's own detection.

    Without them oneDNN still runs bfloat16 by converting to float32 and back, which is slower than float32,
    so autocast only pays off where this is True. ARM CPUs are not counted: bf16 autocast was not measured there.
    """
    caps = cpu_capabilities()
    return any(bool(caps.get(flag)) for flag in NATIVE_BF16_FLAGS)


def accelerator_name(device: torch.device) -> str:
    """A short human name for ``device``: the GPU's name, ``"Apple MPS"`` or ``"CPU, N threads"``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return f"CPU, {torch.get_num_threads()} threads"


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA) and return a torch Generator seeded the same way.

    Use the returned generator for DataLoader shuffling so data order depends on ``seed`` only.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device``, or None for full float32.

    ``auto``: bfloat16 on CUDA GPUs that support it (Ampere and later), float16 on older CUDA GPUs,
    bfloat16 on CPUs with native bf16 units (AVX512-BF16 or AMX, :func:`cpu_has_native_bf16`;
    measured 1.8x the epochs per minute of float32 with the same validation Dice, see benchmarks/README.md), off on
    other CPUs (there bf16 is emulated, slower than float32) and on MPS (support varies).

    Raises:
        ValueError: unknown ``amp``, or ``fp16`` requested off CUDA.
    """
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {AMP_CHOICES}, got {amp!r}")
    if amp == "auto" and device.type == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else None
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "auto":
        # Native bf16 only (Ampere and later): older GPUs such as Colab's T4 merely emulate it, slowly.
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    if amp == "fp16" and device.type != "cuda":
        raise ValueError(f"amp='fp16' needs a CUDA GPU (this run is on {device.type}): use amp='auto' or 'off'")
    return torch.bfloat16 if amp == "bf16" else torch.float16


def resolve_channels_last(channels_last: bool | None, device: torch.device) -> bool:
    """Whether the model and its inputs use the NHWC (``channels_last``) memory layout on ``device``.

    ``None`` (the default): on for CUDA (tensor cores want NHWC) and for CPUs with native bf16
    (:func:`cpu_has_native_bf16`), where it was measured 1.2x faster end to end with bf16
    autocast at the same validation Dice (benchmarks/README.md); off on other CPUs and MPS, where it was not
    measured. ``True`` / ``False`` force it.
    """
    if channels_last is not None:
        return bool(channels_last)
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())


def autocast(device: torch.device, amp_dtype: torch.dtype | None) -> torch.autocast:
    """The autocast context of a forward pass: ``amp_dtype`` (from :func:`resolve_amp`) on ``device``'s type,
    disabled (plain float32) when ``amp_dtype`` is None."""
    return torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)
