"""The training recipe: :class:`TrainConfig`, :func:`fit` and the pieces notebook 04 explains one by one.

One epoch is :func:`train_one_epoch` (forward, loss, backward, optional gradient clipping, AdamW step,
per-step learning-rate schedule) followed by :func:`validate` (loss and the ISIC metrics, macro-averaged
over the validation images). :func:`fit` wires them together and keeps the run folder::

    <run_dir>/config.json   the TrainConfig, as JSON
    <run_dir>/history.csv   one row per finished epoch (HISTORY_COLUMNS)
    <run_dir>/best.pt       the weights with the best validation Dice so far (plus epoch, scores, config)
    <run_dir>/last.pt       everything needed to resume: weights, optimizer, scheduler, GradScaler,
                            RNG states, epoch, best score, history, config

Both checkpoints are written atomically by :func:`helpers.models.save_checkpoint`, so an interrupted run
(Ctrl-C, a closed Colab tab, a killed job) loses at most the epoch in progress: run it again with
``resume=True`` (``python -m helpers.train ... --resume``) and it continues where ``last.pt`` stopped, with
the same schedule, the same data order and the same final weights as an uninterrupted run on the CPU.

Several GPUs: ``torchrun --nproc_per_node N -m helpers.train ...`` runs :func:`fit` in N processes with
DistributedDataParallel (see :mod:`helpers.distributed`). Each process trains on its own share of the
training images (``batch_size`` is per process: one optimisation step sees ``N * batch_size`` images) and
validates its own share of the validation images; the per-image scores are summed over all processes, so
``history.csv`` holds the scores of the whole validation set, each image counted once. Only rank 0 writes
the run folder; ``last.pt`` keeps every rank's random state, so ``--resume`` works under torchrun too (with
the same number of processes).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import config, data, distributed, losses, metrics, models, runtime

#: Columns of ``history.csv`` and of :attr:`FitResult.history`, in order.
HISTORY_COLUMNS: tuple[str, ...] = ("epoch", "lr", "train_loss", "val_loss", "val_dice", "val_jaccard",
                                    "val_threshold_jaccard", "seconds")
#: TrainConfig fields that must match to resume a run (the others, e.g. workers or patience, may change).
RESUME_FIELDS: tuple[str, ...] = ("model", "model_kwargs", "pretrained", "img_size", "epochs", "batch_size", "lr",
                                  "weight_decay", "warmup", "min_lr_ratio", "loss", "grad_clip", "augment",
                                  "seed", "data")
AMP_CHOICES: tuple[str, ...] = ("auto", "off", "bf16", "fp16")
#: A callback receives an event name (``"batch_end"`` or ``"epoch_end"``) and a dict describing it.
Callback = Callable[[str, dict[str, Any]], None]


class ResumeError(ValueError):
    """``resume=True`` found a ``last.pt`` that belongs to a different run (model, recipe or data)."""


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite: training stopped; ``best.pt`` and ``last.pt`` were left untouched."""


