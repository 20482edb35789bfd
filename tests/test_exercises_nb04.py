"""Notebook 04's exercises: reference solutions pass, named wrong answers fail with their hint, stubs are reported."""
import math

import pytest
import torch
import torch.nn.functional as F

from helpers.course.exercises import nb04


def stub(*args):
    ...  # your code here
    raise NotImplementedError


@pytest.mark.parametrize("check", [nb04.check_lr_at, nb04.check_focal_loss, nb04.check_early_stop])
def test_stub_is_reported_not_raised(check, capsys):
    assert check(stub) is None
    out = capsys.readouterr().out
    assert out.startswith(f"exercise {check.exercise} not attempted yet: ") and out.count("\n") == 1


@pytest.mark.parametrize("k, check", [(1, nb04.check_lr_at), (2, nb04.check_focal_loss), (3, nb04.check_early_stop)])
def test_reference_solutions_pass_as_printed(k, check, solution_round_trip):
    solution_round_trip(nb04, k, check, {"math": math, "torch": torch, "F": F})


# ----------------------------------------------------------------------------------------------------------
# Exercise 1: learning rate at a step
# ----------------------------------------------------------------------------------------------------------
def good_lr(step, total, warm, base):
    if step < warm:
        return base * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return base * 0.5 * (1 + math.cos(math.pi * t))


def test_check_lr_at_accepts_a_correct_schedule(capsys):
    nb04.check_lr_at(good_lr)
    assert "passed" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda s, n, w, b: b * s / w if s < w else good_lr(s, n, w, b), "off by one"),
    (lambda s, n, w, b: b * 0.5 * (1 + math.cos(math.pi * s / n)), "no warm-up"),
    (lambda s, n, w, b: good_lr(s, n, w, b) / b, "multiply it by base_lr"),
    (lambda s, n, w, b: good_lr(s, n, w, b) if s < w else b * 0.5 * (1 + math.cos(math.pi * s / n)),
     "start after the warm-up"),
    (lambda s, n, w, b: good_lr(s, n, w, b) if s < w else b * (1 - (s - w) / (n - w)), "cos"),
    (lambda s, n, w, b: None, "return"),
])
def test_check_lr_at_rejects_wrong_schedules(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        nb04.check_lr_at(wrong)


# ----------------------------------------------------------------------------------------------------------
# Exercise 2: focal loss
# ----------------------------------------------------------------------------------------------------------
def good_focal(logits, target, gamma):
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")   # = -log(p_t)
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)
    return ((1 - p_t) ** gamma * bce).mean()


def test_check_focal_loss_accepts_a_correct_loss(capsys):
    nb04.check_focal_loss(good_focal)
    assert "passed" in capsys.readouterr().out


def test_reference_focal_equals_bce_at_gamma_zero():
    logits, target = torch.randn(1, 1, 5, 5), (torch.rand(1, 1, 5, 5) > 0.5).float()
    assert torch.isclose(nb04.focal_loss(logits, target, 0.0), F.binary_cross_entropy_with_logits(logits, target))


@pytest.mark.parametrize("wrong, hint", [
    (lambda x, t, g: F.binary_cross_entropy_with_logits(x, t), "plain BCE"),
    (lambda x, t, g: good_focal(x, t, g) * x.numel(), "summed"),
    (lambda x, t, g: nb04.sigmoid_focal_loss(x, t, alpha=0.25, gamma=g, reduction="mean"), "alpha"),
    (lambda x, t, g: ((1 - torch.sigmoid(x)) ** g * F.binary_cross_entropy_with_logits(x, t, reduction="none")
                      ).mean(), "p_t"),
    (lambda x, t, g: good_focal(x, t, g).detach(), "gradient"),
    (lambda x, t, g: good_focal(x, t, g).item(), "scalar tensor"),
])
def test_check_focal_loss_rejects_wrong_losses(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        nb04.check_focal_loss(wrong)


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: early stopping
# ----------------------------------------------------------------------------------------------------------
def good_stopping(scores, patience):
    best, best_epoch, bad = -1.0, 0, 0
    for epoch, score in enumerate(scores, 1):
        if score > best:
            best, best_epoch, bad = score, epoch, 0
        else:
            bad += 1
            if bad == patience:
                return best_epoch, epoch
    return best_epoch, len(scores)


def test_check_early_stopping_accepts_a_correct_rule(capsys):
    nb04.check_early_stop(good_stopping)
    assert "passed" in capsys.readouterr().out


def _last_best(scores, patience):
    """Ties replace the best epoch (>= instead of >)."""
    best = max(scores)
    best_epoch = max(i for i, s in enumerate(scores, 1) if s == best)
    return best_epoch, good_stopping(scores, patience)[1]


@pytest.mark.parametrize("wrong, hint", [
    (lambda s, p: tuple(v - 1 for v in good_stopping(s, p)), "from 1"),
    (_last_best, "tie"),
    (lambda s, p: (good_stopping(s, p)[0], len(s)), "reaches patience"),
    (lambda s, p: (good_stopping(s, p)[0], min(len(s), good_stopping(s, p)[1] + 1)), "reaches patience"),
    (lambda s, p: None, "pair"),
])
def test_check_early_stopping_rejects_wrong_rules(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        nb04.check_early_stop(wrong)


def test_early_stopping_reference_agrees_with_fit_semantics():
    assert nb04.early_stop([0.5, 0.4, 0.3, 0.2], 2) == (1, 3)   # as in tests/test_training.py
    with pytest.raises(ValueError):
        nb04.early_stop([], 1)


def _stopping(scores, patience, *, late=0, ties=False):
    """A learner's loop: `late=1` stops when the count passes patience (> instead of >=); `ties`: >= improves."""
    best, best_epoch, bad = -1.0, 0, 0
    for epoch, score in enumerate(scores, 1):
        if score > best or (ties and score == best):
            best, best_epoch, bad = score, epoch, 0
        else:
            bad += 1
            if bad >= patience + late:
                return best_epoch, epoch
    return best_epoch, len(scores)


@pytest.mark.parametrize("wrong, hint", [
    (lambda s, p: _stopping(s, p, late=1), r"you stop one epoch late: .*count >= patience, not >\)"),
    (lambda s, p: _stopping(s, p, late=-1) if p > 1 else _stopping(s, p), "you stop one epoch early"),
    (lambda s, p: _stopping(s, p, ties=True), r"a tie is not an improvement.*score > best, not >="),
])
def test_early_stopping_off_by_one_and_ties_are_named(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        nb04.check_early_stop(wrong)
