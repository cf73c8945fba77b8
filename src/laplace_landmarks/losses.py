"""Losses: softargmax, LaplaceKL, GaussianKL (supervised) and the adversarial pair.

Each loss is a pure function with a thin ``nn.Module`` wrapper. Points are ``(B, K, 2)`` as
(x, y) pixels, 0-based, pixel centres at integers; logits are ``(B, K, H, W)``; an optional
visibility mask is ``(B, K)`` (True/1 = counts). Averages run over visible landmarks.

:func:`supervised_loss` composes the loss a run's ``[loss]`` section configures (in crop pixels,
for a generator of any output stride), and :func:`discriminator_input` what the discriminator
sees; the trainer uses both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from laplace_landmarks._checks import check_finite, check_positive, check_same_points, check_tensor
from laplace_landmarks.heatmaps import (
    gaussian_variance,
    laplace_scale,
    softargmax,
    spatial_softmax,
    to_heatmap_units,
)
from laplace_landmarks.run_config import LossConfig

DIRECTIONS = ("forward", "reverse")
NORMS = ("l2", "l1", "sql2")


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")


def _check_pair(pred: Tensor, pred_name: str, target: Tensor, target_name: str) -> None:
    check_tensor(pred, pred_name, ndim=3, last=2)
    check_tensor(target, target_name, ndim=3, last=2)
    check_same_points(pred, pred_name, target, target_name)
    check_finite(target, target_name)


def _as_scale(value: Tensor | float, like: Tensor, name: str) -> Tensor:
    check_positive(value, name)
    if isinstance(value, Tensor):
        return value.to(like).expand_as(like)
    return torch.full_like(like, float(value))


def laplace_kl_1d(m1: Tensor, s1: Tensor, m2: Tensor, s2: Tensor) -> Tensor:
    """KL(Laplace(m1, s1) || Laplace(m2, s2)), elementwise."""
    d = (m1 - m2).abs()
    return torch.log(s2 / s1) + d / s2 + (s1 / s2) * torch.exp(-d / s1) - 1.0


def gaussian_kl_1d(m1: Tensor, v1: Tensor, m2: Tensor, v2: Tensor) -> Tensor:
    """KL(N(m1, v1) || N(m2, v2)) with variances v, elementwise."""
    return 0.5 * torch.log(v2 / v1) + (v1 + (m1 - m2).square()) / (2.0 * v2) - 0.5


def laplace_kl(
    mean: Tensor,
    scale: Tensor,
    target: Tensor,
    target_scale: Tensor | float,
    direction: str = "forward",
) -> Tensor:
    """Per-landmark KL between Laplace distributions, summed over x and y: ``(B, K)``.

    ``"forward"`` is KL(target || prediction), ``"reverse"`` is KL(prediction || target).
    """
    _check_direction(direction)
    _check_pair(mean, "mean", target, "target")
    check_tensor(scale, "scale", ndim=3, last=2)
    check_same_points(mean, "mean", scale, "scale")
    check_positive(scale, "scale")
    t_scale = _as_scale(target_scale, target, "target_scale")
    if direction == "forward":
        return laplace_kl_1d(target, t_scale, mean, scale).sum(-1)
    return laplace_kl_1d(mean, scale, target, t_scale).sum(-1)


def gaussian_kl(
    mean: Tensor,
    variance: Tensor,
    target: Tensor,
    target_variance: Tensor | float,
    direction: str = "forward",
) -> Tensor:
    """Per-landmark KL between axis-aligned Gaussians, summed over x and y: ``(B, K)``."""
    _check_direction(direction)
    _check_pair(mean, "mean", target, "target")
    check_tensor(variance, "variance", ndim=3, last=2)
    check_same_points(mean, "mean", variance, "variance")
    check_positive(variance, "variance")
    t_var = _as_scale(target_variance, target, "target_variance")
    if direction == "forward":
        return gaussian_kl_1d(target, t_var, mean, variance).sum(-1)
    return gaussian_kl_1d(mean, variance, target, t_var).sum(-1)


def masked_mean(per_landmark: Tensor, visibility: Tensor | None) -> Tensor:
    """Mean of ``(B, K)`` values over visible landmarks; masked entries contribute exactly 0."""
    if visibility is None:
        return per_landmark.mean()
    if visibility.shape != per_landmark.shape:
        raise ValueError(
            f"visibility must have shape {tuple(per_landmark.shape)}, got {tuple(visibility.shape)}"
        )
    mask = visibility.to(torch.bool)
    zero = per_landmark.new_zeros(())
    values = torch.where(mask, per_landmark, zero)
    return values.sum() / mask.sum().clamp_min(1)


def _decode(logits: Tensor, target: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    check_tensor(logits, "logits", ndim=4)
    check_tensor(target, "target", ndim=3, last=2)
    check_same_points(logits, "logits", target, "target")
    check_finite(target, "target")
    probs = spatial_softmax(logits, temperature)
    return probs, softargmax(probs)


def softargmax_loss(
    logits: Tensor,
    target: Tensor,
    visibility: Tensor | None = None,
    norm: str = "l2",
    temperature: float = 1.0,
) -> Tensor:
    """Distance between the softargmax mean and ``target``: Euclidean (``"l2"``), ``"l1"``
    or squared Euclidean (``"sql2"``), averaged over visible landmarks. Returns a scalar."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    _, mean = _decode(logits, target, temperature)
    diff = mean - target
    if norm == "l2":
        per = (diff.square().sum(-1) + 1e-12).sqrt()
    elif norm == "l1":
        per = diff.abs().sum(-1)
    else:
        per = diff.square().sum(-1)
    return masked_mean(per, visibility)


