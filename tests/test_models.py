"""Models: shapes at any size, gradients, SE maths, checkpoints, pretrained fallback (tiny widths, CPU)."""
from __future__ import annotations

import math
import warnings

import pytest
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F

from helpers import runfolder
from helpers.models import (
    ASPP,
    MODEL_NAMES,
    CheckpointError,
    PretrainedWeightsError,
    PretrainedWeightsWarning,
    ResNetUNetASPP,
    SEBlock,
    SEUNet,
    build_model,
    count_parameters,
    factory,
    load_checkpoint,
    load_model,
    pretrained,
    save_checkpoint,
)

#: The smallest widths each model allows, so every test runs in a fraction of a second.
TINY = {
    "se_unet": dict(base=4, depth=2, reduction=2),
    "resnet_unet_aspp": dict(encoder_name="mobilenet_v2", decoder_channels=(16, 16, 8, 8, 4), aspp_channels=8),
    "smp_unet": dict(encoder_name="mobilenet_v2", decoder_channels=(16, 16, 8, 8, 4)),
    "smp_deeplabv3": dict(encoder_name="mobilenet_v2", decoder_channels=16),
    "smp_deeplabv3plus": dict(encoder_name="mobilenet_v2", decoder_channels=16),
}


def tiny(name: str, **extra) -> factory.SegmentationNet:
    torch.manual_seed(0)
    return build_model(name, **TINY[name], **extra)


def test_tiny_covers_every_course_model():
    assert set(TINY) == set(MODEL_NAMES)


@pytest.mark.parametrize("size", [(64, 64), (70, 90), (33, 47)])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_logits_have_the_input_size(name, size):
    model = tiny(name).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 1, *size)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_any_smp_architecture_by_name():
    model = build_model("smp_fpn", encoder_name="mobilenet_v2", decoder_pyramid_channels=16,
                        decoder_segmentation_channels=32).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 50, 70)).shape == (1, 1, 50, 70)
    assert isinstance(model.net, smp.FPN)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_gradient_reaches_every_parameter(name):
    model = tiny(name).train()
    x, target = torch.randn(2, 3, 64, 64), (torch.rand(2, 1, 64, 64) > 0.5).float()
    F.binary_cross_entropy_with_logits(model(x), target).backward()
    params = dict(model.named_parameters())
    no_grad = [n for n, p in params.items() if p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"
    zero = [n for n, p in params.items() if p.grad.abs().sum() == 0]
    assert len(zero) == 0, f"parameters with an all-zero gradient: {zero[:5]}"


def test_se_block_matches_hand_computation():
    # 2 channels, reduction 2 -> 1 hidden unit. u: channel 0 all 1, channel 1 all 3 -> z = (1, 3).
    block = SEBlock(2, reduction=2)
    with torch.no_grad():
        block.fc1.weight.copy_(torch.tensor([[0.5, 0.5]]))
        block.fc1.bias.copy_(torch.tensor([-1.0]))
        block.fc2.weight.copy_(torch.tensor([[2.0], [-1.0]]))
        block.fc2.bias.copy_(torch.tensor([0.0, 1.0]))
    u = torch.stack([torch.ones(3, 4), 3 * torch.ones(3, 4)])[None]
    # hidden = relu(0.5*1 + 0.5*3 - 1) = 1; s = sigmoid(2*1 + 0, -1*1 + 1) = (sigmoid(2), 0.5)
    s0 = 1 / (1 + math.exp(-2.0))
    out = block(u)
    assert torch.allclose(block.last_weights, torch.tensor([[s0, 0.5]]))
    assert torch.allclose(out[0, 0], torch.full((3, 4), s0))
    assert torch.allclose(out[0, 1], torch.full((3, 4), 1.5))
    # negative pre-activation: ReLU zeroes the hidden unit, so s = sigmoid(b2)
    with torch.no_grad():
        block.fc1.bias.fill_(-3.0)
    block(u)
    assert torch.allclose(block.last_weights, torch.tensor([[0.5, 1 / (1 + math.exp(-1.0))]]))


def test_se_block_parameter_count_and_reduction_floor():
    assert count_parameters(SEBlock(64, reduction=16)) == 64 * 4 + 4 + 4 * 64 + 64
    assert SEBlock(4, reduction=16).fc1.out_features == 1
    with pytest.raises(ValueError, match="expects"):
        SEBlock(8)(torch.randn(1, 4, 5, 5))


def test_se_unet_rejects_indivisible_sizes_with_nearest_valid_ones():
    model = SEUNet(base=4, depth=2)
    with pytest.raises(ValueError) as err:
        model(torch.randn(1, 3, 30, 32))
    msg = str(err.value)
    assert "30x32" in msg and "divisible by 4" in msg and "28x32" in msg and "32x32" in msg
    assert model(torch.randn(1, 3, 28, 32)).shape == (1, 1, 28, 32)


def test_aspp_branches_and_parameter_count():
    aspp = ASPP(8, 4, rates=(1, 2))
    assert len(aspp.branches) == 4  # 1x1, two dilated 3x3, image pooling
    assert aspp.eval()(torch.randn(1, 8, 5, 7)).shape == (1, 4, 5, 7)
    conv_bn = lambda k: k * k * 8 * 4 + 2 * 4  # noqa: E731  conv without bias + BN (weight, bias)
    expected = conv_bn(1) + 2 * conv_bn(3) + (8 * 4 + 4) + (4 * 4 * 4 + 2 * 4)
    assert count_parameters(aspp) == expected


def test_aspp_trains_with_a_single_image_batch():
    """The last batch of an epoch can hold one image: the image-level branch (a 1x1 map) must still train."""
    model = ResNetUNetASPP(encoder_name="resnet18", decoder_channels=(8, 8, 8, 8, 8), aspp_channels=8).train()
    out = model(torch.randn(1, 3, 64, 64))  # 1/32 map is 2x2; the pooled branch 1x1
    out.sum().backward()
    assert out.shape == (1, 1, 64, 64) and torch.isfinite(out).all()
    pooled = [m for m in model.modules() if type(m).__name__ == "ASPPPooling"]
    assert len(pooled) == 1 and pooled[0].conv.weight.grad is not None
    assert torch.isfinite(pooled[0].conv.weight.grad).all() and pooled[0].conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_checkpoint_round_trip_gives_identical_outputs(name, tmp_path):
    model = tiny(name)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(2, 3, 64, 64)
    F.binary_cross_entropy_with_logits(model(x), torch.ones(2, 1, 64, 64)).backward()
    opt.step()  # change weights and batch-norm statistics away from their initial values
    model.eval()
    with torch.no_grad():
        expected = model(x)
    path = save_checkpoint(tmp_path / "run" / runfolder.BEST_FILE, model, epoch=3, optimizer=opt.state_dict(),
                           config={"lr": 1e-3, "size": [64, 64]})
    assert [p.name for p in path.parent.iterdir()] == [runfolder.BEST_FILE]  # no temporary file left behind
    loaded = load_model(path, expected_name=name)
    assert not loaded.training and loaded.model_name == name and loaded.model_kwargs == TINY[name]
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)
    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 3 and ckpt["config"]["size"] == [64, 64] and "state" in ckpt["optimizer"]
    assert torch.equal(load_model(ckpt)(x), expected)


