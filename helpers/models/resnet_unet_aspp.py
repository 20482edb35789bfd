"""A hybrid: ResNet encoder + DeepLabV3's ASPP at the bottleneck + a U-Net decoder (notebook 03).

Why each part:

* **ResNet encoder** (from segmentation-models-pytorch, optionally ImageNet-pretrained): five stages that
  halve the resolution each time, giving features at strides 2, 4, 8, 16 and 32.
* **ASPP at the bottleneck** (Chen et al., *Rethinking Atrous Convolution*, 2017): the deepest (1/32)
  features see the most of the image, but a lesion's extent varies a lot from image to image. Parallel
  3x3 convolutions with different dilation rates (plus a 1x1 branch and an image-level average) look at
  the same position with several fields of view at once, so the decoder receives multi-scale context
  at no loss of resolution and for few parameters.
* **U-Net skips** (Ronneberger et al., 2015): the bottleneck is 32x coarser than the image, so upsampling
  alone gives blobby borders. Concatenating the encoder's features at strides 16, 8, 4 and 2 while
  upsampling brings back the fine detail needed for sharp lesion borders.

Any input size works: the input is padded on the bottom and right (``replicate`` mode) to a multiple of 32,
and the logits are cropped back to the input size (:func:`pad_to_multiple`, :func:`crop_to`).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``x`` ``(N, C, H, W)`` on the bottom and right so H and W become multiples of ``multiple``.

    Replicate padding extends the border pixels (valid for any size, unlike reflect padding).

    Returns:
        The padded tensor and the original ``(H, W)`` to give to :func:`crop_to`.
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return x, (h, w)


def crop_to(y: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop ``y`` ``(N, C, H', W')`` to its top-left ``size = (H, W)`` (the inverse of :func:`pad_to_multiple`)."""
    h, w = size
    return y[..., :h, :w]


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1) -> nn.Sequential:
    """Convolution (no bias, 'same' padding for odd kernels) + BatchNorm + ReLU; keeps H and W."""
    padding = dilation * (kernel_size - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ASPPPooling(nn.Module):
    """Image-level branch of ASPP: global average, 1x1 conv + ReLU, upsampled back to the input size.

    It has no batch norm (unlike torchvision's): on a 1x1 map batch norm fails for a batch of one image in
    training mode, and one-image batches happen (the last batch of an epoch).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C_in, H, W)`` -> ``(N, C_out, H, W)``, constant over H and W."""
        y = self.relu(self.conv(self.pool(x)))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling, DeepLabV3 style.

    Five parallel branches on the same input: a 1x1 convolution, one 3x3 convolution per dilation rate in
    ``rates`` (a 3x3 kernel with rate r covers a (2r+1)x(2r+1) window with 9 taps), and the image-level
    average (:class:`ASPPPooling`). Their outputs are concatenated and projected back with a 1x1
    convolution + batch norm + ReLU + dropout.

    Args:
        in_channels: channels of the input features.
        out_channels: channels of every branch and of the output.
        rates: dilation rates of the 3x3 branches.
        dropout: dropout probability after the projection.

    Shape:
        ``(N, in_channels, H, W)`` -> ``(N, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int = 256, rates: Sequence[int] = (6, 12, 18),
                 dropout: float = 0.5) -> None:
        super().__init__()
        if any(r < 1 for r in rates):
            raise ValueError(f"ASPP dilation rates must be >= 1, got {tuple(rates)}")
        branches = [conv_bn_relu(in_channels, out_channels, kernel_size=1)]
        branches += [conv_bn_relu(in_channels, out_channels, kernel_size=3, dilation=r) for r in rates]
        branches.append(ASPPPooling(in_channels, out_channels))
        self.branches = nn.ModuleList(branches)
        self.project = nn.Sequential(conv_bn_relu(len(branches) * out_channels, out_channels, kernel_size=1),
                                     nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run every branch on ``x``, concatenate along channels, project."""
        return self.project(torch.cat([branch(x) for branch in self.branches], dim=1))


class DecoderBlock(nn.Module):
    """U-Net decoder step: 2x nearest upsampling, concatenation with the skip (if any), two conv-BN-ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(in_channels + skip_channels, out_channels)
        self.conv2 = conv_bn_relu(out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``(N, C, h, w)`` -> ``(N, out, 2h, 2w)``; ``skip`` must be ``(N, skip_channels, 2h, 2w)``."""
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class ResNetUNetASPP(nn.Module):
    """ResNet encoder -> ASPP on the 1/32 features -> U-Net decoder with skips -> logits at the input size.

    Args:
        encoder_name: an smp encoder with 5 stages (``resnet18``, ``resnet34``, ``resnet50``...).
        encoder_weights: None (random init) or the smp weights name (``"imagenet"``); use
            ``build_model("resnet_unet_aspp", pretrained=True)`` to get the offline fallback.
        decoder_channels: output channels of the five decoder blocks (strides 16, 8, 4, 2, 1).
        aspp_channels: channels of every ASPP branch and of its output.
        aspp_rates: dilation rates of the ASPP's 3x3 branches. DeepLabV3's (6, 12, 18) on a 33x33 map (513 px
            at stride 16) give windows of about 0.4, 0.75 and 1.1 times the map. Here a 256-px image gives an
            8x8 map at stride 32, where rates 6 and above see mostly zero padding; (1, 2, 4) keeps DeepLabV3's
            proportions (windows of 3, 5 and 9 cells).
        aspp_dropout: dropout after the ASPP projection.
        in_channels: image channels.
        classes: output channels (1 for a lesion mask).

    Shape:
        ``(N, in_channels, H, W)`` -> ``(N, classes, H, W)`` logits, for any H, W >= 1 (the input is padded
        to a multiple of 32 with replicate padding and the output cropped back).

    Raises:
        ValueError: ``decoder_channels`` does not have 5 entries.
    """

    size_multiple = 32

    def __init__(self, encoder_name: str = "resnet34", encoder_weights: str | None = None,
                 decoder_channels: Sequence[int] = (256, 128, 64, 32, 16), aspp_channels: int = 256,
                 aspp_rates: Sequence[int] = (1, 2, 4), aspp_dropout: float = 0.5, in_channels: int = 3,
                 classes: int = 1) -> None:
        super().__init__()
        from segmentation_models_pytorch.encoders import get_encoder

        if len(decoder_channels) != 5:
            raise ValueError(f"decoder_channels needs 5 entries (strides 16, 8, 4, 2, 1), got {decoder_channels}")
        self.encoder = get_encoder(encoder_name, in_channels=in_channels, depth=5, weights=encoder_weights)
        enc = list(self.encoder.out_channels)            # e.g. resnet34: [3, 64, 64, 128, 256, 512]
        self.aspp = ASPP(enc[-1], aspp_channels, rates=aspp_rates, dropout=aspp_dropout)
        skip_channels = [enc[4], enc[3], enc[2], enc[1], 0]  # strides 16, 8, 4, 2, none at full resolution
        in_chs = [aspp_channels, *decoder_channels[:-1]]
        self.decoder = nn.ModuleList(
            [DecoderBlock(i, s, o) for i, s, o in zip(in_chs, skip_channels, decoder_channels)])
        self.head = nn.Conv2d(decoder_channels[-1], classes, kernel_size=3, padding=1)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's six feature maps (strides 1, 2, 4, 8, 16, 32); H and W must be multiples of 32."""
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad to a multiple of 32, encode, ASPP, decode with skips, crop the logits back to the input size."""
        x, size = pad_to_multiple(x, self.size_multiple)
        features = self.encode(x)
        y = self.aspp(features[-1])
        skips = [features[4], features[3], features[2], features[1], None]
        for block, skip in zip(self.decoder, skips):
            y = block(y, skip)
        return crop_to(self.head(y), size)
