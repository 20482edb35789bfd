"""How sure is a score, and how honest is a probability: bootstrap intervals, calibration, TTA uncertainty.

Introduced in notebook 06 ("Will it work on the next patient?").

* **Bootstrap intervals** (:func:`bootstrap_ci`, :func:`paired_bootstrap`): the test images are a sample of
  the images a model will meet; resampling them with replacement (the *percentile bootstrap*, Efron &
  Tibshirani 1993) shows how much the mean score would move with another sample of the same size. Two
  models scored on the *same* images are compared on the per-image differences (a paired bootstrap), which
  removes the spread both share (easy and hard images).
* **Calibration** (:func:`reliability_bins`, :func:`expected_calibration_error`): among pixels predicted
  lesion with probability about ``p``, a fraction about ``p`` should be lesion. Pixels are grouped into equal
  width probability bins; ``ECE = sum_b (n_b / N) |mean p_b - lesion fraction_b|`` (Naeini et al. 2015, Guo
  et al. 2017), the binary form that compares the lesion probability with the lesion frequency, as
  ``sklearn.calibration.calibration_curve`` does.
* **Temperature scaling** (:func:`fit_temperature`, :func:`apply_temperature`): one number ``T`` divides every
  logit, ``p = sigmoid(z / T)``, fitted on validation pixels by minimising the binary cross-entropy (the
  negative log-likelihood). ``T > 1`` softens an over-confident model; the ranking of pixels, and so the best
  achievable Dice over all (continuous) thresholds, is unchanged, but the threshold that reaches it moves; on a
  fixed grid of thresholds the best grid Dice can change. A ``T`` at an end of its search interval warns
  (:class:`TemperatureBoundWarning`).
* **Flip-TTA uncertainty** (:func:`flip_views`, :func:`tta_uncertainty`): the four flips of an image are
  equally valid views of it; where the model's probabilities disagree between views it is unsure.
  Predictions come from :func:`helpers.evaluation.predict.predict_batch` (the one batched prediction function) run on
  the flipped images, each result flipped back.
* :func:`spearman`: rank correlation (``scipy.stats.spearmanr``), e.g. between uncertainty and Dice.

Arrays: per-image scores are 1-D float arrays (one value per image); probability maps and masks are
``(H, W)`` arrays (lists of them for several images, sizes may differ).
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats
from torch import nn

from helpers.evaluation import predict

#: Default number of bootstrap resamples.
N_BOOT = 2000
#: Default number of equal-width probability bins of the reliability diagram.
N_BINS = 10
#: Flips of the TTA views, as NumPy axes of an ``(H, W, 3)`` image: identity, horizontal, vertical, both.
FLIP_AXES: tuple[tuple[int, ...], ...] = ((), (1,), (0,), (0, 1))
#: Probabilities are clipped to ``[EPS, 1 - EPS]`` before taking logits (float32 sigmoid saturates at 1).
EPS = 1e-6


# --------------------------------------------------------------------------------------------------------
# Bootstrap confidence intervals
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """A mean (or mean difference) and its percentile-bootstrap confidence interval."""

    estimate: float
    low: float
    high: float
    level: float
    n: int

    @property
    def width(self) -> float:
        """``high - low``."""
        return self.high - self.low

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _scores(values: Sequence[float] | np.ndarray, name: str = "values") -> np.ndarray:
    """``values`` as a 1-D float64 array; raises ValueError when empty or not finite."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError(f"{name} is empty: pass one score per image")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or infinite scores: score every image before bootstrapping")
    return arr


def _check_level(level: float, n_boot: int) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), e.g. 0.95, got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")


def bootstrap_means(values: Sequence[float] | np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """Means of ``n_boot`` resamples (with replacement, same size) of ``values``: ``(n_boot,)`` float64.

    Raises:
        ValueError: no values, or NaN / infinite values.
    """
    arr = _scores(values)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, arr.size, size=(n_boot, arr.size))
    return arr[index].mean(axis=1)


def bootstrap_ci(values: Sequence[float] | np.ndarray, *, n_boot: int = N_BOOT, level: float = 0.95,
                 seed: int = 0) -> Interval:
    """Percentile-bootstrap confidence interval of the mean of per-image scores.

    Args:
        values: one score per image (e.g. the Dice of each test image).
        n_boot: number of resamples.
        level: coverage of the interval (0.95: the 2.5th to the 97.5th percentile of the resampled means).
        seed: seed of the resampling (same seed, same interval).

    Returns:
        :class:`Interval` with the plain mean as estimate.

    Raises:
        ValueError: no values, non-finite values, ``level`` outside (0, 1) or ``n_boot < 1``.
    """
    _check_level(level, n_boot)
    arr = _scores(values)
    means = bootstrap_means(arr, n_boot, seed)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return Interval(float(arr.mean()), float(low), float(high), level, int(arr.size))


