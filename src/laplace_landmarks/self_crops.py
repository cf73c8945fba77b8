"""Self crops: labelled faces cropped the way a model's own detector path crops them.

A crop aligned on the model's own estimate locks the model's errors in, and ground-truth 5-point
crops never show the model that geometry (docs/results.md, "Where the detector path loses 0.4
points"). Fine-tuning on ground-truth crops plus these crops (``train --self-crops-from``) teaches
it. Each face is cropped as ``Landmarker.predict`` does: the dlib HOG box holding the
ground-truth centre (the nearest such box), a first pass, then the 5-point re-crop from the
model's own estimate. The ground-truth points, (x, y), 0-based, pixel centres at integers, are
mapped into that crop. Faces with no detection holding their centre are skipped.

The crops are cached once per (weights file content, dataset samples, crop settings) in the same
cache folder as the ground-truth crops.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

from laplace_landmarks.checkpoints import resolve_checkpoint
from laplace_landmarks.data.cache import CropCache, cache_key
from laplace_landmarks.data.crops import warp_crop
from laplace_landmarks.data.images import to_rgb_array
from laplace_landmarks.data.types import LandmarkDataset, Sample
from laplace_landmarks.detection import (
    DETECTOR_CROP_SCALE,
    DETECTOR_CROP_SHIFT,
    detection_holding,
)
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.inference import Landmarker


def make_self_crops(
    landmarker: Landmarker, samples: list[Sample], label: str = "self crops"
) -> CropCache:
    """The :class:`CropCache` of ``samples`` (labelled faces) cropped by ``landmarker``'s path.

    ``landmarker`` is a :class:`~laplace_landmarks.inference.Landmarker` (one refinement pass,
    as users run it). Raises LandmarksError when no face has a detection holding its centre.
    """
    images, points, visibility, matrices, kept = [], [], [], [], []
    start = time.perf_counter()
    for sample in samples:
        rgb = to_rgb_array(str(sample.image_path), "image")
        box = detection_holding(landmarker.detector(rgb), np.nanmean(sample.points, axis=0))
        if box is None:
            continue
        crop = landmarker.predict(rgb, boxes=[box])[0].crop  # box -> first pass -> re-crop
        images.append(
            torch.from_numpy(np.ascontiguousarray(warp_crop(rgb, crop).transpose(2, 0, 1)))
        )
        points.append(torch.from_numpy(crop.to_crop(sample.points).astype(np.float32)))
        vis = sample.visibility if sample.visibility is not None else np.ones(len(sample.points))
        visibility.append(torch.from_numpy(np.asarray(vis, dtype=bool)))
        matrices.append(torch.tensor(np.asarray(crop.matrix), dtype=torch.float64))
        kept.append(sample)
    if not images:
        raise LandmarksError(
            f"{label}: no training face had a detection holding its ground-truth centre"
        )
    print(
        f"{label}: {len(images)} of {len(samples)} faces ({time.perf_counter() - start:.0f} s)",
        file=sys.stderr,
    )
    return CropCache(
        torch.stack(images),
        torch.stack(points),
        torch.stack(visibility),
        torch.stack(matrices),
        [s.identity for s in kept],
        [str(s.image_path) for s in kept],
    )


def file_sha256(path: str | Path) -> str:
    """The sha256 hex digest of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def self_crop_cache(
    weights: str | Path,
    dataset: LandmarkDataset,
    cache_dir: str | Path,
    *,
    threads: int | None = 1,
) -> CropCache:
    """Self crops of ``dataset`` by ``weights`` (a file or a shipped name), built once, cached.

    The cache file is named by a sha256 of the weights file's bytes, the dataset's samples (paths,
    file stats, annotations) and the crop settings, so new weights or new labels build a new one.
    """
    path = resolve_checkpoint(weights)
    settings = {
        "kind": "self-crops",
        "weights_sha256": file_sha256(path),
        "refine": 1,
        "flip_test": False,
        "detector": "dlib-hog",
        "upsample": 1,
        "shift": list(DETECTOR_CROP_SHIFT),
        "scale": DETECTOR_CROP_SCALE,
    }
    key = cache_key(dataset, settings)
    name = f"self-crops-{dataset.name}-{dataset.split}-{key[:20]}.pt".replace("/", "_")
    file = Path(cache_dir) / name
    label = f"self crops {dataset.name}/{dataset.split} by {Path(str(weights)).name}"
    if file.exists():
        try:
            cache = CropCache.load(file)
            print(f"{label}: {len(cache)} crops (cache hit: {file})", file=sys.stderr)
            return cache
        except Exception as exc:  # a truncated or foreign file: rebuild it
            print(f"{label}: unreadable cache {file} ({exc}); rebuilding", file=sys.stderr)
    landmarker = Landmarker.from_checkpoint(path, refine=True, threads=threads, flip_test=False)
    cache = make_self_crops(landmarker, dataset.samples, label)
    cache.save(file)
    cache.file = file
    return cache
