"""A cheaper generator for CPU speed: the RCN's recombination at half resolution (output stride 2).

The RCN (rcn.py) spends about three quarters of its FLOPs at full resolution: the last 5x5
decoder conv and the head run on 80x80 maps. This variant keeps the same encoder-decoder idea
(max-pooled encoder, nearest-upsampled decoder, skip features concatenated after the upsampled
ones, LReLU 0.2, dropout) but:

- a 4x4 stride-2 stem replaces the full-resolution encoder conv; its footprint on output pixel
  ``j`` is input pixels ``2j-1 .. 2j+2``, centred on ``2j + 0.5``, which is where
  `laplace_landmarks.decoding` maps heatmap pixel ``j`` back to (see ``output_stride``);
- channels double at each coarser scale (C, 2C, 4C at 40, 20 and 10 px; 4C at 5 px), where
  capacity is cheap, and decoder convs are 3x3;
- the head emits ``(K, H/2, W/2)`` logits, so the spatial softmax and softargmax also run on a
  quarter of the pixels.

Layout for an 80x80 input, C = round(64 * width):

    stem  4x4/2 conv 3->C,  LReLU            -> f40 (C, 40, 40)  -> maxpool -> 20
    enc20 3x3 conv C->2C,   LReLU, dropout   -> f20 (2C, 20, 20) -> maxpool -> 10
    enc10 3x3 conv 2C->4C,  LReLU, dropout   -> f10 (4C, 10, 10) -> maxpool -> 5
    bottleneck 3x3 conv 4C->4C, LReLU, dropout                  -> (4C, 5, 5)
    dec10 up x2 -> concat [up, f10] (8C) -> 3x3 conv 8C->2C, LReLU, dropout -> (2C, 10, 10)
    dec20 up x2 -> concat [up, f20] (4C) -> 3x3 conv 4C->C,  LReLU, dropout -> (C, 20, 20)
    dec40 up x2 -> concat [up, f40] (2C) -> 3x3 conv 2C->C,  LReLU          -> (C, 40, 40)
    head  1x1 conv C->K                                                    -> logits (K, 40, 40)

At width 1/8 (C = 8) that is 6.1 M multiply-adds per 80x80 face against the RCN's 33 M.

``depth = n`` (default 0) adds ``n`` residual 3x3 convs (``x + LReLU(conv(x))``, same channels)
after enc10, the bottleneck, dec10 and dec20: capacity where the maps are small, at the same
width (at width 1/8, n = 1 adds 1.6 M multiply-adds). ``zero_init_residual`` starts those convs
at zero, so each block is the identity at initialisation (as in ResNets' zero-init of the last
norm). It does not stop the first-epoch divergence seen at width 1 with depth 2 and width 1/2
with depth 4 at the recipe's lr 2e-3; lr 1e-3 does (docs/results.md, session 7).

``fine_depth = n`` (default 0) adds ``n`` such residual convs after dec40, at the heatmap
resolution (C channels at 40 px: 14.7 M multiply-adds each at width 1/2), where the points are
placed; ``zero_init_residual`` starts them at zero too.
Losses, the discriminator and decoding read ``config.output_stride`` and work in heatmap
pixels, converting from and to crop pixels (``decoding.to_heatmap_units``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from laplace_landmarks.models.rcn import GeneratorBase, RCNConfig
from laplace_landmarks.models.registry import config_from_kwargs


@dataclasses.dataclass(frozen=True)
class RCNLiteConfig(RCNConfig):
    """Configuration of :class:`RCNLite`: the fields and checks of ``RCNConfig`` (width, K,
    dropout, base_channels, in_channels, input_size) with this model's defaults, plus
    ``output_stride``. C = max(1, round(base_channels * width)) is the channel count at 40 px."""

    width: float = 0.125
    dropout: float = 0.1
    depth: int = 0
    zero_init_residual: bool = False
    fine_depth: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.depth < 0:
            raise ValueError(f"depth must be >= 0, got {self.depth}")
        if self.fine_depth < 0:
            raise ValueError(f"fine_depth must be >= 0, got {self.fine_depth}")

    @property
    def output_stride(self) -> int:
        """Crop pixels per heatmap pixel."""
        return 2


class RCNLite(GeneratorBase):
    """``(B, 3, H, W)`` images in [-1, 1] -> ``(B, K, H/2, W/2)`` logits (H, W divisible by 16).

    Example:
        >>> model = RCNLite(RCNLiteConfig(width=1 / 8)).eval()
        >>> model(torch.zeros(2, 3, 80, 80)).shape
        torch.Size([2, 68, 40, 40])
    """

    def __init__(self, config: RCNLiteConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.stem = nn.Conv2d(config.in_channels, c, 4, stride=2, padding=1)
        self.encoder = nn.ModuleList(
            [nn.Conv2d(c, 2 * c, 3, padding=1), nn.Conv2d(2 * c, 4 * c, 3, padding=1)]
        )
        self.bottleneck = nn.Conv2d(4 * c, 4 * c, 3, padding=1)
        self.decoder = nn.ModuleList(
            [
                nn.Conv2d(8 * c, 2 * c, 3, padding=1),
                nn.Conv2d(4 * c, c, 3, padding=1),
                nn.Conv2d(2 * c, c, 3, padding=1),
            ]
        )
        self.head = nn.Conv2d(c, config.num_landmarks, 1)

        def extra(channels: int, count: int = config.depth) -> nn.ModuleList:
            return nn.ModuleList(
                [nn.Conv2d(channels, channels, 3, padding=1) for _ in range(count)]
            )

        # empty at depth 0 / fine_depth 0, so older weights files load unchanged
        self.extra_enc10, self.extra_bottleneck = extra(4 * c), extra(4 * c)
        self.extra_dec10, self.extra_dec20 = extra(2 * c), extra(c)
        self.extra_dec40 = extra(c, config.fine_depth)
        if config.zero_init_residual:
            for blocks in (
                self.extra_enc10,
                self.extra_bottleneck,
                self.extra_dec10,
                self.extra_dec20,
                self.extra_dec40,
            ):
                for conv in blocks:
                    nn.init.zeros_(conv.weight)
                    nn.init.zeros_(conv.bias)
        self._add_dropout_and_offset(config)

    def _residual(
        self, x: torch.Tensor, convs: nn.ModuleList, use_dropout: bool = True
    ) -> torch.Tensor:
        for conv in convs:
            x = x + self._activate(conv(x), use_dropout=use_dropout)
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_channels, H, W)`` images in [-1, 1] to ``(B, K, H/2, W/2)`` logits."""
        self._check_input(images)
        x = self._activate(self.stem(images), use_dropout=False)
        skips = [x]
        for i, conv in enumerate(self.encoder):
            x = self._activate(conv(F.max_pool2d(x, 2)))
            if i == 1:
                x = self._residual(x, self.extra_enc10)
            skips.append(x)
        x = self._activate(self.bottleneck(F.max_pool2d(x, 2)))
        x = self._residual(x, self.extra_bottleneck)
        extras = (self.extra_dec10, self.extra_dec20, self.extra_dec40)
        for i, conv in enumerate(self.decoder):
            x = torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skips.pop()], 1)
            last = i == len(self.decoder) - 1  # no dropout at the heatmap resolution
            x = self._activate(conv(x), use_dropout=not last)
            x = self._residual(x, extras[i], use_dropout=not last)
        return self.head(x)


def rcn_lite(**kwargs: Any) -> RCNLite:
    """Factory for :class:`RCNLite` (``"rcn-lite"`` in the registry); keyword arguments are
    :class:`RCNLiteConfig` fields."""
    return RCNLite(config_from_kwargs(RCNLiteConfig, kwargs))
