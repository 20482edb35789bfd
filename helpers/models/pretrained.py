"""ImageNet encoder weights from the Hugging Face Hub, with an offline fallback (notebook 03).

:func:`helpers.models.build_model` with ``pretrained=True`` asks segmentation-models-pytorch for the
encoder's ImageNet weights through :func:`build_with_weights`: a weights file already in the local cache
(``~/.cache/huggingface``) loads without any network access; otherwise the Hub must answer within a few
seconds (:func:`hub_reachable`), so an offline machine fails fast instead of retrying. When the weights
cannot be fetched the model keeps its random initialisation and a :class:`PretrainedWeightsWarning` says
so, once per encoder and process; ``strict=True`` raises :class:`PretrainedWeightsError` instead.
"""
from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from torch import nn

#: Encoders whose ImageNet weights could not be fetched in this process: warned once, not retried.
_FETCH_FAILED: set[str] = set()


class PretrainedWeightsWarning(UserWarning):
    """ImageNet weights could not be fetched: the model continues with random initialisation."""


class PretrainedWeightsError(RuntimeError):
    """ImageNet weights could not be fetched and ``strict_pretrained=True`` was asked for."""


def _fetch_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean 'the weights could not be downloaded' (network, Hub, missing cache)."""
    errors: list[type[BaseException]] = [OSError, TimeoutError, ConnectionError]
    try:
        import httpx
        errors.append(httpx.HTTPError)
    except ImportError:  # pragma: no cover - httpx comes with huggingface_hub
        pass
    return tuple(errors)


def hub_reachable(timeout: float = 3.0) -> bool:
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


def weights_cached(encoder_name: str) -> bool:
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


def build_with_weights(build: Callable[[Any], nn.Module], encoder_name: str, *, strict: bool
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
    if not weights_cached(encoder_name) and not hub_reachable():
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
