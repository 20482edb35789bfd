"""Losses for binary lesion segmentation: BCE, soft Dice, BCE + Dice and Tversky, on ``(N, 1, H, W)`` logits.

Introduced in notebook 02 (``02_se_unet_from_scratch``, the first training step); notebook 04 compares them.

Every loss takes raw **logits** ``(N, 1, H, W)`` and a float target of the same shape in {0, 1}, and returns a
scalar tensor. The region losses (Dice, Tversky) are computed **per image, then averaged over the batch**,
so a small lesion counts as much as a large one (the same macro view as the ISIC metric), and they stay
finite and smooth on images whose target is empty thanks to the ``smooth`` term:

* Dice loss: ``1 - (2 TP + s) / (|P| + |T| + s)`` with soft counts ``TP = sum(p t)``, ``|P| = sum(p)``,
  ``|T| = sum(t)``, ``p = sigmoid(logits)`` (:func:`soft_dice`).
* Tversky loss: ``1 - (TP + s) / (TP + alpha FP + beta FN + s)`` (:func:`soft_tversky`);
  ``beta > alpha`` penalises missed lesion pixels more, trading precision for recall.
* BCE (``torch.nn.BCEWithLogitsLoss``) is pixel-wise: the mean over all pixels of the batch.
* BCE + Dice: ``0.5 BCE + 0.5 Dice``.

``build_loss(name)`` builds a loss by name; :func:`resolve_loss` is what training calls with
``TrainConfig.loss`` / ``TrainConfig.loss_kwargs``: a name with its constructor's arguments
(``"tversky"``, ``{"alpha": 0.2, "beta": 0.8}``) or a loss **object**, any ``nn.Module`` taking
``(logits, target)`` (the ``TverskyLoss`` a learner writes in notebook 05 trains as itself);
:func:`describe_loss` is how an object is recorded in ``config.json``. The formulas match smp's ``DiceLoss``/``TverskyLoss``
(``mode="binary"``) on a batch of one image; smp pools the whole batch instead (``tests/test_losses.py``).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

#: Names accepted by :func:`build_loss`.
LOSS_NAMES: tuple[str, ...] = ("bce", "dice", "bce+dice", "tversky")
#: How :func:`describe_loss` marks a loss object in a saved config (a name no :func:`build_loss` accepts).
LOSS_OBJECT_PREFIX = "object:"


def _soft_counts(probs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft ``(TP, FP, FN)`` per image: ``sum(p t)``, ``sum(p (1 - t))``, ``sum((1 - p) t)``, each ``(N,)``."""
    if probs.shape != target.shape:
        raise ValueError(f"probabilities shape {tuple(probs.shape)} differs from target shape {tuple(target.shape)}")
    n = probs.shape[0]
    p = probs.reshape(n, -1)
    t = target.to(probs.dtype).reshape(n, -1)
    tp = (p * t).sum(1)
    return tp, p.sum(1) - tp, t.sum(1) - tp