# --------------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """Everything that defines a training run; the defaults are the course's reference recipe.

    Attributes:
        model: a :func:`helpers.models.build_model` name (``resnet_unet_aspp``, ``se_unet``, ``smp_unet``...).
        model_kwargs: extra keyword arguments for the model (e.g. ``{"base": 8}`` for a small SE-U-Net).
        pretrained: start the encoder from ImageNet weights (downloads once); False trains from scratch.
        img_size: side of the square training images, in pixels.
        epochs: number of passes over the training split.
        batch_size: images per optimisation step and process: under ``torchrun --nproc_per_node N`` each
            step sees ``N * batch_size`` images (scale ``lr`` yourself if you want to keep lr per image).
        lr: peak learning rate of AdamW (reached at the end of the warm-up).
        weight_decay: AdamW's decoupled weight decay.
        warmup: linear warm-up length: a value in [0, 1) is a fraction of all steps, a value >= 1 counts
            epochs (``2`` = two epochs of warm-up). The cosine decay follows, one scheduler step per batch.
        min_lr_ratio: the cosine ends at ``lr * min_lr_ratio``.
        loss: a :func:`helpers.losses.build_loss` name: ``bce+dice`` (the recipe), ``bce`` (pixel-wise
            binary cross-entropy, the classic baseline), ``dice``, ``tversky``.
        grad_clip: None (off) or the maximum global L2 norm of the gradients (``clip_grad_norm_``).
        amp: mixed precision: ``auto`` (bf16 on CUDA GPUs that support it, else fp16 with a GradScaler;
            off on CPU and MPS), ``off``, ``bf16`` or ``fp16`` (CUDA only).
        channels_last: NHWC memory layout (faster convolutions on tensor cores); None = on for CUDA only.
        augment: use the training augmentations of :func:`helpers.transforms.train_transforms`.
        seed: seeds weights, data order and augmentations; the same seed gives the same run on the CPU.
        patience: early stopping: stop after this many epochs without a better validation Dice; None = off.
        num_workers: DataLoader worker processes; None lets :func:`helpers.data.make_loaders` choose.
        data: dataset folder for :func:`helpers.data.course_splits`; None = ``SKINSEG_DATA`` or the
            embedded synthetic set.
        out: run folder; None = ``runs/<model>`` under :func:`helpers.config.runs_dir`.
        device: ``cuda``, ``mps`` or ``cpu`` to force one; None picks the best available.
        resume: continue from ``<out>/last.pt`` when it exists (and refuse if it belongs to another recipe).
    """

    model: str = "resnet_unet_aspp"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    pretrained: bool = False
    img_size: int = 256
    epochs: int = 5
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: float = 0.1
    min_lr_ratio: float = 0.0
    loss: str = "bce+dice"
    grad_clip: float | None = None
    amp: str = "auto"
    channels_last: bool | None = None
    augment: bool = True
    seed: int = 0
    patience: int | None = None
    num_workers: int | None = None
    data: str | None = None
    out: str | None = None
    device: str | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        for name in ("img_size", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {value!r}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ValueError(f"TrainConfig.lr must be a positive number, got {self.lr!r}")
        if self.weight_decay < 0 or self.warmup < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"need weight_decay >= 0, warmup >= 0 and 0 <= min_lr_ratio <= 1, got "
                             f"{self.weight_decay}, {self.warmup}, {self.min_lr_ratio}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"TrainConfig.grad_clip must be None (off) or a positive norm, got {self.grad_clip!r}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"TrainConfig.patience must be None (off) or >= 1 epoch, got {self.patience!r}")
        if self.amp not in AMP_CHOICES:
            raise ValueError(f"TrainConfig.amp must be one of {AMP_CHOICES}, got {self.amp!r}")
        try:  # JSON form (tuples become lists) so a config read back from config.json compares equal
            self.model_kwargs = json.loads(json.dumps(dict(self.model_kwargs)))
        except TypeError as err:
            raise ValueError(f"TrainConfig.model_kwargs must hold JSON values (numbers, strings, lists), "
                             f"got {self.model_kwargs!r}: {err}") from err
        if self.data is not None:
            self.data = str(self.data)
        if self.out is not None:
            self.out = str(self.out)

    def run_dir(self) -> Path:
        """The run folder: ``out`` if given, else ``runs/<model>``."""
        return Path(self.out) if self.out else config.runs_dir() / self.model

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Rebuild a config from :meth:`to_dict` output.

        Raises:
            ValueError: ``values`` holds keys that are not TrainConfig fields (named in the message).
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; known fields: {sorted(known)}")
        return cls(**dict(values))

    def save(self, path: str | Path) -> Path:
        """Write the config as indented JSON to ``path`` and return it."""
        path = Path(path)
        _atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read a config written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        history: one row per finished epoch, columns :data:`HISTORY_COLUMNS`.
        best_path: ``best.pt`` (weights with the best validation Dice).
        last_path: ``last.pt`` (resumable state after the last finished epoch).
        run_dir: the run folder.
        best_epoch: epoch of ``best.pt`` (1-based).
        best_score: its validation Dice.
        stopped_early: True when early stopping ended the run before ``epochs``.
    """

    history: pd.DataFrame
    best_path: Path
    last_path: Path
    run_dir: Path
    best_epoch: int = 0
    best_score: float = float("nan")
    stopped_early: bool = False


@dataclass
class _RunState:
    """The bookkeeping that ``last.pt`` carries besides the weights and optimiser state."""

    epoch: int = 0
    best_score: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------------
