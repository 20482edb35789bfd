"""``build_model(..., pretrained=True)`` through the real loading code, offline (issue 19, item 3).

Nothing here mocks segmentation-models-pytorch, huggingface_hub or :mod:`helpers.models.pretrained`. Each
test lays out a tiny Hugging Face Hub cache in ``tmp_path``, exactly as ``huggingface_hub`` writes one, for
the revision smp pins, and lets ``smp.encoders.get_encoder`` -> ``hf_hub_download`` -> ``safetensors`` find
it. Where the weights come from (checked against smp 0.6): ``smp_<arch>`` and ``resnet_unet_aspp`` both build
their encoder with ``smp.encoders.get_encoder(name, weights="imagenet")``, which downloads ``config.json``
and ``model.safetensors`` of ``smp-hub/<encoder>.imagenet``; no torchvision / torch.hub path is involved
(``TORCH_HOME`` is pointed into ``tmp_path`` anyway, so no test could read or fill the real one). smp 0.5
differed: after a failed Hub download it tried torch.hub's original URL (download.pytorch.org, through
``$TORCH_HOME/hub/checkpoints``); under smp 0.5 the network guard below would report that attempt.

The weights are seeded random tensors with the exact keys, shapes and dtypes of the encoder: they exist
nowhere but in the test's cache, so an encoder equal to them proves they were read from that file.
``mobilenet_v2`` is the smallest smp encoder with ImageNet weights (2.3 M values, a 9 MB file, written
once per module); ``resnet18`` is used only where no file is needed (a second encoder for the warnings).

No network: every socket connection and host-name lookup raises at once and is recorded, and each test
ends by checking that nothing was attempted (except the one test that shows :func:`hub_reachable` failing
fast). So no test can pass by waiting for huggingface.co to time out.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import huggingface_hub
import huggingface_hub.constants as hf_constants
import pytest
import segmentation_models_pytorch as smp
import torch
from safetensors.torch import load_file, save

from helpers.models import PretrainedWeightsError, PretrainedWeightsWarning, build_model, pretrained

try:
    from huggingface_hub.utils import _detect_agent as agent_registry
except ImportError:  # huggingface_hub < 2: no agent registry
    agent_registry = None

ENCODER = "mobilenet_v2"
OTHER_ENCODER = "resnet18"
#: Tiny decoders, so each build takes a fraction of a second.
DECODERS: dict[str, dict[str, Any]] = {
    "smp_unet": dict(decoder_channels=(16, 16, 8, 8, 4)),
    "smp_deeplabv3plus": dict(decoder_channels=16),
    "resnet_unet_aspp": dict(decoder_channels=(16, 16, 8, 8, 4), aspp_channels=8),
}
#: What smp-hub's config.json files hold (read by smp's get_preprocessing_params).
CONFIG = {"input_space": "RGB", "input_range": [0, 1], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


# ---------------------------------------------------------------------------------------------- the cache
def seeded_encoder_weights(encoder: str, seed: int) -> dict[str, torch.Tensor]:
    """Random tensors with the exact keys, shapes and dtypes of smp's ``encoder`` (``load_state_dict`` is strict).

    Batch-norm variances are kept positive, as in real weights.
    """
    template = smp.encoders.get_encoder(encoder, weights=None).state_dict()
    gen = torch.Generator().manual_seed(seed)
    weights = {}
    for key, tensor in template.items():
        if not tensor.is_floating_point():  # num_batches_tracked
            weights[key] = torch.full_like(tensor, seed)
        elif key.endswith("running_var"):
            weights[key] = torch.rand(tensor.shape, generator=gen) + 0.5
        else:
            weights[key] = torch.randn(tensor.shape, generator=gen) * 0.1
    return weights


def hub_settings(encoder: str) -> dict[str, str]:
    """smp's pinned Hub location of ``encoder``'s ImageNet weights: ``repo_id`` and ``revision`` (a commit)."""
    return smp.encoders.encoders[encoder]["pretrained_settings"]["imagenet"]


def blob_name(name: str, data: bytes) -> str:
    """The name huggingface_hub gives a file's blob: its etag, sha256 for LFS files, the git blob sha1 otherwise."""
    if name.endswith(".safetensors"):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def write_hub_snapshot(cache: Path, repo_id: str, revision: str, files: dict[str, bytes]) -> Path:
    """Lay ``files`` out as ``hf_hub_download(repo_id, file, revision=revision)`` leaves them; returns the snapshot.

    ``<cache>/models--<org>--<name>/``: ``blobs/<etag>`` holds each file and ``snapshots/<revision>/<file>`` is a
    relative link to it (a copy where links are not allowed, as huggingface_hub does too). ``refs/`` stays
    empty: huggingface_hub writes ``refs/<branch>`` only when asked for a branch or tag, never for a commit
    such as the one smp pins.
    """
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    for folder in (repo / "blobs", repo / "refs", snapshot):
        folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = repo / "blobs" / blob_name(name, data)
        blob.write_bytes(data)
        try:
            os.symlink(os.path.relpath(blob, snapshot), snapshot / name)
        except OSError:
            shutil.copyfile(blob, snapshot / name)
    return snapshot


