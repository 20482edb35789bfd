"""Exercises of notebook 04 (training: schedule, loss, early stopping): reference solutions and checkers.

What the notebook's checking cells call (each says "not attempted yet" to a stub, raises ``AssertionError``
with a hint on a wrong answer, and prints ``exercise K passed: ...`` otherwise; ``show_solution(K)`` prints the
reference solution; conventions: :mod:`helpers.course.exercises.base`):

``check_lr_at(fn)``
    Exercise 1, "the learning rate at step t". ``fn(step, total_steps, warmup_steps, base_lr) -> float`` is the
    learning rate of optimisation step ``step`` (0-based) under linear warm-up then cosine decay to 0, the
    schedule of :func:`helpers.train.loop.build_scheduler`. Compared with ``base_lr *
    helpers.train.loop.lr_factor(step, total_steps, warmup_steps)``.

``check_focal_loss(fn)``
    Exercise 2, "write a focal loss". ``fn(logits, target, gamma) -> scalar tensor`` for ``(N, 1, H, W)``
    logits and float {0, 1} targets: the mean over pixels of ``-(1 - p_t)**gamma * log(p_t)``, where ``p_t`` is
    the predicted probability of the true class (Lin et al. 2017, without the alpha weight). Compared with
    ``torchvision.ops.sigmoid_focal_loss(logits, target, alpha=-1, gamma=gamma, reduction="mean")``.

``check_early_stop(fn)``
    Exercise 3, "early stopping by hand". ``fn(val_dice, patience) -> (best_epoch, last_epoch)``: given the
    validation Dice of epochs 1, 2, ..., which epoch ``best.pt`` would hold (the first epoch with the
    highest Dice: only a strictly better score replaces it) and after which epoch training stops (the
    first epoch that ends ``patience`` epochs without improvement, or the last epoch). The rule of ``fit``
    with ``TrainConfig(patience=...)``.

The checkers recompute every expected value, never compare with stored numbers.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from helpers.course.exercises.base import Exercises
from helpers.runfolder import BEST_FILE, HISTORY_FILE, LAST_FILE
from helpers.train.loop import lr_factor

EXERCISES = Exercises("04")
show_solution = EXERCISES.show_solution


# ----------------------------------------------------------------------------------------------------------
# Exercise 1: the learning rate at a given step
# ----------------------------------------------------------------------------------------------------------
@EXERCISES.solution(1)
def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Learning rate of step `step` (0-based): linear warm-up, then a cosine from base_lr to 0 at step total_steps."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    t = (step - warmup_steps) / max(1, total_steps - warmup_steps)  # 0 -> 1 after the warm-up
    return base_lr * 0.5 * (1 + math.cos(math.pi * t))


_LR_CASES: tuple[tuple[int, int, int, float], ...] = (
    # (step, total_steps, warmup_steps, base_lr)
    (0, 100, 10, 1e-3), (4, 100, 10, 1e-3), (9, 100, 10, 1e-3), (10, 100, 10, 1e-3), (55, 100, 10, 1e-3),
    (80, 100, 10, 2e-3), (99, 100, 10, 1e-3), (100, 100, 10, 1e-3), (0, 50, 0, 5e-4), (30, 50, 0, 5e-4),
    (3, 40, 4, 1e-2), (22, 40, 4, 1e-2),
)


def _lr_hint(fn: Callable[..., float], step: int, total: int, warm: int, base: float, got: float) -> str:
    """Name the likely mistake behind a wrong learning rate."""
    if warm and step < warm and math.isclose(got, base * step / warm, rel_tol=1e-6, abs_tol=1e-15):
        return ("the warm-up is off by one: step 0 must already use base_lr / warmup_steps, so the factor is "
                "(step + 1) / warmup_steps and step warmup_steps - 1 reaches base_lr")
    if warm and step < warm and math.isclose(got, base * 0.5 * (1 + math.cos(math.pi * step / total)), rel_tol=1e-6):
        return "there is no warm-up: during the first warmup_steps steps the rate rises linearly"
    if math.isclose(got, lr_factor(step, total, warm), rel_tol=1e-6):
        return "you returned the factor: multiply it by base_lr"
    if step >= warm and math.isclose(got, base * 0.5 * (1 + math.cos(math.pi * step / total)), rel_tol=1e-6):
        return ("the cosine must start after the warm-up: use t = (step - warmup_steps) / (total_steps - "
                "warmup_steps), which runs from 0 to 1")
    return "after the warm-up: lr = base_lr * (1 + cos(pi * t)) / 2 with t = (step - warmup) / (total - warmup)"


@EXERCISES.checker(1, "write lr_at(step, total_steps, warmup_steps, base_lr) returning the learning rate")
def check_lr_at(fn: Callable[[int, int, int, float], float]) -> None:
    """Check the learner's ``fn(step, total_steps, warmup_steps, base_lr) -> float``.

    Raises:
        AssertionError: with a hint, on the first case where ``fn`` differs from ``base_lr * lr_factor(...)``.
    """
    for step, total, warm, base in _LR_CASES:
        got = fn(step, total, warm, base)
        assert got is not None, "your function returns None: end it with `return ...`"
        expected = base * lr_factor(step, total, warm)
        if not math.isclose(float(got), expected, rel_tol=1e-6, abs_tol=1e-12):
            hint = _lr_hint(fn, step, total, warm, base, float(got))
            raise AssertionError(f"at step {step} of {total} with {warm} warm-up steps and base_lr {base:g} you "
                                 f"returned {float(got):.6g}, expected {expected:.6g}: {hint}")
    EXERCISES.passed(1, "your schedule matches helpers.train.loop.build_scheduler at every step tested.")


# ----------------------------------------------------------------------------------------------------------
# Exercise 2: focal loss
# ----------------------------------------------------------------------------------------------------------
@EXERCISES.solution(2)
def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Mean over pixels of -(1 - p_t)**gamma * log(p_t), p_t the probability of the true class (no alpha)."""
    minus_log_pt = F.binary_cross_entropy_with_logits(logits, target, reduction="none")  # -log(p_t), stable
    p_t = torch.exp(-minus_log_pt)
    return ((1 - p_t) ** gamma * minus_log_pt).mean()


