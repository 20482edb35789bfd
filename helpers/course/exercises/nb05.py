"""Exercises of notebook 05 (evaluation: metrics, thresholds, losses): reference solutions and checkers.

What the notebook's checking cells call (each says "not attempted yet" to a stub, raises ``AssertionError``
with a hint on a wrong answer, and prints ``exercise K passed: ...`` otherwise; ``show_solution(K)`` prints the
reference solution; conventions: :mod:`helpers.course.exercises.base`):

``check_dice(fn)``
    Exercise 1, "implement Dice". ``fn(pred, truth) -> float`` takes two boolean ``(H, W)`` masks and returns
    their Dice coefficient ``2 TP / (2 TP + FP + FN)``. Compared with ``helpers.evaluation.metrics.image_scores`` on
    masks with known answers, including the ISIC conventions: an empty truth predicted empty scores 1.0,
    an empty truth with any predicted pixel scores 0.0.

``check_best_threshold(fn, probabilities, truths, thresholds=None)``
    Exercise 2, "find the threshold that maximises Dice". ``fn(probabilities, truths, thresholds) ->
    (threshold, mean_dice)``: ``probabilities`` are ``(H, W)`` float maps in [0, 1] (one per validation image),
    ``truths`` the matching masks; a pixel is lesion when ``probability > threshold``. The threshold must
    reach the highest macro-mean Dice (mean over images of the per-image Dice) on the grid ``thresholds``
    (default ``helpers.evaluation.metrics.THRESHOLD_GRID``: 0.05, 0.10, ..., 0.95); ties are accepted. ``mean_dice``
    must be that threshold's mean Dice. It is first run on :func:`threshold_test_maps`, whose best threshold is
    unique (in smoke mode a barely trained model's validation maps tie over many thresholds).

``check_tversky_loss(loss_factory)``
    Exercise 3, "add a Tversky loss". ``loss_factory(alpha=..., beta=...)`` returns a callable
    ``loss(logits, target) -> scalar tensor`` for ``(N, 1, H, W)`` logits and float {0, 1} targets; a class
    ``TverskyLoss(alpha, beta)`` (an ``nn.Module``) is such a factory. It must equal
    ``helpers.train.losses.TverskyLoss(alpha, beta, smooth=1.0)``: ``1 - mean over images of
    (TP + 1) / (TP + alpha FP + beta FN + 1)`` with soft counts on ``sigmoid(logits)``, and let gradients flow.
    The pass message says how to train with it: ``TrainConfig(loss=TverskyLoss(alpha=0.3, beta=0.7))`` when it
    is an ``nn.Module`` (``fit`` then trains with the learner's own object).

The checkers recompute the right answer from the data they are given, never from a stored number.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch

from helpers.course.exercises.base import Exercises
from helpers.evaluation import metrics
from helpers.train import losses
from helpers.train.loop import TrainConfig

EXERCISES = Exercises("05")
show_solution = EXERCISES.show_solution


# ----------------------------------------------------------------------------------------------------------
# Exercise 1: Dice
# ----------------------------------------------------------------------------------------------------------
def _dice_cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(description, pred, truth) boolean masks covering overlaps and every empty/full convention."""
    yy, xx = np.mgrid[:24, :32]
    disc = (yy - 12) ** 2 + (xx - 14) ** 2 <= 49
    shifted = (yy - 13) ** 2 + (xx - 18) ** 2 <= 64
    box = np.zeros((24, 32), bool)
    box[3:9, 20:30] = True
    empty, full = np.zeros_like(disc), np.ones_like(disc)
    return [
        ("two overlapping discs", shifted, disc),
        ("a disc and a box that partly overlap", box | disc, disc),
        ("disjoint masks", box, disc & ~box),
        ("a perfect prediction", disc, disc),
        ("an empty truth predicted empty", empty, empty),
        ("an empty truth with a predicted box", box, empty),
        ("a missed lesion (empty prediction)", empty, disc),
        ("a full-image lesion found in part", disc, full),
    ]


