"""Figures shared by the notebooks: overlays, grids, and saving to ``figures/`` under stable names.

Every function returns the matplotlib Figure it drew so notebooks can show it and tests can inspect it.
Images are ``(H, W, 3) uint8`` or float in [0, 1]; masks are ``(H, W)`` with values {0, 1}.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from . import config


def save_figure(fig: plt.Figure, name: str, *, dpi: int = 110) -> Path:
    """Save ``fig`` as ``figures/<name>.png`` and return the path (the folder is created if needed)."""
    if Path(name).suffix:
        raise ValueError(f"give the figure name without extension, got {name!r}")
    path = config.figures_dir() / f"{name}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def overlay(image: np.ndarray, mask: np.ndarray, color: tuple[float, float, float] = (0.1, 0.9, 0.2),
            alpha: float = 0.4) -> np.ndarray:
    """Blend ``mask`` onto ``image`` in ``color``; returns a float (H, W, 3) image in [0, 1].

    Raises:
        ValueError: the mask's height and width differ from the image's.
    """
    img = image.astype(np.float32)
    if img.max() > 1.0:
        img = img / 255.0
    if mask.shape[:2] != img.shape[:2]:
        raise ValueError(f"mask is {mask.shape[:2]} but image is {img.shape[:2]}: resize one to the other first")
    out = img.copy()
    m = mask.astype(bool)
    out[m] = (1 - alpha) * img[m] + alpha * np.asarray(color, dtype=np.float32)
    return np.clip(out, 0.0, 1.0)
