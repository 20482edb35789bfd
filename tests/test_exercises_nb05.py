"""Notebook 05's exercises: reference solutions pass, named wrong answers fail with their hint, stubs are reported."""
import numpy as np
import pytest
import torch
from torch import nn

from helpers.course.exercises import nb05
from helpers.evaluation import metrics


def stub(*args):
    ...  # your code here
    raise NotImplementedError


class StubTversky(nn.Module):
    def __init__(self, alpha=0.3, beta=0.7):
        super().__init__()

    def forward(self, logits, target):
        ...  # your code here
        raise NotImplementedError


def test_stubs_are_reported_not_raised(capsys):
    probs, truths = _val_set()
    assert nb05.check_dice(stub) is None
    assert nb05.check_best_threshold(stub, probs, truths) is None
    assert nb05.check_tversky_loss(StubTversky) is None
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"exercise {k} not attempted yet" for k in (1, 2, 3)]


def test_reference_solutions_pass_as_printed(solution_round_trip):
    probs, truths = _val_set()
    checks = {1: nb05.check_dice, 2: lambda f: nb05.check_best_threshold(f, probs, truths),
              3: nb05.check_tversky_loss}
    for k, check in checks.items():
        solution_round_trip(nb05, k, check, {"np": np, "torch": torch, "metrics": metrics})


# ----------------------------------------------------------------------------------------------------------
# Exercise 1: Dice
# ----------------------------------------------------------------------------------------------------------
def good_dice(pred, truth):
    tp = np.logical_and(pred, truth).sum()
    denominator = pred.sum() + truth.sum()
    return 1.0 if denominator == 0 else 2 * tp / denominator


def test_check_dice_accepts_a_correct_dice(capsys):
    nb05.check_dice(good_dice)
    assert "passed" in capsys.readouterr().out


def _jaccard(pred, truth):
    union = np.logical_or(pred, truth).sum()
    return 1.0 if union == 0 else np.logical_and(pred, truth).sum() / union


