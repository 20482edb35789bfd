"""Segmentation metrics with the ISIC 2018 Task 1 conventions, in NumPy (folders) and torch (validation).

Introduced in notebook 01 (``01_data_exploration``: what an empty prediction scores); notebook 05
(``05_evaluation``) uses all of it. Masks on disk are read with THE mask rule, :func:`helpers.data.files.read_mask`.

The reference is the official scorer, ``isic-challenge-scoring`` (``isic_challenge_scoring/segmentation.py``);
``tests/test_metrics.py`` checks every figure here against it to 1e-9. Its conventions, which we follow:

* A mask PNG is binarised as ``value > 128`` (so 0/255 masks read as expected; 128 itself is background).
  Masks the scorer would silently misread (0/1, colour, alpha-only, soft) are refused by
  :func:`helpers.data.files.read_mask` with a message naming the file and the fix.
* Each image gets a confusion matrix (TP, FP, FN, TN over its pixels) and its own scores; the reported
  figure is the **macro average**: the plain mean over images, every image weighing the same.
* ``jaccard = TP / (TP + FP + FN)`` and ``dice = 2 TP / (2 TP + FP + FN)``; when ``TP + FP + FN = 0``
  (empty truth and empty prediction) both are **1** (a perfect answer), not 0/0.
* ``sensitivity = TP / (TP + FN)`` is **1** when the truth is empty (``TP + FN = 0``), whatever the
  prediction; ``specificity = TN / (TN + FP)`` is **1** when the truth covers the whole image.
  An empty truth with a non-empty prediction therefore scores jaccard 0, dice 0, sensitivity 1.
* ``accuracy = (TP + TN) / all pixels``.
* ``threshold_jaccard`` (the ISIC 2018 ranking score) is the image's Jaccard when it is at least 0.65,
  else 0: a segmentation that bad counts as a failure.

Boundary distance: :func:`hausdorff95` (introduced in notebook 06), the 95th-percentile symmetric Hausdorff
distance between the mask outlines, in pixels (its empty-mask conventions are in its docstring).

Arrays: masks are ``(H, W)`` bool (or {0, 1}) NumPy arrays; torch inputs are ``(N, 1, H, W)`` logits and
float targets in {0, 1}. Pixels can be excluded from every count with an ``ignore`` mask (True = ignore),
or with the label ``-1`` in the pixel-level confusion matrix and classification report.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from helpers.data.files import MASK_EXTENSION, MASK_SUFFIX, MASK_THRESHOLD, listing, mask_name, read_mask

#: Per-image metrics, in the order the tables show them.
METRIC_NAMES: tuple[str, ...] = ("jaccard", "dice", "accuracy", "sensitivity", "specificity", "threshold_jaccard")
#: Confusion-count columns of :func:`evaluate_folders`'s per-image table.
COUNT_NAMES: tuple[str, ...] = ("tp", "fp", "fn", "tn")
#: Jaccard below this scores 0 in ``threshold_jaccard`` (ISIC 2018 Task 1).
JACCARD_THRESHOLD = 0.65
#: The ignore label of :func:`pixel_confusion_matrix` and :func:`pixel_classification_report`.
IGNORE_LABEL = -1
#: THE probability threshold: a pixel is lesion when ``sigmoid(logit) > DEFAULT_THRESHOLD``. The default of every
#: function and command line that thresholds probabilities (validation, prediction, ``--threshold``).
DEFAULT_THRESHOLD = 0.5
#: The thresholds a threshold search tries, 0.05, 0.10, ..., 0.95 (notebooks 05 and 06, exercise 2 of 05);
#: it holds :data:`DEFAULT_THRESHOLD` exactly, so a curve over it can be read at the default.
THRESHOLD_GRID: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))

_CLASS_NAMES = {IGNORE_LABEL: "ignore (-1)", 0: "background (0)", 1: "lesion (1)"}


# --------------------------------------------------------------------------------------------------------
# Binary masks and confusion counts (NumPy)
# --------------------------------------------------------------------------------------------------------
def binarize(array: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """A boolean mask from a 0/1 mask, a 0/255 mask or a probability map.

    Args:
        array: ``(H, W)`` (any shape) bool, integer or float array.
        threshold: pixels strictly above it are True. None picks it from the values: bool arrays are
            returned as they are; arrays whose maximum is at most 1 (0/1 masks, probabilities) use
            :data:`DEFAULT_THRESHOLD` (0.5); arrays up to 255 (0/255 PNG masks) use 128, the official ISIC
            scorer's rule.

    Returns:
        A new bool array of the same shape.

    Raises:
        ValueError: the array holds negative values, NaN, or values above 255 with no threshold given.
    """
    arr = np.asarray(array)
    if arr.dtype == bool:
        return arr.copy() if threshold is None else arr > threshold
    if arr.dtype.kind not in "uif":
        raise ValueError(f"cannot binarise an array of dtype {arr.dtype}: pass a bool, integer or float mask")
    if threshold is not None:
        return arr > threshold
    if arr.size == 0:
        return np.zeros(arr.shape, dtype=bool)
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError("mask holds NaN values: check the model output before thresholding")
    low, high = arr.min(), arr.max()
    if low < 0:
        raise ValueError(f"mask holds negative values (min {low}): pixels to ignore go in the `ignore` mask, "
                         "or pass an explicit threshold")
    if high > 255:
        raise ValueError(f"mask values go up to {high}: expected 0/1, 0/255 or probabilities; "
                         "pass an explicit threshold")
    return arr > (DEFAULT_THRESHOLD if high <= 1 else MASK_THRESHOLD)


def _as_bool(mask: np.ndarray, name: str) -> np.ndarray:
    """``mask`` as a bool array; accepts bool or integer/float arrays holding only 0 and 1."""
    arr = np.asarray(mask)
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind in "uif" and np.isin(arr, (0, 1)).all():
        return arr.astype(bool)
    raise ValueError(f"{name} must be a bool (or 0/1) mask, got dtype {arr.dtype} with values "
                     f"{np.unique(arr)[:5].tolist()}...: convert it with helpers.evaluation.metrics.binarize(...)")


def confusion_counts(pred: np.ndarray, truth: np.ndarray,
                     ignore: np.ndarray | None = None) -> tuple[int, int, int, int]:
    """Pixel counts ``(tp, fp, fn, tn)`` of a predicted mask against the truth.

    Args:
        pred: ``(H, W)`` bool (or 0/1) predicted mask.
        truth: ``(H, W)`` bool (or 0/1) ground-truth mask.
        ignore: optional ``(H, W)`` bool mask; True pixels are left out of every count.

    Raises:
        ValueError: the shapes differ, or a mask is not binary (see :func:`binarize`).
    """
    p, t = _as_bool(pred, "pred"), _as_bool(truth, "truth")
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from truth shape {t.shape}: "
                         "predict at the image's own size (or resize with nearest-neighbour)")
    if ignore is not None:
        keep = ~_as_bool(ignore, "ignore")
        if keep.shape != t.shape:
            raise ValueError(f"ignore mask shape {keep.shape} differs from truth shape {t.shape}")
        p, t = p[keep], t[keep]
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p & ~t))
    fn = int(np.count_nonzero(~p & t))
    tn = int(p.size - tp - fp - fn)
    return tp, fp, fn, tn


# --------------------------------------------------------------------------------------------------------
# Scores from counts: one formula set, shared by NumPy and torch
# --------------------------------------------------------------------------------------------------------
def _ratio_or_one(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` elementwise, and 1.0 where ``den == 0`` (the official scorer's 'freebie')."""
    safe = np.where(den == 0, 1.0, den)
    return np.where(den == 0, 1.0, num / safe)