def write_encoder_weights(cache: Path, encoder: str, seed: int) -> Path:
    """Seeded weights of ``encoder`` where smp will look for its ImageNet weights; returns the weights file."""
    settings = hub_settings(encoder)
    weights = save(seeded_encoder_weights(encoder, seed))
    files = {"config.json": json.dumps(CONFIG).encode(), "model.safetensors": weights}
    return write_hub_snapshot(cache, settings["repo_id"], settings["revision"], files) / "model.safetensors"


@pytest.fixture(scope="module")
def weights_cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A Hub cache holding seeded ``mobilenet_v2`` ImageNet weights (written once): ``(cache, weights file)``."""
    cache = tmp_path_factory.mktemp("hf_hub_cache")
    return cache, write_encoder_weights(cache, ENCODER, seed=19)


# ------------------------------------------------------------------------------------- no network, no ~
@pytest.fixture(autouse=True)
def network_attempts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every host-name lookup or socket connection raises ``OSError`` at once; the attempts are recorded.

    The test fails at teardown if anything was attempted, unless it cleared the list after checking it.
    """
    attempts: list[Any] = []

    def refuse(what: str) -> Callable[..., Any]:
        def refused(*args: Any, **kwargs: Any) -> Any:
            target = args[1] if what == "connect" else args[:2]
            attempts.append(target)
            raise OSError(f"test_pretrained_offline: no network ({what} {target!r})")
        return refused

    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect"))
    yield attempts
    assert not attempts, f"the network was tried: {attempts}"


