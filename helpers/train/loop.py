"""The training recipe, piece by piece, as notebook 04 (training) teaches it.

* :class:`TrainConfig`: everything that defines a run; the defaults are the course's recipe (notebook 04 says where
  it departs from the reference recipe it adopts, and why).
* :func:`build_optimizer` (AdamW), :func:`build_scheduler` (linear warm-up, then a cosine, stepped once per
  batch; :func:`lr_factor` is its formula, :func:`warmup_steps` its warm-up length), :func:`helpers.runtime.resolve_amp`
  (which autocast dtype, if any, suits the device) and :func:`helpers.runtime.autocast` (the context that applies
  it; both live in ``runtime`` because prediction uses them too).
* :func:`train_one_epoch` (forward, loss, backward, optional gradient clipping, AdamW step, scheduler step)
  and :func:`validate` (loss and the ISIC metrics, macro-averaged over the validation images).

Notebook 04 writes one epoch loop by hand, then hands over to these. :func:`helpers.train.fit.fit` wires them into
a whole run (run folder, checkpoints, resuming, several GPUs); the command line is ``python -m helpers.train``.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from helpers import config
from helpers.data.files import write_text_atomic
from helpers.data.transforms import COLOUR_AUGMENTS
from helpers.evaluation import metrics
from helpers.models.factory import MAX_IMG_SIZE, SMP_SIZE_MULTIPLE
from helpers.models.resnet_unet_aspp import ResNetUNetASPP
from helpers.models.se_unet import SEUNet
from helpers.runtime import AMP_CHOICES, autocast, resolve_amp, resolve_channels_last  # noqa: F401 (home: runtime)
from helpers.train import distributed, losses

#: A callback receives an event name (``"batch_end"`` or ``"epoch_end"``) and a dict describing it.
Callback = Callable[[str, dict[str, Any]], None]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite: training stopped; ``best.pt`` and ``last.pt`` were left untouched."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGINT) stopped :func:`helpers.train.fit.fit` in epoch :attr:`epoch`; ``last.pt`` holds epoch
    :attr:`saved_epoch` (0: nothing was saved). A KeyboardInterrupt, so notebooks and scripts stop as before."""

    def __init__(self, epoch: int, saved_epoch: int, last_path: Path) -> None:
        self.epoch, self.saved_epoch, self.last_path = epoch, saved_epoch, last_path
        super().__init__(f"interrupted at epoch {epoch}: {last_path} holds epoch {saved_epoch}; run again with "
                         "resume=True (--resume) to continue" if saved_epoch else
                         f"interrupted at epoch {epoch}, before any epoch was saved: run again to start over")


class ConfigError(ValueError):
    """A :class:`TrainConfig` value out of range; :attr:`name` is the field, :attr:`value` what was given,
    :attr:`detail` the rule and why (the command line shows it under the option's name: ``--img-size 7 ...``)."""

    def __init__(self, name: str, value: Any, detail: str) -> None:
        self.name, self.value, self.detail = name, value, detail
        super().__init__(f"TrainConfig.{name}={value!r} {detail}")


# --------------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------------
#: The largest seed: NumPy's (and the DataLoader workers') seeds are 32-bit.
MAX_SEED = 2**32 - 1


def downsampling_factor(model: str, model_kwargs: Mapping[str, Any]) -> int | None:
    """How many times the model's encoder halves its input, as a factor (``se_unet``: ``2**depth``;
    ``resnet_unet_aspp`` and smp models: 32); None for a name :func:`helpers.models.build_model` does not know."""
    key = str(model).strip().lower()
    if key == "se_unet":
        depth = model_kwargs.get("depth", inspect.signature(SEUNet).parameters["depth"].default)
    elif key == "resnet_unet_aspp":
        return ResNetUNetASPP.size_multiple
    elif key.startswith("smp_"):
        depth = model_kwargs.get("encoder_depth")
        if depth is None:
            return SMP_SIZE_MULTIPLE
    else:
        return None
    return 2**depth if isinstance(depth, int) and not isinstance(depth, bool) and 1 <= depth <= 8 else None