def test_eval_mode_is_deterministic_and_dropout_only_acts_in_training():
    model = build_model("se_unet", base=4, depth=2, dropout=0.5)
    x = torch.randn(1, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        assert not torch.equal(model(x), model(x))


def test_load_model_rejects_another_architecture(tmp_path):
    path = save_checkpoint(tmp_path / "se.pt", tiny("se_unet"))
    with pytest.raises(CheckpointError, match="holds a 'se_unet' model, not 'smp_unet'"):
        load_model(path, expected_name="smp_unet")
    ckpt = load_checkpoint(path)
    ckpt["model_kwargs"] = {**ckpt["model_kwargs"], "base": 8}
    with pytest.raises(CheckpointError, match="weights do not fit") as err:
        load_model(ckpt)
    assert "se_unet" in str(err.value)
    other = load_checkpoint(save_checkpoint(tmp_path / "unet.pt", tiny("smp_unet")))
    other["model_name"] = "smp_deeplabv3"
    with pytest.raises(CheckpointError, match="smp_deeplabv3"):
        load_model(other)


def test_load_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="missing.pt does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.pt could not be read"):
        load_checkpoint(junk)
    bare = tmp_path / "bare.pt"
    torch.save(tiny("se_unet").state_dict(), bare)
    with pytest.raises(CheckpointError, match="bare state_dict"):
        load_checkpoint(bare)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"format": "skinseg-checkpoint/1", "when": __import__("datetime").date(2024, 1, 1)}, unsafe)
    with pytest.raises(CheckpointError, match="unsafe.pt holds Python objects.*datetime"):
        load_checkpoint(unsafe)
    old = tmp_path / "old.pt"
    torch.save({"format": "skinseg-checkpoint/0"}, old)
    with pytest.raises(CheckpointError, match="skinseg-checkpoint/0"):
        load_model(old)
    assert issubclass(CheckpointError, ValueError)