def _call_dice(fn: Callable[[np.ndarray, np.ndarray], float], pred: np.ndarray, truth: np.ndarray,
               what: str) -> float:
    """Call the learner's Dice, turning crashes and NaN into hints."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            got = fn(pred.copy(), truth.copy())
    except ZeroDivisionError as err:
        raise AssertionError(f"your function divides by zero on {what}: when TP + FP + FN = 0 (both masks "
                             "empty) the ISIC convention is a perfect score, return 1.0") from err
    assert got is not None, "your function returns None: end it with `return ...`"
    got = float(got)
    assert not math.isnan(got), (f"your function returns NaN on {what}: 0/0 happens when both masks are empty; "
                                 "the ISIC convention scores that as perfect, return 1.0")
    return got


@EXERCISES.solution(1)
def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean (H, W) masks, 2 TP / (2 TP + FP + FN); 1.0 when both are empty (ISIC)."""
    tp = np.logical_and(pred, truth).sum()
    denominator = pred.sum() + truth.sum()  # = 2 TP + FP + FN
    return 1.0 if denominator == 0 else float(2 * tp / denominator)


@EXERCISES.checker(1, "write dice(pred, truth) returning 2 TP / (2 TP + FP + FN), 1.0 for two empty masks")
def check_dice(fn: Callable[[np.ndarray, np.ndarray], float]) -> None:
    """Check the learner's ``fn(pred, truth) -> float`` Dice of two boolean ``(H, W)`` masks.

    Raises:
        AssertionError: with a hint, on the first case where ``fn`` disagrees with
            ``helpers.evaluation.metrics.image_scores(pred, truth)["dice"]``.
    """
    for what, pred, truth in _dice_cases():
        got = _call_dice(fn, pred, truth, what)
        scores = metrics.image_scores(pred, truth)
        expected = scores["dice"]
        if math.isclose(got, expected, abs_tol=1e-6):
            continue
        tp, fp, fn_count, _ = metrics.confusion_counts(pred, truth)
        if math.isclose(got, scores["jaccard"], abs_tol=1e-6):
            raise AssertionError(f"on {what} you returned the Jaccard index (IoU) {got:.4f}: Dice counts the "
                                 "overlap twice, 2 TP / (2 TP + FP + FN)")
        if math.isclose(got, (2 * tp + 1) / (2 * tp + fp + fn_count + 1), abs_tol=1e-6):
            raise AssertionError(f"on {what} you returned {got:.4f}, a smoothed Dice: smoothing belongs in the "
                                 "loss; the metric is exactly 2 TP / (2 TP + FP + FN), and 1.0 when both are empty")
        if tp + fp + fn_count == 0:
            raise AssertionError(f"on {what} you returned {got}: the ISIC convention scores an empty truth "
                                 "predicted empty as perfect, 1.0")
        raise AssertionError(f"on {what} (TP={tp}, FP={fp}, FN={fn_count}) you returned {got:.4f}, expected "
                             f"{expected:.4f} = 2 TP / (2 TP + FP + FN)")
    EXERCISES.passed(1, "your Dice matches helpers.evaluation.metrics, empty masks included.")


