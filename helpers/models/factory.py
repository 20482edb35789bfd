"""One door to every model of the course: ``build_model(name)``, checkpoints, parameter counts.

Every model :func:`build_model` returns is a :class:`SegmentationNet`: it wraps the network (``.net``),
remembers how it was built (``.model_name``, ``.model_kwargs``) so checkpoints can rebuild it, and pads the
input to the multiple of 2**k the network needs, then crops the logits back. So for every name:
``(N, 3, H, W)`` float -> ``(N, 1, H, W)`` logits, for any H and W.

Names: ``se_unet`` (:class:`~helpers.models.se_unet.SEUNet`), ``resnet_unet_aspp``
(:class:`~helpers.models.resnet_unet_aspp.ResNetUNetASPP`), and ``smp_<arch>`` for any architecture of
segmentation-models-pytorch (``smp_unet``, ``smp_deeplabv3``, ``smp_deeplabv3plus``, ``smp_fpn``, ...),
built by ``smp.create_model`` with a ``resnet34`` encoder unless ``encoder_name`` says otherwise.

``pretrained=True`` asks smp for the encoder's ImageNet weights (downloaded once from the Hugging Face Hub,
then cached). Offline, the model keeps its random initialisation and a :class:`PretrainedWeightsWarning`
says so, once per encoder and process; ``strict_pretrained=True`` raises :class:`PretrainedWeightsError`.

Checkpoint format (a dict saved with ``torch.save``)::

    {"format": "skinseg-checkpoint/1", "model_name": str, "model_kwargs": dict, "state_dict": dict, **extra}
"""
from __future__ import annotations

import os
import pickle
import socket
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from .resnet_unet_aspp import ResNetUNetASPP, crop_to, pad_to_multiple
from .se_unet import SEUNet

#: The five models the course compares; any other ``smp_<arch>`` also works (see :func:`available_models`).
MODEL_NAMES: tuple[str, ...] = ("se_unet", "resnet_unet_aspp", "smp_unet", "smp_deeplabv3", "smp_deeplabv3plus")
CHECKPOINT_FORMAT = "skinseg-checkpoint/1"
DEFAULT_ENCODER = "resnet34"
#: smp models need H and W divisible by their output stride (at most 32): pad to this multiple.
SMP_SIZE_MULTIPLE = 32
_RESERVED_KEYS = ("format", "model_name", "model_kwargs", "state_dict")

#: Encoders whose ImageNet weights could not be fetched in this process: warned once, not retried.
_FETCH_FAILED: set[str] = set()


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, not in the course's format, or does not fit its model."""


class PretrainedWeightsWarning(UserWarning):
    """ImageNet weights could not be fetched: the model continues with random initialisation."""


class PretrainedWeightsError(RuntimeError):
    """ImageNet weights could not be fetched and ``strict_pretrained=True`` was asked for."""


class SegmentationNet(nn.Module):
    """A segmentation network that accepts any input size and remembers how it was built.

    Args:
        net: the network; maps ``(N, C, H, W)`` to ``(N, classes, H, W)`` logits when H and W are
            multiples of ``size_multiple``.
        model_name: the :func:`build_model` name.
        model_kwargs: the keyword arguments it was built with (stored in checkpoints).
        size_multiple: the input is padded (replicate, bottom/right) to a multiple of this and the logits
            cropped back; 1 means no padding.
        pretrained: True when ImageNet encoder weights were loaded.

    Shape:
        ``(N, C, H, W)`` float -> ``(N, classes, H, W)`` logits, any H and W.
    """

    def __init__(self, net: nn.Module, model_name: str, model_kwargs: Mapping[str, Any], *,
                 size_multiple: int = 1, pretrained: bool = False) -> None:
        super().__init__()
        self.net = net
        self.model_name = model_name
        self.model_kwargs = dict(model_kwargs)
        self.size_multiple = size_multiple
        self.pretrained = pretrained

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad to ``size_multiple``, run the network, crop the logits back to the input's H and W."""
        if x.ndim != 4:
            raise ValueError(f"{self.model_name} expects a batch (N, C, H, W), got shape {tuple(x.shape)}: "
                             "add a batch dimension with x[None] or x.unsqueeze(0)")
        x, size = pad_to_multiple(x, self.size_multiple)
        return crop_to(self.net(x), size)

    def extra_repr(self) -> str:
        return f"model_name={self.model_name!r}, size_multiple={self.size_multiple}, pretrained={self.pretrained}"


