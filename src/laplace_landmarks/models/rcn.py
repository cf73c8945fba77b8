"""The generator: a 4-branch ReCombinator network (RCN) with a width multiplier (SPEC §4).

Layout for width 1 (C = 64 channels) and an 80x80 input; every conv has a bias:

    enc1  3x3 conv 3->C,  LReLU           -> f80 (C, 80, 80) -> maxpool -> 40
    enc2  3x3 conv C->C,  LReLU, dropout  -> f40 (C, 40, 40) -> maxpool -> 20
    enc3  3x3 conv C->C,  LReLU, dropout  -> f20 (C, 20, 20) -> maxpool -> 10
    enc4  3x3 conv C->C,  LReLU, dropout  -> f10 (C, 10, 10) -> maxpool -> 5
    bottleneck 1x1 conv C->C, LReLU, dropout                  -> (C, 5, 5)
    dec10 up x2 -> concat [up, f10] (2C) -> 5x5 conv 2C->C, LReLU, dropout -> (C, 10, 10)
    dec20 up x2 -> concat [up, f20] (2C) -> 5x5 conv 2C->C, LReLU, dropout -> (C, 20, 20)
    dec40 up x2 -> concat [up, f40] (2C) -> 5x5 conv 2C->C, LReLU, dropout -> (C, 40, 40)
    dec80 up x2 -> concat [up, f80] (2C) -> 5x5 conv 2C->C, LReLU          -> (C, 80, 80)
    head  1x1 conv C->K, no activation                      -> logits (K, 80, 80)

Skip connections: the decoder at scale s concatenates the encoder block whose conv ran at
scale s, taken after its LReLU (and dropout) and before its max-pool. The upsampled decoder
features come first in the concatenation, the skip features second. Dropout follows every
activation except the first (enc1) and the last (dec80). Upsampling is nearest-neighbour.

Dropout is element-wise (``nn.Dropout``). Parameters: 228·C² + 36·C + K·(C + 1), i.e. 940,612
at width 1 and 15,492 at width 1/8 for K = 68. That is about half of what the paper's storage
column implies; docs/results.md compares them.

The model returns logits only; decoding (spatial softmax, softargmax, scales) lives elsewhere.
It does not normalise its input either: call :func:`normalize_input` first.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.models.registry import config_from_kwargs

NUM_SCALES = 4  # encoder blocks = decoder stages = branches; the input must divide by 2**4


@dataclasses.dataclass(frozen=True)
class RCNConfig:
    """Configuration of the RCN generator.

    Attributes:
        width: multiplier on every hidden channel count; channels = max(1, round(64 * width)).
        num_landmarks: K, the number of output heatmaps (68 for 300W, 19 for AFLW).
        dropout: dropout probability after every activation but the first and the last.
        base_channels: hidden channels at width 1 (64 in the paper).
        in_channels: image channels (3 for RGB).
        input_size: the square crop size used for training (80 in the paper). Any size divisible
            by 16 works at run time; this field records the size the model was built for.
    """

    width: float = 1.0
    num_landmarks: int = 68
    dropout: float = 0.2
    base_channels: int = 64
    in_channels: int = 3
    input_size: int = 80

    def __post_init__(self) -> None:
        if not self.width > 0:
            raise ValueError(f"width must be > 0, got {self.width}")
        if self.num_landmarks < 1:
            raise ValueError(f"num_landmarks must be >= 1, got {self.num_landmarks}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.base_channels < 1 or self.in_channels < 1:
            raise ValueError("base_channels and in_channels must be >= 1")
        if self.input_size < 16 or self.input_size % 2**NUM_SCALES:
            raise ValueError(f"input_size must be a positive multiple of 16, got {self.input_size}")

    @property
    def channels(self) -> int:
        """Hidden channel count C = max(1, round(base_channels * width))."""
        return max(1, round(self.base_channels * self.width))


def normalize_input(images: torch.Tensor) -> torch.Tensor:
    """Scale images to the model's input range [-1, 1]: ``(x / 255 - 0.5) / 0.5`` for uint8.

    Args:
        images: ``(B, C, H, W)`` uint8 in [0, 255], or floating point already in [0, 1].

    Returns:
        ``(B, C, H, W)`` float32 (or the input's float dtype) in [-1, 1].

    Example:
        >>> normalize_input(torch.tensor([0, 255], dtype=torch.uint8).view(1, 2, 1, 1)).flatten()
        tensor([-1.,  1.])
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        scaled = images.float() / 255.0
    elif images.is_floating_point():
        if images.numel() and (images.min() < 0 or images.max() > 1):
            raise ValueError("float images must be in [0, 1]; pass uint8 for [0, 255] data")
        scaled = images
    else:
        raise ValueError(f"images must be uint8 or floating point, got {images.dtype}")
    return (scaled - 0.5) / 0.5


class GeneratorBase(nn.Module):
    """What every heatmap generator here shares: its config, element-wise dropout, LReLU(0.2), the
    input check, and the fitted ``point_offset`` and ``scale_factor`` buffers (see calibration.py)."""

    config: RCNConfig

    def _add_dropout_and_offset(self, config: RCNConfig) -> None:
        """Register the dropout module, the (K, 2) ``point_offset`` and the scalar ``scale_factor``
        buffers (call last)."""
        self.dropout = nn.Dropout(config.dropout)
        # (K, 2) crop-pixel shift added to the decoded means (see calibration.py); zero unless
        # fitted after training. Files written before it existed load with zeros.
        self.register_buffer("point_offset", torch.zeros(config.num_landmarks, 2))
        # () factor on the decoded Laplace scales (see calibration.py); 1 unless fitted.
        self.register_buffer("scale_factor", torch.ones(()))
        self.register_load_state_dict_pre_hook(default_fitted_buffers)

    def _activate(self, x: torch.Tensor, use_dropout: bool = True) -> torch.Tensor:
        x = F.leaky_relu(x, 0.2)
        return self.dropout(x) if use_dropout else x

    def _check_input(self, images: torch.Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != self.config.in_channels:
            raise ValueError(
                f"images must be (B, {self.config.in_channels}, H, W), got {tuple(images.shape)}"
            )
        if images.shape[2] % 2**NUM_SCALES or images.shape[3] % 2**NUM_SCALES:
            raise ValueError(f"images H and W must be divisible by 16, got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ValueError(
                f"images must be floating point (see normalize_input), got {images.dtype}"
            )


class RCN(GeneratorBase):
    """4-branch ReCombinator generator: ``(B, 3, H, W)`` images -> ``(B, K, H, W)`` logits.

    H and W must be divisible by 16. Input is expected in [-1, 1] (see :func:`normalize_input`).

    Example:
        >>> model = RCN(RCNConfig(width=1 / 8, num_landmarks=68)).eval()
        >>> model(torch.zeros(2, 3, 80, 80)).shape
        torch.Size([2, 68, 80, 80])
    """

    def __init__(self, config: RCNConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.encoder = nn.ModuleList(
            nn.Conv2d(config.in_channels if i == 0 else c, c, 3, padding=1)
            for i in range(NUM_SCALES)
        )
        self.bottleneck = nn.Conv2d(c, c, 1)
        self.decoder = nn.ModuleList(nn.Conv2d(2 * c, c, 5, padding=2) for _ in range(NUM_SCALES))
        self.head = nn.Conv2d(c, config.num_landmarks, 1)
        self._add_dropout_and_offset(config)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_channels, H, W)`` images in [-1, 1] to ``(B, K, H, W)`` logits."""
        self._check_input(images)
        skips = []  # pre-pool encoder features at H, H/2, H/4, H/8
        x = images
        for i, conv in enumerate(self.encoder):
            x = self._activate(conv(x), use_dropout=i > 0)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self._activate(self.bottleneck(x))
        for i, conv in enumerate(self.decoder):  # scales H/8, H/4, H/2, H
            x = torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skips.pop()], 1)
            x = self._activate(conv(x), use_dropout=i < NUM_SCALES - 1)
        return self.head(x)


def rcn(**kwargs: Any) -> RCN:
    """Factory for :class:`RCN` (``"rcn"`` in the registry); keyword arguments are
    :class:`RCNConfig` fields."""
    return RCN(config_from_kwargs(RCNConfig, kwargs))


def default_fitted_buffers(module, state_dict, prefix, *_args) -> None:
    """Load-state-dict pre-hook: weights saved before ``point_offset`` / ``scale_factor`` existed
    load with a zero offset and a factor of 1; a stored factor must be finite and positive."""
    state_dict.setdefault(prefix + "point_offset", torch.zeros_like(module.point_offset))
    factor = state_dict.setdefault(prefix + "scale_factor", torch.ones_like(module.scale_factor))
    if factor.numel() != 1 or not bool(torch.isfinite(factor).all() and (factor > 0).all()):
        raise LandmarksError(
            f"weights: {prefix}scale_factor must be one finite positive number, got {factor.tolist()}"
        )