@pytest.fixture(autouse=True)
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``hub(cache, offline=True)`` points huggingface_hub at ``cache``; starts on an empty one, offline.

    huggingface_hub reads ``HF_HOME``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` into ``huggingface_hub.constants``
    once, when it is first imported (here: by smp, long before this fixture), so setting the environment alone
    would change nothing. We set both: the environment variables (for anything that reads them later, and for
    child processes) and the constants that the code reads at call time (``constants.HF_HUB_CACHE`` in
    ``hf_hub_download`` / ``try_to_load_from_cache``, ``constants.HF_HUB_OFFLINE`` in ``is_offline_mode()`` and
    :func:`helpers.models.pretrained.hub_reachable`). Chosen over a subprocess per test because a subprocess
    re-imports torch and smp (seconds each, on 2 cores), while here ``pytest.warns`` and the reset of
    ``_FETCH_FAILED`` act on the very module under test. It fails safe: should a later huggingface_hub read
    the cache location from elsewhere, the seeded weights (which exist only in ``tmp_path``) would not be
    found and the loading tests would fail; they cannot pass by accident, and the network guard above keeps
    a missed offline switch from reaching out.
    """
    def point(cache: Path, *, offline: bool = True) -> None:
        monkeypatch.setenv("HF_HUB_CACHE", str(cache))
        monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
        monkeypatch.setattr(hf_constants, "HUGGINGFACE_HUB_CACHE", str(cache))
        monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", offline)

    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setattr(hf_constants, "HF_HOME", str(home))
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(home / "token"))
    # huggingface_hub 2.x fetches an "agent registry" from the Hub once per process (cached in memory and in
    # HF_HOME) before its first request header, even for a cached file: start each test as a fresh process would.
    monkeypatch.setattr(hf_constants, "AGENT_HARNESSES_PATH", str(home / ".agent_harnesses.json"), raising=False)
    if agent_registry is not None:
        monkeypatch.setattr(agent_registry, "_registry", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)  # hub_reachable trusts a proxy without probing
    monkeypatch.setattr(pretrained, "_FETCH_FAILED", set())  # once-per-process memory: fresh for each test
    point(tmp_path / "empty_hub_cache")
    return point


# ------------------------------------------------------------------------------------------------ helpers
def build(name: str, encoder: str = ENCODER, **kwargs: Any) -> Any:
    """``build_model(name, encoder_name=encoder, pretrained=True, ...)`` with a tiny decoder."""
    return build_model(name, encoder_name=encoder, pretrained=True, **DECODERS[name], **kwargs)


def pretrained_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    """The messages of the :class:`PretrainedWeightsWarning` s in ``record``."""
    return [str(w.message) for w in record if issubclass(w.category, PretrainedWeightsWarning)]


def assert_encoder_is(model: Any, weights_file: Path) -> None:
    """Every tensor of the model's encoder equals the one in ``weights_file``."""
    expected = load_file(weights_file)
    state = model.net.encoder.state_dict()
    assert state.keys() == expected.keys()
    differing = [k for k, v in expected.items() if not torch.equal(state[k], v)]
    assert not differing, f"{len(differing)} encoder tensors differ from the cached file, e.g. {differing[:3]}"


def first_weight(model: Any) -> tuple[str, torch.Tensor]:
    """The name and value of the encoder's first parameter (the stem convolution)."""
    return next(iter(model.net.encoder.named_parameters()))


# ---------------------------------------------------------------------------------------------- the tests
def test_the_cache_layout_is_the_one_huggingface_hub_reads(weights_cache, hub):
    cache, weights_file = weights_cache
    assert not pretrained.weights_cached(ENCODER)  # the fixture starts on an empty cache
    hub(cache)
    assert pretrained.weights_cached(ENCODER)
    settings = hub_settings(ENCODER)
    path = huggingface_hub.hf_hub_download(settings["repo_id"], "model.safetensors", revision=settings["revision"])
    assert Path(path) == weights_file and Path(path).resolve().parent.name == "blobs"
    assert smp.encoders.get_preprocessing_params(ENCODER)["mean"] == CONFIG["mean"]  # config.json is read too


@pytest.mark.parametrize("name", list(DECODERS))
def test_pretrained_loads_the_cached_weights(name, weights_cache, hub):
    cache, weights_file = weights_cache
    hub(cache)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PretrainedWeightsWarning)
        model = build(name)
    assert model.pretrained is True
    key, value = first_weight(model)
    assert torch.equal(value, load_file(weights_file)[key])
    assert_encoder_is(model, weights_file)


@pytest.mark.parametrize("name", ["smp_unet", "resnet_unet_aspp"])
def test_missing_weights_warn_and_fall_back_to_random_init(name, weights_cache):
    _, weights_file = weights_cache  # never pointed at: the cache stays empty
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        model = build(name)
    [message] = pretrained_warnings(record)
    assert f"encoder {ENCODER!r} could not be fetched" in message
    assert "random initialisation" in message
    assert "HF_HUB_OFFLINE unset" in message and "pretrained=False" in message  # the fix
    assert "empty_hub_cache" in message  # where the weights would be cached: the real cache, not a guess
    assert model.pretrained is False
    key, value = first_weight(model)
    assert not torch.equal(value, load_file(weights_file)[key])


def test_the_warning_comes_once_per_encoder_and_process():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")  # so Python's own once-per-location filter cannot hide a second warning
        first = build("smp_unet")
        again = build("smp_unet")
        other_arch = build("resnet_unet_aspp")  # same encoder, another model: already warned
        other_encoder = build("smp_unet", encoder=OTHER_ENCODER)
    messages = pretrained_warnings(record)
    assert len(messages) == 2, messages
    assert repr(ENCODER) in messages[0] and repr(OTHER_ENCODER) in messages[1]
    assert not any(m.pretrained for m in (first, again, other_arch, other_encoder))
    assert pretrained._FETCH_FAILED == {ENCODER, OTHER_ENCODER}


def test_a_failed_encoder_is_not_retried_but_strict_retries(weights_cache, hub):
    cache, weights_file = weights_cache
    with pytest.warns(PretrainedWeightsWarning):
        assert build("smp_unet").pretrained is False
    hub(cache)  # the weights appear (say, downloaded by another process)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PretrainedWeightsWarning)
        assert build("smp_unet").pretrained is False  # remembered as failed: no second warning, no retry
        model = build("smp_unet", strict_pretrained=True)
    assert model.pretrained is True
    assert_encoder_is(model, weights_file)


def test_strict_pretrained_raises_without_weights():
    with pytest.raises(PretrainedWeightsError, match=rf"{ENCODER!r} could not be fetched.*strict_pretrained=True"):
        build("resnet_unet_aspp", strict_pretrained=True)
    assert not pretrained._FETCH_FAILED  # an error is not a warning: a later non-strict call still warns
    with pytest.warns(PretrainedWeightsWarning, match=repr(ENCODER)):
        build("resnet_unet_aspp")


def test_strict_pretrained_loads_cached_weights(weights_cache, hub):
    cache, weights_file = weights_cache
    hub(cache)
    model = build("resnet_unet_aspp", strict_pretrained=True)
    assert model.pretrained is True
    assert_encoder_is(model, weights_file)


def test_cached_weights_load_without_offline_mode_and_without_any_request(weights_cache, hub):
    cache, weights_file = weights_cache
    hub(cache, offline=False)  # HF_HUB_OFFLINE unset: weights_cached() must spare the probe and the Hub client
    with warnings.catch_warnings():
        warnings.simplefilter("error", PretrainedWeightsWarning)
        model = build("smp_unet")
    assert model.pretrained is True
    assert_encoder_is(model, weights_file)
    assert hf_constants.HF_HUB_OFFLINE is False  # offline mode only lasted while the cached weights loaded
    # ... and the network_attempts fixture checks that nothing tried the network


def test_an_unreachable_hub_fails_fast_without_offline_mode(hub, network_attempts, tmp_path):
    hub(tmp_path / "empty_hub_cache", offline=False)
    with pytest.warns(PretrainedWeightsWarning, match=rf"{ENCODER!r}.*cannot be reached.*with internet access"):
        model = build("smp_unet")
    assert model.pretrained is False
    host = hf_constants.ENDPOINT.split("//")[1].split("/")[0]
    assert network_attempts == [(host, 443)]  # exactly one probe of the Hub, no download tried after it
    network_attempts.clear()
