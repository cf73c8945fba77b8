"""Plain data types shared by the loaders, the crop cache and the trainer.

Coordinates are (x, y), 0-based, with pixel centres at integers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Sample:
    """One face: an image file plus (optionally) its landmarks.

    points: (K, 2) float64 image pixels, (x, y), 0-based; None for unlabelled faces.
    visibility: (K,) bool; None for unlabelled faces.
    identity: the person (ytf68) or the source subset (300W: "afw", "helen/trainset", ...).
    box: an optional face box (x0, y0, x1, y1) given by the annotation format.
    """

    image_path: Path
    points: np.ndarray | None = None
    visibility: np.ndarray | None = None
    identity: str = ""
    box: tuple[float, float, float, float] | None = None


@dataclass
class LandmarkDataset:
    """A list of samples plus what was skipped while loading, and why."""

    name: str
    split: str
    num_landmarks: int
    samples: list[Sample]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]
