"""A U-Net with squeeze-and-excitation (SE) blocks, trained from scratch (built step by step in notebook 02).

Pieces, from small to large:

* :class:`SEBlock` recalibrates the channels of a feature map ``u`` of shape ``(N, C, H, W)``
  (Hu et al., *Squeeze-and-Excitation Networks*, CVPR 2018):

  - squeeze: ``z_c = 1/(H*W) * sum_ij u_c(i, j)`` (global average pool, one number per channel);
  - excitation: ``s = sigmoid(W2 @ relu(W1 @ z))`` with ``W1: C -> C/r`` and ``W2: C/r -> C``;
  - scale: ``x~_c = s_c * u_c``.

* :class:`ConvBlock`: two 3x3 convolutions (each + batch norm + ReLU), optional dropout, then an SE block.
* :class:`SEUNet`: ``depth`` ConvBlocks with 2x2 max pooling on the way down, a bottleneck ConvBlock,
  and on the way up a 2x2 transposed convolution, concatenation with the skip of the same resolution and a
  ConvBlock; a 1x1 convolution gives the logits.

``SEUNet`` itself needs input sides divisible by ``2**depth`` (it raises ``ValueError`` otherwise);
``helpers.models.build_model("se_unet")`` wraps it so that any size works (pad, predict, crop).
"""
from __future__ import annotations

import torch
from torch import nn

#: Initial bias of the SE hidden layer: keeps every hidden unit active (ReLU > 0) at the start.
SE_HIDDEN_BIAS_INIT = 1.0


class SEBlock(nn.Module):
    """Squeeze-and-excitation: rescale each channel by a weight in (0, 1) computed from the whole image.

    Args:
        channels: C, the number of channels of the input.
        reduction: r; the hidden layer has ``max(1, C // r)`` units.

    Shape:
        input ``(N, C, H, W)`` -> output ``(N, C, H, W)``.

    Initialisation: ``fc1``'s bias starts at :data:`SE_HIDDEN_BIAS_INIT` (+1). After batch norm + ReLU every
    channel's mean is about 0.4 at initialisation, so ``W1 z`` is nearly the same for every image; with a zero
    bias about half the hidden units would start negative, i.e. dead after the ReLU, and never learn.

    Attributes:
        last_weights: the excitation weights ``s`` of the latest forward pass, ``(N, C)`` in (0, 1),
            detached (None before the first call). Notebook 02 plots them.

    Raises:
        ValueError: ``channels`` or ``reduction`` is smaller than 1.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        if channels < 1 or reduction < 1:
            raise ValueError(f"SEBlock needs channels >= 1 and reduction >= 1, got channels={channels}, "
                             f"reduction={reduction}")
        hidden = max(1, channels // reduction)
        self.channels = channels
        self.reduction = reduction
        self.fc1 = nn.Linear(channels, hidden)   # W1 (and its bias)
        self.fc2 = nn.Linear(hidden, channels)   # W2 (and its bias)
        nn.init.constant_(self.fc1.bias, SE_HIDDEN_BIAS_INIT)
        self.last_weights: torch.Tensor | None = None

    def excitation(self, u: torch.Tensor) -> torch.Tensor:
        """The channel weights ``s = sigmoid(W2 relu(W1 z))`` for ``u`` ``(N, C, H, W)``; returns ``(N, C)``."""
        z = u.mean(dim=(2, 3))                                   # squeeze: (N, C)
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(z))))  # excitation: (N, C)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Scale channel c of ``u`` by ``s_c``; also stores ``s`` in :attr:`last_weights`."""
        if u.ndim != 4 or u.shape[1] != self.channels:
            raise ValueError(f"SEBlock({self.channels}) expects (N, {self.channels}, H, W), got {tuple(u.shape)}")
        s = self.excitation(u)
        self.last_weights = s.detach()
        return u * s[:, :, None, None]