def scores_from_counts(tp: np.ndarray | float, fp: np.ndarray | float, fn: np.ndarray | float,
                       tn: np.ndarray | float) -> dict[str, np.ndarray]:
    """The :data:`METRIC_NAMES` scores from confusion counts, with the ISIC conventions.

    Args:
        tp, fp, fn, tn: counts, scalars or arrays of one shape (one entry per image).

    Returns:
        ``{name: float64 array}`` with the counts' shape (0-d for scalars).

    Raises:
        ValueError: an image has no pixels at all (accuracy undefined).
    """
    tp, fp, fn, tn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn, tn))
    total = tp + fp + fn + tn
    if np.any(total == 0):
        raise ValueError("an image has no counted pixels (empty image, or every pixel ignored)")
    jaccard = _ratio_or_one(tp, tp + fp + fn)
    return {
        "jaccard": jaccard,
        "dice": _ratio_or_one(2 * tp, 2 * tp + fp + fn),
        "accuracy": (tp + tn) / total,
        "sensitivity": _ratio_or_one(tp, tp + fn),
        "specificity": _ratio_or_one(tn, tn + fp),
        "threshold_jaccard": np.where(jaccard >= JACCARD_THRESHOLD, jaccard, 0.0),
    }


def image_scores(pred: np.ndarray, truth: np.ndarray, ignore: np.ndarray | None = None) -> dict[str, float]:
    """Scores of one predicted mask: ``jaccard, dice, accuracy, sensitivity, specificity, threshold_jaccard``.

    Same numbers as the official ISIC scorer for the same masks (see the module docstring for the
    conventions on empty masks).

    Args:
        pred: ``(H, W)`` bool (or 0/1) prediction; binarise probabilities first with :func:`binarize`.
        truth: ``(H, W)`` bool (or 0/1) ground truth.
        ignore: optional ``(H, W)`` bool mask of pixels to leave out.

    Raises:
        ValueError: shapes differ or a mask is not binary.
    """
    counts = confusion_counts(pred, truth, ignore)
    return {name: float(value) for name, value in scores_from_counts(*counts).items()}


