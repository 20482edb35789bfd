"""Checkpoints of the course's models: :func:`save_checkpoint`, :func:`load_checkpoint`, :func:`load_model`.

Notebook 02 saves its first trained model with these; :func:`helpers.train.fit.fit` writes ``best.pt`` and
``last.pt`` with :func:`save_checkpoint`, and prediction (notebook 05, ``python -m helpers.predict``) reads
them back with :func:`load_model`. A checkpoint is a dict saved with ``torch.save``::

    {"format": "skinseg-checkpoint/1", "model_name": str, "model_kwargs": dict, "state_dict": dict, **extra}

``model_name`` and ``model_kwargs`` are what :func:`helpers.models.build_model` needs to rebuild the network,
so a checkpoint is enough to predict (:func:`trained_img_size` reads the training size fit stores in ``config``).
Files are written atomically (:func:`helpers.data.files.atomic_write`) and read safely
(``torch.load(weights_only=True)``: no arbitrary Python objects); a refused file's :class:`CheckpointError` keeps
torch's reason (:func:`unsafe_reason`, e.g. ``unsupported GLOBAL posix.system``).
"""
from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from helpers.data.files import atomic_write
from helpers.models.factory import SegmentationNet, build_model
from helpers.runfolder import BEST_FILE, CHECKPOINT_FILES, LAST_FILE

CHECKPOINT_FORMAT = "skinseg-checkpoint/1"
_RESERVED_KEYS = ("format", "model_name", "model_kwargs", "state_dict")
#: How the paragraphs of advice around torch's weights-only refusal begin (skipped to find the reason).
_TORCH_ADVICE = ("Weights only load failed", "In PyTorch", "Check the documentation", "Please file an issue",
                 "(1)", "(2)")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, not in the course's format, or does not fit its model."""


_SAFE_LEAVES = (type(None), bool, int, float, complex, str, bytes, torch.Tensor, torch.dtype, torch.device,
                torch.Size)


def _check_storable(value: Any, where: str) -> None:
    """Raise ``TypeError`` when ``value`` holds something ``torch.load(weights_only=True)`` would refuse."""
    if isinstance(value, _SAFE_LEAVES):
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_storable(k, f"{where} key")
            _check_storable(v, f"{where}[{k!r}]")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_storable(v, f"{where}[{i}]")
        return
    raise TypeError(f"{where} is a {type(value).__name__}, which a checkpoint cannot store safely: convert it "
                    "to plain Python (str(path), float(x), dataclasses.asdict(cfg), df.to_dict('list'))")


def _model_identity(model: nn.Module) -> tuple[str, dict[str, Any]]:
    """The (name, kwargs) a model was built with; ``ValueError`` for a model not made by :func:`build_model`."""
    name, kwargs = getattr(model, "model_name", None), getattr(model, "model_kwargs", None)
    if not isinstance(name, str) or not isinstance(kwargs, dict):
        raise ValueError(f"cannot checkpoint a {type(model).__name__} that build_model did not create: build it "
                         "with helpers.models.build_model(name, ...) so the checkpoint knows how to rebuild it")
    return name, kwargs


def save_checkpoint(path: str | os.PathLike, model: nn.Module, **extra: Any) -> Path:
    """Save ``model`` (weights + how to rebuild it) and ``extra`` to ``path`` atomically (write, then rename).

    Args:
        path: the ``.pt`` file to write; parent folders are created.
        model: a model from :func:`build_model`.
        **extra: anything else to keep (``optimizer=opt.state_dict()``, ``epoch=3``, ``config={...}``) made
            of tensors, numbers, strings, lists, tuples and dicts.

    Returns:
        The path written.

    Raises:
        ValueError: ``model`` did not come from :func:`build_model`, or ``extra`` uses a reserved key.
        TypeError: ``extra`` (or the model's kwargs) holds an object a safe load could not read back.
    """
    name, kwargs = _model_identity(model)
    clash = sorted(set(extra) & set(_RESERVED_KEYS))
    if clash:
        raise ValueError(f"save_checkpoint: {clash} are reserved checkpoint keys; rename these extra values")
    _check_storable(kwargs, "model_kwargs")
    _check_storable(extra, "extra")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    checkpoint = {"format": CHECKPOINT_FORMAT, "model_name": name, "model_kwargs": kwargs, "state_dict": state,
                  **extra}
    path = Path(path)
    with atomic_write(path) as tmp:
        torch.save(checkpoint, tmp)
    return path


def _validate_checkpoint(checkpoint: Any, source: str) -> dict:
    """Check the format fields of a loaded checkpoint; ``CheckpointError`` naming ``source`` otherwise."""
    if not isinstance(checkpoint, dict) or "format" not in checkpoint:
        looks_bare = isinstance(checkpoint, dict) and all(isinstance(v, torch.Tensor) for v in checkpoint.values())
        hint = (" It looks like a bare state_dict: build the model with build_model(name, ...) and call "
                "model.load_state_dict(...), or save it with helpers.models.save_checkpoint.") if looks_bare else ""
        raise CheckpointError(f"{source} is not a course checkpoint (no 'format' field).{hint} "
                              "Save models with helpers.models.save_checkpoint(path, model).")
    if checkpoint["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{source} has format {checkpoint['format']!r} but this code reads "
                              f"{CHECKPOINT_FORMAT!r}: update the course code (git pull) or re-train the model")
    missing = [k for k in _RESERVED_KEYS if k not in checkpoint]
    if missing:
        raise CheckpointError(f"{source} lacks {missing}: the file is damaged; re-train or re-save the model")
    return checkpoint


