"""Figures shared by the notebooks: overlays, grids, and saving to ``figures/`` under stable names.

Introduced in notebook 01, whose first figures (pair grids, overlays) are drawn here.

Every function returns the matplotlib Figure it drew so notebooks can show it and tests can inspect it.
Images are ``(H, W, 3) uint8`` or float in [0, 1]; masks are ``(H, W)`` with values {0, 1}.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from helpers import config
from helpers.runfolder import HISTORY_FILE


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


# ------------------------------------------------------------------------------------ training and evaluation
#: Colours of true positives, false positives and false negatives in :func:`error_overlay`.
ERROR_COLORS: dict[str, tuple[float, float, float]] = {"tp": (0.15, 0.80, 0.25), "fp": (0.95, 0.20, 0.15),
                                                      "fn": (0.20, 0.45, 1.00)}


def plot_history(histories, *, title: str | None = None, panel_size: float = 4.2) -> plt.Figure:
    """Training curves: train/validation loss (left) and validation Dice (right), per epoch.

    Introduced in notebook 04 (training). The best epoch (highest validation Dice, the one ``best.pt``
    keeps) is marked with a dot.

    Args:
        histories: one ``history`` DataFrame from :func:`helpers.train.fit.fit` (columns ``epoch``,
            ``train_loss``, ``val_loss``, ``val_dice``), or a dict ``{run name: history}`` to compare runs.
        title: figure title.

    Raises:
        ValueError: no histories, an empty one, or missing columns (named in the message).
    """
    runs = dict(histories) if isinstance(histories, dict) else {"": histories}
    if not runs:
        raise ValueError("plot_history needs at least one history DataFrame")
    needed = {"epoch", "train_loss", "val_loss", "val_dice"}
    fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(2 * panel_size, 0.75 * panel_size))
    for k, (name, hist) in enumerate(runs.items()):
        missing = needed - set(hist.columns)
        if missing or len(hist) == 0:
            raise ValueError(f"history {name!r} is empty or lacks columns {sorted(missing)}: pass fit(...).history "
                             f"or pd.read_csv('<run>/{HISTORY_FILE}')")
        color = f"C{k}"
        label = f"{name} " if name else ""
        ax_loss.plot(hist["epoch"], hist["train_loss"], "-o", ms=3, color=color, label=f"{label}train")
        ax_loss.plot(hist["epoch"], hist["val_loss"], "--s", ms=3, color=color, label=f"{label}validation")
        ax_dice.plot(hist["epoch"], hist["val_dice"], "-o", ms=3, color=color, label=f"{label}val Dice")
        best = hist.loc[hist["val_dice"].idxmax()]
        ax_dice.plot([best["epoch"]], [best["val_dice"]], "o", ms=9, mfc="none", color=color)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_dice.set(xlabel="epoch", ylabel="Dice (mean over images)", title="Validation Dice (circle: best)",
                ylim=(0, 1.02))
    for ax in (ax_loss, ax_dice):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def error_overlay(image: np.ndarray, truth: np.ndarray, pred: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Colour a prediction's pixels by outcome: true positive green, false positive red, false negative blue.

    Introduced in notebook 05 (evaluation). True negatives keep the image's colours.

    Args:
        image: ``(H, W, 3)`` uint8 or float [0, 1].
        truth, pred: ``(H, W)`` masks in {0, 1} (or bool), the image's size.
        alpha: opacity of the colours.

    Returns:
        ``(H, W, 3) float`` image in [0, 1].

    Raises:
        ValueError: a mask's size differs from the image's.
    """
    out = overlay(image, np.zeros(image.shape[:2], np.uint8))  # float copy in [0, 1]
    t, p = np.asarray(truth) > 0, np.asarray(pred) > 0
    if t.shape != out.shape[:2] or p.shape != out.shape[:2]:
        raise ValueError(f"truth {t.shape} and prediction {p.shape} must both be the image's size {out.shape[:2]}")
    for key, where in (("tp", t & p), ("fp", ~t & p), ("fn", t & ~p)):
        out[where] = (1 - alpha) * out[where] + alpha * np.asarray(ERROR_COLORS[key], np.float32)
    return out