def _torchvision_focal(logits: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    """What the checker compares with: torchvision's sigmoid focal loss, alpha off, mean over pixels."""
    return sigmoid_focal_loss(logits, target, alpha=-1, gamma=gamma, reduction="mean")


def _focal_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, float]]:
    """(description, logits, target, gamma) with confident, unsure and wrong predictions."""
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 1, 8, 8, generator=gen) * 3
    target = (torch.rand(2, 1, 8, 8, generator=gen) > 0.7).float()
    confident = torch.full((1, 1, 4, 4), 12.0)
    return [("random logits, gamma 2", logits, target, 2.0),
            ("random logits, gamma 0 (plain BCE)", logits, target, 0.0),
            ("random logits, gamma 1", logits, target, 1.0),
            ("confident right predictions", confident, torch.ones_like(confident), 2.0),
            ("confident wrong predictions (large logits)", confident * 4, torch.zeros_like(confident), 2.0)]


def _focal_hint(got: float, logits: torch.Tensor, target: torch.Tensor, gamma: float) -> str:
    """Name the likely mistake behind a wrong focal loss."""
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    if gamma > 0 and math.isclose(got, float(bce), rel_tol=1e-4):
        return "that is plain BCE: multiply each pixel's loss by (1 - p_t) ** gamma before averaging"
    summed = float(sigmoid_focal_loss(logits, target, alpha=-1, gamma=gamma, reduction="sum"))
    if math.isclose(got, summed, rel_tol=1e-4):
        return "you summed over pixels: take the mean (reduction='mean')"
    weighted = float(sigmoid_focal_loss(logits, target, alpha=0.25, gamma=gamma, reduction="mean"))
    if math.isclose(got, weighted, rel_tol=1e-4):
        return "you used the alpha weight 0.25: this exercise asks for the loss without alpha"
    if not math.isfinite(got):
        return ("the result is not finite: compute log(p_t) from logits, e.g. with "
                "F.binary_cross_entropy_with_logits(..., reduction='none'), which equals -log(p_t)")
    return "p_t = p where target is 1 and 1 - p where it is 0, with p = sigmoid(logits)"