def unsafe_reason(message: str) -> str:
    """The useful part of torch's weights-only refusal: ``"unsupported GLOBAL posix.system; its module posix is
    blocked)"``, else the unpickler's own sentence (torch wraps it in paragraphs of advice)."""
    found = re.search(r"GLOBAL (\S+?)\.? (?:was not|whose module (\S+) is blocked)", message)
    if found:
        blocked = f"; its module {found.group(2)} is blocked" if found.group(2) else ""
        return f"unsupported GLOBAL {found.group(1)}{blocked}"
    inner = message.split("WeightsUnpickler error:")[-1] if "WeightsUnpickler error:" in message else message
    lines = [line.strip() for line in inner.splitlines() if line.strip()]
    reasons = [line for line in lines if not line.startswith(_TORCH_ADVICE)]
    return (reasons or lines or ["no reason given"])[0][:300]


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (safely: ``torch.load(weights_only=True)``).

    Returns:
        The checkpoint dict (``format``, ``model_name``, ``model_kwargs``, ``state_dict`` and the extras).

    Raises:
        CheckpointError: the file is missing (or is a folder), not a PyTorch file, truncated, holds unsafe
            objects, or is not in the course's checkpoint format. The message names the file and the fix.
    """
    path = Path(path)
    if path.is_dir():
        inside = [name for name in CHECKPOINT_FILES if (path / name).is_file()]
        hint = (f"pass {path / inside[0]}" + (f" (the best validation Dice) or {LAST_FILE} (the last epoch)"
                                              if len(inside) > 1 else "")
                if inside else f"pass the .pt file of a run folder, e.g. runs/<model>/{BEST_FILE}")
        raise CheckpointError(f"checkpoint {path} is a folder, not a checkpoint file: {hint}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: check the path, or train a model first "
                              "(python -m helpers.train) to create it")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"checkpoint {path} could not be read: it is not a PyTorch file (torch.save "
                              "writes a zip archive). It is damaged or something else: re-train or copy it again.")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"checkpoint {path} holds Python objects that safe loading refuses "
                              f"({unsafe_reason(str(err))}): it may be malicious, or written by another program "
                              "than helpers.models.save_checkpoint. Do not open it with weights_only=False unless "
                              "you trust its source; to make a safe file, load the model where it was made and "
                              "save it with helpers.models.save_checkpoint(path, model), or re-train") from err
    except Exception as err:  # torch raises RuntimeError, EOFError, zipfile errors... for damaged files
        raise CheckpointError(f"checkpoint {path} could not be read as a PyTorch file "
                              f"({type(err).__name__}: {err}). It is damaged or not a checkpoint: "
                              "re-train or copy it again.") from err
    return _validate_checkpoint(checkpoint, f"checkpoint {path}")


def trained_img_size(checkpoint: Mapping[str, Any], path: str | os.PathLike) -> int:
    """The training image size a checkpoint records (``config.img_size``, as :func:`helpers.train.fit.fit` saves).

    Raises:
        CheckpointError: the checkpoint holds no positive integer ``config.img_size``; the message names ``path``.
    """
    size = (checkpoint.get("config") or {}).get("img_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise CheckpointError(f"checkpoint {path} does not record the training image size (no config.img_size): "
                              "pass img_size=... (--img-size) explicitly")
    return size


def load_model(path_or_dict: str | os.PathLike | Mapping[str, Any], *, expected_name: str | None = None,
               map_location: Any = "cpu") -> SegmentationNet:
    """Rebuild the model stored in a checkpoint, load its weights, and return it in eval mode.

    Args:
        path_or_dict: a checkpoint file or a dict from :func:`load_checkpoint`.
        expected_name: if given, the checkpoint must hold this model name.
        map_location: where the tensors (and the model) go, e.g. ``"cpu"`` or ``"cuda"``.

    Raises:
        CheckpointError: unreadable file (see :func:`load_checkpoint`), another model than ``expected_name``,
            or weights that do not fit the architecture the checkpoint names.
    """
    if isinstance(path_or_dict, Mapping):
        source = "the checkpoint dict"
        checkpoint = _validate_checkpoint(dict(path_or_dict), source)
    else:
        source = f"checkpoint {path_or_dict}"
        checkpoint = load_checkpoint(path_or_dict, map_location=map_location)
    name, kwargs = checkpoint["model_name"], checkpoint["model_kwargs"]
    if expected_name is not None and name != expected_name.strip().lower():
        raise CheckpointError(f"{source} holds a {name!r} model, not {expected_name!r}: pick the checkpoint of a "
                              f"{expected_name!r} run, or pass expected_name={name!r}")
    try:
        model = build_model(name, **kwargs)
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{source} names model {name!r} with kwargs {kwargs}, which this code cannot build "
                              f"({err}): update the course code or re-train") from err
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        first = str(err).splitlines()
        raise CheckpointError(f"{source} holds a {name!r} model built with {kwargs}, but its weights do not fit "
                              f"that architecture ({' '.join(first[:3])[:400]}). The file was edited or mixed "
                              "up: re-save it with save_checkpoint, or re-train.") from err
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    return model.eval()
