"""E-NeuroNet: an 80-layer ResNeXt-style 3D encoder-decoder with summed skip connections.

Follows the seed's published Keras code (``eneuronet_model.py``) block for block; the deviations,
and why, are listed in ``docs/model.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

NEGATIVE_SLOPE = 0.3
#: Total down-sampling factor: every input side must be a multiple of this.
DIVISOR = 16


@dataclass(frozen=True)
class ModelConfig:
    n_classes: int
    cardinality: int = 8
    dropout: float = 0.1
    #: Add three input channels with each voxel's position on the model grid (see
    #: ``model_input``); without them a network trained on patches cannot tell left from right.
    positional: bool = True
    #: The N4 setting of the preprocessing the network was trained on, and so must see
    #: (``preprocess.N4_ITERATIONS``); files without it were trained on "quick".
    n4: str = "quick"

    @property
    def in_channels(self) -> int:
        return 4 if self.positional else 1

    def to_dict(self) -> dict:
        return asdict(self)


def _activation(dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True), nn.Dropout(dropout))


class StrideOneTransposedConv3d(nn.ConvTranspose3d):
    """A stride-1 transposed convolution, evaluated as the convolution it equals (kernel
    flipped, input and output channels swapped within each group).

    The same parameters and the same function; oneDNN's grouped convolution is about twice
    as fast as its grouped transposed one on a CPU (docs/performance.md).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.stride != (1, 1, 1) or self.output_padding != (0, 0, 0):
            raise ValueError("only stride-1 transposed convolutions equal a plain convolution")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, k = self.groups, self.weight.shape[2:]
        n_in, n_out = self.weight.shape[0] // g, self.weight.shape[1]
        weight = (self.weight.view(g, n_in, n_out, *k).transpose(1, 2)
                  .reshape(g * n_out, n_in, *k).flip(2, 3, 4))
        padding = tuple(n - 1 - p for n, p in zip(k, self.padding))
        return nn.functional.conv3d(x, weight, self.bias, padding=padding, groups=g)


