"""laplace-landmarks: Laplace Landmark Localization (Robinson et al., ICCV 2019) for PyTorch.

Coordinates everywhere are (x, y), 0-based, with pixel centres at integers.
"""

from __future__ import annotations

from typing import Any

from laplace_landmarks.version import __version__

__all__ = ["__version__", "Landmarker", "Face"]


def __getattr__(name: str) -> Any:
    """``Landmarker`` and ``Face``, imported on first use: that keeps ``import laplace_landmarks``
    cheap for the CLI and the math modules."""
    if name in ("Landmarker", "Face"):
        from laplace_landmarks import inference

        return getattr(inference, name)
    raise AttributeError(name)