# ----------------------------------------------------------------------------------------------------------
# Exercise 2: the threshold that maximises Dice
# ----------------------------------------------------------------------------------------------------------
def _pairs(probabilities: Sequence[np.ndarray], truths: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Check and pair the probability maps with boolean truths."""
    probabilities, truths = list(probabilities), list(truths)
    if not probabilities or len(probabilities) != len(truths):
        raise ValueError(f"got {len(probabilities)} probability maps for {len(truths)} masks: pass one map per mask")
    return [(np.asarray(p, dtype=np.float64), metrics.binarize(np.asarray(t))) for p, t in zip(probabilities, truths)]


def mean_dice_at(probabilities: Sequence[np.ndarray], truths: Sequence[np.ndarray], threshold: float) -> float:
    """Macro-mean Dice (mean over images, ISIC conventions) of ``probability > threshold`` against the truths."""
    pairs = _pairs(probabilities, truths)
    return float(np.mean([metrics.image_scores(p > threshold, t)["dice"] for p, t in pairs]))


@EXERCISES.solution(2)
def best_threshold(probabilities: list[np.ndarray], truths: list[np.ndarray],
                   thresholds: list[float]) -> tuple[float, float]:
    """(threshold, mean Dice) of the grid threshold whose mean over images of the per-image Dice is highest."""
    mean_dice = [np.mean([metrics.image_scores(p > t, m > 0)["dice"] for p, m in zip(probabilities, truths)])
                 for t in thresholds]
    k = int(np.argmax(mean_dice))  # ties: the first (lowest) threshold
    return float(thresholds[k]), float(mean_dice[k])


def pooled_dice_at(probabilities: Sequence[np.ndarray], truths: Sequence[np.ndarray], threshold: float) -> float:
    """Dice of all pixels pooled together (a micro average): the usual wrong way to average."""
    tp = fp = fn = 0
    for p, t in _pairs(probabilities, truths):
        a, b, c, _ = metrics.confusion_counts(p > threshold, t)
        tp, fp, fn = tp + a, fp + b, fn + c
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


@EXERCISES.checker(2, "write best_threshold(probabilities, truths, thresholds) returning (threshold, mean Dice)")
def check_best_threshold(fn: Callable[..., tuple[float, float]], probabilities: Sequence[np.ndarray],
                         truths: Sequence[np.ndarray], thresholds: Sequence[float] | None = None) -> None:
    """Check the learner's ``fn(probabilities, truths, thresholds) -> (threshold, mean Dice)``.

    Args:
        fn: the learner's function.
        probabilities: ``(H, W)`` probability maps, one per image.
        truths: matching boolean / 0-1 / 0-255 masks.
        thresholds: the grid the notebook asks to search (default :data:`helpers.evaluation.metrics.THRESHOLD_GRID`).

    Raises:
        AssertionError: with a hint when the threshold scores below the best grid threshold, or the mean Dice
            is not its macro-mean Dice.
    """
    grid = tuple(metrics.THRESHOLD_GRID if thresholds is None else thresholds)
    test_probs, test_truths = threshold_test_maps()
    for what, probs, masks, search in (("the test maps", test_probs, test_truths, metrics.THRESHOLD_GRID),
                                       ("the validation maps", probabilities, truths, grid)):
        answer = fn(list(probs), list(masks), list(search))
        assert answer is not None, "your function returns None: end it with `return threshold, mean_dice`"
        assert isinstance(answer, (tuple, list)) and len(answer) == 2, (
            f"you returned {answer!r}: return a pair (threshold, mean_dice)")
        threshold, yours = _check_threshold_answer(*answer, probs, masks, search, what)
    EXERCISES.passed(2, f"threshold {threshold} reaches the best mean Dice of the validation maps, {yours:.4f} "
                        f"(at 0.5: {mean_dice_at(probabilities, truths, 0.5):.4f}).")


def threshold_test_maps() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Probability maps with one clearly best threshold: 0.30 by mean Dice over images, 0.70 by pooled pixels.

    Four disc lesions (radius 3 to 15 px) whose probability falls linearly from the centre and crosses the
    boundary at 0.30 (three small ones) or 0.70 (the large one). On the grid 0.05 ... 0.95 the macro-mean Dice
    peaks at 0.30 (0.79; 0.5 scores 0.18) and the pooled Dice at 0.70, so a search that averages pixels, stops
    at the first or a fixed threshold, or keeps the worst is caught even where a model's validation maps tie.
    """
    yy, xx = np.mgrid[:40, :48]
    probabilities, truths = [], []
    for cy, cx, radius, boundary in ((12, 14, 4, 0.30), (20, 24, 9, 0.30), (22, 26, 15, 0.70), (10, 35, 3, 0.30)):
        distance = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        truths.append(distance <= radius)
        probabilities.append(np.clip(boundary + 0.25 * (radius + 0.5 - distance) / (radius + 0.5), 0, 1))
    return probabilities, truths


def _check_threshold_answer(threshold: float, best_dice: float, probabilities: Sequence[np.ndarray],
                            truths: Sequence[np.ndarray], grid: Sequence[float], what: str) -> tuple[float, float]:
    """Compare a (threshold, mean Dice) answer with the best of ``grid``; raise AssertionError with a hint.

    Returns:
        ``(threshold, its mean Dice)`` of a right answer.
    """
    threshold = float(threshold)
    assert 0.0 <= threshold <= 1.0, f"on {what}: a probability threshold lies in [0, 1], got {threshold}"
    best_t, best = best_threshold(list(probabilities), list(truths), list(grid))
    yours = mean_dice_at(probabilities, truths, threshold)
    if yours < best - 1e-9:
        worst = min(mean_dice_at(probabilities, truths, t) for t in grid)
        pooled = [pooled_dice_at(probabilities, truths, t) for t in grid]
        if math.isclose(yours, worst, abs_tol=1e-12) and worst < best:
            raise AssertionError(f"on {what}: threshold {threshold} gives the LOWEST mean Dice ({yours:.4f}): keep "
                                 "the threshold with the highest score (np.argmax, not np.argmin)")
        if math.isclose(threshold, grid[int(np.argmax(pooled))]):
            raise AssertionError(f"on {what}: threshold {threshold} maximises the Dice of all pixels pooled "
                                 f"together; ISIC averages per image (mean Dice {yours:.4f} here, {best:.4f} at "
                                 f"{best_t}): compute each image's Dice, then take the mean")
        raise AssertionError(f"on {what}: threshold {threshold} gives mean Dice {yours:.4f}, but {best_t} gives "
                             f"{best:.4f}: score every threshold of the grid (mean over images of the per-image "
                             "Dice of `probability > t`) and keep the best")
    best_dice = float(best_dice)
    if not math.isclose(best_dice, yours, abs_tol=1e-6):
        if math.isclose(best_dice, pooled_dice_at(probabilities, truths, threshold), abs_tol=1e-6):
            raise AssertionError(f"on {what}: {best_dice:.4f} pools all pixels together; ISIC averages per image: "
                                 "compute each image's Dice, then take the mean")
        raise AssertionError(f"on {what}: your best Dice {best_dice:.4f} is not the mean Dice at {threshold} "
                             f"({yours:.4f}): mean over images of the per-image Dice")
    return threshold, yours


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: a Tversky loss
# ----------------------------------------------------------------------------------------------------------
@EXERCISES.solution(3)
class TverskyLoss(torch.nn.Module):
    """1 - mean over images of (TP + 1) / (TP + alpha FP + beta FN + 1), soft counts on sigmoid(logits)."""

    def __init__(self, alpha: float = 0.3, beta: float = 0.7) -> None:
        super().__init__()
        self.alpha, self.beta = alpha, beta

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) logits and {0, 1} targets -> scalar loss."""
        p = torch.sigmoid(logits).flatten(1)  # (N, pixels)
        y = target.flatten(1)
        tp = (p * y).sum(1)
        fp = (p * (1 - y)).sum(1)
        fn = ((1 - p) * y).sum(1)
        return 1 - ((tp + 1) / (tp + self.alpha * fp + self.beta * fn + 1)).mean()


def _soft_tversky(probs: torch.Tensor, target: torch.Tensor, alpha: float, beta: float,
                  smooth: float) -> torch.Tensor:
    """Per-image soft Tversky index ``(N,)`` of ``(N, ...)`` probabilities: a wrong-answer model for the hints."""
    p, y = probs.flatten(1), target.flatten(1)
    tp, fp, fn = (p * y).sum(1), (p * (1 - y)).sum(1), ((1 - p) * y).sum(1)
    return (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)


def _tversky_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Three 12x12 images: a large lesion, a small one and an empty target, with fixed random logits."""
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(3, 1, 12, 12, generator=g) * 2
    target = torch.zeros(3, 1, 12, 12)
    target[0, 0, 2:10, 1:9] = 1
    target[1, 0, 5:7, 6:9] = 1
    return logits, target