class ConvBlock(nn.Module):
    """Two 3x3 convolutions (+ batch norm) + ReLU, optional channel dropout, then squeeze-and-excitation.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        reduction: SE reduction ratio r.
        batch_norm: add ``BatchNorm2d`` after each convolution (the convolutions then have no bias).
        dropout: probability of ``Dropout2d`` after the second convolution (0 disables it).

    Shape:
        ``(N, in_channels, H, W)`` -> ``(N, out_channels, H, W)`` (padding 1 keeps the size).
    """

    def __init__(self, in_channels: int, out_channels: int, *, reduction: int = 16, batch_norm: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = []
        for c_in in (in_channels, out_channels):
            layers.append(nn.Conv2d(c_in, out_channels, kernel_size=3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        self.body = nn.Sequential(*layers)
        self.se = SEBlock(out_channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolutions, then channel recalibration."""
        return self.se(self.body(x))


def nearest_valid_sizes(size: int, multiple: int) -> tuple[int, int]:
    """The multiples of ``multiple`` just below and just above ``size`` (the lower one at least ``multiple``)."""
    lower = max(multiple, (size // multiple) * multiple)
    upper = -(-size // multiple) * multiple
    return lower, upper


class SEUNet(nn.Module):
    """U-Net whose every convolution block ends with squeeze-and-excitation; returns logits.

    Args:
        in_channels: image channels (3 for RGB).
        classes: output channels (1 for a lesion mask).
        base: channels of the first block; level ``i`` has ``base * 2**i`` channels, the bottleneck
            ``base * 2**depth``.
        depth: number of 2x poolings; the receptive field and the memory grow with it.
        reduction: SE reduction ratio r of every block.
        batch_norm: batch norm after every convolution.
        dropout: ``Dropout2d`` probability inside every ConvBlock (0 disables it).

    Shape:
        ``(N, in_channels, H, W)`` float -> ``(N, classes, H, W)`` logits; H and W divisible by ``2**depth``.

    Raises:
        ValueError: at construction for a non-positive ``base``/``depth``; in ``forward`` when H or W is
            not divisible by ``2**depth`` (the message gives the nearest valid sizes).
    """

    def __init__(self, in_channels: int = 3, classes: int = 1, base: int = 32, depth: int = 4,
                 reduction: int = 16, batch_norm: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        if base < 1 or depth < 1:
            raise ValueError(f"SEUNet needs base >= 1 and depth >= 1, got base={base}, depth={depth}")
        self.depth = depth
        widths = [base * 2**i for i in range(depth + 1)]
        opts = dict(reduction=reduction, batch_norm=batch_norm, dropout=dropout)
        self.down = nn.ModuleList(
            [ConvBlock(c_in, c_out, **opts) for c_in, c_out in zip([in_channels] + widths[:-2], widths[:-1])])
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = ConvBlock(widths[-2], widths[-1], **opts)
        self.up = nn.ModuleList(
            [nn.ConvTranspose2d(widths[i + 1], widths[i], kernel_size=2, stride=2) for i in reversed(range(depth))])
        self.dec = nn.ModuleList([ConvBlock(2 * widths[i], widths[i], **opts) for i in reversed(range(depth))])
        self.head = nn.Conv2d(base, classes, kernel_size=1)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (``2**depth``)."""
        return 2**self.depth

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` naming the nearest valid sizes when ``x``'s H or W is not a multiple of 2**depth."""
        if x.ndim != 4:
            raise ValueError(f"SEUNet expects a batch (N, C, H, W), got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        m = self.size_multiple
        if h % m or w % m:
            (h_lo, h_hi), (w_lo, w_hi) = nearest_valid_sizes(h, m), nearest_valid_sizes(w, m)
            raise ValueError(
                f"input is {h}x{w} (HxW) but SEUNet(depth={self.depth}) needs height and width divisible by {m}: "
                f"nearest valid sizes are {h_lo}x{w_lo} or {h_hi}x{w_hi}. Resize or pad the images, or build "
                f"the model with helpers.models.build_model('se_unet'), which pads and crops for you.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder (ConvBlock, pool) x depth -> bottleneck -> decoder (up, concat skip, ConvBlock) -> 1x1 head."""
        self.check_input(x)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            x = dec(torch.cat([up(x), skip], dim=1))
        return self.head(x)
