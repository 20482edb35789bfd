"""Exercises of notebook 06 (will it work on the next patient?): reference solutions and checkers.

What the notebook's checking cells call (each says "not attempted yet" to a stub, raises ``AssertionError``
with a hint on a wrong answer, and prints ``exercise K passed: ...`` otherwise; ``show_solution(K)`` prints the
reference solution; conventions: :mod:`helpers.course.exercises.base`):

``check_ece(fn)``
    Exercise 1. ``fn(probs, truth, n_bins) -> float``: the expected calibration error of flat arrays of pixel
    probabilities and {0, 1} truths, ``sum_b (n_b / N) |mean p_b - lesion fraction_b|`` over equal-width bins
    (``[b / n_bins, (b + 1) / n_bins)``, 1.0 in the last bin), empty bins skipped. Compared with
    :func:`helpers.evaluation.reliability.expected_calibration_error`.

``check_bootstrap_interval(fn)``
    Exercise 2. ``fn(scores, n_boot, level, seed) -> (low, high)``: the percentile-bootstrap interval of the
    mean of per-image scores. Random numbers differ between implementations, so the checker compares the
    interval's centre and width with :func:`helpers.evaluation.reliability.bootstrap_ci` on a large sample.

``check_fit_temperature(fn)``
    Exercise 3. ``fn(logits, targets, grid) -> float``: the temperature of ``grid`` whose ``sigmoid(logits / T)``
    has the lowest mean binary cross-entropy against the targets. Compared with the best grid value.

The checkers recompute the right answer from the data they build, never from a stored number.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from helpers.course.exercises.base import Exercises
from helpers.evaluation import reliability

EXERCISES = Exercises("06")
show_solution = EXERCISES.show_solution

#: The temperature grid of exercise 3 when none is given.
TEMPERATURE_GRID: tuple[float, ...] = tuple(round(0.25 * k, 2) for k in range(1, 25))


# ----------------------------------------------------------------------------------------------------------
# Exercise 1: expected calibration error
# ----------------------------------------------------------------------------------------------------------
@EXERCISES.solution(1)
def expected_calibration_error(probs: np.ndarray, truth: np.ndarray, n_bins: int = 10) -> float:
    """ECE of flat pixel probabilities against {0, 1} truths, over n_bins equal-width bins."""
    which = np.minimum((probs * n_bins).astype(int), n_bins - 1)  # p = 1.0 goes to the last bin
    ece = 0.0
    for b in range(n_bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(probs[in_bin].mean() - truth[in_bin].mean())
    return float(ece)


def _calibration_case(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Over-confident probabilities with unequal bin populations, empty bins around 0.5 and p = 1.0 pixels."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, 5000)
    truth = (rng.uniform(0, 1, z.size) < 1 / (1 + np.exp(-z))).astype(np.float64)
    probs = 1 / (1 + np.exp(-2.5 * z))
    probs[(probs >= 0.4) & (probs < 0.6)] = 0.35               # empty bins around 0.5
    probs[:40] = 1.0                                           # saturated pixels: the last bin includes 1.0
    probs[40:400] = rng.uniform(0.0, 0.02, 360)                # a crowded first bin
    return probs, truth


def _ece_variants(probs: np.ndarray, truth: np.ndarray, n_bins: int) -> dict[str, float]:
    """Values of typical wrong ECEs, with the hint for each."""
    table = reliability.reliability_bins(probs, truth, n_bins)
    used = table[table["count"] > 0]
    centres = (used["low"] + used["high"]) / 2
    confidence = np.maximum(probs, 1 - probs)
    correct = ((probs > 0.5) == (truth > 0.5)).astype(np.float64)
    conf_bins = reliability.reliability_bins(confidence, correct, n_bins)
    conf_used = conf_bins[conf_bins["count"] > 0]
    return {
        "you averaged the bins' gaps with equal weights: weigh each bin by its share of the pixels, n_b / N":
            float(used["gap"].mean()),
        "compare each bin's lesion fraction with the mean probability of its pixels, not with the bin centre":
            float((used["count"] * np.abs(centres - used["lesion_fraction"])).sum() / used["count"].sum()),
        "this is the confidence/accuracy ECE of classifiers; here compare the lesion probability with the lesion "
        "frequency": float((conf_used["count"] * conf_used["gap"]).sum() / conf_used["count"].sum()),
        "the signed gaps cancel out: take the absolute value |mean p_b - lesion fraction_b| per bin":
            float(abs((used["count"] * (used["mean_probability"] - used["lesion_fraction"])).sum()
                      / used["count"].sum())),
    }


@EXERCISES.checker(1, "write expected_calibration_error(probs, truth, n_bins) returning the bin-weighted mean gap")
def check_ece(fn: Callable[[np.ndarray, np.ndarray, int], float]) -> None:
    """Check the learner's ``fn(probs, truth, n_bins) -> float`` ECE against the reference.

    Raises:
        AssertionError: with a hint naming the mistake (equal bin weights, bin centres, confidence ECE,
            signed gaps, NaN from empty bins, p = 1.0 dropped).
    """
    for seed, n_bins in ((0, 10), (1, 15)):
        probs, truth = _calibration_case(seed)
        expected = reliability.expected_calibration_error(probs, truth, n_bins)
        got = fn(probs.copy(), truth.copy(), n_bins)
        assert got is not None, "your function returns None: end it with `return ece`"
        got = float(got)
        assert not math.isnan(got), ("you returned NaN: empty bins have no mean; skip them (they weigh 0 anyway)")
        if math.isclose(got, expected, abs_tol=1e-9):
            continue
        for hint, wrong in _ece_variants(probs, truth, n_bins).items():
            if math.isclose(got, wrong, abs_tol=1e-9):
                raise AssertionError(f"n_bins={n_bins}: {hint}")
        kept = probs < 1.0
        if math.isclose(got, reliability.expected_calibration_error(probs[kept], truth[kept], n_bins) * kept.mean(),
                        abs_tol=1e-6) or got < expected - 1e-6:
            raise AssertionError(f"n_bins={n_bins}: you returned {got:.5f}, expected {expected:.5f}: are pixels with "
                                 "p = 1.0 counted? (p * n_bins = n_bins falls outside the bins; put it in the last)")
        raise AssertionError(f"n_bins={n_bins}: you returned {got:.5f}, expected {expected:.5f} = "
                             "sum over bins of (n_b / N) |mean p_b - lesion fraction_b|")
    EXERCISES.passed(1, "your ECE matches helpers.evaluation.reliability.expected_calibration_error.")


# ----------------------------------------------------------------------------------------------------------
# Exercise 2: percentile bootstrap interval
# ----------------------------------------------------------------------------------------------------------
@EXERCISES.solution(2)
def bootstrap_interval(scores: np.ndarray, n_boot: int = 2000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of per-image scores."""
    rng = np.random.default_rng(seed)
    resampled = rng.choice(scores, size=(n_boot, len(scores)), replace=True)  # images drawn with replacement
    means = resampled.mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