@dataclass(frozen=True)
class PairedComparison:
    """Mean of ``a - b`` over the same images, its interval, and the share of resamples where ``a <= b``."""

    difference: Interval
    p_not_better: float

    def __str__(self) -> str:
        return f"difference {self.difference}, a <= b in {self.p_not_better:.1%} of resamples"


def paired_bootstrap(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *, n_boot: int = N_BOOT,
                     level: float = 0.95, seed: int = 0) -> PairedComparison:
    """Paired bootstrap of two models' per-image scores on the same images.

    Images are resampled together, so each resample compares the two models on the same images; the
    interval is the percentile interval of the mean difference ``a - b``.

    Args:
        a, b: per-image scores of model A and model B, in the same image order.
        n_boot, level, seed: as :func:`bootstrap_ci`.

    Returns:
        :class:`PairedComparison`; ``p_not_better`` is the fraction of resampled mean differences ``<= 0``
        (a one-sided bootstrap p-value for "A is better than B").

    Raises:
        ValueError: different lengths, or invalid values (see :func:`bootstrap_ci`).
    """
    a_arr, b_arr = _scores(a, "a"), _scores(b, "b")
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"a has {a_arr.size} scores and b {b_arr.size}: score both models on the same images")
    diff = a_arr - b_arr
    interval = bootstrap_ci(diff, n_boot=n_boot, level=level, seed=seed)
    means = bootstrap_means(diff, n_boot, seed)
    return PairedComparison(interval, float(np.mean(means <= 0)))