@pytest.mark.parametrize("wrong, hint", [
    (_jaccard, "Jaccard"),
    (lambda p, t: (2 * (p & t).sum() + 1) / (p.sum() + t.sum() + 1), "smoothed"),
    (lambda p, t: 2 * (p & t).sum() / (p.sum() + t.sum()), "NaN"),  # numpy 0/0
    (lambda p, t: 2 * int((p & t).sum()) / int(p.sum() + t.sum()), "divides by zero"),
    (lambda p, t: 0.0 if p.sum() + t.sum() == 0 else good_dice(p, t), "perfect, 1.0"),
    (lambda p, t: (p & t).sum() / (p.sum() + t.sum() + 1e-9), "expected"),  # forgot the factor 2
    (lambda p, t: None, "return"),
])
def test_check_dice_rejects_wrong_functions(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        nb05.check_dice(wrong)


# ----------------------------------------------------------------------------------------------------------
# Exercise 2: best threshold
# ----------------------------------------------------------------------------------------------------------
def _val_set():
    """Probability maps whose best threshold is well above 0.5: the model is over-confident on background."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:20, :24]
    probs, truths = [], []
    for k in range(4):
        truth = (yy - 10) ** 2 + (xx - 8 - 2 * k) ** 2 <= (16 + 4 * k)
        halo = (yy - 10) ** 2 + (xx - 8 - 2 * k) ** 2 <= (16 + 4 * k) * 2.5
        p = np.where(truth, 0.85, np.where(halo, 0.6, 0.1)) + rng.normal(0, 0.12, truth.shape)
        probs.append(np.clip(p, 0, 1))
        truths.append(truth.astype(np.uint8) * 255)  # 0/255-coded, as read from disk
    return probs, truths


def _answer(t, d=None):
    """A learner function that returns a fixed threshold (and by default its true mean Dice) on the 20x24 maps of
    :func:`_val_set`, and the right answer on the checker's own test maps (so the validation answer is what is tested)."""
    def answer(probs, truths, grid):
        if probs[0].shape != (20, 24):
            return nb05.best_threshold(probs, truths, grid)
        return t, nb05.mean_dice_at(probs, truths, t) if d is None else d
    return answer


def _tied_val_set():
    """Smoke-like maps: a barely trained model's probabilities all in [0.478, 0.504], so 0.05 ... 0.45 tie."""
    rng = np.random.default_rng(1)
    probs = [rng.uniform(0.478, 0.504, (20, 24)) for _ in range(4)]
    truths = [np.zeros((20, 24), np.uint8) for _ in range(4)]
    for m in truths:
        m[5:15, 6:18] = 1
    return probs, truths


def _pooled_best(probs, truths, grid):
    """Keeps the threshold of the highest pooled (all pixels together) Dice."""
    scores = [nb05.pooled_dice_at(probs, truths, x) for x in grid]
    t = grid[int(np.argmax(scores))]
    return t, nb05.mean_dice_at(probs, truths, t)


@pytest.mark.parametrize("wrong, hint", [
    (lambda p, t, g: (g[0], nb05.mean_dice_at(p, t, g[0])), "on the test maps: threshold 0.05 gives mean Dice"),
    (lambda p, t, g: (0.5, nb05.mean_dice_at(p, t, 0.5)), "on the test maps: threshold 0.5 gives mean Dice"),
    (_pooled_best, "on the test maps: threshold 0.7 maximises the Dice of all pixels pooled together"),
])
def test_best_threshold_discriminates_where_the_validation_maps_tie(wrong, hint):
    probs, truths = _tied_val_set()
    scores = [nb05.mean_dice_at(probs, truths, t) for t in metrics.THRESHOLD_GRID[:9]]
    assert max(scores) == min(scores)  # 0.05 ... 0.45 tie: the validation maps alone cannot tell these apart
    with pytest.raises(AssertionError, match=hint):
        nb05.check_best_threshold(wrong, probs, truths)
    nb05.check_best_threshold(nb05.best_threshold, probs, truths)


def test_threshold_test_maps_have_one_clear_best():
    probs, truths = nb05.threshold_test_maps()
    scores = sorted(nb05.mean_dice_at(probs, truths, t) for t in metrics.THRESHOLD_GRID)
    assert nb05.best_threshold(probs, truths, metrics.THRESHOLD_GRID)[0] == pytest.approx(0.30)
    assert scores[-1] - scores[-2] > 0.02 and nb05.mean_dice_at(probs, truths, 0.5) < 0.3


def test_best_threshold_reference_and_check(capsys):
    probs, truths = _val_set()
    t, best = nb05.best_threshold(probs, truths, metrics.THRESHOLD_GRID)
    assert 0.6 < t < 0.85 and 0.7 < best < 0.95 and best > nb05.mean_dice_at(probs, truths, 0.5) + 0.1
    nb05.check_best_threshold(nb05.best_threshold, probs, truths)
    assert "passed" in capsys.readouterr().out
    nb05.check_best_threshold(_answer(t + 1e-4), probs, truths)  # off the grid, as good: accepted


def _argmin(probs, truths, grid):
    if probs[0].shape != (20, 24):
        return nb05.best_threshold(probs, truths, grid)
    scores = [nb05.mean_dice_at(probs, truths, x) for x in grid]
    return grid[int(np.argmin(scores))], min(scores)


def _pooled(probs, truths, grid):
    t, _ = nb05.best_threshold(probs, truths, grid)
    return t, nb05.pooled_dice_at(probs, truths, t)  # wrong on the test maps too (the first checked)


@pytest.mark.parametrize("wrong, hint", [
    (_answer(0.5), "gives mean Dice"),
    (_argmin, "LOWEST"),
    (_pooled, "pools all pixels"),
    (lambda p, t, g: (nb05.best_threshold(p, t, g)[0], nb05.best_threshold(p, t, g)[1] - 0.05), "not the mean Dice"),
    (_answer(1.5, 0.0), "lies in"),
    (lambda p, t, g: None, "returns None"),
    (lambda p, t, g: 0.5, "pair"),
])
def test_best_threshold_rejects_wrong_answers(wrong, hint):
    probs, truths = _val_set()
    with pytest.raises(AssertionError, match=hint):
        nb05.check_best_threshold(wrong, probs, truths)


def test_best_threshold_custom_grid():
    probs, truths = _val_set()
    grid = [0.3, 0.4, 0.5]  # mean Dice rises with the threshold on this grid
    nb05.check_best_threshold(_answer(0.5), probs, truths, thresholds=grid)
    with pytest.raises(AssertionError, match="but 0.5 gives"):
        nb05.check_best_threshold(_answer(0.4), probs, truths, thresholds=grid)
    with pytest.raises(AssertionError, match="LOWEST"):
        nb05.check_best_threshold(_answer(0.3), probs, truths, thresholds=grid)


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: Tversky loss
# ----------------------------------------------------------------------------------------------------------
class GoodTversky(nn.Module):
    def __init__(self, alpha, beta, smooth=1.0, *, swap=False, sigmoid=True, pooled=False, index=False,
                 detach=False):
        super().__init__()
        self.alpha, self.beta = (beta, alpha) if swap else (alpha, beta)
        self.smooth, self.sigmoid, self.pooled, self.index, self.detach = smooth, sigmoid, pooled, index, detach

    def forward(self, logits, target):
        p = torch.sigmoid(logits) if self.sigmoid else logits
        dims = (0, 1, 2, 3) if self.pooled else (1, 2, 3)
        tp = (p * target).sum(dims)
        fp = (p * (1 - target)).sum(dims)
        fn = ((1 - p) * target).sum(dims)
        t = (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)
        out = t.mean() if self.index else 1 - t.mean()
        return torch.tensor(out.item()) if self.detach else out


def test_check_tversky_accepts_a_class_and_a_function(capsys):
    nb05.check_tversky_loss(GoodTversky)
    nb05.check_tversky_loss(lambda alpha, beta: GoodTversky(alpha, beta).forward)
    assert capsys.readouterr().out.count("passed") == 2


@pytest.mark.parametrize("options, hint", [
    ({"swap": True}, "swapped"),
    ({"index": True}, "1 - index"),
    ({"sigmoid": False}, "sigmoid"),
    ({"pooled": True}, "per image"),
    ({"smooth": 0.0}, "smooth"),
    ({"smooth": 5.0}, "expected"),
    ({"detach": True}, "no gradient"),
])
def test_check_tversky_rejects_typical_mistakes(options, hint):
    with pytest.raises(AssertionError, match=hint):
        nb05.check_tversky_loss(lambda alpha, beta: GoodTversky(alpha, beta, **options))


def test_check_tversky_wants_a_scalar():
    factory = lambda alpha, beta: (lambda x, t: 1 - GoodTversky(alpha, beta, index=True)(x, t).reshape(1))  # noqa: E731
    with pytest.raises(AssertionError, match="scalar"):
        nb05.check_tversky_loss(factory)


def test_tversky_pass_says_how_to_train_with_the_learners_object_and_what_a_plain_function_lacks(capsys):
    nb05.check_tversky_loss(nb05.TverskyLoss)
    assert "TrainConfig(loss=TverskyLoss(alpha=0.3, beta=0.7)) trains with this very object" in capsys.readouterr().out

    def as_function(alpha=0.3, beta=0.7):  # right values, but a function: TrainConfig needs an nn.Module
        module = nb05.TverskyLoss(alpha, beta)
        return lambda logits, target: module(logits, target)
    nb05.check_tversky_loss(as_function)
    assert "to train with it, make it a torch.nn.Module" in capsys.readouterr().out
