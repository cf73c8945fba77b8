"""Models built by name: the RCN generator and the PatchGAN discriminator.

Example:
    >>> from laplace_landmarks.models import create_model, list_models
    >>> list_models()
    ['patchgan', 'rcn', 'rcn-lite']
    >>> generator = create_model("rcn", width=1 / 8, num_landmarks=68)
"""

from __future__ import annotations

# Importing the model modules registers their factories.
from laplace_landmarks.models.patchgan import PatchGAN, PatchGANConfig
from laplace_landmarks.models.rcn import RCN, RCNConfig, normalize_input
from laplace_landmarks.models.rcn_lite import RCNLite, RCNLiteConfig
from laplace_landmarks.models.registry import (
    count_parameters,
    create_model,
    list_models,
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
    "normalize_input",
    "register_model",
    "storage_mb",
]