def laplace_kl_loss(
    logits: Tensor,
    target: Tensor,
    target_scale: Tensor | float = 1.0,
    visibility: Tensor | None = None,
    direction: str = "forward",
    temperature: float = 1.0,
) -> Tensor:
    """LaplaceKL on logits: decode (μ, b) from the heatmap, KL against Laplace(y, b_t)."""
    probs, mean = _decode(logits, target, temperature)
    per = laplace_kl(mean, laplace_scale(probs, mean), target, target_scale, direction)
    return masked_mean(per, visibility)


def gaussian_kl_loss(
    logits: Tensor,
    target: Tensor,
    target_variance: Tensor | float = 1.0,
    visibility: Tensor | None = None,
    direction: str = "forward",
    temperature: float = 1.0,
) -> Tensor:
    """GaussianKL on logits: decode (μ, σ²) from the heatmap, KL against N(y, σ_t²)."""
    probs, mean = _decode(logits, target, temperature)
    per = gaussian_kl(mean, gaussian_variance(probs, mean), target, target_variance, direction)
    return masked_mean(per, visibility)


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """BCE of D: real patches -> 1, fake patches -> 0 (sum of the two means)."""
    check_tensor(real_logits, "real_logits")
    check_tensor(fake_logits, "fake_logits")
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_adversarial_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating G loss: -log D(x_u, G(x_u)), i.e. BCE of fake patches against 1."""
    check_tensor(fake_logits, "fake_logits")
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def supervised_loss(
    logits: Tensor, points: Tensor, visibility: Tensor, loss: LossConfig, stride: int = 1
) -> Tensor:
    """The loss ``loss`` configures (``kind``, scale, direction, norm, temperature).

    ``points`` and ``loss.target_scale`` are in crop pixels. For a model with output stride
    s > 1 the targets move to heatmap pixels (the KL losses are unchanged by that common
    rescaling) and the softargmax distance is scaled back to crop pixels.
    """
    target, scale = to_heatmap_units(points, stride), loss.target_scale / stride
    if loss.kind == "softargmax":
        distance = softargmax_loss(logits, target, visibility, loss.norm, loss.temperature)
        return distance * (stride**2 if loss.norm == "sql2" else stride)
    if loss.kind == "laplacekl":
        return laplace_kl_loss(logits, target, scale, visibility, loss.direction, loss.temperature)
    return gaussian_kl_loss(logits, target, scale**2, visibility, loss.direction, loss.temperature)


def junk_loss(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """KL(uniform || spatial softmax of ``logits``), averaged over images and landmarks.

    The junk term: on crops that hold no face it pulls every heatmap towards flat, so the
    predicted Laplace scale there stays wide (honest uncertainty). 0 for a flat heatmap, about
    log(H W) for a one-hot one. Returns a scalar."""
    check_tensor(logits, "logits", ndim=4)
    z = logits.flatten(2) / temperature
    return (torch.logsumexp(z, -1) - z.mean(-1)).mean() - math.log(z.shape[-1])


def discriminator_input(images: Tensor, heatmaps: Tensor) -> Tensor:
    """What the discriminator sees: the image in [-1, 1] stacked with the heatmaps, each channel
    scaled so that its peak is 1.

    Heatmaps coarser than the image (output stride > 1) get the image average-pooled to their size.
    """
    if images.shape[-2:] != heatmaps.shape[-2:]:
        images = F.adaptive_avg_pool2d(images, heatmaps.shape[-2:])
    peak = heatmaps.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)
    return torch.cat([images, heatmaps / peak], dim=1)


class SoftargmaxLoss(nn.Module):
    """Module form of :func:`softargmax_loss`."""

    def __init__(self, norm: str = "l2", temperature: float = 1.0) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        self.norm, self.temperature = norm, temperature

    def forward(self, logits: Tensor, target: Tensor, visibility: Tensor | None = None) -> Tensor:
        return softargmax_loss(logits, target, visibility, self.norm, self.temperature)


class LaplaceKLLoss(nn.Module):
    """Module form of :func:`laplace_kl_loss`."""

    def __init__(
        self, target_scale: float = 1.0, direction: str = "forward", temperature: float = 1.0
    ) -> None:
        super().__init__()
        _check_direction(direction)
        check_positive(target_scale, "target_scale")
        self.target_scale, self.direction, self.temperature = target_scale, direction, temperature

    def forward(self, logits: Tensor, target: Tensor, visibility: Tensor | None = None) -> Tensor:
        return laplace_kl_loss(
            logits, target, self.target_scale, visibility, self.direction, self.temperature
        )


class GaussianKLLoss(nn.Module):
    """Module form of :func:`gaussian_kl_loss`; ``target_scale`` is σ_t (variance σ_t²)."""

    def __init__(
        self, target_scale: float = 1.0, direction: str = "forward", temperature: float = 1.0
    ) -> None:
        super().__init__()
        _check_direction(direction)
        check_positive(target_scale, "target_scale")
        self.target_variance = target_scale**2
        self.direction, self.temperature = direction, temperature

    def forward(self, logits: Tensor, target: Tensor, visibility: Tensor | None = None) -> Tensor:
        return gaussian_kl_loss(
            logits, target, self.target_variance, visibility, self.direction, self.temperature
        )


class DiscriminatorLoss(nn.Module):
    """Module form of :func:`discriminator_loss`."""

    def forward(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return discriminator_loss(real_logits, fake_logits)


class GeneratorAdversarialLoss(nn.Module):
    """Module form of :func:`generator_adversarial_loss`."""

    def forward(self, fake_logits: Tensor) -> Tensor:
        return generator_adversarial_loss(fake_logits)