# --------------------------------------------------------------------------------------------------------
# Calibration of pixel probabilities
# --------------------------------------------------------------------------------------------------------
def _flat_pixels(probs: np.ndarray | Sequence[np.ndarray],
                 truths: np.ndarray | Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All pixels of the (probability, truth) pairs as flat float64 / bool arrays, shapes checked."""
    if isinstance(probs, np.ndarray):
        probs, truths = [probs], [np.asarray(truths)]
    probs, truths = list(probs), list(truths)
    if not probs or len(probs) != len(truths):
        raise ValueError(f"got {len(probs)} probability maps for {len(truths)} masks: pass one map per mask")
    flat_p, flat_t = [], []
    for k, (p, t) in enumerate(zip(probs, truths)):
        p, t = np.asarray(p, dtype=np.float64), np.asarray(t)
        if p.shape != t.shape:
            raise ValueError(f"image {k}: probabilities {p.shape} and mask {t.shape} differ in shape: predict at "
                             "the mask's size")
        flat_p.append(p.ravel())
        flat_t.append(t.ravel() > 0)
    p_all, t_all = np.concatenate(flat_p), np.concatenate(flat_t)
    if np.isnan(p_all).any() or p_all.min() < 0 or p_all.max() > 1:
        raise ValueError("probabilities must lie in [0, 1] (apply a sigmoid to logits first)")
    return p_all, t_all


def reliability_bins(probs: np.ndarray | Sequence[np.ndarray], truths: np.ndarray | Sequence[np.ndarray],
                     n_bins: int = N_BINS) -> pd.DataFrame:
    """The reliability diagram's table: pixels grouped by predicted probability in equal-width bins.

    Bin ``b`` holds probabilities in ``[b / n_bins, (b + 1) / n_bins)`` (the last bin includes 1.0).

    Args:
        probs: one ``(H, W)`` probability map or a list of them.
        truths: the matching masks (bool, 0/1 or 0/255: anything > 0 is lesion).
        n_bins: number of bins.

    Returns:
        DataFrame with one row per bin: ``low, high, count, mean_probability, lesion_fraction`` (the last
        two NaN for an empty bin), and ``gap = |mean_probability - lesion_fraction|``.

    Raises:
        ValueError: mismatched inputs, probabilities outside [0, 1] or ``n_bins < 1``.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    p, t = _flat_pixels(probs, truths)
    which = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    sum_p = np.bincount(which, weights=p, minlength=n_bins)
    sum_t = np.bincount(which, weights=t.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(count > 0, sum_p / count, np.nan)
        frac = np.where(count > 0, sum_t / count, np.nan)
    edges = np.linspace(0, 1, n_bins + 1)
    return pd.DataFrame({"low": edges[:-1], "high": edges[1:], "count": count, "mean_probability": mean_p,
                         "lesion_fraction": frac, "gap": np.abs(mean_p - frac)})


def expected_calibration_error(probs: np.ndarray | Sequence[np.ndarray], truths: np.ndarray | Sequence[np.ndarray],
                               n_bins: int = N_BINS) -> float:
    """ECE of pixel probabilities: ``sum_b (n_b / N) |mean p_b - lesion fraction_b|`` over non-empty bins.

    0 for perfectly calibrated probabilities; at most 1. Arguments as :func:`reliability_bins`.
    """
    table = reliability_bins(probs, truths, n_bins)
    used = table[table["count"] > 0]
    return float((used["count"] * used["gap"]).sum() / used["count"].sum())


def probability_logits(probs: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Logits ``log(p / (1 - p))`` of probabilities clipped to ``[eps, 1 - eps]`` (finite everywhere), float64."""
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    return np.log(p) - np.log1p(-p)


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities after temperature scaling: ``sigmoid(logit(p) / T)``, same shape, float32.

    Raises:
        ValueError: ``temperature`` is not a positive number.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = probability_logits(probs) / temperature
    return (0.5 * (1 + np.tanh(0.5 * z))).astype(np.float32)  # = sigmoid(z), without overflow


def binary_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean binary cross-entropy (negative log-likelihood) of logits against {0, 1} targets, computed stably.

    ``-mean[y log p + (1 - y) log(1 - p)]`` with ``p = sigmoid(z)``, as ``mean(log(1 + e^z) - y z)``.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = (np.asarray(targets) > 0).astype(np.float64)
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


class TemperatureBoundWarning(UserWarning):
    """The fitted temperature sits at an end of its search interval, so the true minimum may lie beyond it."""


#: How close (relative, in log T) to an end of the search interval counts as "at the bound".
BOUND_TOLERANCE = 1e-3
#: The default search interval of :func:`fit_temperature`.
TEMPERATURE_BOUNDS: tuple[float, float] = (0.05, 20.0)


def temperature_at_bound(temperature: float, bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> str | None:
    """``"lower"`` or ``"upper"`` when ``temperature`` sits at that end of ``bounds`` (in log T), else None."""
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    log_t = np.log(temperature)
    for end, name in ((lo, "lower"), (hi, "upper")):
        if abs(log_t - end) <= BOUND_TOLERANCE * (hi - lo):
            return name
    return None


def fit_temperature(logits: np.ndarray | Sequence[np.ndarray], targets: np.ndarray | Sequence[np.ndarray], *,
                    bounds: tuple[float, float] = TEMPERATURE_BOUNDS, max_pixels: int | None = 2_000_000,
                    seed: int = 0) -> float:
    """The temperature ``T`` minimising the mean BCE of ``sigmoid(logits / T)`` against the targets.

    A 1-D bounded search over ``log T`` (``scipy.optimize.minimize_scalar``); the NLL is convex in ``1 / T``
    so the minimum is unique. Fit it on validation pixels, never on the test images.

    Args:
        logits: ``(H, W)`` logit maps (or one flat array); from probabilities use :func:`probability_logits`.
        targets: matching masks (anything > 0 is lesion).
        bounds: search interval of ``T``.
        max_pixels: fit on a seeded random subset of this many pixels (None: all).
        seed: seed of that subset.

    Returns:
        ``T`` as a float (1.0 means the model was already calibrated).

    Warns:
        TemperatureBoundWarning: ``T`` is at an end of ``bounds`` (the NLL still falls beyond it): at the lower
            end the logits are nearly constant (an untrained model whose probabilities all sit near one value),
            at the upper end the model is far over-confident; either way ``T`` is a bound, not a fit.

    Raises:
        ValueError: mismatched inputs or non-finite logits.
    """
    if isinstance(logits, np.ndarray):
        logits, targets = [logits], [np.asarray(targets)]
    z_list, t_list = list(logits), list(targets)
    if not z_list or len(z_list) != len(t_list) or any(np.shape(z) != np.shape(t) for z, t in zip(z_list, t_list)):
        raise ValueError("pass one logit map per mask, each of its mask's shape")
    z = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in z_list])
    t = np.concatenate([(np.asarray(a) > 0).ravel() for a in t_list]).astype(np.float64)
    if not np.isfinite(z).all():
        raise ValueError("logits hold NaN or infinite values: clip probabilities with probability_logits first")
    if max_pixels is not None and z.size > max_pixels:
        keep = np.random.default_rng(seed).choice(z.size, size=max_pixels, replace=False)
        z, t = z[keep], t[keep]
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    result = optimize.minimize_scalar(lambda log_t: binary_cross_entropy(z / np.exp(log_t), t), bounds=(lo, hi), method="bounded",
                                      options={"xatol": 1e-5})
    temperature = float(np.exp(result.x))
    name = temperature_at_bound(temperature, bounds)
    if name is not None:
        cause = ("the logits are nearly constant: is the model trained?" if name == "lower"
                 else "the model is far over-confident")
        warnings.warn(f"the fitted temperature T = {temperature:.3g} is at the {name} end of its search interval "
                      f"[{bounds[0]:g}, {bounds[1]:g}]: the NLL still falls beyond it, so T is a bound, not a fit "
                      f"({cause}); widen `bounds` to search further", TemperatureBoundWarning, stacklevel=2)
    return temperature


# --------------------------------------------------------------------------------------------------------
# Flip-TTA uncertainty
# --------------------------------------------------------------------------------------------------------
def flip_views(model: nn.Module, images: Sequence[np.ndarray], img_size: int, *, batch_size: int = 8,
               device=None) -> list[np.ndarray]:
    """Per-view lesion probabilities of flip TTA: ``(V, H_i, W_i) float32`` per image, V = len(FLIP_AXES).

    Each flipped image goes through :func:`helpers.evaluation.predict.predict_batch` (``tta=False``) and its
    probabilities are flipped back, so view ``v`` of image ``i`` is aligned with the original image. The
    mean over views equals ``predict_batch(..., tta=True)`` up to float rounding.

    Args:
        model: a segmentation model returning logits.
        images: ``(H, W, 3) uint8`` RGB images.
        img_size: the model's square input size.
        batch_size: images per forward pass.
        device: as :func:`helpers.evaluation.predict.predict_batch`.

    Raises:
        ValueError: ``batch_size < 1`` or an image is not ``(H, W, 3)``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    images = list(images)
    views = [[] for _ in images]
    with predict.predicting(model, device) as net:  # on another device: one copy of the model, not one per batch
        for axes in FLIP_AXES:
            flipped = [np.ascontiguousarray(np.flip(im, axes)) if axes else im for im in images]
            for start in range(0, len(flipped), batch_size):
                probs = predict.predict_batch(net, flipped[start:start + batch_size], img_size, device=device)
                for k, prob in enumerate(probs, start):
                    views[k].append(np.flip(prob, axes) if axes else prob)
    return [np.stack(v).astype(np.float32) for v in views]


def binary_entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy of a Bernoulli probability in bits: 0 for p in {0, 1}, 1 at p = 0.5 (same shape, float64)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1 - 1e-12)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def tta_uncertainty(views: np.ndarray, kind: str = "variance") -> np.ndarray:
    """Per-pixel uncertainty ``(H, W) float64`` from the ``(V, H, W)`` probabilities of the TTA views.

    Args:
        views: one image's views (:func:`flip_views`).
        kind: ``"variance"`` (population variance of the views' probabilities, in [0, 0.25]: how much the
            views disagree) or ``"entropy"`` (binary entropy, in bits, of the mean probability: how close
            the averaged prediction is to 0.5).

    Raises:
        ValueError: ``views`` is not 3-D, or an unknown ``kind``.
    """
    v = np.asarray(views, dtype=np.float64)
    if v.ndim != 3:
        raise ValueError(f"views must be (V, H, W), got shape {v.shape}")
    if kind == "variance":
        return v.var(axis=0)
    if kind == "entropy":
        return binary_entropy(v.mean(axis=0))
    raise ValueError(f"kind must be 'variance' or 'entropy', got {kind!r}")


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Spearman rank correlation of ``x`` and ``y`` and its two-sided p-value (``scipy.stats.spearmanr``).

    Raises:
        ValueError: different lengths or fewer than 3 values.
    """
    x_arr, y_arr = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if x_arr.size != y_arr.size or x_arr.size < 3:
        raise ValueError(f"need two equally long sequences of at least 3 values, got {x_arr.size} and {y_arr.size}")
    result = stats.spearmanr(x_arr, y_arr)
    return float(result.statistic), float(result.pvalue)
