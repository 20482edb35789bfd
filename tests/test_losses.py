"""helpers.train.losses: hand-computed values, per-image averaging, agreement with smp, empty targets, gradients."""
import math

import numpy as np
import pytest
import segmentation_models_pytorch as smp
import torch
from torch import nn

from helpers.evaluation import metrics
from helpers.train import losses
from helpers.train.losses import LOSS_NAMES, build_loss


def _batch(n=3, h=16, w=20, seed=0):
    """Random logits (requires grad) and {0, 1} float targets with a blob in each image."""
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, 1, h, w, generator=g) * 2).requires_grad_(True)
    target = torch.zeros(n, 1, h, w)
    for i in range(n):
        target[i, 0, 2 + i: 8 + 2 * i, 3: 9 + 3 * i] = 1
    return logits, target


def test_dice_loss_hand_computed():
    # p = sigmoid(logits) = [0.5, 0.5, 0.5, 0.5] -> hand: TP = 1.0, |P| = 2, |T| = 2
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    dice = (2 * 1.0 + 1.0) / (2.0 + 2.0 + 1.0)
    assert losses.DiceLoss(smooth=1.0)(logits, target).item() == pytest.approx(1 - dice)
    assert losses.DiceLoss(smooth=0.0)(logits, target).item() == pytest.approx(0.5)


def test_tversky_loss_hand_computed():
    # p = [0.5, 0.5, 0.5, 0.5]: TP = 1, FP = 1, FN = 1 (soft counts)
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    value = losses.TverskyLoss(alpha=0.2, beta=0.8, smooth=1.0)(logits, target).item()
    assert value == pytest.approx(1 - (1 + 1) / (1 + 0.2 * 1 + 0.8 * 1 + 1))


def test_region_losses_are_per_image_then_mean():
    logits, target = _batch()
    for loss in (losses.DiceLoss(), losses.TverskyLoss(0.3, 0.7)):
        each = torch.stack([loss(logits[i:i + 1], target[i:i + 1]) for i in range(len(logits))])
        assert loss(logits, target).item() == pytest.approx(each.mean().item(), rel=1e-6)


@pytest.mark.parametrize("smooth", [0.0, 1.0])
def test_dice_and_tversky_agree_with_smp_on_one_image(smooth):
    """smp's binary losses pool the batch; on one image with a lesion they are our formulas."""
    logits, target = _batch(n=1)
    ours = losses.DiceLoss(smooth=2 * smooth)(logits, target)  # smp adds smooth to TP, i.e. 2 s to 2 TP
    theirs = smp.losses.DiceLoss(mode="binary", smooth=smooth)(logits, target)
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-6)
    ours = losses.TverskyLoss(alpha=0.3, beta=0.7, smooth=smooth)(logits, target)
    theirs = smp.losses.TverskyLoss(mode="binary", smooth=smooth, alpha=0.3, beta=0.7)(logits, target)
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-6)


def test_tversky_half_half_is_dice():
    logits, target = _batch()
    assert losses.TverskyLoss(0.5, 0.5, smooth=1.0)(logits, target).item() == pytest.approx(
        losses.DiceLoss(smooth=2.0)(logits, target).item(), rel=1e-6)


def test_tversky_beta_penalises_missed_lesion_more():
    target = torch.zeros(1, 1, 8, 8)
    target[..., 2:6, 2:6] = 1  # 16 lesion pixels
    miss = torch.full_like(target, -8.0)
    miss[..., 2:6, 2:4] = 8.0  # finds half the lesion: 8 false negatives, no false positive
    over = torch.where(target.bool(), 8.0, -8.0)
    over[..., 0, :] = 8.0  # finds all, plus 8 false positives
    recall_loss = losses.TverskyLoss(alpha=0.3, beta=0.7)
    assert recall_loss(miss, target) > recall_loss(over, target)
    precision_loss = losses.TverskyLoss(alpha=0.7, beta=0.3)
    assert precision_loss(miss, target) < precision_loss(over, target)


def test_bce_is_pixelwise_torch_bce_and_combo_weighs_both_halves():
    logits, target = _batch()
    bce = nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert build_loss("bce")(logits, target).item() == pytest.approx(bce.item())
    dice = losses.DiceLoss()(logits, target)
    combo = build_loss("bce+dice")(logits, target)
    assert combo.item() == pytest.approx(0.5 * bce.item() + 0.5 * dice.item(), rel=1e-6)


