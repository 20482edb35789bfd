"""What ``last.pt`` holds besides the weights, and the checks before a run resumes from it (notebook 04).

:func:`helpers.train.fit.fit` writes ``last.pt`` with :func:`save_state` after every epoch and, on ``resume``,
reads it back with :func:`restore_state` once :func:`check_resumable` has made sure it belongs to the same
recipe (:data:`RESUME_FIELDS`), the same train/val split (:func:`split_fingerprint`) and the same number of
processes. The random states of Python, NumPy and torch (:func:`rng_state`) travel with it, so a resumed run
on the CPU ends with the same weights as an uninterrupted one.

Around the run, :func:`take_lock` holds the run folder's lock (:class:`helpers.runfolder.RunLock`) and
:func:`remove_unfinished_run` removes what a run that failed before its first saved epoch wrote.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from helpers import models, runfolder
from helpers.data.layouts import Pair
from helpers.runfolder import LAST_FILE
from helpers.train import distributed
from helpers.train.loop import TrainConfig

#: TrainConfig fields that must match to resume a run (the others, e.g. workers or patience, may change).
RESUME_FIELDS: tuple[str, ...] = ("model", "model_kwargs", "pretrained", "img_size", "epochs", "batch_size", "lr",
                                  "weight_decay", "warmup", "min_lr_ratio", "loss", "loss_kwargs", "grad_clip",
                                  "augment", "colour_augment", "seed", "data")


class ResumeError(ValueError):
    """``resume=True`` found a ``last.pt`` that belongs to a different run (model, recipe or data)."""


@dataclass
class RunState:
    """The bookkeeping that ``last.pt`` carries besides the weights and optimiser state."""

    epoch: int = 0
    best_score: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)


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
               run: RunState, cfg: TrainConfig, fingerprint: str, *,
               rank_rng: Sequence[Mapping[str, Any]] | None = None) -> Path:
    """Write the resumable ``last.pt`` (atomically, via :func:`helpers.models.save_checkpoint`).

    Args:
        model: the plain model (unwrap DistributedDataParallel first, see :func:`helpers.train.distributed.unwrap`).
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
                  rank: int = 0) -> RunState:
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
    return RunState(epoch=int(checkpoint["epoch"]), best_score=float(checkpoint["best_score"]),
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
        raise ResumeError(f"{path} is not a resumable {LAST_FILE} (no optimizer state): resume from a run folder "
                          "written by helpers.train.fit.fit, or start a new run without resume")
    saved = checkpoint.get("config", {})
    current = cfg.to_dict()
    defaults = TrainConfig.__dataclass_fields__
    for name in RESUME_FIELDS:
        # a field added after the checkpoint was written holds its default there (e.g. colour_augment)
        was = saved.get(name, defaults[name].default)
        if was != current[name]:
            raise ResumeError(f"cannot resume {path}: it was trained with {name}={was!r} but this "
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


def split_fingerprint(splits: Mapping[str, Sequence[Pair]]) -> str:
    """A short hash of the train and validation ids (so a resumed run checks it sees the same data)."""
    digest = hashlib.sha256()
    for name in ("train", "val"):
        digest.update(name.encode())
        for pair in splits[name]:
            digest.update(pair.id.encode() + b"\0")
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------------------------------------
# The run folder's lock and an unfinished run
# --------------------------------------------------------------------------------------------------------
def take_lock(lock: runfolder.RunLock, fresh: bool) -> None:
    """Rank 0 takes the run folder's lock (and says what it cleaned up); every process learns the outcome.

    Under torchrun only rank 0 writes the run folder, so only rank 0 holds the lock; the outcome is shared
    with :func:`helpers.train.distributed.all_gather_objects`, so all processes stop together when refused.
    ``fresh``: the run folder did not exist before (removed again when the lock cannot be written).

    Raises:
        RunFolderError: the folder is locked by a live run (RunFolderLocked), or the lock file cannot be
            written (RunFolderWriteError); on every rank.
    """
    error: runfolder.RunFolderError | None = None
    if distributed.is_main_process():
        try:
            notice = lock.acquire().notice()
            if notice:
                print(notice)
        except runfolder.RunFolderLocked as err:
            error = err
        except OSError as err:
            error = runfolder.write_error(lock.path, err, then=runfolder.resume_hint(0))
            if fresh:  # leave no empty folder behind
                with contextlib.suppress(OSError):
                    lock.run_dir.rmdir()
    outcome = distributed.all_gather_objects(str(error) if error else None)[0]   # a collective
    if error is not None:
        raise error
    if outcome is not None:
        raise runfolder.RunFolderError(outcome)


def remove_unfinished_run(run_dir: Path, lock: runfolder.RunLock) -> None:
    """After a failure before any epoch was saved, remove what a new run wrote (config.json, history.csv),
    release the lock, and remove the run folder when that leaves it empty; a folder with a ``last.pt`` is
    kept (resumable). A folder that cannot be changed any more (read-only) is left as it is."""
    try:
        if run_dir.is_dir() and not runfolder.last_path(run_dir).exists():
            for name in (runfolder.CONFIG_FILE, runfolder.HISTORY_FILE):
                (run_dir / name).unlink(missing_ok=True)
        lock.release()
        if run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()
    except OSError:
        pass
