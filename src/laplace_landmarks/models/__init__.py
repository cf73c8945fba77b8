"""Models built by name: the RCN generators and the PatchGAN discriminator.

The registry (:mod:`~laplace_landmarks.models.registry`) names every model and builds it; the
network classes are imported on first use, so importing this package (or the registry, as the
run config does) does not import torch.

Example:
    >>> from laplace_landmarks.models import create_model, list_models
    >>> list_models()
    ['patchgan', 'rcn', 'rcn-lite']
    >>> generator = create_model("rcn", width=1 / 8, num_landmarks=68)
"""

from __future__ import annotations

from typing import Any

from laplace_landmarks.models.registry import (
    count_parameters,
    create_model,
    list_models,
    model_entry,
    register_model,
    storage_mb,
)

__all__ = [
    "RCN",
    "PatchGAN",
    "PatchGANConfig",
    "RCNConfig",
    "RCNLite",
    "RCNLiteConfig",
    "count_parameters",
    "create_model",
    "list_models",
    "model_entry",
    "normalize_input",
    "register_model",
    "storage_mb",
]


def __getattr__(name: str) -> Any:
    """The network classes and ``normalize_input``, imported from their module on first use."""
    if name in ("RCN", "RCNConfig", "normalize_input"):
        from laplace_landmarks.models import rcn as module
    elif name in ("RCNLite", "RCNLiteConfig"):
        from laplace_landmarks.models import rcn_lite as module
    elif name in ("PatchGAN", "PatchGANConfig"):
        from laplace_landmarks.models import patchgan as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(module, name)


def __dir__() -> list[str]:
    """The module's names, the lazily imported ones included."""
    return sorted(set(globals()) | set(__all__))