def _make_loss(loss_factory: Callable[..., Callable], alpha: float, beta: float) -> Callable:
    """Build the learner's loss with keyword arguments, else positionally."""
    try:
        return loss_factory(alpha=alpha, beta=beta)
    except TypeError:
        return loss_factory(alpha, beta)


def _tversky_mistakes(logits: torch.Tensor, target: torch.Tensor, alpha: float, beta: float) -> dict[str, float]:
    """Values that typical wrong Tversky losses return on this batch, with the hint for each."""
    probs = torch.sigmoid(logits)
    index = _soft_tversky(probs, target, alpha, beta, 1.0)
    pooled = _soft_tversky(probs.reshape(1, -1), target.reshape(1, -1), alpha, beta, 1.0)
    return {
        "alpha weighs the false positives and beta the false negatives: you swapped them":
            1 - _soft_tversky(probs, target, beta, alpha, 1.0).mean().item(),
        "you returned the Tversky index; the loss is 1 - index (lower is better)": index.mean().item(),
        "apply torch.sigmoid to the logits first: the soft counts need probabilities in [0, 1]":
            1 - _soft_tversky(logits, target, alpha, beta, 1.0).mean().item(),
        "compute the index per image (sum over C, H, W), then average over the batch; you pooled the batch":
            1 - pooled.mean().item(),
        "add smooth = 1.0 to the numerator and the denominator (it keeps empty targets finite)":
            1 - _soft_tversky(probs, target, alpha, beta, 0.0).mean().item(),
    }