def prediction_grid(images: list[np.ndarray], truths: list[np.ndarray], preds: list[np.ndarray], *,
                    titles: list[str] | None = None, panel_size: float = 2.4) -> plt.Figure:
    """One row per image: the image, the truth, the prediction, and the errors (:func:`error_overlay`).

    Introduced in notebook 05 (evaluation).

    Args:
        images: ``(H, W, 3)`` images; truths, preds: ``(H, W)`` {0, 1} masks of the same sizes.
        titles: one row label per image (e.g. ``"ISIC_0000001  Dice 0.91"``), or None.

    Raises:
        ValueError: different numbers of images, truths, predictions or titles.
    """
    n = len(images)
    if n == 0 or len(truths) != n or len(preds) != n or (titles is not None and len(titles) != n):
        raise ValueError(f"got {n} images, {len(truths)} truths, {len(preds)} predictions and "
                         f"{'no' if titles is None else len(titles)} titles: pass one of each per image")
    aspect = images[0].shape[0] / images[0].shape[1]
    fig, axes = plt.subplots(n, 4, figsize=(4 * panel_size, n * panel_size * aspect + 0.4), squeeze=False)
    for i, (image, truth, pred) in enumerate(zip(images, truths, preds)):
        panels = [image, np.asarray(truth) > 0, np.asarray(pred) > 0, error_overlay(image, truth, pred)]
        for j, (ax, panel) in enumerate(zip(axes[i], panels)):
            ax.imshow(panel, cmap="gray" if panel.ndim == 2 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(["image", "truth", "prediction", "errors: TP green, FP red, FN blue"][j], fontsize=8)
        if titles is not None:
            axes[i][0].set_ylabel(titles[i], fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------ reliability (notebook 06)
def reliability_diagram(tables: dict, *, title: str | None = None, panel_size: float = 4.2) -> plt.Figure:
    """Reliability diagram: mean predicted probability against the observed lesion fraction, per bin.

    Introduced in notebook 06. A calibrated model follows the diagonal; points below it are over-confident
    (fewer lesion pixels than predicted). The right panel shows how many pixels fall in each bin (log scale).

    Args:
        tables: ``{label: helpers.evaluation.reliability.reliability_bins(...) table}``, e.g. before and after
            temperature scaling; the label may carry the ECE.
        title: figure title.

    Raises:
        ValueError: no tables, or a table without the reliability columns.
    """
    if not tables:
        raise ValueError("reliability_diagram needs at least one reliability_bins table")
    needed = {"low", "high", "count", "mean_probability", "lesion_fraction"}
    fig, (ax, ax_count) = plt.subplots(1, 2, figsize=(2 * panel_size, 0.85 * panel_size),
                                       gridspec_kw={"width_ratios": [1.3, 1]})
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    for k, (label, table) in enumerate(tables.items()):
        missing = needed - set(table.columns)
        if missing:
            raise ValueError(f"table {label!r} lacks columns {sorted(missing)}: pass reliability_bins(...) output")
        used = table[table["count"] > 0]
        ax.plot(used["mean_probability"], used["lesion_fraction"], "-o", ms=4, color=f"C{k}", label=label)
        centres = (table["low"] + table["high"]) / 2
        width = (table["high"] - table["low"]).iloc[0] / (len(tables) + 0.5)
        ax_count.bar(centres + (k - (len(tables) - 1) / 2) * width, table["count"], width=width, color=f"C{k}",
                     label=label)
    ax.set(xlabel="mean predicted lesion probability (bin)", ylabel="lesion fraction of the bin's pixels",
           xlim=(0, 1), ylim=(0, 1), title="Reliability diagram")
    ax_count.set(xlabel="predicted probability", ylabel="pixels", yscale="log", title="Pixels per bin")
    for a in (ax, ax_count):
        a.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def interval_plot(table, *, label_column: str | None = None, xlabel: str = "mean Dice", reference: float | None = None,
                  title: str | None = None, panel_width: float = 6.0) -> plt.Figure:
    """Forest plot: one row per group, its mean as a dot and its confidence interval as a bar.

    Introduced in notebook 06 (subgroups). Rows whose intervals overlap are not shown to differ.

    Args:
        table: a DataFrame with ``mean``, ``low``, ``high`` (and ``n``) columns, e.g. from
            :func:`helpers.evaluation.subgroups.subgroup_table` (several concatenated); row labels come from the index,
            or from ``label_column``.
        reference: draw a vertical line here (e.g. the overall mean).

    Raises:
        ValueError: an empty table or missing columns.
    """
    missing = {"mean", "low", "high"} - set(table.columns)
    if len(table) == 0 or missing:
        raise ValueError(f"interval_plot needs a non-empty table with mean, low and high columns (missing {sorted(missing)})")
    labels = [str(v) for v in (table[label_column] if label_column else table.index)]
    if "n" in table.columns:
        labels = [f"{name}  (n={int(n)})" for name, n in zip(labels, table["n"])]
    y = np.arange(len(table))[::-1]
    fig, ax = plt.subplots(figsize=(panel_width, 0.32 * len(table) + 1.0))
    ax.errorbar(table["mean"], y, xerr=[table["mean"] - table["low"], table["high"] - table["mean"]], fmt="o",
                color="C0", ecolor="C0", capsize=3)
    if reference is not None:
        ax.axvline(reference, color="grey", ls=":", label=f"all images {reference:.3f}")
        ax.legend(fontsize=8, loc="lower left")
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set(xlabel=xlabel)
    ax.grid(alpha=0.3, axis="x")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
