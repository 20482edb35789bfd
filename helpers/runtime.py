"""Device choice, CPU capabilities and seeding: the run-time state every notebook and script needs.

Introduced by the setup cell of every notebook (``DEVICE = runtime.select_device()``); notebook 04 uses
:func:`cpu_has_native_bf16` to explain why ``amp="auto"`` picks bfloat16 on some CPUs.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

#: The device types :func:`select_device` accepts, in the order it tries them when none is named; every
#: ``--device`` option (``choices=DEVICE_CHOICES``, default None = the first available) uses this list.
DEVICE_CHOICES: tuple[str, ...] = ("cuda", "mps", "cpu")


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