# Optimiser, schedule, precision
# --------------------------------------------------------------------------------------------------------
def build_optimizer(model: nn.Module, lr: float = 1e-3, weight_decay: float = 1e-4) -> torch.optim.AdamW:
    """AdamW over the model's trainable parameters (decoupled weight decay, Loshchilov & Hutter 2019)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters: unfreeze some layers before training")
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def warmup_steps(warmup: float, steps_per_epoch: int, total_steps: int) -> int:
    """Number of warm-up steps: ``warmup`` < 1 is a fraction of ``total_steps``, >= 1 counts epochs.

    The result is capped at ``total_steps``.
    """
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    steps = round(warmup * total_steps) if warmup < 1 else round(warmup * steps_per_epoch)
    return int(min(steps, total_steps))


def lr_factor(step: int, total_steps: int, warmup: int, min_ratio: float = 0.0) -> float:
    """Multiplier of the peak learning rate for optimisation step ``step`` (0-based).

    Linear warm-up over the first ``warmup`` steps (``(step + 1) / warmup``, reaching 1 on step
    ``warmup - 1``), then a cosine from 1 down to ``min_ratio`` at step ``total_steps``:
    ``min_ratio + (1 - min_ratio) * (1 + cos(pi * t)) / 2`` with ``t = (step - warmup) / (total_steps - warmup)``.

    Raises:
        ValueError: ``total_steps < 1`` or ``warmup`` outside ``[0, total_steps]``.
    """
    if total_steps < 1 or not 0 <= warmup <= total_steps:
        raise ValueError(f"need total_steps >= 1 and 0 <= warmup <= total_steps, got {total_steps}, {warmup}")
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, *, epochs: int, steps_per_epoch: int,
                    warmup: float = 0.1, min_lr_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Cosine schedule with linear warm-up, stepped once per batch (call ``scheduler.step()`` after
    ``optimizer.step()``). See :func:`lr_factor` for the formula and :func:`warmup_steps` for ``warmup``.

    Raises:
        ValueError: ``epochs`` or ``steps_per_epoch`` < 1 (an empty training split).
    """
    if epochs < 1 or steps_per_epoch < 1:
        raise ValueError(f"need epochs >= 1 and steps_per_epoch >= 1, got {epochs} and {steps_per_epoch}: "
                         "is the training split empty or smaller than one batch?")
    total = epochs * steps_per_epoch
    n_warm = warmup_steps(warmup, steps_per_epoch, total)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total, n_warm, min_lr_ratio))


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device``, or None for full float32.

    ``auto``: bfloat16 on CUDA GPUs that support it (Ampere and later), float16 on older CUDA GPUs,
    off on CPU and MPS (CPU autocast is slow and MPS support varies).

    Raises:
        ValueError: unknown ``amp``, or ``fp16`` requested off CUDA.
    """
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {AMP_CHOICES}, got {amp!r}")
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "auto":
        # Native bf16 only (Ampere and later): older GPUs such as Colab's T4 merely emulate it, slowly.
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    if amp == "fp16" and device.type != "cuda":
        raise ValueError(f"amp='fp16' needs a CUDA GPU (this run is on {device.type}): use amp='auto' or 'off'")
    return torch.bfloat16 if amp == "bf16" else torch.float16


# --------------------------------------------------------------------------------------------------------
# One epoch of training, one pass of validation
# --------------------------------------------------------------------------------------------------------
def _to_device(batch: Mapping[str, Any], device: torch.device,
               channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images (N, 3, S, S), masks (N, 1, S, S))`` of a loader batch on ``device``."""
    images = batch["image"].to(device, non_blocking=True)
    masks = batch["mask"].to(device, non_blocking=True).float()
    if masks.dim() == 3:
        masks = masks.unsqueeze(1)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, masks


