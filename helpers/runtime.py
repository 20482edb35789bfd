"""Device choice and seeding: the two pieces of run-time state every notebook and script needs."""
from __future__ import annotations

import os
import random

import numpy as np
import torch


def select_device(prefer: str | None = None) -> torch.device:
    """The device to train and predict on.

    Args:
        prefer: ``"cuda"``, ``"mps"`` or ``"cpu"`` to force one; None picks CUDA, then Apple MPS, then CPU.

    Raises:
        RuntimeError: ``prefer`` names a device this machine does not have.
    """
    if prefer is not None:
        prefer = prefer.lower()
        available = {"cpu": True, "cuda": torch.cuda.is_available(),
                     "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
        if prefer not in available:
            raise RuntimeError(f"unknown device {prefer!r}: use cuda, mps or cpu")
        if not available[prefer]:
            raise RuntimeError(f"device {prefer!r} is not available here: drop --device to pick one automatically")
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


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
