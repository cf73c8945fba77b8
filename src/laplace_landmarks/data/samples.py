"""Real face crops from the sample photos bundled with the package (``laplace_landmarks/samples``).

They are what ``export --verify`` compares ONNX Runtime against torch on and what static int8
quantisation calibrates on (:mod:`laplace_landmarks.export`, :mod:`laplace_landmarks.quantization`).
Crops are uint8 ``(N, 3, S, S)`` RGB, cut with the package's own crop code.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from laplace_landmarks.data.crops import crop_from_five_points, five_points_from_68, warp_crop
from laplace_landmarks.data.datasets import load_dataset
from laplace_landmarks.data.formats import read_pts
from laplace_landmarks.data.images import load_image
from laplace_landmarks.detection import DlibHogDetector, crop_from_detection
from laplace_landmarks.errors import LandmarksError


def sample_crops(size: int = 80, root: str | Path | None = None) -> Tensor:
    """Real uint8 crops ``(N, 3, size, size)`` cut with the package's own crop code.

    Each bundled sample photo gives a crop per dlib HOG detection (:func:`crop_from_detection`)
    and, when a ``.pts`` file sits beside it, the paper's 5-point crop. With ``root`` (a
    ytf68-style folder such as ``tests/data/ytf68_slice``) its labelled faces are added too
    (5-point crops, both splits). Computed once per process and argument pair, then copied.
    """
    return _sample_crops(int(size), None if root is None else str(Path(root).resolve())).clone()


@functools.lru_cache(maxsize=4)
def _sample_crops(size: int, root: str | None) -> Tensor:
    folder = Path(str(resources.files("laplace_landmarks") / "samples"))
    detector, crops = DlibHogDetector(upsample=1), []
    for image_path in sorted(folder.glob("*.jpg")):
        rgb = load_image(image_path)
        regions = [crop_from_detection(d.box, size) for d in detector(rgb)]
        if image_path.with_suffix(".pts").is_file():
            five = five_points_from_68(read_pts(image_path.with_suffix(".pts")))
            regions.append(crop_from_five_points(five, size))
        crops += [warp_crop(rgb, region) for region in regions]
    if root is not None:
        crops += list(_dataset_crops(Path(root), size))
    return torch.from_numpy(np.ascontiguousarray(np.stack(crops).transpose(0, 3, 1, 2)))


def _dataset_crops(root: Path, size: int) -> Iterator[np.ndarray]:
    for split in ("train", "test"):
        try:
            samples = load_dataset("ytf68", split, root=root).samples
        except (FileNotFoundError, ValueError) as exc:
            raise LandmarksError(
                f"--verify-root {root}: not a ytf68-style folder ({exc})"
            ) from None
        for sample in samples:
            crop = crop_from_five_points(five_points_from_68(sample.points), size)
            yield warp_crop(load_image(sample.image_path), crop)
