"""A whole training run: :func:`fit`, :func:`train_or_load` and the run folder they keep (notebook 04).

:func:`fit` builds what :class:`helpers.train.loop.TrainConfig` describes (:func:`build_loaders`,
:func:`build_parts`), then runs :func:`helpers.train.loop.train_one_epoch` and :func:`helpers.train.loop.validate`
once per epoch and keeps the run folder (its file names: :mod:`helpers.runfolder`)::

    <run_dir>/config.json   the TrainConfig, as JSON
    <run_dir>/history.csv   one row per finished epoch (HISTORY_COLUMNS)
    <run_dir>/best.pt       the weights with the best validation Dice so far (plus epoch, scores, config)
    <run_dir>/last.pt       everything needed to resume: weights, optimizer, scheduler, GradScaler,
                            RNG states, epoch, best score, history, config

Both checkpoints are written atomically (:func:`helpers.models.save_checkpoint`), so an interrupted run
(Ctrl-C, a closed Colab tab, a killed job) loses at most the epoch in progress: run it again with
``resume=True`` (``python -m helpers.train ... --resume``) and it continues where ``last.pt`` stopped, with
the same schedule, the same data order and the same final weights as an uninterrupted run on the CPU.
:func:`train_or_load` is the habit of the evaluation notebook (05): reuse a finished run, else train.

Several GPUs: ``torchrun --nproc_per_node N -m helpers.train ...`` runs :func:`fit` in N processes with
DistributedDataParallel (see :mod:`helpers.train.distributed`). Each process trains on its own share of the
training images (``batch_size`` is per process: one optimisation step sees ``N * batch_size`` images) and
validates its own share of the validation images; the per-image scores are summed over all processes, so
``history.csv`` holds the scores of the whole validation set, each image counted once. Only rank 0 writes
the run folder; ``last.pt`` keeps every rank's random state, so ``--resume`` works under torchrun too (with
the same number of processes).

While it runs, :func:`fit` holds the run folder's lock (:class:`helpers.runfolder.RunLock`, rank 0), so a
second run into the same folder is refused (:class:`helpers.runfolder.RunFolderLocked`); a checkpoint or
history that cannot be written raises :class:`helpers.runfolder.RunFolderWriteError` (the previous files stay
intact) and Ctrl-C raises :class:`TrainingInterrupted`, both saying which epoch ``last.pt`` holds.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from helpers import models, runfolder, runtime
from helpers.data.dataset import make_loaders
from helpers.data.files import write_text_atomic
from helpers.data.layouts import Pair
from helpers.data.splits import course_splits
from helpers.runfolder import checked_write, intact, resume_hint
from helpers.train import distributed, loop, losses
from helpers.train.loop import Callback, NonFiniteLossError, TrainConfig, TrainingInterrupted
from helpers.train.resume import (
    ResumeError,
    RunState,
    check_resumable,
    remove_unfinished_run,
    restore_state,
    rng_state,
    save_state,
    split_fingerprint,
    take_lock,
)

#: Columns of ``history.csv`` and of :attr:`FitResult.history`, in order.
HISTORY_COLUMNS: tuple[str, ...] = ("epoch", "lr", "train_loss", "val_loss", "val_dice", "val_jaccard",
                                    "val_threshold_jaccard", "seconds")


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


def history_frame(rows: Sequence[Mapping[str, float]]) -> pd.DataFrame:
    """History rows as a DataFrame with :data:`HISTORY_COLUMNS` (an empty frame for no rows)."""
    frame = pd.DataFrame(list(rows), columns=list(HISTORY_COLUMNS))
    return frame.astype({"epoch": "int64"}) if len(frame) else frame


def write_history(path: Path, rows: Sequence[Mapping[str, float]]) -> None:
    """(Re)write ``history.csv`` from all finished epochs, atomically."""
    write_text_atomic(path, history_frame(rows).to_csv(index=False))


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


def _divergence_message(err: NonFiniteLossError, cfg: TrainConfig, run: RunState, run_dir: Path) -> str:
    """What went wrong, what was kept, and what to try, for a NaN/inf loss."""
    kept = (f"{runfolder.BEST_FILE} (epoch {run.best_epoch}, val Dice {run.best_score:.4f}) and "
            f"{runfolder.LAST_FILE} (epoch {run.epoch}) in {run_dir} were left as they were"
            if run.best_epoch else "no checkpoint was written")
    clip = ("lower --grad-clip" if cfg.grad_clip is not None else "enable gradient clipping (--grad-clip 1.0)")
    return (f"{err}: training stopped; {kept}. Try: a lower learning rate (--lr {cfg.lr:g} -> {cfg.lr / 10:g}), "
            f"{clip}, amp='off' if mixed precision is on, and check the data "
            "(python -m helpers.data check DIR: images readable, masks binary and the same size).")


def _samplers(cfg: TrainConfig, splits: Mapping[str, Sequence[Pair]]) -> dict[str, Any] | None:
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


def build_loaders(cfg: TrainConfig, splits: Mapping[str, Sequence[Pair]], *,
                  progress: bool | None = None) -> dict[str, Any]:
    """The train and val DataLoaders of ``cfg`` as :func:`fit` builds them (the preprocessing cache too;
    ``progress``: its "caching N pairs" bar, see :func:`helpers.data.dataset.make_loaders`).

    In a multi-process run the train loader gets a seeded DistributedSampler and val a
    :class:`helpers.train.distributed.ShardSampler`.

    Raises:
        ValueError: the train or val split is empty.
    """
    for name in ("train", "val"):
        if not splits.get(name):
            raise ValueError(f"the {name!r} split is empty: training needs train and val images "
                             "(see python -m helpers.data check DIR)")
    # Workers are restarted every epoch (not persistent) so their augmentation seeds depend on the epoch
    # only (see reseed_loader): a resumed run then sees exactly the batches an uninterrupted one would.
    return make_loaders({"train": splits["train"], "val": splits["val"]}, cfg.img_size, cfg.batch_size,
                        augment=cfg.augment, colour_augment=cfg.colour_augment, num_workers=cfg.num_workers,
                        seed=cfg.seed, persistent_workers=False,
                        samplers=_samplers(cfg, splits), progress=progress)


@dataclass
class Parts:
    """What one training run works with, as :func:`build_parts` builds it from a :class:`TrainConfig`.

    Attributes:
        loaders: ``{"train": DataLoader, "val": DataLoader}``.
        model: the plain model (validated and saved).
        net: what trains: ``model`` itself, or ``model`` wrapped in DistributedDataParallel under torchrun.
        loss_fn: the :func:`helpers.train.losses.resolve_loss` loss (``cfg.loss``, ``cfg.loss_kwargs``), on the device.
        optimizer: AdamW (:func:`helpers.train.loop.build_optimizer`).
        scheduler: warm-up + cosine, one step per batch (:func:`helpers.train.loop.build_scheduler`).
        scaler: a GradScaler, enabled for float16 autocast only.
        amp_dtype: the autocast dtype (:func:`helpers.train.loop.resolve_amp`), None for float32.
        channels_last: whether the model and its inputs use the NHWC memory layout.
    """

    loaders: Mapping[str, Any]
    model: nn.Module
    net: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    channels_last: bool


def build_parts(cfg: TrainConfig, loaders: Mapping[str, Any], device: torch.device, *,
                resuming: bool = False) -> Parts:
    """Model, loss, optimiser, scheduler and scaler for ``cfg`` (weights freshly initialised) beside ``loaders``.

    Args:
        cfg: the recipe; ``cfg.epochs`` and ``len(loaders["train"])`` set the schedule's length.
        loaders: at least ``{"train": ...}`` (see :func:`build_loaders`).
        device: where the model goes.
        resuming: the weights will come from ``last.pt``: skip downloading pretrained ones.

    Under torchrun the model is wrapped in DistributedDataParallel (a collective: every process builds).
    """
    model = models.build_model(cfg.model, pretrained=cfg.pretrained and not resuming, **cfg.model_kwargs)
    channels_last = loop.resolve_channels_last(cfg.channels_last, device)
    model = model.to(device, memory_format=torch.channels_last) if channels_last else model.to(device)
    net = distributed.wrap_model(model, device)   # copies rank 0's initial weights to every process
    optimizer = loop.build_optimizer(model, cfg.lr, cfg.weight_decay)
    scheduler = loop.build_scheduler(optimizer, epochs=cfg.epochs, steps_per_epoch=len(loaders["train"]),
                                         warmup=cfg.warmup, min_lr_ratio=cfg.min_lr_ratio)
    amp_dtype = loop.resolve_amp(cfg.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    loss_fn = losses.resolve_loss(cfg.loss, cfg.loss_kwargs).to(device)
    return Parts(loaders=loaders, model=model, net=net, loss_fn=loss_fn,
                 optimizer=optimizer, scheduler=scheduler, scaler=scaler, amp_dtype=amp_dtype,
                 channels_last=channels_last)


def _run_epoch(cfg: TrainConfig, parts: Parts, epoch: int, device: torch.device, progress: bool,
               callbacks: Sequence[Callback]) -> dict[str, float]:
    """Train and validate one epoch; return its history row."""
    start = time.perf_counter()
    train_loader, val_loader = parts.loaders["train"], parts.loaders["val"]
    reseed_loader(train_loader, _epoch_seed(cfg.seed, epoch, distributed.get_rank()))
    if hasattr(train_loader.sampler, "set_epoch"):   # DistributedSampler: shuffle by (seed, epoch)
        train_loader.sampler.set_epoch(epoch)
    bar = tqdm(total=len(train_loader), desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", disable=not progress,
               leave=True, dynamic_ncols=True)
    try:
        train = loop.train_one_epoch(parts.net, train_loader, parts.loss_fn, parts.optimizer,
                                         parts.scheduler, device=device, amp_dtype=parts.amp_dtype,
                                         scaler=parts.scaler, grad_clip=cfg.grad_clip,
                                         channels_last=parts.channels_last, epoch=epoch, bar=bar,
                                         callbacks=callbacks)
        train_loss = _mean_over_ranks(train["train_loss"], train["images"])
        distributed.broadcast_buffers(parts.model)   # validate (and save) rank 0's BatchNorm statistics
        val = loop.validate(parts.model, val_loader, parts.loss_fn, device=device,
                                amp_dtype=parts.amp_dtype, channels_last=parts.channels_last,
                                all_ranks=distributed.is_distributed())
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


def _start_or_resume(cfg: TrainConfig, parts: Parts, run_dir: Path, fingerprint: str,
                     resuming: bool) -> RunState:
    """A fresh run state (config.json written, history.csv emptied), or the state restored from last.pt.

    Every process restores last.pt when ``resuming``; only the main process writes files.
    """
    last = runfolder.last_path(run_dir)
    if resuming:
        checkpoint = models.load_checkpoint(last)
        check_resumable(checkpoint, cfg, fingerprint, last, world_size=distributed.get_world_size())
        run = restore_state(checkpoint, parts.model, parts.optimizer, parts.scheduler, parts.scaler,
                            rank=distributed.get_rank())
        if distributed.is_main_process():  # drop rows of an epoch last.pt does not hold
            history = runfolder.history_path(run_dir)
            checked_write(history, lambda: write_history(history, run.history),
                          kept=intact(run_dir, run.best_epoch, run.epoch), then=resume_hint(run.epoch))
        return run
    if not distributed.is_main_process():
        return RunState()
    stale = [p for p in (runfolder.best_path(run_dir), last) if p.is_file()]
    if stale:  # a new run must not leave another run's checkpoints beside its history
        print(f"starting a new run in {run_dir}: replacing {', '.join(p.name for p in stale)} of the previous run")
        for path in stale:
            checked_write(path, path.unlink, then=resume_hint(0))
    config, history = runfolder.config_path(run_dir), runfolder.history_path(run_dir)
    checked_write(config, lambda: cfg.save(config), then=resume_hint(0))
    checked_write(history, lambda: write_history(history, []), then=resume_hint(0))
    return RunState()



def fit(cfg: TrainConfig, *, splits: Mapping[str, Sequence[Pair]] | None = None, progress: bool = True,
        callbacks: Sequence[Callback] | None = None) -> FitResult:
    """Train ``cfg.model`` with the recipe in ``cfg``; keep history and checkpoints in ``cfg.run_dir()``.

    Each epoch trains on ``splits["train"]`` and validates on ``splits["val"]``; ``history.csv``,
    ``best.pt`` (when the validation Dice improved) and ``last.pt`` are rewritten after every epoch.
    With ``cfg.resume`` and an existing ``last.pt`` the run continues after its last finished epoch
    (a finished run returns at once); otherwise the run folder's history starts afresh. A run that fails
    before its first epoch is saved removes the run folder it created (no empty run folders are left).
    The run folder is locked while the run writes it, so a second run into it is refused.

    Under ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` > 1 in the environment) it trains with
    DistributedDataParallel in each of the N processes: it joins the process group (nccl on CUDA, gloo on
    the CPU) unless the caller already did, and leaves it at the end. Every process returns the same
    :class:`FitResult`; only rank 0 writes the run folder and shows progress.

    Args:
        cfg: the recipe (see :class:`TrainConfig`).
        splits: ``{"train": [Pair], "val": [Pair], ...}``; None = ``helpers.course_splits(cfg.data)``.
        progress: show a tqdm bar per epoch with the live loss and the validation Dice (rank 0 only).
        callbacks: functions ``cb(event, info)`` called on ``"batch_end"`` and ``"epoch_end"``
            (``info["row"]`` is the epoch's history row). An exception raised in one stops training.

    Returns:
        :class:`FitResult` with the history DataFrame and the checkpoint paths.

    Raises:
        NonFiniteLossError: the loss became NaN/inf (the message says what to try); checkpoints untouched.
        ResumeError: ``resume`` found a ``last.pt`` from a different recipe, data split or process count.
        ValueError: an empty train or val split, or an invalid setting.
        RunFolderLocked: another live run holds the run folder's lock (a :class:`helpers.runfolder.RunLock`,
            taken for the whole run and released on every exit; a killed run's lock is taken over).
        RunFolderWriteError: a checkpoint or the history could not be written (full disk, read-only
            folder); the previous best.pt and last.pt are intact and the message says which epochs they hold.
        TrainingInterrupted: Ctrl-C in an epoch (a KeyboardInterrupt saying which epoch last.pt holds).
        RuntimeError: torchrun was asked for a device multi-process training does not support (MPS).
    """
    device = runtime.select_device(cfg.device)
    own_group = distributed.wants_distributed() and not distributed.is_distributed()
    if own_group:
        device = distributed.init_distributed(device)
    elif distributed.is_distributed():
        device = distributed.local_device(device)
    run_dir = cfg.run_dir()
    fresh = not run_dir.exists()
    lock = runfolder.RunLock(run_dir)
    try:
        take_lock(lock, fresh)
        try:
            return _fit(cfg, device, splits, progress and distributed.is_main_process(), list(callbacks or []))
        except BaseException:
            if fresh and distributed.is_main_process():
                remove_unfinished_run(run_dir, lock)
            raise
        finally:
            lock.release()
    finally:
        if own_group:
            distributed.cleanup_distributed()


def _fit(cfg: TrainConfig, device: torch.device, splits: Mapping[str, Sequence[Pair]] | None,
         progress: bool, callbacks: list[Callback]) -> FitResult:
    """:func:`fit` once the device (and, under torchrun, the process group) is set up."""
    run_dir = cfg.run_dir()
    runtime.seed_everything(cfg.seed + distributed.get_rank())   # DDP copies rank 0's initial weights
    resuming = cfg.resume and runfolder.last_path(run_dir).is_file()   # decided before any process writes
    with distributed.main_process_first():   # rank 0 generates data and caches; the others then reuse them
        splits = splits if splits is not None else course_splits(cfg.data, seed=cfg.seed)
        loaders = build_loaders(cfg, splits, progress=None if progress else False)   # --quiet: no bar
    parts = build_parts(cfg, loaders, device, resuming=resuming)
    fingerprint = split_fingerprint(splits)
    run = _start_or_resume(cfg, parts, run_dir, fingerprint, resuming)
    distributed.barrier()
    if progress and run.epoch:
        print(f"{run_dir} already holds all {cfg.epochs} epochs of this recipe: nothing to train"
              if run.epoch >= cfg.epochs or run.stopped_early else
              f"resuming {run_dir} after epoch {run.epoch}/{cfg.epochs}")
    saved = run.epoch   # the epoch last.pt holds
    for epoch in range(run.epoch + 1, cfg.epochs + 1):
        if run.stopped_early:
            break
        try:
            row = _run_epoch(cfg, parts, epoch, device, progress, callbacks)
            _finish_epoch(cfg, parts, run, row, run_dir, fingerprint)
        except NonFiniteLossError as err:
            raise NonFiniteLossError(_divergence_message(err, cfg, run, run_dir)) from err
        except KeyboardInterrupt as err:
            raise TrainingInterrupted(epoch, saved, runfolder.last_path(run_dir)) from err
        saved = epoch
        for cb in callbacks:
            cb("epoch_end", {"epoch": epoch, "row": dict(row), "run_dir": run_dir})
    distributed.barrier()   # rank 0's files are complete before any process returns their paths
    return FitResult(history=history_frame(run.history), best_path=runfolder.best_path(run_dir),
                     last_path=runfolder.last_path(run_dir), run_dir=run_dir, best_epoch=run.best_epoch,
                     best_score=run.best_score if run.best_epoch else float("nan"),
                     stopped_early=run.stopped_early)


def _finish_epoch(cfg: TrainConfig, parts: Parts, run: RunState, row: dict[str, float],
                  run_dir: Path, fingerprint: str) -> None:
    """Update the bookkeeping with ``row``; write best.pt (if better), last.pt and history.csv.

    Every process updates its bookkeeping (the rows are identical: validation is reduced over all ranks);
    only the main process writes, with the random states of all ranks gathered into last.pt.
    """
    main = distributed.is_main_process()
    held = (run.best_epoch, run.epoch)   # what best.pt and last.pt hold before this epoch's saves
    run.epoch = int(row["epoch"])
    run.history.append(row)
    improved = row["val_dice"] > run.best_score
    if improved:
        run.best_score, run.best_epoch, run.bad_epochs = row["val_dice"], run.epoch, 0
    else:
        run.bad_epochs += 1
    if cfg.patience is not None and run.bad_epochs >= cfg.patience and run.epoch < cfg.epochs:
        run.stopped_early = True
        if main:
            print(f"early stopping after epoch {run.epoch}: no better val Dice for {cfg.patience} epochs "
                  f"(best {run.best_score:.4f} at epoch {run.best_epoch})")
    rank_rng = distributed.all_gather_objects(rng_state())   # a collective: every process takes part
    failure = None
    if main:
        try:
            _save_epoch(cfg, parts, run, run_dir, fingerprint, rank_rng, row if improved else None, held)
        except runfolder.RunFolderWriteError as err:
            failure = err
    outcome = distributed.all_gather_objects(str(failure) if failure else None)[0]   # all stop together
    if failure is not None:
        raise failure
    if outcome is not None:
        raise runfolder.RunFolderWriteError(outcome)


def _save_epoch(cfg: TrainConfig, parts: Parts, run: RunState, run_dir: Path, fingerprint: str,
                rank_rng: list[Any], best_row: dict[str, float] | None, held: tuple[int, int]) -> None:
    """Write best.pt (when ``best_row``), last.pt, then history.csv; ``held`` = the epochs best.pt and last.pt
    held before. Each save is atomic, so a failed one leaves the previous file whole.

    Raises:
        RunFolderWriteError: a file could not be written (the message says what is intact).
    """
    best_epoch, last_epoch = held
    best, last, history = (runfolder.best_path(run_dir), runfolder.last_path(run_dir),
                           runfolder.history_path(run_dir))
    if best_row is not None:
        checked_write(best, lambda: models.save_checkpoint(best, parts.model, kind="best", epoch=run.epoch,
                                                           scores=dict(best_row), config=cfg.to_dict()),
                      kept=intact(run_dir, best_epoch, last_epoch), then=resume_hint(last_epoch))
        best_epoch = run.epoch
    checked_write(last, lambda: save_state(last, parts.model, parts.optimizer, parts.scheduler, parts.scaler, run,
                                           cfg, fingerprint, rank_rng=rank_rng),
                  kept=intact(run_dir, best_epoch, last_epoch), then=resume_hint(last_epoch))
    checked_write(history, lambda: write_history(history, run.history), kept=intact(run_dir, best_epoch, run.epoch),
                  then=resume_hint(run.epoch))


def train_or_load(cfg: TrainConfig, *, splits: Mapping[str, Sequence[Pair]] | None = None,
                  progress: bool = True, callbacks: Sequence[Callback] | None = None) -> FitResult:
    """Reuse a finished run of the same recipe, finish an interrupted one, or train from scratch.

    The pattern of evaluation notebooks: ``cfg.run_dir()`` is checked first; when its ``last.pt`` was
    written by the same recipe on the same data (:func:`check_resumable`), training resumes from it, which
    for a finished run means returning at once. A run of another recipe (say, a smoke-mode run when you
    now want the full one) is replaced: training starts afresh in the same folder.

    Args and Returns: as :func:`fit` (``cfg.resume`` is ignored).
    """
    run_dir = cfg.run_dir()
    last = runfolder.last_path(run_dir)
    resume = False
    if last.is_file():
        splits = splits if splits is not None else course_splits(cfg.data, seed=cfg.seed)
        try:
            check_resumable(models.load_checkpoint(last), cfg, split_fingerprint(splits), last,
                            world_size=distributed.get_world_size())
            resume = True
        except (ResumeError, models.CheckpointError) as err:
            print(f"not reusing {run_dir}: {err}\ntraining from scratch instead.")
    return fit(dataclasses.replace(cfg, resume=resume), splits=splits, progress=progress, callbacks=callbacks)