class ResidualBlock(nn.Module):
    """ResNeXt bottleneck: 1x1 conv, grouped 3x3x3 (transposed when ``up``), 1x1 conv, plus a
    shortcut (identity, or a strided 1x1 projection when the shape changes)."""

    def __init__(
        self,
        in_channels: int,
        width: int,
        out_channels: int,
        *,
        stride: int = 1,
        up: bool = False,
        cardinality: int = 8,
        dropout: float = 0.0,
    ):
        super().__init__()
        if up:
            if stride == 1:
                grouped = StrideOneTransposedConv3d(width, out_channels, 3, padding=1,
                                                    groups=cardinality)
            else:
                grouped = nn.ConvTranspose3d(
                    width, out_channels, 3, stride=stride, padding=1,
                    output_padding=stride - 1, groups=cardinality,
                )
            mid = out_channels
        else:
            grouped = nn.Conv3d(width, width, 3, stride=stride, padding=1, groups=cardinality)
            mid = width
        self.branch = nn.Sequential(
            nn.Conv3d(in_channels, width, 1),
            _activation(dropout),
            grouped,
            _activation(dropout),
            nn.Conv3d(mid, out_channels, 1),
        )
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        elif up:
            self.shortcut = nn.ConvTranspose3d(
                in_channels, out_channels, 1, stride=stride, output_padding=stride - 1
            )
        else:
            self.shortcut = nn.Conv3d(in_channels, out_channels, 1, stride=stride)
        self.out = nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True)
        # Without batch normalisation an 80-layer residual stack trains only if each branch
        # starts near zero, so every block begins as (a projection of) the identity.
        nn.init.zeros_(self.branch[-1].weight)
        nn.init.zeros_(self.branch[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.shortcut(x) + self.branch(x))


def _stage(n_blocks: int, in_channels: int, width: int, out_channels: int, *, stride: int,
           up: bool, cardinality: int, dropout: float) -> nn.Sequential:
    blocks = [
        ResidualBlock(in_channels if i == 0 else out_channels, width, out_channels,
                      stride=stride if i == 0 else 1, up=up,
                      cardinality=cardinality, dropout=dropout)
        for i in range(n_blocks)
    ]
    return nn.Sequential(*blocks)


class ENeuroNet(nn.Module):
    """Input ``(N, C, X, Y, Z)`` (see ``model_input``) with sides divisible by 16; output class
    logits, same size."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        card, drop = config.cardinality, config.dropout
        self.stem = nn.Sequential(
            nn.Conv3d(config.in_channels, 16, 3, stride=2, padding=1),
            nn.Conv3d(16, 32, 3, padding=1),
            _activation(drop),
        )
        self.pool = nn.MaxPool3d(3, stride=2, padding=1)
        self.enc1 = _stage(3, 32, 32, 64, stride=1, up=False, cardinality=card, dropout=drop)
        self.enc2 = _stage(4, 64, 64, 128, stride=2, up=False, cardinality=card, dropout=drop)
        self.enc3 = _stage(6, 128, 128, 256, stride=2, up=False, cardinality=card, dropout=drop)
        self.dec3 = _stage(6, 256, 256, 128, stride=2, up=True, cardinality=card, dropout=drop)
        self.dec2 = _stage(4, 128, 128, 64, stride=2, up=True, cardinality=card, dropout=drop)
        self.dec1 = _stage(3, 64, 64, 32, stride=2, up=True, cardinality=card, dropout=drop)
        self.head = nn.Sequential(
            nn.ConvTranspose3d(32, 32, 3, stride=2, padding=1, output_padding=1),
            _activation(drop),
        )
        self.classifier = nn.Conv3d(32, config.n_classes, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)) and m.weight.abs().sum() > 0:
                nn.init.kaiming_normal_(m.weight, a=NEGATIVE_SLOPE, nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Full-resolution 32-channel features; ``classifier`` turns them into logits (split so
        that inference can classify slab by slab instead of holding every logit at once)."""
        if any(s % DIVISOR for s in x.shape[2:]):
            raise ValueError(f"input sides {tuple(x.shape[2:])} must be multiples of {DIVISOR}")
        c1 = self.stem(x)
        c2 = self.enc1(self.pool(c1))
        c3 = self.enc2(c2)
        c4 = self.enc3(c3)
        # Coarse features are summed into fine ones (no concatenation), as in the seed.
        y = self.dec3(c4) + c3
        y = self.dec2(y) + c2
        y = self.dec1(y) + c1
        return self.head(y)


def model_input(images: torch.Tensor, config: ModelConfig, grid_shape: tuple[int, int, int],
                starts: Sequence[Sequence[int]]) -> torch.Tensor:
    """Network input (N, C, X, Y, Z) for blocks (N, X, Y, Z) of grid images, block n starting
    at ``starts[n]`` of the grid: the image, then (if ``config.positional``) the block's grid
    coordinates scaled to [-1, 1]. Channels-last, the layout the network runs in.

    Built where ``images`` are, so that on a GPU the coordinate channels (three quarters of
    the input) never cross the bus; the coordinates themselves are computed in numpy, the same
    floats on every device."""
    images = images.float()
    if not config.positional:
        return images[:, None].contiguous(memory_format=torch.channels_last_3d)
    x = torch.empty((images.shape[0], 4, *images.shape[1:]), device=images.device,
                    memory_format=torch.channels_last_3d)
    x[:, 0] = images
    sizes = images.shape[1:]
    coords = [(np.arange(offset, offset + size, dtype=np.float32) - (total - 1) / 2)
              / ((total - 1) / 2)
              for start in starts for size, offset, total in zip(sizes, start, grid_shape)]
    # one copy to the device for all of them
    coords = torch.from_numpy(np.concatenate(coords)).to(x.device).split(list(sizes) * len(starts))
    for n in range(len(starts)):
        for axis, size in enumerate(sizes):
            shape = [1, 1, 1]
            shape[axis] = size
            x[n, 1 + axis] = coords[3 * n + axis].view(shape)
    return x


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_conv_layers(model: nn.Module) -> int:
    """Convolutions on the main path (projection shortcuts excluded), the seed's layer count."""
    return sum(
        isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))
        for name, m in model.named_modules()
        if "shortcut" not in name
    )
