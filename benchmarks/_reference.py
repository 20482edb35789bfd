"""The plain reference of ``benchmarks/real_data.py`` and the budget probe both kinds of model go through.

Not a script: ``real_data.py`` (and through it ``recipe_search.py``) imports it as a sibling module, like
``_common``. Two concepts live here:

* **the budget probe** (:class:`Probe`, :func:`probe_recipe`, :func:`probe_reference`): a few training steps
  are timed (for the recipe also a validation pass and the two checkpoint writes of an epoch), and
  :meth:`Probe.epochs_for` turns a wall-time budget into whole epochs, at least one;
* **the plain reference** (:func:`reference_config`, :func:`reference_epoch`, :func:`train_reference`): the same
  smp U-Net with a ResNet34 encoder (``smp_unet``) built by :func:`helpers.train.fit.build_parts` from
  :func:`reference_config` (Adam, i.e. AdamW without weight decay, at a constant lr 1e-3, BCE only, no
  augmentation) and trained by the short loop of :func:`reference_epoch` (no schedule, no validation); its final
  weights go to ``final.pt``. ``reference`` trains in float32, ``reference_bf16`` under bf16 autocast
  (:data:`REFERENCE_AMP`).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common
import numpy as np
import torch
from torch import nn

from helpers import data, models, runtime
from helpers.data import layouts
from helpers.train import fit, loop

#: The plain reference's name in ``--models`` (float32) and the label of its result rows.
REFERENCE = "reference"
#: The plain reference's names in ``--models`` and the autocast each trains with: ``reference`` is float32, as
#: a user would write it; ``reference_bf16`` the same loop under bf16 autocast, to compare precisions fairly.
REFERENCE_AMP: dict[str, str] = {REFERENCE: "off", "reference_bf16": "bf16"}
#: What ``reference`` builds: smp's U-Net with its default ResNet34 encoder.
REFERENCE_MODEL = "smp_unet"


# --------------------------------------------------------------------------------------------------- the probe
@dataclass
class Probe:
    """Timings of a few training steps, used to fit the epoch count into the budget (seconds).

    Attributes:
        first_batch_s: loader start-up plus the first step (paid once per epoch: workers restart).
        step_s: median time of the following steps.
        val_s: one validation pass (0 for the reference, which does not validate).
        save_s: writing the epoch's checkpoints (best.pt and last.pt for the recipe).
        steps_per_epoch: batches per epoch.
    """

    first_batch_s: float
    step_s: float
    val_s: float
    save_s: float
    steps_per_epoch: int

    @property
    def epoch_s(self) -> float:
        """Estimated seconds per epoch."""
        return self.first_batch_s + max(0, self.steps_per_epoch - 1) * self.step_s + self.val_s + self.save_s

    def epochs_for(self, budget_s: float) -> int:
        """Whole epochs that fit in ``budget_s`` seconds; at least 1."""
        return max(1, math.floor(budget_s / self.epoch_s))


def _timed_steps(run: Callable[[Callable[[], None]], None], device: torch.device) -> tuple[float, float]:
    """Run a training loop whose ``on_step`` hook we pass; return ``(first_batch_s, median later step_s)``."""
    stamps: list[float] = []

    def on_step() -> None:
        _common.synchronize(device)
        stamps.append(time.perf_counter())

    start = time.perf_counter()
    run(on_step)
    steps = [b - a for a, b in zip(stamps, stamps[1:])]
    return stamps[0] - start, float(np.median(steps)) if steps else stamps[0] - start


def _save_seconds(model: nn.Module, optimizer: torch.optim.Optimizer, folder: Path) -> float:
    """Seconds to write a weights-only checkpoint and a weights + optimiser one (best.pt and last.pt)."""
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    models.save_checkpoint(folder / "probe-best.pt", model)
    models.save_checkpoint(folder / "probe-last.pt", model, optimizer=optimizer.state_dict())
    seconds = time.perf_counter() - start
    for name in ("probe-best.pt", "probe-last.pt"):
        (folder / name).unlink(missing_ok=True)
    return seconds


def probe_recipe(cfg: loop.TrainConfig, splits: Mapping[str, Sequence[layouts.Pair]], device: torch.device,
                 steps: int) -> Probe:
    """Time ``steps + 1`` training steps, a validation pass (from 2 batches) and the checkpoint writes of ``cfg``.

    Uses :func:`helpers.train.loop.train_one_epoch` and :func:`helpers.train.loop.validate` on the loaders and
    parts :func:`helpers.train.fit.fit` builds (:func:`helpers.train.fit.build_loaders`, :func:`helpers.train.fit.build_parts`;
    this also builds the preprocessing cache fit then reuses).
    """
    parts = fit.build_parts(cfg, fit.build_loaders(cfg, splits), device)
    loaders = parts.loaders
    n = min(steps + 1, len(loaders["train"]))

    def run(on_step: Callable[[], None]) -> None:
        loop.train_one_epoch(parts.net, _common.take(loaders["train"], n), parts.loss_fn, parts.optimizer,
                                 parts.scheduler, device=device, amp_dtype=parts.amp_dtype, scaler=parts.scaler,
                                 grad_clip=cfg.grad_clip, channels_last=parts.channels_last,
                                 callbacks=[lambda event, info: on_step()])

    first, step = _timed_steps(run, device)
    k = min(2, len(loaders["val"]))
    start = time.perf_counter()
    loop.validate(parts.model, _common.take(loaders["val"], k), parts.loss_fn, device=device,
                      amp_dtype=parts.amp_dtype, channels_last=parts.channels_last)
    val_s = (time.perf_counter() - start) / k * len(loaders["val"])
    save_s = _save_seconds(parts.model, parts.optimizer, cfg.run_dir())
    return Probe(first, step, val_s, save_s, len(loaders["train"]))


# ------------------------------------------------------------------------------------------- the plain reference
def reference_epoch(model: nn.Module, batches: Iterable[Mapping[str, Any]], optimizer: torch.optim.Optimizer,
                    loss_fn: nn.Module, device: torch.device, on_step: Callable[[], None] | None = None,
                    amp_dtype: torch.dtype | None = None) -> float:
    """One epoch of the plain loop: forward, BCE, backward, optimiser step (no schedule, no clipping).

    ``amp_dtype`` None is float32; ``torch.bfloat16`` runs forward and loss under autocast (no scaler needed).
    Returns the mean loss per batch.
    """
    model.train()
    total, count = 0.0, 0
    for batch in batches:
        images, masks = batch["image"].to(device), batch["mask"].to(device).float()
        with loop.autocast(device, amp_dtype):
            logits = model(images)
        loss = loss_fn(logits.float(), masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total, count = total + float(loss.detach()), count + 1
        if on_step is not None:
            on_step()
    return total / max(1, count)


def reference_config(img_size: int, batch_size: int, seed: int, workers: int | None, pretrained: bool,
                     kwargs: Mapping[str, Any], amp: str = "off") -> loop.TrainConfig:
    """The plain reference as a TrainConfig: ``smp_unet``, Adam (AdamW without weight decay) at a constant lr
    1e-3 (no warm-up, a cosine that ends where it starts), BCE, no augmentation, float32 (``amp="off"``, or
    ``"bf16"`` for :data:`REFERENCE_AMP`'s bf16 variant), default layout."""
    return loop.TrainConfig(model=REFERENCE_MODEL, model_kwargs=dict(kwargs), pretrained=pretrained,
                                img_size=img_size, batch_size=batch_size, lr=1e-3, weight_decay=0.0, warmup=0.0,
                                min_lr_ratio=1.0, loss="bce", augment=False, amp=amp, channels_last=False,
                                seed=seed, num_workers=workers)


def _reference_parts(train: Sequence[layouts.Pair], img_size: int, batch_size: int, device: torch.device,
                     seed: int, workers: int | None, pretrained: bool, kwargs: Mapping[str, Any],
                     amp: str = "off") -> fit.Parts:
    """Train loader (resize + normalise only), model, optimiser and BCE of the reference, by build_parts."""
    runtime.seed_everything(seed)
    cfg = reference_config(img_size, batch_size, seed, workers, pretrained, kwargs, amp)
    loaders = data.make_loaders({"train": train}, img_size, batch_size, augment=False, num_workers=workers,
                                seed=seed, persistent_workers=False)
    return fit.build_parts(cfg, loaders, device)


def probe_reference(train: Sequence[layouts.Pair], img_size: int, batch_size: int, device: torch.device, seed: int,
                    workers: int | None, pretrained: bool, kwargs: Mapping[str, Any], steps: int,
                    amp: str = "off") -> Probe:
    """Time ``steps + 1`` steps of :func:`reference_epoch` (no validation; one checkpoint write at the end)."""
    parts = _reference_parts(train, img_size, batch_size, device, seed, workers, pretrained, kwargs, amp)
    loader = parts.loaders["train"]
    n = min(steps + 1, len(loader))
    first, step = _timed_steps(
        lambda on_step: reference_epoch(parts.model, _common.take(loader, n), parts.optimizer, parts.loss_fn,
                                        device, on_step, parts.amp_dtype),
        device)
    return Probe(first, step, 0.0, 0.0, len(loader))


def train_reference(train: Sequence[layouts.Pair], img_size: int, batch_size: int, epochs: int, device: torch.device,
                    seed: int, workers: int | None, pretrained: bool, kwargs: Mapping[str, Any], out: Path,
                    amp: str = "off") -> Path:
    """Train the plain reference for ``epochs`` epochs; save its final weights to ``out/final.pt`` and return it."""
    parts = _reference_parts(train, img_size, batch_size, device, seed, workers, pretrained, kwargs, amp)
    for epoch in range(1, epochs + 1):
        loss = reference_epoch(parts.model, parts.loaders["train"], parts.optimizer, parts.loss_fn, device,
                               amp_dtype=parts.amp_dtype)
        _common.eprint(f"  reference epoch {epoch}/{epochs}: train BCE {loss:.4f}")
    return models.save_checkpoint(out / "final.pt", parts.model, kind="reference", epoch=epochs,
                                  config={"img_size": img_size, "batch_size": batch_size, "lr": 1e-3,
                                          "loss": "bce", "optimizer": "adam (adamw, weight_decay 0)", "augment": False,
                                          "epochs": epochs, "amp": amp})


def reference_label(name: str) -> str:
    """The result rows' model label of a reference: ``reference (smp_unet)``, ``reference (smp_unet, bf16)``."""
    amp = REFERENCE_AMP[name]
    return f"{REFERENCE} ({REFERENCE_MODEL}{'' if amp == 'off' else ', ' + amp})"