@EXERCISES.checker(3, "write the forward pass of TverskyLoss(alpha, beta)")
def check_tversky_loss(loss_factory: Callable[..., Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]) -> None:
    """Check the learner's Tversky loss against ``helpers.train.losses.TverskyLoss(alpha, beta, smooth=1.0)``.

    Args:
        loss_factory: ``loss_factory(alpha=a, beta=b)`` returns ``loss(logits, target) -> scalar tensor``
            (a class ``TverskyLoss(alpha, beta)`` works as is).

    Raises:
        AssertionError: with a hint when the value differs (swapped weights, no sigmoid, pooled batch,
            missing smoothing, index instead of loss), the result is not a scalar tensor, or no gradient flows.
    """
    logits, target = _tversky_batch()
    for alpha, beta in ((0.3, 0.7), (0.7, 0.3), (0.5, 0.5)):
        loss = _make_loss(loss_factory, alpha, beta)
        x = logits.clone().requires_grad_(True)
        value = loss(x, target.clone())
        assert isinstance(value, torch.Tensor) and value.dim() == 0, (
            f"the loss must return a scalar (0-d) tensor, got {type(value).__name__} "
            f"{tuple(getattr(value, 'shape', ()))}: average over the batch with .mean()")
        expected = losses.TverskyLoss(alpha, beta, smooth=1.0)(logits, target).item()
        got = value.item()
        if not math.isclose(got, expected, rel_tol=1e-4, abs_tol=1e-5):
            for hint, wrong in _tversky_mistakes(logits, target, alpha, beta).items():
                if math.isclose(got, wrong, rel_tol=1e-4, abs_tol=1e-5):
                    raise AssertionError(f"alpha={alpha}, beta={beta}: {hint}")
            raise AssertionError(f"alpha={alpha}, beta={beta}: your loss is {got:.5f}, expected {expected:.5f} = "
                                 "1 - mean over images of (TP + 1) / (TP + alpha FP + beta FN + 1) with soft counts "
                                 "on sigmoid(logits)")
        assert value.requires_grad, ("no gradient flows: compute the loss with torch operations only "
                                     "(no .item(), .numpy() or float())")
        value.backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0, (
            "the gradient is missing, zero or not finite: use torch operations on the logits throughout")
    empty = _make_loss(loss_factory, 0.3, 0.7)(torch.full((2, 1, 8, 8), -30.0), torch.zeros(2, 1, 8, 8))
    assert torch.isfinite(empty) and empty.item() < 1e-3, (
        "on empty targets predicted empty the loss should be ~0: add smooth = 1.0 to numerator and denominator")
    trainable = _make_loss(loss_factory, 0.3, 0.7)
    try:
        TrainConfig(loss=trainable)
        how = (f"TrainConfig(loss={type(trainable).__name__}(alpha=0.3, beta=0.7)) trains with this very object.")
    except ValueError:
        how = "to train with it, make it a torch.nn.Module as the exercise's class is: TrainConfig(loss=...) takes one."
    EXERCISES.passed(3, f"your Tversky loss matches helpers.train.losses.TverskyLoss and its gradients flow; {how}")