def available_models() -> list[str]:
    """Every name :func:`build_model` accepts: the course's five, then ``smp_<arch>`` for each smp architecture."""
    import segmentation_models_pytorch as smp

    extra = sorted(f"smp_{arch}" for arch in smp.MODEL_ARCHITECTURES_MAPPING)
    return list(MODEL_NAMES) + [n for n in extra if n not in MODEL_NAMES]


def _fetch_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean 'the weights could not be downloaded' (network, Hub, missing cache)."""
    errors: list[type[BaseException]] = [OSError, TimeoutError, ConnectionError]
    try:
        import httpx
        errors.append(httpx.HTTPError)
    except ImportError:  # pragma: no cover - httpx comes with huggingface_hub
        pass
    return tuple(errors)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Quick check that the Hugging Face Hub answers, so offline machines fail fast instead of retrying.

    True when ``HF_HUB_OFFLINE`` is set (then only the local cache is tried) or a proxy is configured (the
    download itself will tell); otherwise a TCP connection to the Hub's host must open within ``timeout`` s.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY")):
        return True
    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _weights_cached(encoder_name: str) -> bool:
    """True when smp's ImageNet weights of ``encoder_name`` are already in the local Hugging Face cache.

    smp pins each weights file to a commit, so a cached file loads without any network access.
    """
    try:
        from huggingface_hub import try_to_load_from_cache
        from segmentation_models_pytorch.encoders import encoders

        settings = encoders[encoder_name]["pretrained_settings"]["imagenet"]
        return all(isinstance(try_to_load_from_cache(settings["repo_id"], f, revision=settings["revision"]), str)
                   for f in ("config.json", "model.safetensors"))
    except (ImportError, KeyError, TypeError, ValueError):
        return False


def _build_with_weights(build: Callable[[Any], nn.Module], encoder_name: str, *, strict: bool
                        ) -> tuple[nn.Module, bool]:
    """Call ``build(weights)`` with ImageNet weights, falling back to ``build(None)`` when they cannot be fetched.

    Returns:
        The model and whether the pretrained weights were loaded.

    Raises:
        PretrainedWeightsError: the weights could not be fetched and ``strict`` is True.
    """
    if encoder_name in _FETCH_FAILED and not strict:
        return build(None), False  # already warned in this process; do not wait for the network again
    weights: Any = True if encoder_name.startswith("tu-") else "imagenet"
    if not _weights_cached(encoder_name) and not _hub_reachable():
        from huggingface_hub import constants

        reason = f"the Hugging Face Hub ({constants.ENDPOINT}) cannot be reached"
    else:
        try:
            return build(weights), True
        except _fetch_errors() as err:
            reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no details'}"
    message = (f"ImageNet weights for encoder {encoder_name!r} could not be fetched ({reason}). "
               "The model uses random initialisation instead: expect slower training and lower scores. "
               "Fix: run once with internet access (weights are cached in ~/.cache/huggingface), "
               "or pass pretrained=False to train from scratch on purpose.")
    if strict:
        raise PretrainedWeightsError(message + " (strict_pretrained=True turns this into an error)")
    _FETCH_FAILED.add(encoder_name)
    warnings.warn(message, PretrainedWeightsWarning, stacklevel=3)
    return build(None), False


def _reject_weights_kwarg(name: str, kwargs: Mapping[str, Any]) -> None:
    """``encoder_weights`` is chosen by ``pretrained=``, so that checkpoints never re-download weights."""
    if "encoder_weights" in kwargs:
        raise ValueError(f"build_model({name!r}): pass pretrained=True/False instead of "
                         f"encoder_weights={kwargs['encoder_weights']!r}")


def build_model(name: str, *, pretrained: bool = False, strict_pretrained: bool = False,
                **kwargs: Any) -> SegmentationNet:
    """Build a segmentation model by name; output logits ``(N, 1, H, W)`` at the input size, any H and W.

    Args:
        name: ``se_unet``, ``resnet_unet_aspp``, ``smp_unet``, ``smp_deeplabv3``, ``smp_deeplabv3plus``, or
            ``smp_<arch>`` for any smp architecture (``smp_fpn``, ``smp_unetplusplus``, ...).
        pretrained: load ImageNet encoder weights (not for ``se_unet``, which has no pretrained encoder).
            When they cannot be fetched: warn once and keep the random initialisation.
        strict_pretrained: raise instead of warning when pretrained weights cannot be fetched.
        **kwargs: passed to the model (``SEUNet``, ``ResNetUNetASPP`` or the smp class), e.g. ``base=16``,
            ``encoder_name="resnet18"``, ``decoder_channels=(...)``. smp models default to
            ``encoder_name="resnet34"`` and ``classes=1``.

    Returns:
        A :class:`SegmentationNet` in training mode; ``.net`` is the wrapped network.

    Raises:
        ValueError: unknown name, ``pretrained=True`` for ``se_unet``, or ``encoder_weights`` in kwargs.
        PretrainedWeightsError: weights unavailable with ``strict_pretrained=True``.
    """
    key = name.strip().lower()
    if key == "se_unet":
        if pretrained:
            raise ValueError("se_unet is trained from scratch and has no ImageNet weights: use pretrained=False, "
                             "or a model with a ResNet encoder (resnet_unet_aspp, smp_unet, ...)")
        net = SEUNet(**kwargs)
        return SegmentationNet(net, key, kwargs, size_multiple=net.size_multiple)
    _reject_weights_kwarg(key, kwargs)
    encoder = kwargs.get("encoder_name", DEFAULT_ENCODER)
    if key == "resnet_unet_aspp":
        def build(weights: Any) -> nn.Module:
            return ResNetUNetASPP(encoder_weights=weights, **kwargs)
        multiple = 1  # pads internally
    elif key.startswith("smp_"):
        import segmentation_models_pytorch as smp

        arch = key.removeprefix("smp_")
        if arch not in smp.MODEL_ARCHITECTURES_MAPPING:
            raise ValueError(f"unknown model {name!r}: choose one of {available_models()}")
        smp_kwargs = {"encoder_name": DEFAULT_ENCODER, "classes": 1, **kwargs}

        def build(weights: Any) -> nn.Module:
            return smp.create_model(arch, encoder_weights=weights, **smp_kwargs)
        multiple = SMP_SIZE_MULTIPLE
    else:
        raise ValueError(f"unknown model {name!r}: choose one of {available_models()}")
    if pretrained:
        net, loaded = _build_with_weights(build, encoder, strict=strict_pretrained)
    else:
        net, loaded = build(None), False
    return SegmentationNet(net, key, kwargs, size_multiple=multiple, pretrained=loaded)


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
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


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (safely: ``torch.load(weights_only=True)``).

    Returns:
        The checkpoint dict (``format``, ``model_name``, ``model_kwargs``, ``state_dict`` and the extras).

    Raises:
        CheckpointError: the file is missing, not a PyTorch file, truncated, holds unsafe objects, or is not
            in the course's checkpoint format. The message names the file and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: check the path, or train a model first "
                              "(python -m helpers.train) to create it")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"checkpoint {path} could not be read: it is not a PyTorch file (torch.save "
                              "writes a zip archive). It is damaged or something else: re-train or copy it again.")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        detail = str(err).split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {path} holds Python objects that safe loading refuses ({detail}). "
                              "Only open files you trust with torch.load(path, weights_only=False), then "
                              "re-save them with helpers.models.save_checkpoint.") from err
    except Exception as err:  # torch raises RuntimeError, EOFError, zipfile errors... for damaged files
        raise CheckpointError(f"checkpoint {path} could not be read as a PyTorch file "
                              f"({type(err).__name__}: {err}). It is damaged or not a checkpoint: "
                              "re-train or copy it again.") from err
    return _validate_checkpoint(checkpoint, f"checkpoint {path}")


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