def summarize(per_image: pd.DataFrame | Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Aggregate per-image scores the ISIC way: the plain mean over images (macro average).

    Args:
        per_image: a DataFrame with (some of) the :data:`METRIC_NAMES` columns, one row per image, or a
            list of :func:`image_scores` dicts.

    Returns:
        ``{"n_images": n, "<metric>": mean, "<metric>_std": population std, "<metric>_median": median, ...}``
        for every metric present. ``threshold_jaccard`` is the ISIC 2018 ranking score.

    Raises:
        ValueError: no images, or none of the metric columns.
    """
    frame = per_image if isinstance(per_image, pd.DataFrame) else pd.DataFrame(list(per_image))
    if len(frame) == 0:
        raise ValueError("no per-image scores to summarise: is the mask folder empty?")
    present = [m for m in METRIC_NAMES if m in frame.columns]
    if not present:
        raise ValueError(f"no metric columns in {list(frame.columns)}; expected some of {list(METRIC_NAMES)}")
    summary: dict[str, float] = {"n_images": int(len(frame))}
    for name in present:
        values = frame[name].to_numpy(dtype=np.float64)
        summary[name] = float(values.mean())
        summary[f"{name}_std"] = float(values.std())
        summary[f"{name}_median"] = float(np.median(values))
    return summary


# --------------------------------------------------------------------------------------------------------
# Folders of ISIC masks
# --------------------------------------------------------------------------------------------------------
def _mask_ids(folder: Path) -> dict[str, Path]:
    """``{id: path}`` for the ``<id>_segmentation.png`` files of ``folder``."""
    ending = MASK_SUFFIX + MASK_EXTENSION
    return {p.name[: -len(ending)]: p for p in sorted(folder.glob(f"*{ending}"))}


def _no_masks(folder: Path, role: str) -> str:
    """Why ``folder`` (``--truth`` / ``--pred``) has no masks: the names expected, a few found, the fix."""
    found = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    expected = f"<id>{MASK_SUFFIX}{MASK_EXTENSION}"
    if not found:
        return f"{role} folder {folder} is empty: point --{role} at the folder of {expected} masks"
    pngs = [name for name in found if name.lower().endswith(MASK_EXTENSION)]
    example = f", e.g. {pngs[0]} -> {mask_name(Path(pngs[0]).stem)}" if pngs else ""
    return (f"{role} folder {folder} holds {len(found)} file(s) but no mask named {expected} (found "
            f"{listing(found, 3)}): masks must be named helpers.data.files.mask_name(id) = {expected}. Rename "
            f"them{example}, or point --{role} at the folder that holds the masks")


def evaluate_folders(truth_dir: str | Path, pred_dir: str | Path) -> tuple[pd.DataFrame, dict[str, float]]:
    """Score a folder of predicted masks against a folder of ground-truth masks, like the ISIC scorer.

    Every ``<id>_segmentation.png`` in ``truth_dir`` needs a prediction of the same name in ``pred_dir``
    (0/255 single-channel PNG of the same size); extra predictions are ignored. Both are read with
    :func:`helpers.data.files.read_mask`, which equals the official scorer's reading on valid masks and refuses the
    masks it would misread.

    Returns:
        ``(per_image, summary)``: a DataFrame indexed by ``id`` with the :data:`METRIC_NAMES` columns and
        the counts ``tp, fp, fn, tn``, and :func:`summarize` of it.

    Raises:
        FileNotFoundError: a folder is missing.
        ValueError: no masks in a folder (the names expected and a few found); predictions missing (all
            their ids are listed); a prediction whose size differs from its truth (the file is named);
            ``helpers.data.files.DatasetError`` (a ValueError) for an unreadable PNG or a mask the mask rule
            refuses (0/1, colour, alpha-only, non-binary, 16-bit).
    """
    truth_dir, pred_dir = Path(truth_dir), Path(pred_dir)
    for label, folder in (("truth", truth_dir), ("prediction", pred_dir)):
        if not folder.is_dir():
            raise FileNotFoundError(f"{label} folder {folder} does not exist")
    truths, preds = _mask_ids(truth_dir), _mask_ids(pred_dir)
    for role, folder, masks in (("truth", truth_dir, truths), ("pred", pred_dir, preds)):
        if not masks:
            raise ValueError(_no_masks(folder, role))
    missing = [i for i in truths if i not in preds]
    if missing:
        raise ValueError(f"{len(missing)} of {len(truths)} truth masks have no prediction in {pred_dir} "
                         f"(expected <id>{MASK_SUFFIX}{MASK_EXTENSION}): {listing(missing)}")
    rows = []
    for image_id, truth_path in truths.items():
        truth = read_mask(truth_path).astype(bool)
        pred = read_mask(preds[image_id]).astype(bool)
        if pred.shape != truth.shape:
            raise ValueError(f"prediction {preds[image_id]} is {pred.shape[1]}x{pred.shape[0]} (WxH) but its truth "
                             f"{truth_path.name} is {truth.shape[1]}x{truth.shape[0]}: predict at each image's "
                             "own size (or resize the prediction with nearest-neighbour)")
        counts = confusion_counts(pred, truth)
        scores = {name: float(value) for name, value in scores_from_counts(*counts).items()}
        rows.append({"id": image_id, **scores, **dict(zip(COUNT_NAMES, counts))})
    per_image = pd.DataFrame(rows).set_index("id")
    return per_image, summarize(per_image)


# --------------------------------------------------------------------------------------------------------
# Pixel-level view (scikit-learn), with an ignore label
# --------------------------------------------------------------------------------------------------------
def _flatten_pairs(preds: np.ndarray | Sequence[np.ndarray],
                   truths: np.ndarray | Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All pixels of the (pred, truth) pairs as two flat int arrays, after checking shapes and values."""
    if isinstance(preds, np.ndarray):
        preds = [preds]
    if isinstance(truths, np.ndarray):
        truths = [truths]
    preds, truths = list(preds), list(truths)
    if len(preds) != len(truths) or not preds:
        raise ValueError(f"got {len(preds)} predictions for {len(truths)} truths: pass matching, non-empty lists")
    flat_p, flat_t = [], []
    for k, (p, t) in enumerate(zip(preds, truths)):
        p, t = np.asarray(p), np.asarray(t)
        if p.shape != t.shape:
            raise ValueError(f"pair {k}: prediction shape {p.shape} differs from truth shape {t.shape}")
        flat_p.append(_as_bool(p, f"prediction {k}").ravel().astype(np.int64))
        flat_t.append(t.ravel().astype(np.int64))
    truth = np.concatenate(flat_t)
    if not np.isin(truth, (IGNORE_LABEL, 0, 1)).all():
        raise ValueError(f"truth labels must be 0, 1 or {IGNORE_LABEL} (ignore), got {np.unique(truth)[:6].tolist()}")
    return np.concatenate(flat_p), truth


def _pixel_labels(truth: np.ndarray, labels: Sequence[int] | None) -> list[int]:
    """The class labels to report: the given ones, else (-1, 0, 1) when the truth has ignore pixels, else (0, 1)."""
    if labels is not None:
        return list(labels)
    return [IGNORE_LABEL, 0, 1] if (truth == IGNORE_LABEL).any() else [0, 1]


def pixel_confusion_matrix(preds: np.ndarray | Sequence[np.ndarray], truths: np.ndarray | Sequence[np.ndarray],
                           labels: Sequence[int] | None = None) -> pd.DataFrame:
    """Pixel confusion matrix pooled over all images (``sklearn.metrics.confusion_matrix``).

    Args:
        preds: one ``(H, W)`` bool/0-1 prediction or a list of them.
        truths: the matching truth masks with labels 0, 1, and ``-1`` for pixels that must not count.
        labels: classes to show; default ``(-1, 0, 1)`` when some truth pixel is ``-1``, else ``(0, 1)``.
            With ``-1`` present its row shows where those pixels were predicted (its column is empty: a
            model never predicts -1); :func:`confusion_counts` with ``ignore`` leaves them out instead.

    Returns:
        DataFrame of pixel counts, index ``truth`` labels, columns ``prediction`` labels.

    Raises:
        ValueError: shapes differ, predictions are not binary, or truths hold other labels.
    """
    from sklearn.metrics import confusion_matrix

    pred, truth = _flatten_pairs(preds, truths)
    names = _pixel_labels(truth, labels)
    matrix = confusion_matrix(truth, pred, labels=names)
    return pd.DataFrame(matrix, index=pd.Index(names, name="truth"), columns=pd.Index(names, name="prediction"))


def pixel_classification_report(preds: np.ndarray | Sequence[np.ndarray],
                                truths: np.ndarray | Sequence[np.ndarray], labels: Sequence[int] | None = None,
                                *, output_dict: bool = False, digits: int = 4) -> str | dict:
    """Per-class pixel precision, recall, F1 and support (``sklearn.metrics.classification_report``).

    Pixels are pooled over all images (a micro view: large lesions weigh more), unlike the ISIC
    per-image macro average of :func:`evaluate_folders`. Arguments as :func:`pixel_confusion_matrix`;
    the ignore class, when shown, has precision 0 (nothing is predicted -1) and its support counts the
    ignored pixels.

    Returns:
        The report as text, or as a dict with ``output_dict=True``.
    """
    from sklearn.metrics import classification_report

    pred, truth = _flatten_pairs(preds, truths)
    names = _pixel_labels(truth, labels)
    return classification_report(truth, pred, labels=names, target_names=[_CLASS_NAMES.get(n, str(n)) for n in names],
                                 digits=digits, zero_division=0, output_dict=output_dict)


# --------------------------------------------------------------------------------------------------------
# Torch: validation scores per image
# --------------------------------------------------------------------------------------------------------
def _check_pair(logits: torch.Tensor, target: torch.Tensor) -> None:
    """Raise ValueError unless logits and target are matching (N, 1, H, W) or (N, H, W) tensors."""
    if logits.shape != target.shape:
        raise ValueError(f"logits shape {tuple(logits.shape)} differs from target shape {tuple(target.shape)}: "
                         "both must be (N, 1, H, W)")
    if logits.dim() not in (3, 4) or (logits.dim() == 4 and logits.shape[1] != 1):
        raise ValueError(f"expected (N, 1, H, W) logits for one lesion class, got {tuple(logits.shape)}")


@torch.no_grad()
def batch_counts(logits: torch.Tensor, target: torch.Tensor, threshold: float = DEFAULT_THRESHOLD,
                 ignore_index: float | None = None) -> dict[str, torch.Tensor]:
    """Per-image confusion counts of thresholded predictions.

    Args:
        logits: ``(N, 1, H, W)`` (or ``(N, H, W)``) raw model outputs.
        target: same shape, float in {0, 1} (and ``ignore_index`` for pixels that must not count).
        threshold: a pixel is lesion when ``sigmoid(logit) > threshold``.
        ignore_index: target value of ignored pixels, or None.

    Returns:
        ``{"tp", "fp", "fn", "tn"}`` int64 tensors of shape ``(N,)`` on the logits' device.

    Raises:
        ValueError: shapes differ, or the target holds values other than 0, 1 (and ``ignore_index``).
    """
    _check_pair(logits, target)
    allowed = [0.0, 1.0] + ([float(ignore_index)] if ignore_index is not None else [])
    valid = torch.zeros_like(target, dtype=torch.bool)
    for value in allowed:
        valid |= target == value
    if not bool(valid.all()):
        bad = torch.unique(target[~valid])[:5].tolist()
        raise ValueError(f"target holds values {bad}: expected 0/1 masks"
                         + ("" if ignore_index is not None else " (pass ignore_index for an ignore label)"))
    n = logits.shape[0]
    pred = (torch.sigmoid(logits) > threshold).reshape(n, -1)
    flat = target.reshape(n, -1)
    truth = flat == 1
    keep = torch.ones_like(truth) if ignore_index is None else flat != ignore_index
    tp = (pred & truth & keep).sum(1)
    fp = (pred & ~truth & keep).sum(1)
    fn = (~pred & truth & keep).sum(1)
    tn = (~pred & ~truth & keep).sum(1)
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


@torch.no_grad()
def batch_scores(logits: torch.Tensor, target: torch.Tensor, threshold: float = DEFAULT_THRESHOLD,
                 ignore_index: float | None = None) -> dict[str, torch.Tensor]:
    """Per-image :data:`METRIC_NAMES` scores of a batch, for validation during training.

    Same conventions and numbers as :func:`image_scores` (so the mean validation Dice of an epoch equals
    :func:`evaluate_folders` on the same masks saved as PNGs). Average the ``(N,)`` values over the
    images of the epoch, not over batches, to get the macro average.

    Args:
        logits: ``(N, 1, H, W)`` raw model outputs (``sigmoid(logit) > threshold`` is lesion).
        target: same shape, float in {0, 1}.
        threshold: probability threshold.
        ignore_index: target value for pixels to leave out, or None.

    Returns:
        ``{name: float64 tensor (N,)}`` on the CPU (counts are exact in float64; MPS has no float64).
    """
    counts = batch_counts(logits, target, threshold, ignore_index)
    arrays = [counts[k].cpu().numpy() for k in COUNT_NAMES]
    return {name: torch.from_numpy(np.asarray(value, dtype=np.float64))
            for name, value in scores_from_counts(*arrays).items()}


# --------------------------------------------------------------------------------------------------------
# Boundary distance (introduced in notebook 06)
# --------------------------------------------------------------------------------------------------------
def _boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it (the image edge counts as outside)."""
    from scipy import ndimage

    inner = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(2, 1), border_value=0)
    return mask & ~inner


def hausdorff95(pred: np.ndarray, truth: np.ndarray) -> float:
    """95th-percentile symmetric Hausdorff distance between the boundaries of two masks, in pixels.

    Introduced in notebook 06. For every boundary pixel of one mask, the Euclidean distance to the nearest
    boundary pixel of the other; the 95th percentile of each direction, and the larger of the two (MONAI's
    ``compute_hausdorff_distance(..., percentile=95)`` convention). The percentile ignores the worst 5 % of
    the boundary, so one stray pixel does not decide the score, as it would for the plain Hausdorff distance.
    Dice measures area overlap; this measures how far the outline strays.

    Empty masks: both empty gives 0.0 (perfect agreement). Exactly one empty (a missed lesion, or a lesion
    predicted on a lesion-free image) has no distance; it scores the image diagonal ``hypot(H, W)``, the
    largest distance two pixels of the image can have, so means over images stay finite.

    Args:
        pred, truth: ``(H, W)`` bool (or 0/1) masks of the same shape.

    Raises:
        ValueError: shapes differ or a mask is not binary.
    """
    from scipy import ndimage

    p, t = _as_bool(pred, "pred"), _as_bool(truth, "truth")
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from truth shape {t.shape}")
    if not p.any() and not t.any():
        return 0.0
    if not p.any() or not t.any():
        return float(np.hypot(*p.shape))
    bp, bt = _boundary(p), _boundary(t)
    to_truth = ndimage.distance_transform_edt(~bt)[bp]
    to_pred = ndimage.distance_transform_edt(~bp)[bt]
    return float(max(np.percentile(to_truth, 95), np.percentile(to_pred, 95)))