# ----------------------------------------------------------------------------------------------------------
# Answers to the notebook's questions (nb05.show_answer(K))
# ----------------------------------------------------------------------------------------------------------
ANSWERS: dict[int, str] = {
    1: "Jaccard = TP / (TP + FP + FN), Dice = 2 TP / (2 TP + FP + FN). Jaccard is |P and T| / |P or T|, the "
       "intersection over the union of the predicted and true lesion pixels: IoU. J = D / (2 - D) and "
       "D = 2J / (1 + J): they rank images the same way.",
    2: "The ISIC mean scores each image, then averages over images, so a small lesion counts as much as a large one. "
       "Pooling counts TP, FP and FN over all pixels of all images and scores once, so large lesions dominate. The "
       "lesion F1 of a classification report on flattened pixels is the pooled Dice, not the ISIC mean.",
    3: "The accuracy of predicting background everywhere (the background share of the pixels: 80% background "
       "gives 80% for doing nothing) and the mean per-image Dice or Jaccard (with the sensitivity) of the same "
       "predictions.",
    4: "The -1 pixels form a third row of the confusion matrix (where the ignored pixels were predicted) whose "
       "column stays empty; in the three-class report they count as errors in the accuracy unless you drop them "
       "first; image_scores(pred, truth, ignore=band) leaves them out of the per-image scores. Experts disagree "
       "about exactly where a lesion ends, so a thin band around the border is left out.",
    5: "Expert annotators themselves disagree on a lesion's border, so the challenge (Codella et al. 2019) counts a "
       "segmentation that overlaps the truth less than 0.65 as a failure rather than as a slightly worse score; "
       "0.65 reflects that inter-observer variability. It makes the mean count failed images.",
    6: "Choosing them on the test images fits them to those images: the test score becomes optimistic and no longer "
       "measures unseen data. They are chosen on validation data, then frozen and applied once to the test set.",
    7: "Flip TTA averages the probabilities of the image and of its flipped copies, flipped back. Keeping the largest "
       "component with its holes filled assumes one lesion per image, all of one piece and without holes.",
    8: "A border one pixel off costs a lesion about its perimeter in pixels; the perimeter shrinks more slowly than "
       "the area, so a small lesion loses a much larger share of its overlap for the same error.",
    9: "<id>_segmentation.png (the image's id), a single-channel 8-bit PNG with 0 for background and 255 for lesion, "
       "at the size of its input image.",
}
EXERCISES.answers(ANSWERS)
show_answer = EXERCISES.show_answer
