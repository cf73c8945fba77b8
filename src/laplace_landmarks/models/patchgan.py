"""The discriminator: a 4-layer pix2pix PatchGAN over image + heatmaps (SPEC §3).

Layout for base width 64 on an 80x80 input with 3 + K channels (kernel 4, padding 1):

    noise -> conv s2  (3+K)->64              LReLU  -> (64,  40, 40)
    noise -> conv s2  64->128   BatchNorm,   LReLU  -> (128, 20, 20)
    noise -> conv s2  128->256  BatchNorm,   LReLU  -> (256, 10, 10)
    noise -> conv s1  256->1                        -> (1,   9,  9) patch logits

"noise" adds N(0, noise_std^2) to the conv's input in training mode only; in eval mode the
network is deterministic. Convs followed by BatchNorm carry no bias (BatchNorm's shift
replaces it), as in pix2pix. Each output logit sees a 34x34 receptive field of the input.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from laplace_landmarks.models.registry import config_from_kwargs


@dataclasses.dataclass(frozen=True)
class PatchGANConfig:
    """Configuration of the PatchGAN discriminator.

    Attributes:
        in_channels: 3 image channels + K heatmap channels (3 + 68 = 71 for 300W).
        base_width: channels of the first conv; the next two use 2x and 4x.
        noise_std: standard deviation of the Gaussian noise added before every conv in training.
    """

    in_channels: int = 3 + 68
    base_width: int = 64
    noise_std: float = 0.1

    def __post_init__(self) -> None:
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")
        if self.base_width < 1:
            raise ValueError(f"base_width must be >= 1, got {self.base_width}")
        if not self.noise_std >= 0:
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std}")


class GaussianNoise(nn.Module):
    """Adds ``N(0, std^2)`` noise to its input in training mode; the identity in eval mode."""

    def __init__(self, std: float) -> None:
        super().__init__()
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.std > 0:
            return x + self.std * torch.randn_like(x)
        return x

    def extra_repr(self) -> str:
        return f"std={self.std}"


class PatchGAN(nn.Module):
    """``(B, 3 + K, H, W)`` image and heatmaps -> ``(B, 1, H/8 - 1, W/8 - 1)`` patch logits.

    H and W must be at least 16 (80x80 gives a 9x9 grid of patch logits).

    Example:
        >>> model = PatchGAN(PatchGANConfig(in_channels=3 + 68)).eval()
        >>> model(torch.zeros(2, 71, 80, 80)).shape
        torch.Size([2, 1, 9, 9])
    """

    def __init__(self, config: PatchGANConfig) -> None:
        super().__init__()
        self.config = config
        w = config.base_width
        widths = [config.in_channels, w, 2 * w, 4 * w]
        layers: list[nn.Module] = []
        for i in range(3):
            use_bn = i > 0
            layers += [
                GaussianNoise(config.noise_std),
                nn.Conv2d(widths[i], widths[i + 1], 4, stride=2, padding=1, bias=not use_bn),
            ]
            if use_bn:
                layers.append(nn.BatchNorm2d(widths[i + 1]))
            layers.append(nn.LeakyReLU(0.2))
        layers += [GaussianNoise(config.noise_std), nn.Conv2d(4 * w, 1, 4, stride=1, padding=1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_channels, H, W)`` to ``(B, 1, H/8 - 1, W/8 - 1)`` real/fake logits."""
        if inputs.ndim != 4 or inputs.shape[1] != self.config.in_channels:
            raise ValueError(
                f"inputs must be (B, {self.config.in_channels}, H, W), got {tuple(inputs.shape)}"
            )
        if min(inputs.shape[2:]) < 16:
            raise ValueError(f"inputs H and W must be >= 16, got {tuple(inputs.shape)}")
        return self.layers(inputs)


def patchgan(**kwargs: Any) -> PatchGAN:
    """Factory for :class:`PatchGAN` (``"patchgan"`` in the registry); keyword arguments are
    :class:`PatchGANConfig` fields."""
    return PatchGAN(config_from_kwargs(PatchGANConfig, kwargs))
