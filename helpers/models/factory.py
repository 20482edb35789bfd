"""One door to every model of the course: :func:`build_model` by name, and :func:`count_parameters` (notebook 02).

Every model :func:`build_model` returns is a :class:`SegmentationNet`: it wraps the network (``.net``),
remembers how it was built (``.model_name``, ``.model_kwargs``) so checkpoints can rebuild it
(:mod:`helpers.models.checkpoint`), and pads the input to the multiple of 2**k the network needs, then crops
the logits back. So for every name: ``(N, 3, H, W)`` float -> ``(N, 1, H, W)`` logits, for any H and W.

Names: ``se_unet`` (:class:`~helpers.models.se_unet.SEUNet`, notebook 02), ``resnet_unet_aspp``
(:class:`~helpers.models.resnet_unet_aspp.ResNetUNetASPP`, notebook 03), and ``smp_<arch>`` for any
architecture of segmentation-models-pytorch (``smp_unet``, ``smp_deeplabv3``, ``smp_deeplabv3plus``,
``smp_fpn``, ...), built by ``smp.create_model`` with a ``resnet34`` encoder unless ``encoder_name`` says otherwise.

``pretrained=True`` asks smp for the encoder's ImageNet weights (see :mod:`helpers.models.pretrained` for
the download, the cache and the offline fallback).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from helpers.models.pretrained import build_with_weights
from helpers.models.resnet_unet_aspp import ResNetUNetASPP, crop_to, pad_to_multiple
from helpers.models.se_unet import SEUNet

#: The five models the course compares; any other ``smp_<arch>`` also works (see :func:`available_models`).
MODEL_NAMES: tuple[str, ...] = ("se_unet", "resnet_unet_aspp", "smp_unet", "smp_deeplabv3", "smp_deeplabv3plus")
DEFAULT_ENCODER = "resnet34"
#: smp models need H and W divisible by their output stride (at most 32): pad to this multiple.
SMP_SIZE_MULTIPLE = 32
#: The largest input size the course's commands take, for training (``TrainConfig.img_size``) and prediction
#: (``--img-size``): a 2048 px image takes 12 MiB in the preprocessing cache (ISIC 2018's 2594 training images:
#: 31 GiB) and one image's activations already need gigabytes; beyond it numpy or cv2 end in a memory error.
#: The course trains at 64 to 512 px.
MAX_IMG_SIZE = 2048
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
        net, loaded = build_with_weights(build, encoder, strict=strict_pretrained)
    else:
        net, loaded = build(None), False
    return SegmentationNet(net, key, kwargs, size_multiple=multiple, pretrained=loaded)


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
