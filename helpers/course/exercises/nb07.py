"""Exercises of notebook 07 (from notebook to tool): reference solutions and checkers.

``check_unsure_threshold(fn, uncertainties)``
    Exercise 1, "choose the 'model is unsure' threshold on val". ``fn(uncertainties, flag_fraction) -> float``
    takes the validation images' mean flip-TTA variances and the share of images the flag should catch
    (e.g. 0.1) and returns the threshold above which an image is flagged: the ``1 - flag_fraction`` quantile of
    the validation uncertainties, so that ``flag_fraction`` of them lie above it. Checked on the learner's own
    validation values and on a fixed set with a known answer; named mistakes: the ``flag_fraction`` quantile
    (flags the other 90%), the mean or the maximum.

``check_mask_agreement(fn, probs_a, probs_b)``
    Exercise 2, "how much do two precisions' masks agree?". ``fn(probs_a, probs_b) -> float``: the mean over
    images of the Dice of the masks ``probs_a > 0.5`` and ``probs_b > 0.5`` (1.0 for two empty masks), as
    ``benchmarks/throughput.py --predict-modes`` reports it. Named mistakes: comparing probabilities instead of
    masks, pooling all pixels into one Dice.

The checker recomputes the right answer from the data it is given, never from a stored number.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from helpers.course.exercises.base import Exercises

EXERCISES = Exercises("07")
show_solution = EXERCISES.show_solution


@EXERCISES.solution(1)
def unsure_threshold(uncertainties: Sequence[float], flag_fraction: float) -> float:
    """The uncertainty above which ``flag_fraction`` of the validation images lie (their 1 - f quantile)."""
    return float(np.quantile(np.asarray(uncertainties, dtype=float), 1.0 - flag_fraction))


def _flagged(uncertainties: np.ndarray, threshold: float) -> float:
    """The share of ``uncertainties`` strictly above ``threshold``."""
    return float((uncertainties > threshold).mean())


@EXERCISES.checker(1, "write unsure_threshold(uncertainties, flag_fraction): the 1 - flag_fraction quantile")
def check_unsure_threshold(fn: Callable[[Sequence[float], float], float], uncertainties: Sequence[float]) -> None:
    """Check the learner's threshold on a known set (1..100 / 1000) and on their validation uncertainties.

    Raises:
        AssertionError: with a hint naming the mistake (wrong quantile, mean, maximum, a share flagged off
            by more than one image).
    """
    known = np.arange(1, 101) / 1000.0
    for values, fraction in ((known, 0.1), (known, 0.25), (np.asarray(uncertainties, dtype=float), 0.1)):
        got = float(fn(list(values), fraction))
        expected = unsure_threshold(values, fraction)
        if math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12):
            continue
        if math.isclose(got, float(np.quantile(values, fraction)), rel_tol=1e-9):
            raise AssertionError(f"you returned the {fraction:g} quantile: {_flagged(values, got):.0%} of the images "
                                 f"lie above it, not {fraction:.0%}. Use the 1 - flag_fraction quantile")
        if math.isclose(got, float(values.mean()), rel_tol=1e-9):
            raise AssertionError("you returned the mean uncertainty: it flags whatever share lies above the mean "
                                 "(often about a third), not the share you chose")
        if got >= values.max():
            raise AssertionError(f"your threshold {got:.4g} is at or above the largest validation uncertainty: "
                                 "no image would ever be flagged")
        if abs(_flagged(values, got) - fraction) * len(values) > 1:
            raise AssertionError(f"with your threshold {got:.4g}, {_flagged(values, got):.1%} of the images are "
                                 f"flagged instead of {fraction:.0%}")
        raise AssertionError(f"your threshold {got:.6g} flags the right share but differs from the quantile "
                             f"{expected:.6g}: use np.quantile(uncertainties, 1 - flag_fraction)")
    EXERCISES.passed(1, f"your threshold flags {fraction:.0%} of the validation images: pass it to the app as "
                        "build_app(..., unsure_threshold=...) or python -m helpers.demo --unsure-threshold")


@EXERCISES.solution(2)
def mask_agreement(probs_a: Sequence[np.ndarray], probs_b: Sequence[np.ndarray]) -> float:
    """Mean over images of the Dice of the masks (> 0.5) of two lists of probability maps."""
    scores = []
    for a, b in zip(probs_a, probs_b):
        ma, mb = a > 0.5, b > 0.5
        total = ma.sum() + mb.sum()
        scores.append(1.0 if total == 0 else 2 * np.logical_and(ma, mb).sum() / total)
    return float(np.mean(scores))


def _agreement_cases() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two lists of probability maps whose per-image and pooled Dice differ (a small and a large image)."""
    rng = np.random.default_rng(7)
    a = [rng.random((8, 8)), rng.random((40, 40)), np.zeros((6, 6))]
    b = [np.clip(x + rng.normal(0, 0.2, x.shape), 0, 1) for x in a[:2]] + [np.zeros((6, 6))]
    return a, b


@EXERCISES.checker(2, "write mask_agreement(probs_a, probs_b): mean per-image Dice of the masks > 0.5")
def check_mask_agreement(fn: Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], float],
                         probs_a: Sequence[np.ndarray], probs_b: Sequence[np.ndarray]) -> None:
    """Check the learner's mean mask Dice on a known case and on the notebook's fp32 / auto probabilities.

    Raises:
        AssertionError: with a hint (probabilities compared, pixels pooled, empty masks not scored 1.0).
    """
    for a, b in (_agreement_cases(), (list(probs_a), list(probs_b))):
        got, expected = float(fn(a, b)), mask_agreement(a, b)
        if math.isclose(got, expected, abs_tol=1e-9):
            continue
        ma, mb = np.concatenate([x.ravel() > 0.5 for x in a]), np.concatenate([x.ravel() > 0.5 for x in b])
        pooled = 2 * np.logical_and(ma, mb).sum() / max(ma.sum() + mb.sum(), 1)
        if math.isclose(got, float(pooled), abs_tol=1e-9):
            raise AssertionError("you pooled every pixel into one Dice: score each image, then average (a large "
                                 "image must not outweigh a small one)")
        raise AssertionError(f"you returned {got:.4f}, expected {expected:.4f}: threshold both maps at 0.5, Dice "
                             "2 |A and B| / (|A| + |B|) per image (1.0 for two empty masks), then the mean")
    EXERCISES.passed(2, f"mean mask Dice {expected:.4f} between the two precisions' masks.")


EXERCISES.answers({
    1: "Because the first calls pay one-off costs (memory allocation, oneDNN choosing kernels, caches warming) "
       "and a shared machine adds outliers: warm up, then report the median of many repetitions.",
    2: "Batch 1 is the latency one user waits for; a large batch gives throughput (images per second) for "
       "folders of images. A server cares about the first, a batch job about the second.",
    3: "bf16 keeps float32's exponent but only 8 bits of mantissa, so probabilities move by about 1e-2 at most; "
       "masks change only where a probability sits near the threshold, hence a mask Dice near 1 against fp32.",
    4: "ONNX Runtime computes in float32 like PyTorch, but with other kernels and another summation order: the "
       "logits agree to about 1e-6, not bit for bit, so the test states a tolerance (1e-4).",
    5: "Chosen on the test split, the threshold would be tuned on the data meant to estimate how it does on new "
       "patients; the validation split is the one we may tune on.",
    6: "Converting the model would change the caller's object (its weights' memory format) behind their back; "
       "an NHWC input already makes oneDNN and cuDNN run the convolutions NHWC, at most of the speed-up.",
})
show_answer = EXERCISES.show_answer
