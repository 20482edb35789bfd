"""Losses for binary lesion segmentation: BCE, soft Dice, BCE + Dice and Tversky, on ``(N, 1, H, W)`` logits.

Every loss takes raw **logits** ``(N, 1, H, W)`` and a float target of the same shape in {0, 1}, and returns a
scalar tensor. The region losses (Dice, Tversky) are computed **per image, then averaged over the batch**,
so a small lesion counts as much as a large one (the same macro view as the ISIC metric), and they stay
finite and smooth on images whose target is empty thanks to the ``smooth`` term:

* Dice loss: ``1 - (2 TP + s) / (|P| + |T| + s)`` with soft counts ``TP = sum(p t)``, ``|P| = sum(p)``,
  ``|T| = sum(t)``, ``p = sigmoid(logits)`` (:func:`helpers.metrics.soft_dice`).
* Tversky loss: ``1 - (TP + s) / (TP + alpha FP + beta FN + s)`` (:func:`helpers.metrics.soft_tversky`);
  ``beta > alpha`` penalises missed lesion pixels more, trading precision for recall.
* BCE (``torch.nn.BCEWithLogitsLoss``) is pixel-wise: the mean over all pixels of the batch.

``build_loss(name)`` is what training code calls. The formulas match smp's ``DiceLoss``/``TverskyLoss``
(``mode="binary"``) on a batch of one image; smp pools the whole batch instead (``tests/test_losses.py``).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .metrics import soft_dice, soft_tversky

#: Names accepted by :func:`build_loss`.
LOSS_NAMES: tuple[str, ...] = ("bce", "dice", "bce+dice", "tversky")


def _check_inputs(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Check shapes; return the logits (half precision promoted to float32, so sums over many pixels stay
    accurate under mixed precision) and the target in the logits' dtype.

    Raises:
        ValueError: shapes differ or are not ``(N, 1, H, W)``.
    """
    if logits.dim() != 4 or logits.shape[1] != 1:
        raise ValueError(f"expected logits of shape (N, 1, H, W), got {tuple(logits.shape)}")
    if target.shape != logits.shape:
        raise ValueError(f"target shape {tuple(target.shape)} differs from logits shape {tuple(logits.shape)}: "
                         "masks must be float (N, 1, H, W) at the model's output size")
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return logits, target.to(dtype=logits.dtype)


class DiceLoss(nn.Module):
    """Soft Dice loss: ``1 - mean over images of soft_dice(sigmoid(logits), target, smooth)``.

    Args:
        smooth: added to numerator and denominator (pixels); 1.0 keeps empty targets finite and makes an
            empty prediction on an empty target cost ~0. Must be >= 0.

    Shape:
        logits ``(N, 1, H, W)``, target ``(N, 1, H, W)`` float in {0, 1} -> scalar.
    """

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__()
        if smooth < 0:
            raise ValueError(f"smooth must be >= 0, got {smooth}")
        self.smooth = float(smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = _check_inputs(logits, target)
        return 1.0 - soft_dice(torch.sigmoid(logits), target, self.smooth).mean()

    def extra_repr(self) -> str:
        return f"smooth={self.smooth}"


class TverskyLoss(nn.Module):
    """Tversky loss: ``1 - mean over images of (TP + s) / (TP + alpha FP + beta FN + s)`` on ``sigmoid(logits)``.

    Args:
        alpha: weight of false positives (>= 0).
        beta: weight of false negatives (>= 0). The defaults 0.3 / 0.7 are Salehi et al.'s (2017) choice
            for small lesions; ``alpha = beta = 0.5`` is a Dice loss (with smoothing ``2 * smooth``).
        smooth: ``s`` above, >= 0.

    Shape:
        logits ``(N, 1, H, W)``, target ``(N, 1, H, W)`` float in {0, 1} -> scalar.
    """

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, smooth: float = 1.0) -> None:
        super().__init__()
        if min(alpha, beta, smooth) < 0 or alpha + beta == 0:
            raise ValueError(f"need alpha, beta, smooth >= 0 and alpha + beta > 0, got {alpha}, {beta}, {smooth}")
        self.alpha, self.beta, self.smooth = float(alpha), float(beta), float(smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = _check_inputs(logits, target)
        index = soft_tversky(torch.sigmoid(logits), target, self.alpha, self.beta, self.smooth)
        return 1.0 - index.mean()

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, smooth={self.smooth}"


class BCEDiceLoss(nn.Module):
    """``bce_weight * BCE + (1 - bce_weight) * Dice``: pixel-wise calibration plus a region-overlap term.

    Args:
        bce_weight: in [0, 1]; 0.5 weighs both equally (0 is a pure Dice loss, 1 pure BCE).
        smooth: the Dice loss's smoothing.
        pos_weight: optional BCE weight of lesion pixels (see ``torch.nn.BCEWithLogitsLoss``).

    Shape:
        logits ``(N, 1, H, W)``, target ``(N, 1, H, W)`` float in {0, 1} -> scalar.
    """

    def __init__(self, bce_weight: float = 0.5, smooth: float = 1.0, pos_weight: float | None = None) -> None:
        super().__init__()
        if not 0.0 <= bce_weight <= 1.0:
            raise ValueError(f"bce_weight must be in [0, 1], got {bce_weight}")
        self.bce_weight = float(bce_weight)
        self.bce = _bce(pos_weight)
        self.dice = DiceLoss(smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = _check_inputs(logits, target)
        return self.bce_weight * self.bce(logits, target) + (1.0 - self.bce_weight) * self.dice(logits, target)

    def extra_repr(self) -> str:
        return f"bce_weight={self.bce_weight}"


class _CheckedBCE(nn.BCEWithLogitsLoss):
    """``nn.BCEWithLogitsLoss`` that checks shapes and accepts integer/bool targets."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(*_check_inputs(logits, target))


def _bce(pos_weight: float | None = None) -> nn.BCEWithLogitsLoss:
    """Pixel-wise BCE on logits (mean over all pixels), optionally weighting lesion pixels by ``pos_weight``."""
    if pos_weight is None:
        return _CheckedBCE()
    if pos_weight <= 0:
        raise ValueError(f"pos_weight must be > 0, got {pos_weight}")
    return _CheckedBCE(pos_weight=torch.tensor([float(pos_weight)]))


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    """The loss module called ``name``, for ``(N, 1, H, W)`` logits and float targets.

    Args:
        name: ``"bce"`` (pixel-wise ``BCEWithLogitsLoss``; kwargs: ``pos_weight``), ``"dice"`` (:class:`DiceLoss`),
            ``"bce+dice"`` (:class:`BCEDiceLoss`), ``"tversky"`` (:class:`TverskyLoss`). Case and spaces are ignored.
        **kwargs: passed to that loss's constructor.

    Raises:
        ValueError: unknown name (the message lists the known ones), or an invalid argument.
    """
    key = name.strip().lower().replace(" ", "")
    factories = {"bce": _bce, "dice": DiceLoss, "bce+dice": BCEDiceLoss, "tversky": TverskyLoss}
    if key not in factories:
        raise ValueError(f"unknown loss {name!r}: choose one of {', '.join(LOSS_NAMES)}")
    try:
        return factories[key](**kwargs)
    except TypeError as err:
        raise ValueError(f"bad arguments for loss {name!r}: {err}") from err