def test_soft_dice_matches_hard_dice_on_binary_input():
    rng = np.random.default_rng(0)
    pred, truth = rng.random((20, 24)) > 0.5, rng.random((20, 24)) > 0.6
    p = torch.from_numpy(pred).float()[None, None]
    t = torch.from_numpy(truth).float()[None, None]
    assert losses.soft_dice(p, t, smooth=0).item() == pytest.approx(metrics.image_scores(pred, truth)["dice"])
    t_dice = losses.soft_tversky(p, t, 0.5, 0.5, smooth=1.0)
    assert t_dice.item() == pytest.approx(losses.soft_dice(p, t, smooth=2.0).item())


def test_losses_does_not_import_metrics():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(losses))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any("metrics" in name for name in imported), imported


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_all_empty_targets_are_finite_with_finite_gradients(name):
    loss = build_loss(name)
    target = torch.zeros(2, 1, 8, 8)
    for scale in (-100.0, 0.0, 100.0):  # confident background, unsure, confident (wrong) lesion
        logits = torch.full((2, 1, 8, 8), scale, requires_grad=True)
        value = loss(logits, target)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(logits.grad).all(), (name, scale)
    if name != "bce":
        right = loss(torch.full((2, 1, 8, 8), -20.0), target).item()
        wrong = loss(torch.full((2, 1, 8, 8), 20.0), target).item()
        assert right < 1e-6 and wrong > 0.9, (name, right, wrong)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_gradients_finite_and_descend(name):
    logits, target = _batch()
    loss = build_loss(name)
    value = loss(logits, target)
    value.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    with torch.no_grad():
        stepped = logits - 0.5 * logits.grad / logits.grad.abs().max()
    assert loss(stepped, target).item() < value.item()


def test_dice_loss_gradcheck():
    logits = torch.randn(2, 1, 3, 4, dtype=torch.float64, requires_grad=True)
    target = (torch.rand(2, 1, 3, 4) > 0.5).double()
    assert torch.autograd.gradcheck(lambda x: losses.DiceLoss()(x, target), (logits,))
    assert torch.autograd.gradcheck(lambda x: losses.TverskyLoss()(x, target), (logits,))


def test_perfect_prediction_costs_almost_nothing():
    _, target = _batch()
    logits = (target * 2 - 1) * 30
    for name in ("dice", "tversky"):
        assert build_loss(name)(logits, target).item() < 1e-6
    assert build_loss("bce+dice")(logits, target).item() < 1e-6


def test_build_loss_errors_and_names():
    with pytest.raises(ValueError, match="bce, dice, bce\\+dice, tversky"):
        build_loss("focal")
    with pytest.raises(ValueError, match="bad arguments"):
        build_loss("dice", alpha=0.3)
    with pytest.raises(ValueError, match="bad arguments"):
        build_loss("bce+dice", bce_weight=0.5)  # the weight is fixed at 0.5 / 0.5
    with pytest.raises(ValueError, match="smooth"):
        losses.DiceLoss(smooth=-1)
    assert isinstance(build_loss(" BCE+Dice "), losses.BCEDiceLoss)
    assert isinstance(build_loss("bce"), nn.BCEWithLogitsLoss)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_shape_errors_are_explained(name):
    loss = build_loss(name)
    with pytest.raises(ValueError, match="target shape"):
        loss(torch.zeros(2, 1, 8, 8), torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        loss(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8))


def test_integer_targets_accepted():
    logits, target = _batch()
    assert build_loss("bce+dice")(logits, target.to(torch.uint8)).item() == pytest.approx(
        build_loss("bce+dice")(logits, target).item())
    assert math.isfinite(build_loss("tversky")(logits, target.bool()).item())


@pytest.mark.parametrize("name", ["dice", "tversky", "bce+dice"])
def test_half_precision_logits_are_summed_in_float32(name):
    logits, target = _batch(n=2, h=64, w=64)
    half = logits.detach().to(torch.bfloat16).requires_grad_(True)
    value = build_loss(name)(half, target)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(build_loss(name)(half.detach().float(), target).item(), rel=1e-6)
    value.backward()
    assert half.grad.dtype == torch.bfloat16 and torch.isfinite(half.grad.float()).all()