@EXERCISES.checker(2, "write bootstrap_interval(scores, n_boot, level, seed) returning (low, high)")
def check_bootstrap_interval(fn: Callable[..., Sequence[float]]) -> None:
    """Check the learner's percentile-bootstrap interval on 300 skewed scores (Dice-like, a tail of failures).

    Raises:
        AssertionError: with a hint (no replacement, percentiles of the scores, the wrong level, not seeded).
    """
    rng = np.random.default_rng(11)
    scores = np.clip(np.where(rng.uniform(size=300) < 0.15, rng.uniform(0, 0.4, 300), rng.normal(0.85, 0.06, 300)),
                     0, 1)
    answer = fn(scores.copy(), 4000, 0.95, 0)
    assert answer is not None, "your function returns None: end it with `return low, high`"
    assert isinstance(answer, (tuple, list, np.ndarray)) and len(answer) == 2, (
        f"you returned {answer!r}: return a pair (low, high)")
    low, high = float(answer[0]), float(answer[1])
    ref = reliability.bootstrap_ci(scores, n_boot=4000, level=0.95, seed=1)
    width = high - low
    assert low <= high, f"low {low:.4f} is above high {high:.4f}: return (lower percentile, upper percentile)"
    if width < 1e-9:
        raise AssertionError("your interval has zero width: resample the images WITH replacement "
                             "(rng.choice(scores, size=(n_boot, n), replace=True)); without it every resample "
                             "is the same set and has the same mean")
    spread = np.quantile(scores, [0.025, 0.975])
    if math.isclose(low, spread[0], abs_tol=0.02) and math.isclose(high, spread[1], abs_tol=0.02):
        raise AssertionError("you took the percentiles of the scores themselves: that is where single images "
                             "fall, not how sure the MEAN is; take the mean of each resample, then its percentiles")
    assert low < scores.mean() < high, (f"[{low:.4f}, {high:.4f}] does not contain the mean {scores.mean():.4f}: "
                                        "take percentiles of the resampled means")
    ratio = width / ref.width
    narrower = reliability.bootstrap_ci(scores, n_boot=4000, level=0.90, seed=1).width / ref.width
    if abs(ratio - narrower) < abs(ratio - 1) and ratio < 0.92:
        raise AssertionError(f"your interval is {ratio:.2f}x the 95 % width, about a 90 % interval: with level 0.95 "
                             "cut (1 - level) / 2 = 2.5 % off each side (quantiles 0.025 and 0.975)")
    assert 0.88 < ratio < 1.12, (f"your interval [{low:.4f}, {high:.4f}] is {ratio:.2f}x as wide as the percentile "
                                 f"bootstrap's {ref}: resample n scores with replacement n_boot times, average "
                                 "each resample, take the (1 - level) / 2 and (1 + level) / 2 quantiles")
    again = fn(scores.copy(), 4000, 0.95, 0)
    assert tuple(map(float, again)) == (low, high), ("the same seed gave another interval: draw from "
                                                     "np.random.default_rng(seed), not the global random state")
    EXERCISES.passed(2, f"[{low:.4f}, {high:.4f}], width {width:.4f} (helpers.evaluation.reliability: {ref.width:.4f}).")


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: temperature scaling by grid search
# ----------------------------------------------------------------------------------------------------------
@EXERCISES.solution(3)
def fit_temperature(logits: np.ndarray, targets: np.ndarray, grid: list[float]) -> float:
    """The temperature of the grid whose sigmoid(logits / T) has the lowest mean binary cross-entropy."""
    def nll(t: float) -> float:
        z = logits / t
        return float(np.mean(np.logaddexp(0, z) - targets * z))  # = -mean[y log p + (1 - y) log(1 - p)]
    return float(min(grid, key=nll))