@EXERCISES.checker(2, "write focal_loss(logits, target, gamma) returning the mean focal loss (a scalar tensor)")
def check_focal_loss(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> None:
    """Check the learner's focal loss ``fn(logits, target, gamma) -> scalar tensor``.

    Raises:
        AssertionError: with a hint, when a value differs from torchvision's (to 1e-5 relative), the
            result is not a scalar tensor, or no gradient reaches the logits.
    """
    for what, logits, target, gamma in _focal_cases():
        x = logits.clone().requires_grad_(True)
        got = fn(x, target.clone(), gamma)
        assert isinstance(got, torch.Tensor) and got.dim() == 0, \
            f"on {what} your function returned {type(got).__name__} {getattr(got, 'shape', '')}: return a scalar tensor"
        expected = float(_torchvision_focal(logits, target, gamma))
        value = float(got.detach())
        if not math.isclose(value, expected, rel_tol=1e-5, abs_tol=1e-7):
            raise AssertionError(f"on {what} you returned {value:.6g}, expected {expected:.6g}: "
                                 f"{_focal_hint(value, logits, target, gamma)}")
        if got.requires_grad:
            got.backward()
        assert x.grad is not None and torch.isfinite(x.grad).all(), \
            f"on {what} no (finite) gradient reaches the logits: compute the loss with torch operations on them"
    EXERCISES.passed(2, "your focal loss matches torchvision.ops.sigmoid_focal_loss (alpha off), gradients included.")


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: early stopping
# ----------------------------------------------------------------------------------------------------------
@EXERCISES.solution(3)
def early_stop(val_dice: list[float], patience: int) -> tuple[int, int]:
    """(best_epoch, last_epoch), 1-based: only a strictly better Dice replaces the best; stop after `patience` misses."""
    if not val_dice or patience < 1:
        raise ValueError("need at least one epoch and patience >= 1")
    best, best_epoch, bad = float("-inf"), 0, 0
    for epoch, score in enumerate(val_dice, start=1):
        if score > best:
            best, best_epoch, bad = score, epoch, 0
        else:
            bad += 1
        if bad >= patience:
            return best_epoch, epoch
    return best_epoch, len(val_dice)


_STOP_CASES: tuple[tuple[tuple[float, ...], int], ...] = (
    ((0.5, 0.6, 0.7, 0.8), 2),                      # always improving: never stops
    ((0.5, 0.7, 0.6, 0.65, 0.62, 0.9), 3),          # stops at epoch 5, before the late peak
    ((0.5, 0.7, 0.6, 0.65, 0.62, 0.9), 4),          # patience 4 sees it
    ((0.6, 0.6, 0.6), 2),                           # a tie is not an improvement
    ((0.3, 0.8, 0.8, 0.7), 1),                      # patience 1 stops at the first non-improvement
    ((0.9,), 3),
)


def _early_stop_variant(val_dice: list[float], patience: int, *, late: int = 0,
                        ties_improve: bool = False) -> tuple[int, int]:
    """:func:`early_stop` with a typical mistake: stopping ``late`` epochs late, or counting a tie as better."""
    best, best_epoch, bad = float("-inf"), 0, 0
    for epoch, score in enumerate(val_dice, start=1):
        if score > best or (ties_improve and score == best):
            best, best_epoch, bad = score, epoch, 0
        else:
            bad += 1
        if bad >= patience + late:
            return best_epoch, epoch
    return best_epoch, len(val_dice)


def _stop_variants(val_dice: list[float], patience: int) -> dict[str, tuple[int, int]]:
    """What typical wrong early stoppings return on one history, with the hint naming each mistake."""
    right = early_stop(val_dice, patience)
    variants = {
        "you stop one epoch late: stop at the epoch where the count of epochs without improvement REACHES "
        "patience (count >= patience, not >)": _early_stop_variant(val_dice, patience, late=1),
        "you stop one epoch early: with patience p, training runs p epochs without improvement, then stops "
        "(count >= patience, not >= patience - 1)": _early_stop_variant(val_dice, patience, late=-1)
        if patience > 1 else right,
        f"a tie is not an improvement: {BEST_FILE} keeps the FIRST epoch with the highest Dice and the count "
        "goes on (score > best, not >=)": _early_stop_variant(val_dice, patience, ties_improve=True),
    }
    return {hint: value for hint, value in variants.items() if value != right}


@EXERCISES.checker(3, "write early_stop(val_dice, patience) returning (best_epoch, last_epoch)")
def check_early_stop(fn: Callable[[Sequence[float], int], tuple[int, int]]) -> None:
    """Check the learner's ``fn(val_dice, patience) -> (best_epoch, last_epoch)``.

    Raises:
        AssertionError: with a hint, on the first history where the answer differs from :func:`early_stop`.
    """
    for scores, patience in _STOP_CASES:
        got = fn(list(scores), patience)
        assert got is not None and len(got) == 2, "return a pair (best_epoch, last_epoch)"
        expected = early_stop(list(scores), patience)
        if tuple(int(v) for v in got) == expected:
            continue
        best_epoch, last_epoch = (int(v) for v in got)
        where = f"for val Dice {list(scores)} and patience {patience} you returned {tuple(got)}, expected {expected}"
        for hint, variant in _stop_variants(list(scores), patience).items():
            if (best_epoch, last_epoch) == variant:
                raise AssertionError(f"{where}: {hint}")
        if best_epoch == expected[0] - 1 or last_epoch == expected[1] - 1:
            raise AssertionError(f"{where}: epochs are numbered from 1, not 0")
        if best_epoch != expected[0]:
            raise AssertionError(f"{where}: {BEST_FILE} keeps the first epoch with the highest Dice (a tie does not "
                                 "replace it)")
        raise AssertionError(f"{where}: count epochs without a strictly better Dice since the best one; stop at the "
                             "epoch where that count reaches patience (or run to the end)")
    EXERCISES.passed(3, "your early stopping matches fit's patience rule.")


# ----------------------------------------------------------------------------------------------------------
# Answers to the notebook's questions (nb04.show_answer(K))
# ----------------------------------------------------------------------------------------------------------
ANSWERS: dict[int, str] = {
    1: "BCE rewards a correct, confident probability on every pixel, each pixel weighing the same: smooth, well "
       "scaled gradients (p - y). Soft Dice rewards overlap per image, whatever the lesion's size: the quantity "
       "the ISIC metrics score. Added, BCE keeps the early gradients stable and Dice keeps the background from "
       "dominating.",
    2: "With a lesion on 20% of the pixels, BCE costs -log 0.9 = 0.11 on each background pixel and -log 0.1 = 2.3 on "
       "each lesion pixel, about 0.54 on average: a modest loss. Soft Dice = (2 * 0.1 * 0.2P) / (0.1P + 0.2P) = "
       "0.13, a Dice loss of 0.87, close to the worst (1): Dice forces the network to find the lesion.",
    3: "AdamW subtracts lr * lambda * theta from the weights directly, outside Adam's per-weight scaling. Added to "
       "the gradient, lambda * theta would be divided by sqrt(v) like the gradient, so weights with large gradients "
       "would barely decay (Loshchilov & Hutter 2019).",
    4: "For t < W: lr_t = lr * (t + 1) / W. Then lr_t = lr * (1 + cos(pi * (t - W) / (T - W))) / 2. It is 0 at "
       "t = T, the step after the last one (the last step, T - 1, is just above 0).",
    5: "Training runs few epochs (5 in the recipe): a per-epoch schedule would be a coarse staircase and a 10% "
       "warm-up would be shorter than one epoch step. Per batch the rate follows the smooth curve and the warm-up "
       "is counted in steps.",
    6: "float16 has 5 exponent bits: values below about 6e-5 lose precision and below 6e-8 underflow to 0, and small "
       "gradients do; the GradScaler multiplies the loss so they stay representable. bfloat16 keeps float32's 8 "
       "exponent bits (same range, fewer mantissa bits), so nothing underflows. CPUs with native bf16 units "
       "(AVX512-BF16, AMX) run bf16 faster than float32; on other CPUs bf16 is emulated and slower, so auto keeps "
       "float32 there.",
    7: "After scaler.scale(loss).backward() the gradients are multiplied by the scale (e.g. 65536): their norm is "
       "that much larger than the real one, so clipping to c would cut almost every step down to a tiny one. "
       "unscale_ divides them back first, so the norm compared with c is the true one.",
    8: "The decoder (U-Net with ASPP instead of smp's U-Net: multi-scale context), weight decay 1e-4 (few images "
       "over-fit), a warm-up then a cosine instead of a constant rate (protect the pretrained encoder early, small "
       "steps at the end), BCE + Dice instead of BCE (the background dominates BCE), augmentation (no up or down, "
       "cameras differ) and keeping the best validation epoch instead of the last.",
    9: f"{HISTORY_FILE} (one row per epoch), {BEST_FILE} (the weights of the best validation Dice) and {LAST_FILE}. "
       f"To resume exactly, {LAST_FILE} holds the weights, the optimiser's moments, the scheduler's position, "
       "the GradScaler, the "
       "random-number states, the best score, the history and the recipe (a different recipe is refused).",
    10: "The gap is what the model learned about these particular images rather than about lesions: it memorises. "
        "The recipe's remedies: more data, augmentation, weight decay, a pretrained encoder and early stopping "
        f"(patience), with {BEST_FILE} keeping the best epoch either way.",
}
EXERCISES.answers(ANSWERS)
show_answer = EXERCISES.show_answer