def test_save_checkpoint_refuses_unsafe_extras_and_foreign_models(tmp_path):
    model = tiny("se_unet")
    with pytest.raises(TypeError, match=r"extra\['config'\]\['root'\] is a PosixPath"):
        save_checkpoint(tmp_path / "a.pt", model, config={"root": tmp_path})
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path / "a.pt", model, state_dict={})
    with pytest.raises(ValueError, match="build_model"):
        save_checkpoint(tmp_path / "a.pt", SEUNet(base=4, depth=2))
    assert not list(tmp_path.iterdir())


def test_save_checkpoint_is_atomic(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / runfolder.LAST_FILE, tiny("se_unet"), epoch=1)

    def crash(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"half a file")
        raise KeyboardInterrupt  # e.g. the user stops training while the file is written

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, tiny("se_unet"), epoch=2)
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [runfolder.LAST_FILE]


def test_build_model_argument_errors():
    with pytest.raises(ValueError, match="unknown model 'smp_nope'"):
        build_model("smp_nope")
    with pytest.raises(ValueError, match="unknown model"):
        build_model("unet")
    with pytest.raises(ValueError, match="pretrained=False"):
        build_model("se_unet", pretrained=True)
    with pytest.raises(ValueError, match="instead of encoder_weights"):
        build_model("smp_unet", encoder_weights="imagenet")


@pytest.fixture
def offline(monkeypatch):
    """The Hub answers but every download fails; the once-per-process memory starts empty."""
    calls = []

    def failing_download(repo_id, filename, **kwargs):
        calls.append(filename)
        raise OSError(f"cannot download {repo_id}/{filename}")

    monkeypatch.setattr(pretrained, "_FETCH_FAILED", set())
    monkeypatch.setattr(pretrained, "hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(smp.encoders, "hf_hub_download", failing_download)
    return calls


@pytest.mark.parametrize("name", ["smp_unet", "resnet_unet_aspp"])
def test_pretrained_falls_back_to_random_init_with_one_warning(name, offline):
    with pytest.warns(PretrainedWeightsWarning, match="'mobilenet_v2' could not be fetched.*random initialisation"):
        model = tiny(name, pretrained=True)
    assert offline and not model.pretrained
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 1, 64, 64)
    n_calls = len(offline)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second warning would raise here
        tiny(name, pretrained=True)
    assert len(offline) == n_calls  # not retried either


def test_strict_pretrained_raises(offline):
    with pytest.raises(PretrainedWeightsError, match="strict_pretrained"):
        tiny("smp_deeplabv3", pretrained=True, strict_pretrained=True)


def test_unreachable_hub_is_not_contacted(monkeypatch):
    def must_not_download(*args, **kwargs):
        raise AssertionError("download attempted although the Hub is unreachable")

    monkeypatch.setattr(pretrained, "_FETCH_FAILED", set())
    monkeypatch.setattr(pretrained, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(smp.encoders, "hf_hub_download", must_not_download)
    with pytest.warns(PretrainedWeightsWarning, match="cannot be reached"):
        assert not tiny("smp_unet", pretrained=True).pretrained


def test_pretrained_weights_are_loaded_when_available(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    reference = smp.encoders.get_encoder(TINY["smp_unet"]["encoder_name"], weights=None)
    weights_file = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, weights_file)
    monkeypatch.setattr(pretrained, "hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(smp.encoders, "hf_hub_download", lambda repo_id, filename, **kw: str(weights_file))
    model = tiny("smp_unet", pretrained=True)
    assert model.pretrained
    loaded = model.net.encoder.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in reference.state_dict().items())


def test_cached_weights_load_without_the_network(tmp_path, monkeypatch):
    """A weights file already in the Hugging Face cache is used even when the Hub cannot be reached."""
    import huggingface_hub.constants
    from safetensors.torch import save_file

    encoder = TINY["smp_unet"]["encoder_name"]
    settings = smp.encoders.encoders[encoder]["pretrained_settings"]["imagenet"]
    repo_dir = tmp_path / f"models--{settings['repo_id'].replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / settings["revision"]
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    torch.manual_seed(3)
    reference = smp.encoders.get_encoder(encoder, weights=None)
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, snapshot / "model.safetensors")
    (snapshot / "config.json").write_text("{}")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(pretrained, "_FETCH_FAILED", set())

    def no_network(timeout=3.0):
        raise AssertionError("the Hub was probed although the weights are cached")

    monkeypatch.setattr(pretrained, "hub_reachable", no_network)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PretrainedWeightsWarning)
        model = tiny("smp_unet", pretrained=True)
    assert model.pretrained
    loaded = model.net.encoder.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in reference.state_dict().items())