def train_one_epoch(model: nn.Module, loader: Any, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, *,
                    device: torch.device, amp_dtype: torch.dtype | None = None,
                    scaler: torch.amp.GradScaler | None = None, grad_clip: float | None = None,
                    channels_last: bool = False, epoch: int = 1, bar: Any = None,
                    callbacks: Sequence[Callback] = ()) -> dict[str, float]:
    """One pass over ``loader`` updating ``model``; the scheduler steps once per batch.

    Args:
        loader: yields ``{"image": (N, 3, S, S) float32, "mask": (N, 1, S, S) float32}`` batches.
        amp_dtype: autocast dtype (see :func:`resolve_amp`), None for float32.
        scaler: a GradScaler for float16 (None or disabled otherwise).
        grad_clip: clip the global gradient norm to this value; None = no clipping.
        bar: a tqdm bar to advance (optional).
        callbacks: called as ``cb("batch_end", {"epoch", "batch", "loss", "lr"})`` after each step.

    Returns:
        ``{"train_loss": mean loss per image, "lr": learning rate of the last step, "steps": batches,
        "images": images seen}`` (of this process when ``model`` is wrapped in DistributedDataParallel).

    Raises:
        NonFiniteLossError: a batch's loss is NaN or infinite (the weights of that step are not updated).
            Under DistributedDataParallel every process raises it when any process's loss is not finite.
    """
    synchronise = distributed.unwrap(model) is not model and distributed.is_distributed()
    model.train()
    scaler = scaler or torch.amp.GradScaler(device.type, enabled=False)
    total, seen, lr, steps = 0.0, 0, float("nan"), 0
    for i, batch in enumerate(loader):
        images, masks = _to_device(batch, device, channels_last)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(images)
        loss = loss_fn(logits.float(), masks)
        value = float(loss.detach())
        if not _finite_everywhere(value, synchronise):
            where = value if not math.isfinite(value) else "not finite in another process"
            raise NonFiniteLossError(f"training loss is {where} at epoch {epoch}, batch {i + 1}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        lr = optimizer.param_groups[0]["lr"]
        scaler.step(optimizer)
        scaler.update()
        if scheduler is not None:
            scheduler.step()
        total += value * images.shape[0]
        seen += images.shape[0]
        steps += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{total / seen:.4f}", lr=f"{lr:.2e}")
        for cb in callbacks:
            cb("batch_end", {"epoch": epoch, "batch": i + 1, "loss": value, "lr": lr})
    if seen == 0:
        raise ValueError("the training loader yielded no batches: the training split is empty "
                         "(or smaller than one batch with drop_last)")
    return {"train_loss": total / seen, "lr": lr, "steps": steps, "images": seen}


def _finite_everywhere(value: float, synchronise: bool) -> bool:
    """``value`` is finite here and, when ``synchronise``, in every other process too (so all stop together)."""
    finite = math.isfinite(value)
    if synchronise:
        return distributed.all_reduce_sums({"non_finite": not finite})["non_finite"] == 0
    return finite


@torch.no_grad()
def validate(model: nn.Module, loader: Any, loss_fn: nn.Module, *, device: torch.device,
             amp_dtype: torch.dtype | None = None, channels_last: bool = False,
             threshold: float = 0.5, all_ranks: bool = False) -> dict[str, float]:
    """Validation loss and ISIC scores, macro-averaged over the images of ``loader``.

    Sums of per-image values and the image count are accumulated, then divided: with ``all_ranks`` the sums
    of every process are added first (:func:`helpers.distributed.all_reduce_sums`), so each process returns
    the scores of the whole validation set when each validated its own shard
    (:class:`helpers.distributed.ShardSampler`: every image in exactly one shard).

    Args:
        model: the plain model (not the DistributedDataParallel wrapper: shards may differ in length).
        all_ranks: combine the shards of all processes; every process must call ``validate`` then.

    Returns:
        ``{"val_loss", "val_dice", "val_jaccard", "val_threshold_jaccard"}``: the loss is the mean per
        image; the scores are means over images of :func:`helpers.metrics.batch_scores` at ``threshold``.

    Raises:
        ValueError: the loader is empty (all loaders, with ``all_ranks``).
        NonFiniteLossError: the validation loss is NaN or infinite.
    """
    model.eval()
    sums = dict.fromkeys(("loss", "dice", "jaccard", "threshold_jaccard", "images"), 0.0)
    for batch in loader:
        images, masks = _to_device(batch, device, channels_last)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(images)
        logits = logits.float()
        sums["loss"] += float(loss_fn(logits, masks)) * images.shape[0]
        sums["images"] += images.shape[0]
        batch_result = metrics.batch_scores(logits, masks, threshold=threshold)
        for key in ("dice", "jaccard", "threshold_jaccard"):
            sums[key] += float(batch_result[key].double().sum())
    if all_ranks:
        sums = distributed.all_reduce_sums(sums)
    seen = sums["images"]
    if seen == 0:
        raise ValueError("the validation loader yielded no batches: the validation split is empty")
    val_loss = sums["loss"] / seen
    if not math.isfinite(val_loss):
        raise NonFiniteLossError(f"validation loss is {val_loss}")
    return {"val_loss": val_loss, "val_dice": sums["dice"] / seen, "val_jaccard": sums["jaccard"] / seen,
            "val_threshold_jaccard": sums["threshold_jaccard"] / seen}


# --------------------------------------------------------------------------------------------------------
# Saving and restoring state
# --------------------------------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's (CPU and CUDA) global random generators."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        # NumPy's state as plain Python values, so the checkpoint holds no pickled NumPy objects.
        "numpy": (np_state[0], np_state[1].tolist(), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_state` (CUDA states only when CUDA is available)."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def save_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler,
               run: _RunState, cfg: TrainConfig, fingerprint: str, *,
               rank_rng: Sequence[Mapping[str, Any]] | None = None) -> Path:
    """Write the resumable ``last.pt`` (atomically, via :func:`helpers.models.save_checkpoint`).

    Args:
        model: the plain model (unwrap DistributedDataParallel first, see :func:`helpers.distributed.unwrap`).
        rank_rng: in a multi-process run, :func:`rng_state` of every rank in rank order (stored as
            ``rank_rng``, with ``world_size``); None = this process's state only (a single-process run).
    """
    rank_rng = list(rank_rng) if rank_rng else [rng_state()]
    extra: dict[str, Any] = {"rank_rng": rank_rng} if len(rank_rng) > 1 else {}
    return models.save_checkpoint(
        path, model, kind="last", epoch=run.epoch, config=cfg.to_dict(), optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict(), scaler=scaler.state_dict(), rng=rank_rng[0],
        best_score=run.best_score, best_epoch=run.best_epoch, bad_epochs=run.bad_epochs,
        stopped_early=run.stopped_early, history=run.history, data_fingerprint=fingerprint,
        world_size=len(rank_rng), **extra)


def restore_state(checkpoint: Mapping[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
                  scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler, *,
                  rank: int = 0) -> _RunState:
    """Load a ``last.pt`` dict into the given objects and the global RNGs; return the run bookkeeping.

    ``rank`` picks this process's random state in a checkpoint of a multi-process run (``rank_rng``).
    """
    model.load_state_dict(checkpoint["state_dict"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    if checkpoint["scaler"]:  # empty when saved without fp16 (e.g. on a CPU); keep the fresh scaler then
        scaler.load_state_dict(checkpoint["scaler"])
    per_rank = checkpoint.get("rank_rng") or [checkpoint["rng"]]
    set_rng_state(per_rank[rank] if rank < len(per_rank) else checkpoint["rng"])
    return _RunState(epoch=int(checkpoint["epoch"]), best_score=float(checkpoint["best_score"]),
                     best_epoch=int(checkpoint["best_epoch"]), bad_epochs=int(checkpoint["bad_epochs"]),
                     stopped_early=bool(checkpoint["stopped_early"]),
                     history=[dict(row) for row in checkpoint["history"]])


def check_resumable(checkpoint: Mapping[str, Any], cfg: TrainConfig, fingerprint: str, path: Path, *,
                    world_size: int = 1) -> None:
    """Refuse to resume from ``checkpoint`` when it was trained with a different recipe, data or process count.

    Args:
        world_size: processes of the run that wants to resume (torchrun's ``WORLD_SIZE``; 1 without torchrun).

    Raises:
        ResumeError: a :data:`RESUME_FIELDS` value, the data split or the number of processes differs (the
            message names it).
    """
    if checkpoint.get("kind") != "last" or "optimizer" not in checkpoint:
        raise ResumeError(f"{path} is not a resumable last.pt (no optimizer state): resume from a run folder "
                          "written by helpers.training.fit, or start a new run without resume")
    saved = checkpoint.get("config", {})
    current = cfg.to_dict()
    for name in RESUME_FIELDS:
        if saved.get(name) != current[name]:
            raise ResumeError(f"cannot resume {path}: it was trained with {name}={saved.get(name)!r} but this "
                              f"config has {name}={current[name]!r}. Use the same value, or choose another "
                              "output folder (--out) to start a new run")
    if checkpoint.get("data_fingerprint") != fingerprint:
        raise ResumeError(f"cannot resume {path}: its train/val split differs from the one given now "
                          "(different images or split seed). Use the same data, or a new output folder")
    saved_world = int(checkpoint.get("world_size", 1))
    if saved_world != world_size:
        raise ResumeError(f"cannot resume {path}: it was trained by {saved_world} process(es) but this run has "
                          f"{world_size}, which changes the batches per step and the schedule. Resume with "
                          f"torchrun --nproc_per_node {saved_world}" + (" (or without torchrun)" if saved_world == 1
                                                                          else "")
                          + ", or choose another output folder (--out) to start a new run")


def _atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (no half-written files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def history_frame(rows: Sequence[Mapping[str, float]]) -> pd.DataFrame:
    """History rows as a DataFrame with :data:`HISTORY_COLUMNS` (an empty frame for no rows)."""
    frame = pd.DataFrame(list(rows), columns=list(HISTORY_COLUMNS))
    return frame.astype({"epoch": "int64"}) if len(frame) else frame


def write_history(path: Path, rows: Sequence[Mapping[str, float]]) -> None:
    """(Re)write ``history.csv`` from all finished epochs, atomically."""
    _atomic_write_text(path, history_frame(rows).to_csv(index=False))


def load_history(run_dir: str | Path) -> pd.DataFrame:
    """Read ``<run_dir>/history.csv``.

    Raises:
        FileNotFoundError: no history.csv in ``run_dir`` (train first with :func:`fit` or python -m helpers.train).
    """
    path = Path(run_dir) / "history.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: train a model into {run_dir} first "
                                "(helpers.training.fit or python -m helpers.train --out DIR)")
    return pd.read_csv(path)


def split_fingerprint(splits: Mapping[str, Sequence[data.Pair]]) -> str:
    """A short hash of the train and validation ids (so a resumed run checks it sees the same data)."""
    digest = hashlib.sha256()
    for name in ("train", "val"):
        digest.update(name.encode())
        for pair in splits[name]:
            digest.update(pair.id.encode() + b"\0")
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------------------
def _epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A 32-bit seed that depends only on the run's seed, the epoch number and the process rank.

    Rank 0 (and a single-process run) gets the same seed as before multi-process training existed; the
    other ranks get their own, so their augmentations differ from rank 0's.
    """
    entropy = [seed, epoch] if rank == 0 else [seed, epoch, rank]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def reseed_loader(loader: Any, seed: int) -> None:
    """Make one epoch's data order and augmentations a function of ``seed`` only.

    Re-seeds the loader's generator (shuffling, worker seeds) and, when the dataset's transform has its own
    random state (albumentations ``Compose.set_random_seed``), that too. This is what lets a resumed run
    see the same batches as an uninterrupted one.
    """
    generator = getattr(loader, "generator", None)
    if isinstance(generator, torch.Generator):
        generator.manual_seed(seed)
    transform = getattr(getattr(loader, "dataset", None), "transform", None)
    if hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed)


def _progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar: the notebook widget when ipywidgets is installed (Colab), else the text bar."""
    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="batch", disable=not enabled, leave=True, dynamic_ncols=True)


def _divergence_message(err: NonFiniteLossError, cfg: TrainConfig, run: _RunState, run_dir: Path) -> str:
    """What went wrong, what was kept, and what to try, for a NaN/inf loss."""
    kept = (f"best.pt (epoch {run.best_epoch}, val Dice {run.best_score:.4f}) and last.pt (epoch {run.epoch}) "
            f"in {run_dir} were left as they were" if run.best_epoch else "no checkpoint was written")
    clip = ("lower --grad-clip" if cfg.grad_clip is not None else "enable gradient clipping (--grad-clip 1.0)")
    return (f"{err}: training stopped; {kept}. Try: a lower learning rate (--lr {cfg.lr:g} -> {cfg.lr / 10:g}), "
            f"{clip}, amp='off' if mixed precision is on, and check the data "
            "(python -m helpers.data check DIR: images readable, masks binary and the same size).")


def _samplers(cfg: TrainConfig, splits: Mapping[str, Sequence[data.Pair]]) -> dict[str, Any] | None:
    """Multi-process runs: a seeded, shuffling DistributedSampler for train, a :class:`ShardSampler` for val.

    None in a single process (the loaders then shuffle train themselves, as always).
    """
    if not distributed.is_distributed():
        return None
    from torch.utils.data.distributed import DistributedSampler

    rank, world = distributed.get_rank(), distributed.get_world_size()
    # DistributedSampler pads the train shards to equal length (every process must take the same number of
    # steps); validation must not count an image twice, so it gets un-padded shards.
    return {"train": DistributedSampler(range(len(splits["train"])), num_replicas=world, rank=rank, shuffle=True,
                                        seed=cfg.seed),
            "val": distributed.ShardSampler(len(splits["val"]), rank, world)}


def _build_loaders(cfg: TrainConfig, splits: Mapping[str, Sequence[data.Pair]]) -> dict[str, Any]:
    """The train and val DataLoaders of ``cfg`` (building the preprocessing cache if needed)."""
    for name in ("train", "val"):
        if not splits.get(name):
            raise ValueError(f"the {name!r} split is empty: training needs train and val images "
                             "(see python -m helpers.data check DIR)")
    # Workers are restarted every epoch (not persistent) so their augmentation seeds depend on the epoch
    # only (see reseed_loader): a resumed run then sees exactly the batches an uninterrupted one would.
    return data.make_loaders({"train": splits["train"], "val": splits["val"]}, cfg.img_size,
                             cfg.batch_size, augment=cfg.augment, num_workers=cfg.num_workers, seed=cfg.seed,
                             persistent_workers=False, samplers=_samplers(cfg, splits))


def _build(cfg: TrainConfig, loaders: Mapping[str, Any], device: torch.device, resuming: bool) -> dict[str, Any]:
    """Model, loss, optimiser, scheduler and scaler for ``cfg`` (weights freshly initialised) beside ``loaders``.

    ``parts["model"]`` is the plain model (validated and saved); ``parts["net"]`` is what trains: the same
    model, wrapped in DistributedDataParallel in a multi-process run (a collective: every process builds).
    """
    # On resume the weights come from last.pt: no need to download pretrained ones again.
    model = models.build_model(cfg.model, pretrained=cfg.pretrained and not resuming, **cfg.model_kwargs)
    channels_last = device.type == "cuda" if cfg.channels_last is None else cfg.channels_last
    model = model.to(device, memory_format=torch.channels_last) if channels_last else model.to(device)
    net = distributed.wrap_model(model, device)   # copies rank 0's initial weights to every process
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay)
    scheduler = build_scheduler(optimizer, epochs=cfg.epochs, steps_per_epoch=len(loaders["train"]),
                                warmup=cfg.warmup, min_lr_ratio=cfg.min_lr_ratio)
    amp_dtype = resolve_amp(cfg.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    return {"loaders": loaders, "model": model, "net": net, "loss_fn": losses.build_loss(cfg.loss).to(device),
            "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler, "amp_dtype": amp_dtype,
            "channels_last": channels_last}


def _run_epoch(cfg: TrainConfig, parts: Mapping[str, Any], epoch: int, device: torch.device, progress: bool,
               callbacks: Sequence[Callback]) -> dict[str, float]:
    """Train and validate one epoch; return its history row."""
    start = time.perf_counter()
    train_loader, val_loader = parts["loaders"]["train"], parts["loaders"]["val"]
    reseed_loader(train_loader, _epoch_seed(cfg.seed, epoch, distributed.get_rank()))
    if hasattr(train_loader.sampler, "set_epoch"):   # DistributedSampler: shuffle by (seed, epoch)
        train_loader.sampler.set_epoch(epoch)
    bar = _progress_bar(len(train_loader), f"epoch {epoch}/{cfg.epochs}", progress)
    try:
        train = train_one_epoch(parts["net"], train_loader, parts["loss_fn"], parts["optimizer"],
                                parts["scheduler"], device=device, amp_dtype=parts["amp_dtype"],
                                scaler=parts["scaler"], grad_clip=cfg.grad_clip,
                                channels_last=parts["channels_last"], epoch=epoch, bar=bar, callbacks=callbacks)
        train_loss = _mean_over_ranks(train["train_loss"], train["images"])
        distributed.broadcast_buffers(parts["model"])   # validate (and save) rank 0's BatchNorm statistics
        val = validate(parts["model"], val_loader, parts["loss_fn"], device=device, amp_dtype=parts["amp_dtype"],
                       channels_last=parts["channels_last"], all_ranks=distributed.is_distributed())
        bar.set_postfix(loss=f"{train_loss:.4f}", val_loss=f"{val['val_loss']:.4f}",
                        val_dice=f"{val['val_dice']:.4f}")
    finally:
        bar.close()
    return {"epoch": epoch, "lr": train["lr"], "train_loss": train_loss, **val,
            "seconds": time.perf_counter() - start}


def _mean_over_ranks(mean: float, count: int) -> float:
    """The mean over all processes of per-process means ``mean`` of ``count`` items (``mean`` in one process)."""
    if not distributed.is_distributed():
        return mean
    totals = distributed.all_reduce_sums({"sum": mean * count, "count": count})
    return totals["sum"] / totals["count"]


def _start_or_resume(cfg: TrainConfig, parts: Mapping[str, Any], run_dir: Path, fingerprint: str,
                     resuming: bool) -> _RunState:
    """A fresh run state (config.json written, history.csv emptied), or the state restored from last.pt.

    Every process restores last.pt when ``resuming``; only the main process writes files.
    """
    last = run_dir / "last.pt"
    if resuming:
        checkpoint = models.load_checkpoint(last)
        check_resumable(checkpoint, cfg, fingerprint, last, world_size=distributed.get_world_size())
        run = restore_state(checkpoint, parts["model"], parts["optimizer"], parts["scheduler"], parts["scaler"],
                            rank=distributed.get_rank())
        if distributed.is_main_process():  # drop rows of an epoch last.pt does not hold
            write_history(run_dir / "history.csv", run.history)
        return run
    if not distributed.is_main_process():
        return _RunState()
    stale = [p for p in (run_dir / "best.pt", last) if p.is_file()]
    if stale:  # a new run must not leave another run's checkpoints beside its history
        print(f"starting a new run in {run_dir}: replacing {', '.join(p.name for p in stale)} of the previous run")
        for path in stale:
            path.unlink()
    cfg.save(run_dir / "config.json")
    write_history(run_dir / "history.csv", [])
    return _RunState()


def fit(cfg: TrainConfig, *, splits: Mapping[str, Sequence[data.Pair]] | None = None, progress: bool = True,
        callbacks: Sequence[Callback] | None = None) -> FitResult:
    """Train ``cfg.model`` with the recipe in ``cfg``; keep history and checkpoints in ``cfg.run_dir()``.

    Each epoch trains on ``splits["train"]`` and validates on ``splits["val"]``; ``history.csv``,
    ``best.pt`` (when the validation Dice improved) and ``last.pt`` are rewritten after every epoch.
    With ``cfg.resume`` and an existing ``last.pt`` the run continues after its last finished epoch
    (a finished run returns at once); otherwise the run folder's history starts afresh.

    Under ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` > 1 in the environment) it trains with
    DistributedDataParallel in each of the N processes: it joins the process group (nccl on CUDA, gloo on
    the CPU) unless the caller already did, and leaves it at the end. Every process returns the same
    :class:`FitResult`; only rank 0 writes the run folder and shows progress.

    Args:
        cfg: the recipe (see :class:`TrainConfig`).
        splits: ``{"train": [Pair], "val": [Pair], ...}``; None = ``helpers.data.course_splits(cfg.data)``.
        progress: show a tqdm bar per epoch with the live loss and the validation Dice (rank 0 only).
        callbacks: functions ``cb(event, info)`` called on ``"batch_end"`` and ``"epoch_end"``
            (``info["row"]`` is the epoch's history row). An exception raised in one stops training.

    Returns:
        :class:`FitResult` with the history DataFrame and the checkpoint paths.

    Raises:
        NonFiniteLossError: the loss became NaN/inf (the message says what to try); checkpoints untouched.
        ResumeError: ``resume`` found a ``last.pt`` from a different recipe, data split or process count.
        ValueError: an empty train or val split, or an invalid setting.
        RuntimeError: torchrun was asked for a device multi-process training does not support (MPS).
    """
    device = runtime.select_device(cfg.device)
    own_group = distributed.wants_distributed() and not distributed.is_distributed()
    if own_group:
        device = distributed.init_distributed(device)
    elif distributed.is_distributed():
        device = distributed.local_device(device)
    try:
        return _fit(cfg, device, splits, progress and distributed.is_main_process(), list(callbacks or []))
    finally:
        if own_group:
            distributed.cleanup_distributed()


def _fit(cfg: TrainConfig, device: torch.device, splits: Mapping[str, Sequence[data.Pair]] | None,
         progress: bool, callbacks: list[Callback]) -> FitResult:
    """:func:`fit` once the device (and, under torchrun, the process group) is set up."""
    run_dir = cfg.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    main = distributed.is_main_process()
    runtime.seed_everything(cfg.seed + distributed.get_rank())   # DDP copies rank 0's initial weights
    resuming = cfg.resume and (run_dir / "last.pt").is_file()   # decided before any process writes
    with distributed.main_process_first():   # rank 0 generates data and caches; the others then reuse them
        splits = splits if splits is not None else data.course_splits(cfg.data, seed=cfg.seed)
        loaders = _build_loaders(cfg, splits)
    parts = _build(cfg, loaders, device, resuming)
    fingerprint = split_fingerprint(splits)
    run = _start_or_resume(cfg, parts, run_dir, fingerprint, resuming)
    distributed.barrier()
    if progress and run.epoch:
        print(f"{run_dir} already holds all {cfg.epochs} epochs of this recipe: nothing to train"
              if run.epoch >= cfg.epochs or run.stopped_early else
              f"resuming {run_dir} after epoch {run.epoch}/{cfg.epochs}")
    for epoch in range(run.epoch + 1, cfg.epochs + 1):
        if run.stopped_early:
            break
        try:
            row = _run_epoch(cfg, parts, epoch, device, progress, callbacks)
        except NonFiniteLossError as err:
            raise NonFiniteLossError(_divergence_message(err, cfg, run, run_dir)) from err
        except KeyboardInterrupt:
            if main:
                print(f"\ninterrupted in epoch {epoch}; {run_dir / 'last.pt'} holds epoch {run.epoch}. "
                      "Run again with resume=True (or --resume) to continue.")
            raise
        _finish_epoch(cfg, parts, run, row, run_dir, fingerprint)
        for cb in callbacks:
            cb("epoch_end", {"epoch": epoch, "row": dict(row), "run_dir": run_dir})
    distributed.barrier()   # rank 0's files are complete before any process returns their paths
    return FitResult(history=history_frame(run.history), best_path=run_dir / "best.pt",
                     last_path=run_dir / "last.pt", run_dir=run_dir, best_epoch=run.best_epoch,
                     best_score=run.best_score if run.best_epoch else float("nan"),
                     stopped_early=run.stopped_early)


def _finish_epoch(cfg: TrainConfig, parts: Mapping[str, Any], run: _RunState, row: dict[str, float],
                  run_dir: Path, fingerprint: str) -> None:
    """Update the bookkeeping with ``row``; write best.pt (if better), last.pt and history.csv.

    Every process updates its bookkeeping (the rows are identical: validation is reduced over all ranks);
    only the main process writes, with the random states of all ranks gathered into last.pt.
    """
    main = distributed.is_main_process()
    run.epoch = int(row["epoch"])
    run.history.append(row)
    if row["val_dice"] > run.best_score:
        run.best_score, run.best_epoch, run.bad_epochs = row["val_dice"], run.epoch, 0
        if main:
            models.save_checkpoint(run_dir / "best.pt", parts["model"], kind="best", epoch=run.epoch,
                                   scores=dict(row), config=cfg.to_dict())
    else:
        run.bad_epochs += 1
    if cfg.patience is not None and run.bad_epochs >= cfg.patience and run.epoch < cfg.epochs:
        run.stopped_early = True
        if main:
            print(f"early stopping after epoch {run.epoch}: no better val Dice for {cfg.patience} epochs "
                  f"(best {run.best_score:.4f} at epoch {run.best_epoch})")
    rank_rng = distributed.all_gather_objects(rng_state())   # a collective: every process takes part
    if main:
        save_state(run_dir / "last.pt", parts["model"], parts["optimizer"], parts["scheduler"], parts["scaler"],
                   run, cfg, fingerprint, rank_rng=rank_rng)
        write_history(run_dir / "history.csv", run.history)


def train_or_load(cfg: TrainConfig, *, splits: Mapping[str, Sequence[data.Pair]] | None = None,
                  progress: bool = True, callbacks: Sequence[Callback] | None = None) -> FitResult:
    """Reuse a finished run of the same recipe, finish an interrupted one, or train from scratch.

    The pattern of evaluation notebooks: ``cfg.run_dir()`` is checked first; when its ``last.pt`` was
    written by the same recipe on the same data (:func:`check_resumable`), training resumes from it, which
    for a finished run means returning at once. A run of another recipe (say, a smoke-mode run when you
    now want the full one) is replaced: training starts afresh in the same folder.

    Args and Returns: as :func:`fit` (``cfg.resume`` is ignored).
    """
    run_dir = cfg.run_dir()
    last = run_dir / "last.pt"
    resume = False
    if last.is_file():
        splits = splits if splits is not None else data.course_splits(cfg.data, seed=cfg.seed)
        try:
            check_resumable(models.load_checkpoint(last), cfg, split_fingerprint(splits), last,
                            world_size=distributed.get_world_size())
            resume = True
        except (ResumeError, models.CheckpointError) as err:
            print(f"not reusing {run_dir}: {err}\ntraining from scratch instead.")
    return fit(dataclasses.replace(cfg, resume=resume), splits=splits, progress=progress, callbacks=callbacks)