def _nll(logits: np.ndarray, targets: np.ndarray, t: float) -> float:
    z = logits / t
    return float(np.mean(np.logaddexp(0, z) - targets * z))


def _temperature_cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(description, logits, targets): logits 2x and 0.5x too confident, and 2x with 5% of the labels flipped.

    The flipped labels (annotation noise, as at lesion borders) punish confident errors: there the temperature
    of lowest NLL (2.5) differs from the one of lowest ECE (2.25), so an ECE minimiser is caught.
    """
    rng = np.random.default_rng(4)
    true_logits = rng.normal(0, 2.5, 20000)
    targets = (rng.uniform(0, 1, true_logits.size) < 1 / (1 + np.exp(-true_logits))).astype(np.float64)
    noisy = targets.copy()
    flip = rng.uniform(0, 1, noisy.size) < 0.05
    noisy[flip] = 1 - noisy[flip]
    return [("logits 2.0x too confident", true_logits * 2.0, targets),
            ("logits 0.5x too confident", true_logits * 0.5, targets),
            ("logits 2.0x too confident with 5% of the labels flipped", true_logits * 2.0, noisy)]


def _ece_at(logits: np.ndarray, targets: np.ndarray, t: float) -> float:
    """ECE (10 bins) of ``sigmoid(logits / t)``."""
    return reliability.expected_calibration_error(1 / (1 + np.exp(-logits / t)), targets, 10)


@EXERCISES.checker(3, "write fit_temperature(logits, targets, grid) returning the T of lowest NLL")
def check_fit_temperature(fn: Callable[[np.ndarray, np.ndarray, list[float]], float]) -> None:
    """Check the learner's grid-search temperature on the logits of :func:`_temperature_cases`.

    Raises:
        AssertionError: with a hint (maximised the NLL, multiplied by T, minimised the ECE instead of the NLL,
            scored something else).
    """
    grid = list(TEMPERATURE_GRID)
    for what, logits, targets in _temperature_cases():
        losses = [_nll(logits, targets, t) for t in grid]
        best = grid[int(np.argmin(losses))]
        got = fn(logits.copy(), targets.copy(), list(grid))
        assert got is not None, "your function returns None: end it with `return best_t`"
        got = float(got)
        if math.isclose(got, best):
            continue
        if math.isclose(got, grid[int(np.argmax(losses))]):
            raise AssertionError("you picked the temperature with the HIGHEST loss: keep the lowest (min, not max)")
        times = [_nll(logits * t, targets, 1.0) for t in grid]
        if math.isclose(got, grid[int(np.argmin(times))]):
            raise AssertionError("you multiplied the logits by T; temperature scaling divides them: sigmoid(z / T)")
        if _ece_at(logits, targets, got) < _ece_at(logits, targets, best) - 1e-9:
            raise AssertionError(f"{what}: T = {got} has a lower ECE than T = {best} but a higher NLL "
                                 f"({_nll(logits, targets, got):.4f} against {min(losses):.4f}): you minimised the "
                                 "ECE; fit T by the mean binary cross-entropy (NLL), which is smooth, needs no bins "
                                 "and is what temperature scaling minimises; the ECE is then the check")
        raise AssertionError(f"{what}: you chose T = {got}, but T = {best} has the lowest mean "
                             f"binary cross-entropy ({min(losses):.4f} against {_nll(logits, targets, got):.4f})")
    EXERCISES.passed(3, "T is about 2 for logits twice too large and about 0.5 for logits half as large.")


# ----------------------------------------------------------------------------------------------------------
# Answers to the notebook's questions (nb06.show_answer(K))
# ----------------------------------------------------------------------------------------------------------
ANSWERS: dict[int, str] = {
    1: "About 160. The interval's width shrinks like 1 / sqrt(n) (the standard error of a mean is sd / sqrt(n)), "
       "so halving it takes four times the images: 4 x 40.",
    2: "Both models find the same images easy and the same images hard. That shared spread widens each model's own "
       "interval, but it cancels in the per-image differences: if A beats B by a little on nearly every image, the "
       "differences vary little and their interval sits above 0 although the separate intervals overlap.",
    3: "It is 0 for every image with a Jaccard below 0.65 and the Jaccard otherwise: a jump that makes per-image "
       "scores spread more (many exact zeros beside values above 0.65), and a wider spread gives a wider interval.",
    4: "High Dice, bad HD95: a mask that covers the lesion well plus a small island far away (a hair, a ruler mark, a "
       "dark corner): little area, a large distance. Low Dice, good HD95: a small lesion predicted slightly too big "
       "or shifted by a few pixels: the outlines are close everywhere, but the overlap is a small share of the area.",
    5: "Below the diagonal the lesion fraction is lower than the predicted probability: the model is over-confident "
       "about lesion. A T above 1 pulls the probabilities towards 0.5, which moves the curve towards the diagonal "
       "(T below 1 sharpens an under-confident model).",
    6: "sigmoid(z / T) is increasing in z, so it keeps the order of the pixels: every mask 'calibrated p > t' is the "
       "mask 'raw p > t'' for t' = sigmoid(T logit(t)), and the set of masks reachable by some threshold is the same; "
       "the best one is reached at another threshold. A fixed grid of thresholds reaches only some of those masks, "
       "and not the same ones for the two probabilities, so the best grid value can differ: a lot when the raw "
       "probabilities crowd near one value, as an untrained model's do.",
    7: "T is a parameter chosen to fit data; fitting it on the test pixels would make the test ECE an optimistic, "
       "already-tuned number, no longer an estimate of the calibration on new images. Validation data is for "
       "choosing; the test split only measures.",
    8: "Disagreement between flips concentrates on the border, so an image with a long (large or ragged) border has "
       "more uncertain pixels, whatever its Dice; and large lesions also score a higher Dice. The correlation then "
       "partly measures lesion size. Normalise the uncertainty by the border length (or average it over a band "
       "around the predicted border), or compare images within size groups (a partial rank correlation).",
    9: "The lesion and its immediate rim are not skin colour: pigment spreads past the drawn border, and the mask is "
       "not exact. Hairs, rulers, bubbles and the dermoscope's dark corners are outliers among the skin pixels: a "
       "median ignores them, a mean is pulled by every dark hair pixel.",
    10: "It depends on your run: read the paired interval of each recovery (does it exclude 0?). Shades-of-Grey "
        "divides out one colour per image; that removes a cast of the light (another dermoscope), but darker skin "
        "is not a cast: its colour is the content, and colour constancy partly erases the skin-lesion contrast the "
        "model needs. On real data the sources differ in several ways at once (dermoscope, clinic, population, "
        "image processing): to tell light from skin you need subgroups within a source (ITA groups at one clinic) "
        "or images of the same lesions under two devices.",
}
EXERCISES.answers(ANSWERS)
show_answer = EXERCISES.show_answer
