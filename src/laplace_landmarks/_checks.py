"""Argument checks shared by the public functions: each raises ValueError naming the argument."""

from __future__ import annotations

import torch
from torch import Tensor


def check_tensor(
    value: object, name: str, ndim: int | None = None, last: int | None = None
) -> Tensor:
    """Return ``value`` if it is a floating tensor of rank ``ndim`` (and last dim ``last``)."""
    if not isinstance(value, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}")
    if last is not None and value.shape[-1] != last:
        raise ValueError(f"{name} must have last dimension {last}, got shape {tuple(value.shape)}")
    return value


def check_finite(value: Tensor, name: str) -> None:
    if not torch.isfinite(value).all():
        raise ValueError(f"{name} contains NaN or inf")


def check_positive(value: Tensor | float, name: str) -> None:
    if isinstance(value, Tensor):
        if not torch.isfinite(value).all() or bool((value <= 0).any()):
            raise ValueError(f"{name} must be finite and > 0")
    elif not value > 0 or value != value or value == float("inf"):
        raise ValueError(f"{name} must be finite and > 0, got {value}")


def check_same_points(a: Tensor, a_name: str, b: Tensor, b_name: str) -> None:
    """Check that two (B, K, ...) tensors agree on batch size and number of landmarks."""
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(
            f"{b_name} has shape {tuple(b.shape)}, which does not match {a_name} "
            f"{tuple(a.shape)} in batch size and number of landmarks K"
        )
