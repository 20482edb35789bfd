"""ImageNet encoder weights from the Hugging Face Hub, with an offline fallback (notebook 03).

:func:`helpers.models.build_model` with ``pretrained=True`` asks segmentation-models-pytorch for the
encoder's ImageNet weights through :func:`build_with_weights`: a weights file already in the local cache
(``~/.cache/huggingface/hub``, or wherever ``HF_HOME``/``HF_HUB_CACHE`` point) loads without any network
access; otherwise the Hub must answer within a few seconds (:func:`hub_reachable`), so an offline machine
fails fast instead of retrying. When the weights cannot be fetched the model keeps its random
initialisation and a :class:`PretrainedWeightsWarning` says so, once per encoder and process;
``strict=True`` raises :class:`PretrainedWeightsError` instead.
"""
from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
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


def _fix_hint() -> str:
    """How to get the weights, for the warning: the cache they land in, and that offline mode must be off.

    Both come from ``huggingface_hub.constants`` (``HF_HOME``/``HF_HUB_CACHE`` move the cache away from
    ``~/.cache/huggingface``; with ``HF_HUB_OFFLINE=1`` no download is even tried).
    """
    from huggingface_hub import constants

    how = "with HF_HUB_OFFLINE unset and internet access" if constants.HF_HUB_OFFLINE else "with internet access"
    return (f"Fix: run once {how} (the weights are then cached in {constants.HF_HUB_CACHE}), "
            "or pass pretrained=False to train from scratch on purpose.")


@contextmanager
def _hub_offline() -> Iterator[None]:
    """huggingface_hub in offline mode while the block runs (``constants.HF_HUB_OFFLINE``, read at each call).

    For weights already cached at smp's pinned commit: ``hf_hub_download`` returns them without a request, but
    huggingface_hub 2.x still contacts the Hub once per process first (the agent registry for its User-Agent
    header, a 3-s timeout), so an offline machine would wait and try the network although nothing is missing.
    Process-wide: a download in another thread during the block fails as offline.
    """
    from huggingface_hub import constants

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


def build_with_weights(build: Callable[[Any], nn.Module], encoder_name: str, *, strict: bool
                        ) -> tuple[nn.Module, bool]:
    """Call ``build(weights)`` with ImageNet weights, falling back to ``build(None)`` when they cannot be fetched.

    Weights already in the cache (:func:`weights_cached`) are loaded with huggingface_hub offline, so without
    any request; otherwise :func:`hub_reachable` must say yes before the download is tried.

    Returns:
        The model and whether the pretrained weights were loaded.

    Raises:
        PretrainedWeightsError: the weights could not be fetched and ``strict`` is True.
    """
    if encoder_name in _FETCH_FAILED and not strict:
        return build(None), False  # already warned in this process; do not wait for the network again
    weights: Any = True if encoder_name.startswith("tu-") else "imagenet"
    cached = weights_cached(encoder_name)
    if not cached and not hub_reachable():
        from huggingface_hub import constants

        reason = f"the Hugging Face Hub ({constants.ENDPOINT}) cannot be reached"
    else:
        try:
            with _hub_offline() if cached else nullcontext():  # cached: no request at all
                return build(weights), True
        except _fetch_errors() as err:
            reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no details'}"
    message = (f"ImageNet weights for encoder {encoder_name!r} could not be fetched ({reason}). "
               f"The model uses random initialisation instead: expect slower training and lower scores. {_fix_hint()}")
    if strict:
        raise PretrainedWeightsError(message + " (strict_pretrained=True turns this into an error)")
    _FETCH_FAILED.add(encoder_name)
    warnings.warn(message, PretrainedWeightsWarning, stacklevel=3)
    return build(None), False
