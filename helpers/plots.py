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


def _grid_axes(count: int, ncols: int, panel_size: float, aspect: float) -> tuple[plt.Figure, np.ndarray]:
    """A figure with ``count`` panels in rows of ``ncols`` (axes turned off); returns (fig, flat axes)."""
    if count < 1:
        raise ValueError("nothing to show: pass at least one image")
    ncols = max(1, min(ncols, count))
    nrows = -(-count // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols, panel_size * aspect * nrows + 0.3),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes.flat


def draw_contour(ax: plt.Axes, mask: np.ndarray, color: str = "yellow", linewidth: float = 1.2) -> None:
    """Outline the boundary of a binary ``(H, W)`` mask on ``ax`` (nothing is drawn for an empty or full mask)."""
    m = np.asarray(mask) > 0
    if m.any() and not m.all():
        ax.contour(m.astype(np.float32), levels=[0.5], colors=[color], linewidths=linewidth)


def pair_grid(images: list[np.ndarray], masks: list[np.ndarray], *, titles: list[str] | None = None,
              ncols: int = 4, alpha: float = 0.3, contour_color: str = "yellow",
              panel_size: float = 2.6) -> plt.Figure:
    """Images with their lesion masks blended in (green) and outlined (``contour_color``), in a grid.

    Introduced in notebook 01 (data exploration); reused to show predictions next to ground truth.

    Args:
        images: ``(H, W, 3)`` uint8 or float [0, 1] images (sizes may differ).
        masks: ``(H, W)`` masks in {0, 1} (or 0/255), one per image, each the size of its image.
        titles: one short title per panel (e.g. the image id), or None.
        ncols: panels per row.
        alpha: opacity of the green fill; 0 shows only the outline.

    Raises:
        ValueError: different numbers of images, masks or titles, or a mask the wrong size for its image.
    """
    if len(images) != len(masks) or (titles is not None and len(titles) != len(images)):
        raise ValueError(f"got {len(images)} images, {len(masks)} masks and "
                         f"{'no' if titles is None else len(titles)} titles: pass one mask (and title) per image")
    aspect = images[0].shape[0] / images[0].shape[1] if len(images) else 1.0
    fig, axes = _grid_axes(len(images), ncols, panel_size, aspect)
    for i, (ax, image, mask) in enumerate(zip(axes, images, masks)):
        binary = (np.asarray(mask) > 0).astype(np.uint8)
        ax.imshow(overlay(image, binary, alpha=alpha) if alpha > 0 else image)
        draw_contour(ax, binary, contour_color)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return fig


def image_grid(images: list[np.ndarray], *, titles: list[str] | None = None, ncols: int = 4,
               panel_size: float = 2.6) -> plt.Figure:
    """Plain images in a grid (e.g. one image through an augmentation pipeline several times).

    Args:
        images: ``(H, W, 3)`` uint8 or float [0, 1] images, or ``(H, W)`` masks (shown in grey).
        titles: one short title per panel, or None.

    Raises:
        ValueError: no images, or a different number of titles than images.
    """
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"got {len(images)} images but {len(titles)} titles: pass one title per image")
    aspect = images[0].shape[0] / images[0].shape[1] if len(images) else 1.0
    fig, axes = _grid_axes(len(images), ncols, panel_size, aspect)
    for i, (ax, image) in enumerate(zip(axes, images)):
        ax.imshow(image, cmap="gray" if np.ndim(image) == 2 else None)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return fig