def soft_dice(probs: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Differentiable Dice per image: ``(2 sum(p t) + s) / (sum(p) + sum(t) + s)``.

    Args:
        probs: ``(N, 1, H, W)`` probabilities in [0, 1] (``sigmoid(logits)``).
        target: same shape, float in {0, 1}.
        smooth: ``s`` above, >= 0; keeps empty masks finite (an empty truth predicted empty scores 1).

    Returns:
        ``(N,)`` tensor; with hard 0/1 ``probs`` and ``smooth=0`` it is the Dice of
        :func:`helpers.evaluation.metrics.image_scores` (except for 0/0, which gives 0 here instead of 1).

    Raises:
        ValueError: shapes differ, or ``smooth < 0``.
    """
    if smooth < 0:
        raise ValueError(f"smooth must be >= 0, got {smooth}")
    tp, fp, fn = _soft_counts(probs, target)
    return (2 * tp + smooth) / (2 * tp + fp + fn + smooth).clamp_min(1e-7)


def soft_tversky(probs: torch.Tensor, target: torch.Tensor, alpha: float, beta: float,
                 smooth: float = 1.0) -> torch.Tensor:
    """Differentiable Tversky index per image: ``(TP + s) / (TP + alpha FP + beta FN + s)``.

    Soft counts ``TP = sum(p t)``, ``FP = sum(p (1 - t))``, ``FN = sum((1 - p) t)`` over each image's pixels
    (Salehi et al. 2017, arXiv:1706.05721). ``alpha`` weighs false positives, ``beta`` false negatives;
    ``alpha = beta = 0.5`` gives Dice with smoothing ``2 s`` (``soft_dice(p, t, 2 * s)``).

    Args:
        probs, target: ``(N, 1, H, W)`` (or ``(N, H, W)``) probabilities and {0, 1} float targets.
        alpha, beta: non-negative weights.
        smooth: ``s`` above, >= 0.

    Returns:
        ``(N,)`` tensor in [0, 1].

    Raises:
        ValueError: shapes differ, or negative ``alpha``, ``beta`` or ``smooth``.
    """
    if min(alpha, beta, smooth) < 0:
        raise ValueError(f"alpha, beta and smooth must be >= 0, got {alpha}, {beta}, {smooth}")
    tp, fp, fn = _soft_counts(probs, target)
    return (tp + smooth) / (tp + alpha * fp + beta * fn + smooth).clamp_min(1e-7)


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
    """``0.5 BCE + 0.5 Dice``: pixel-wise calibration plus a region-overlap term, weighed equally.

    Args:
        smooth: the Dice loss's smoothing.

    Shape:
        logits ``(N, 1, H, W)``, target ``(N, 1, H, W)`` float in {0, 1} -> scalar.
    """

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__()
        self.bce = _CheckedBCE()
        self.dice = DiceLoss(smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = _check_inputs(logits, target)
        return 0.5 * self.bce(logits, target) + 0.5 * self.dice(logits, target)


class _CheckedBCE(nn.BCEWithLogitsLoss):
    """``nn.BCEWithLogitsLoss`` that checks shapes and accepts integer/bool targets."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(*_check_inputs(logits, target))


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    """The loss module called ``name``, for ``(N, 1, H, W)`` logits and float targets.

    Args:
        name: ``"bce"`` (pixel-wise ``BCEWithLogitsLoss``), ``"dice"`` (:class:`DiceLoss`),
            ``"bce+dice"`` (:class:`BCEDiceLoss`), ``"tversky"`` (:class:`TverskyLoss`). Case and spaces are ignored.
        **kwargs: passed to that loss's constructor.

    Raises:
        ValueError: unknown name (the message lists the known ones), or an invalid argument.
    """
    key = name.strip().lower().replace(" ", "")
    factories = {"bce": _CheckedBCE, "dice": DiceLoss, "bce+dice": BCEDiceLoss, "tversky": TverskyLoss}
    if key not in factories:
        raise ValueError(f"unknown loss {name!r}: choose one of {', '.join(LOSS_NAMES)}")
    try:
        return factories[key](**kwargs)
    except TypeError as err:
        raise ValueError(f"bad arguments for loss {name!r}: {err}") from err


def resolve_loss(loss: str | nn.Module, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """The loss module training uses: ``build_loss(loss, **kwargs)`` for a name, ``loss`` itself for an object.

    Args:
        loss: a :data:`LOSS_NAMES` name, or an ``nn.Module`` instance called as ``loss(logits, target)``.
        kwargs: the named loss's constructor arguments (e.g. ``{"alpha": 0.3, "beta": 0.7}``); must be empty
            for an object, which carries its own.

    Raises:
        ValueError: unknown name, bad arguments, arguments given with an object, a class instead of an
            instance, or anything else; the message says what to pass.
    """
    kwargs = dict(kwargs or {})
    if isinstance(loss, nn.Module):
        if kwargs:
            raise ValueError(f"loss_kwargs {kwargs} go with a loss named by a string; the loss object "
                             f"{type(loss).__name__} carries its own arguments: build it with them instead")
        return loss
    if isinstance(loss, type):
        raise ValueError(f"loss is the class {loss.__name__}, not an object: pass an instance, e.g. "
                         f"loss={loss.__name__}(alpha=0.3, beta=0.7)")
    if not isinstance(loss, str):
        raise ValueError(f"loss must be one of {', '.join(LOSS_NAMES)} or a torch.nn.Module instance taking "
                         f"(logits, target), got {type(loss).__name__}")
    if loss.startswith(LOSS_OBJECT_PREFIX):
        raise ValueError(f"this run was trained with a loss object ({loss.removeprefix(LOSS_OBJECT_PREFIX)}), "
                         "which a saved config cannot rebuild: pass the object again, TrainConfig(loss=...)")
    return build_loss(loss, **kwargs)


def describe_loss(loss: str | nn.Module) -> str:
    """What ``config.json`` records for ``loss``: the name, or ``object:<Class>(<arguments>)`` for an object.

    The arguments are the object's public number, string and boolean attributes (``alpha=0.3, beta=0.7``),
    so resuming a run with a loss built with other arguments is refused like any other changed recipe field.
    """
    if not isinstance(loss, nn.Module):
        return loss
    values = {k: v for k, v in sorted(vars(loss).items())
              if not k.startswith("_") and k != "training" and isinstance(v, (bool, int, float, str))}
    arguments = ", ".join(f"{k}={v!r}" for k, v in values.items())
    return f"{LOSS_OBJECT_PREFIX}{type(loss).__qualname__}({arguments})"