def smallest_img_size(model: str, model_kwargs: Mapping[str, Any]) -> int:
    """The smallest training size of ``model``: one more than its :func:`downsampling_factor`. The input is
    padded to a multiple of the factor, so from there on the bottleneck is at least 2x2; at the factor or below
    it is 1x1, where BatchNorm fails in training ("Expected more than 1 value per channel when training") as
    soon as a batch holds one image (the last batch of an epoch can). 1 for an unknown model."""
    factor = downsampling_factor(model, model_kwargs)
    return factor + 1 if factor else 1


@dataclass
class TrainConfig:
    """Everything that defines a training run; the defaults are the course's recipe (see notebook 04).

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
        loss: a :func:`helpers.train.losses.build_loss` name: ``bce+dice`` (the recipe), ``bce`` (pixel-wise
            binary cross-entropy, the classic baseline), ``dice``, ``tversky``; or a loss object, any
            ``nn.Module`` called as ``loss(logits, target)`` (``loss=TverskyLoss(0.3, 0.7)`` trains that very
            object; ``config.json`` records it as :func:`helpers.train.losses.describe_loss`, and a run
            trained with one is resumed by passing the object again).
        loss_kwargs: the named loss's constructor arguments, e.g. ``{"alpha": 0.2, "beta": 0.8}`` for
            ``tversky``; empty for a loss object.
        grad_clip: None (off) or the maximum global L2 norm of the gradients (``clip_grad_norm_``).
        amp: mixed precision: ``auto`` (bf16 on CUDA GPUs that support it, else fp16 with a GradScaler;
            bf16 on CPUs with native bf16, off on other CPUs and MPS; :func:`resolve_amp`), ``off``, ``bf16``
            or ``fp16`` (CUDA only).
        channels_last: NHWC memory layout; None = :func:`resolve_channels_last` (CUDA, and CPUs with native bf16).
        augment: use the training augmentations of :func:`helpers.data.transforms.train_transforms`.
        colour_augment: their colour part, ``mild`` (the recipe) or ``strong`` (notebook 06's domain-shift
            mitigation; :func:`helpers.data.transforms.colour_transforms`).
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
    loss: str | nn.Module = "bce+dice"
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    grad_clip: float | None = None
    amp: str = "auto"
    channels_last: bool | None = None
    augment: bool = True
    colour_augment: str = "mild"
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
                raise ConfigError(name, value, "must be a positive integer")
        try:  # JSON form (tuples become lists) so a config read back from config.json compares equal
            self.model_kwargs = json.loads(json.dumps(dict(self.model_kwargs)))
            self.loss_kwargs = json.loads(json.dumps(dict(self.loss_kwargs)))
        except TypeError as err:
            raise ValueError(f"TrainConfig.model_kwargs and loss_kwargs must hold JSON values (numbers, strings, "
                             f"lists), got {self.model_kwargs!r} and {self.loss_kwargs!r}: {err}") from err
        try:
            losses.resolve_loss(self.loss, self.loss_kwargs)
        except ValueError as err:
            raise ConfigError("loss", self.loss, str(err)) from None
        self._check_img_size()
        self._check_numbers()
        if self.amp not in AMP_CHOICES:
            raise ConfigError("amp", self.amp, f"must be one of {AMP_CHOICES}")
        if self.colour_augment not in COLOUR_AUGMENTS:
            raise ConfigError("colour_augment", self.colour_augment, f"must be one of {COLOUR_AUGMENTS}")
        if self.data is not None:
            self.data = str(self.data)
        if self.out is not None:
            self.out = str(self.out)

    def _check_img_size(self) -> None:
        """``img_size`` between :func:`smallest_img_size` of the model and :data:`MAX_IMG_SIZE`."""
        smallest = smallest_img_size(self.model, self.model_kwargs)
        if self.img_size < smallest:
            factor = downsampling_factor(self.model, self.model_kwargs)
            raise ConfigError("img_size", self.img_size,
                              f"is below the smallest size {self.model} trains at, {smallest} px: it downsamples "
                              f"{factor} times, so at {factor} px or less its bottleneck is 1x1 and BatchNorm "
                              "fails on a one-image batch (\"Expected more than 1 value per channel when "
                              f"training\"). Use {smallest} to {MAX_IMG_SIZE} px (multiples of {factor} waste no "
                              "padding)")
        if self.img_size > MAX_IMG_SIZE:
            raise ConfigError("img_size", self.img_size,
                              f"is above {MAX_IMG_SIZE} px, the largest training size: the preprocessing cache "
                              f"({self.img_size}x{self.img_size}x3 bytes per image) and a batch's activations "
                              f"would not fit in memory. Use {smallest} to {MAX_IMG_SIZE} px (the course trains "
                              "at 64 to 512)")

    def _check_numbers(self) -> None:
        """Learning rate, weight decay, warm-up, seed, clipping, patience and workers within their ranges."""
        def finite(value: Any) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        if not (finite(self.lr) and self.lr > 0):
            raise ConfigError("lr", self.lr, "must be a positive, finite number (the recipe uses 1e-3)")
        if not (finite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError("weight_decay", self.weight_decay, "must be a finite number >= 0")
        if not (finite(self.warmup) and self.warmup >= 0):
            raise ConfigError("warmup", self.warmup, "must be a finite number >= 0: below 1 a fraction of all "
                              "steps (0.1 = the first tenth), from 1 on a number of epochs")
        if not (finite(self.min_lr_ratio) and 0 <= self.min_lr_ratio <= 1):
            raise ConfigError("min_lr_ratio", self.min_lr_ratio, "must be between 0 and 1")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ConfigError("seed", self.seed, f"must be an integer from 0 to {MAX_SEED} (2**32 - 1, "
                              "the range of NumPy's seeds)")
        if self.grad_clip is not None and not (finite(self.grad_clip) and self.grad_clip > 0):
            raise ConfigError("grad_clip", self.grad_clip, "must be a positive, finite norm (or None: off)")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise ConfigError("patience", self.patience, "must be at least 1 epoch (or None: off)")
        if self.num_workers is not None and (not isinstance(self.num_workers, int) or self.num_workers < 0):
            raise ConfigError("num_workers", self.num_workers, "must be 0 (load in the main process) or more")

    def run_dir(self) -> Path:
        """The run folder: ``out`` if given, else ``runs/<model>``."""
        return Path(self.out) if self.out else config.runs_dir() / self.model

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-serialisable dict; a loss object as :func:`helpers.train.losses.describe_loss`."""
        values = {f.name: losses.describe_loss(self.loss) if f.name == "loss" else getattr(self, f.name)
                  for f in dataclasses.fields(self)}
        return json.loads(json.dumps(values))

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
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read a config written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


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
        with autocast(device, amp_dtype):
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
             threshold: float = metrics.DEFAULT_THRESHOLD, all_ranks: bool = False) -> dict[str, float]:
    """Validation loss and ISIC scores, macro-averaged over the images of ``loader``.

    Sums of per-image values and the image count are accumulated, then divided: with ``all_ranks`` the sums
    of every process are added first (:func:`helpers.train.distributed.all_reduce_sums`), so each process returns
    the scores of the whole validation set when each validated its own shard
    (:class:`helpers.train.distributed.ShardSampler`: every image in exactly one shard).

    Args:
        model: the plain model (not the DistributedDataParallel wrapper: shards may differ in length).
        all_ranks: combine the shards of all processes; every process must call ``validate`` then.

    Returns:
        ``{"val_loss", "val_dice", "val_jaccard", "val_threshold_jaccard"}``: the loss is the mean per
        image; the scores are means over images of :func:`helpers.evaluation.metrics.batch_scores` at ``threshold``.

    Raises:
        ValueError: the loader is empty (all loaders, with ``all_ranks``).
        NonFiniteLossError: the validation loss is NaN or infinite.
    """
    model.eval()
    sums = dict.fromkeys(("loss", "dice", "jaccard", "threshold_jaccard", "images"), 0.0)
    for batch in loader:
        images, masks = _to_device(batch, device, channels_last)
        with autocast(device, amp_dtype):
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


