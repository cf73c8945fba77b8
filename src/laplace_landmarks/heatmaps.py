"""Heatmaps as distributions: spatial softmax, softargmax mean, Laplace/Gaussian scales, rendering.

Conventions: heatmaps are ``(B, K, H, W)``; points are ``(B, K, 2)`` as (x, y) in pixels,
0-based, with pixel centres at integers (x indexes columns, y indexes rows).

Example:
    >>> logits = torch.zeros(1, 1, 5, 5); logits[0, 0, 1, 3] = 50.0
    >>> softargmax(spatial_softmax(logits)).round()
    tensor([[[3., 1.]]])
"""

from __future__ import annotations

import torch
from torch import Tensor

from laplace_landmarks._checks import check_finite, check_positive, check_tensor

EPS = 1e-6
_RENDER_ITERATIONS = 10


def _grids(height: int, width: int, like: Tensor) -> tuple[Tensor, Tensor]:
    xs = torch.arange(width, dtype=like.dtype, device=like.device)
    ys = torch.arange(height, dtype=like.dtype, device=like.device)
    return xs, ys


def to_heatmap_units(points: Tensor, stride: int) -> Tensor:
    """Crop pixels -> pixels of a heatmap ``stride`` times coarser than the crop.

    Heatmap pixel ``j`` covers crop pixels ``stride*j .. stride*j + stride - 1``, so its centre
    is crop pixel ``stride*j + (stride - 1) / 2``. Stride 1 is the identity.

    Example:
        >>> to_heatmap_units(torch.tensor([[0.5, 2.5]]), 2)
        tensor([[0., 1.]])
    """
    return points if stride == 1 else (points - (stride - 1) / 2) / stride


def to_crop_units(points: Tensor, stride: int) -> Tensor:
    """Inverse of :func:`to_heatmap_units` (scales multiply by ``stride`` alone)."""
    return points if stride == 1 else points * stride + (stride - 1) / 2


def spatial_softmax(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Softmax over all H*W pixels of each channel: ``(B, K, H, W)`` -> same, each sums to 1."""
    check_tensor(logits, "logits", ndim=4)
    check_positive(temperature, "temperature")
    b, k, h, w = logits.shape
    scaled = logits if temperature == 1.0 else logits / temperature
    flat = scaled.reshape(b, k, h * w)
    return torch.softmax(flat, dim=-1).reshape(b, k, h, w)


def _marginals(probs: Tensor) -> tuple[Tensor, Tensor]:
    """Marginal distributions over x (B, K, W) and y (B, K, H)."""
    return probs.sum(dim=2), probs.sum(dim=3)


def softargmax(probs: Tensor) -> Tensor:
    """Expected (x, y) location of each normalised heatmap: ``(B, K, H, W)`` -> ``(B, K, 2)``."""
    check_tensor(probs, "probs", ndim=4)
    px, py = _marginals(probs)
    xs, ys = _grids(probs.shape[2], probs.shape[3], probs)
    return torch.stack(((px * xs).sum(-1), (py * ys).sum(-1)), dim=-1)


def _central_moment(probs: Tensor, mean: Tensor, power: int) -> Tensor:
    check_tensor(probs, "probs", ndim=4)
    check_tensor(mean, "mean", ndim=3, last=2)
    if mean.shape[:2] != probs.shape[:2]:
        raise ValueError(
            f"mean has shape {tuple(mean.shape)}, expected {tuple(probs.shape[:2])} + (2,)"
        )
    px, py = _marginals(probs)
    xs, ys = _grids(probs.shape[2], probs.shape[3], probs)
    dx = (xs - mean[..., :1]).abs()
    dy = (ys - mean[..., 1:]).abs()
    if power != 1:  # no Pow node in the exported graph for the Laplace scale (power 1)
        dx, dy = dx**power, dy**power
    return torch.stack(((px * dx).sum(-1), (py * dy).sum(-1)), dim=-1)


def laplace_scale(probs: Tensor, mean: Tensor) -> Tensor:
    """Laplace scale b per axis: the mean absolute deviation around ``mean``. ``(B, K, 2)``."""
    return _central_moment(probs, mean, 1) + EPS


def gaussian_variance(probs: Tensor, mean: Tensor) -> Tensor:
    """Gaussian variance per axis around ``mean``: ``(B, K, 2)``."""
    return _central_moment(probs, mean, 2) + EPS


def _scale_tensor(scale: Tensor | float, points: Tensor) -> Tensor:
    if not isinstance(scale, Tensor):
        check_positive(float(scale), "scale")
        return torch.full_like(points, float(scale))
    check_positive(scale, "scale")
    return scale.to(points).expand_as(points)


def _render_1d(centre: Tensor, scale: Tensor, length: int, kind: str) -> Tensor:
    """Discrete normalised 1D profile (..., length) at integer pixel centres."""
    coords = torch.arange(length, dtype=centre.dtype, device=centre.device)
    diff = coords - centre.unsqueeze(-1)
    if kind == "laplace":
        log_p = -diff.abs() / scale.unsqueeze(-1)
    else:
        log_p = -0.5 * diff.square() / scale.unsqueeze(-1).square()
    return torch.softmax(log_p, dim=-1)


def _matched_profile(points: Tensor, scale: Tensor, length: int, kind: str) -> Tensor:
    """1D profile whose discrete mean and scale equal ``points`` and ``scale``.

    Sampling a continuous density on the pixel grid biases both moments (by up to 15% of
    the scale at b = 1 px). A few differentiable fixed-point steps move the continuous
    parameters until the *measured* mean and scale (as softargmax and laplace_scale /
    gaussian_variance would decode them) match the requested ones.
    """
    coords = torch.arange(length, dtype=points.dtype, device=points.device)
    centre, width = points, scale
    for _ in range(_RENDER_ITERATIONS):
        prof = _render_1d(centre, width, length, kind)
        mean = (prof * coords).sum(-1)
        dev = (coords - mean.unsqueeze(-1)).abs()
        if kind == "laplace":
            measured = (prof * dev).sum(-1)
        else:
            measured = (prof * dev.square()).sum(-1).clamp_min(EPS).sqrt()
        centre = centre + (points - mean)
        width = width * scale / measured.clamp_min(EPS)
    return _render_1d(centre, width, length, kind)


def _render(
    points: Tensor, scale: Tensor | float, size: tuple[int, int] | int, kind: str
) -> Tensor:
    check_tensor(points, "points", ndim=3, last=2)
    check_finite(points, "points")
    height, width = (size, size) if isinstance(size, int) else size
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size}")
    scales = _scale_tensor(scale, points)
    px = _matched_profile(points[..., 0], scales[..., 0], width, kind)
    py = _matched_profile(points[..., 1], scales[..., 1], height, kind)
    return py.unsqueeze(-1) * px.unsqueeze(-2)


def render_laplace(points: Tensor, scale: Tensor | float, size: tuple[int, int] | int) -> Tensor:
    """Render normalised Laplace heatmaps ``(B, K, H, W)`` at ``points`` ``(B, K, 2)``.

    ``scale`` is the Laplace b per axis in pixels (a float, or a tensor broadcastable to
    ``(B, K, 2)``). Decoding the result with :func:`softargmax` and :func:`laplace_scale`
    gives back ``points`` and ``scale`` (this is ω(y) of the paper's adversarial branch).
    """
    return _render(points, scale, size, "laplace")


def render_gaussian(points: Tensor, scale: Tensor | float, size: tuple[int, int] | int) -> Tensor:
    """Render normalised Gaussian heatmaps ``(B, K, H, W)``; ``scale`` is the std σ per axis."""
    return _render(points, scale, size, "gaussian")
