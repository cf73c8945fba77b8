"""Cache of cropped faces: every image decoded and cropped once, stored as one uint8 ``.pt`` file.

Points in the cache are crop pixels, (x, y), 0-based, with pixel centres at integers. The file
name is a sha256 of the source files (path, size, mtime), the annotations and the crop config,
so a change to any of them builds a new cache; an unchanged dataset is a cache hit that decodes
no image.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

from laplace_landmarks.atomic import atomic_torch_save, make_folder
from laplace_landmarks.data import images as image_io
from laplace_landmarks.data.checks import check_crop_fits
from laplace_landmarks.data.crops import (
    DEFAULT_EXTENSION,
    DEFAULT_SIZE,
    Crop,
    crop_from_box,
    crop_from_five_points,
    five_points_from_68,
    warp_crop,
)
from laplace_landmarks.data.types import LandmarkDataset, Sample
from laplace_landmarks.errors import ImageError, LandmarksError

CACHE_VERSION = 1
CropRule = Literal["five-point", "box", "detector"]
RULES: tuple[str, ...] = ("five-point", "box", "detector")


@dataclass
class CropCache:
    """Cropped faces of one dataset.

    images: (N, 3, size, size) uint8. points: (N, K, 2) float32 crop pixels, (x, y), pixel centres
    at integers, or None for unlabelled data. visibility: (N, K) bool or None. matrices: (N, 2, 3)
    float64 image -> crop maps (see :class:`~laplace_landmarks.data.crops.Crop`).
    skipped: (path, reason) for every sample that could not be cropped.
    """

    images: torch.Tensor
    points: torch.Tensor | None
    visibility: torch.Tensor | None
    matrices: torch.Tensor
    identities: list[str]
    paths: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    file: Path | None = None

    def __len__(self) -> int:
        return len(self.images)

    def crop(self, index: int) -> Crop:
        """The image -> crop transform of face ``index``."""
        return Crop(self.matrices[index].numpy(), int(self.images.shape[-1]))

    def save(self, path: str | Path) -> None:
        """Write atomically (temporary file, then rename) as plain tensors and lists."""
        path = Path(path)
        make_folder(path.parent)
        payload = {
            "version": CACHE_VERSION,
            "images": self.images,
            "points": self.points,
            "visibility": self.visibility,
            "matrices": self.matrices,
            "identities": list(self.identities),
            "paths": list(self.paths),
            "skipped": [list(item) for item in self.skipped],
        }
        atomic_torch_save(payload, path)

    @classmethod
    def load(cls, path: str | Path) -> CropCache:
        """Load a cache file safely (``weights_only=True``)."""
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("version") != CACHE_VERSION:
            raise ValueError(f"{path}: cache version {payload.get('version')} != {CACHE_VERSION}")
        skipped = [(str(a), str(b)) for a, b in payload["skipped"]]
        fields = ("images", "points", "visibility", "matrices", "identities", "paths")
        return cls(**{name: payload[name] for name in fields}, skipped=skipped, file=Path(path))


def concat_crop_caches(first: CropCache, second: CropCache) -> CropCache:
    """One labelled :class:`CropCache` holding ``first``'s faces, then ``second``'s.

    Raises LandmarksError when their crop sizes differ."""
    if first.images.shape[1:] != second.images.shape[1:]:
        raise LandmarksError(
            f"crops: sizes differ ({tuple(first.images.shape[1:])} vs "
            f"{tuple(second.images.shape[1:])}); self crops need the training crop size"
        )
    return CropCache(
        torch.cat([first.images, second.images]),
        torch.cat([first.points, second.points]),
        torch.cat([first.visibility, second.visibility]),
        torch.cat([first.matrices, second.matrices]),
        first.identities + second.identities,
        first.paths + second.paths,
    )


def cache_key(dataset: LandmarkDataset, config: dict) -> str:
    """sha256 of the version, the crop config, and each sample's file stats and annotations."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"version": CACHE_VERSION, **config}, sort_keys=True).encode())
    digest.update(f"{dataset.name}/{dataset.split}/{dataset.num_landmarks}".encode())
    for sample in dataset.samples:
        try:
            stat = os.stat(sample.image_path)
            file_id = f"{stat.st_size}:{stat.st_mtime_ns}"
        except OSError as exc:
            file_id = f"missing:{type(exc).__name__}"
        digest.update(f"\n{sample.image_path}|{file_id}|{sample.identity}|{sample.box}".encode())
        for array in (sample.points, sample.visibility):
            digest.update(b"none" if array is None else np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _labelled_crop(sample: Sample, image: np.ndarray, config: dict, detector) -> Crop:
    """The crop of a labelled face under the configured rule; raises ValueError if none."""
    size, rule = config["size"], config["rule"]
    if rule == "five-point":
        if sample.points.shape[0] != 68:
            raise ValueError(f"rule 'five-point' needs 68 points, got {sample.points.shape[0]}")
        five = five_points_from_68(sample.points)
        return crop_from_five_points(five, size, config["extension"])
    if rule == "box":
        box = sample.box
        if box is None:
            visible = sample.points[sample.visibility] if sample.visibility is not None else None
            visible = sample.points if visible is None or len(visible) < 2 else visible
            box = (*visible.min(axis=0), *visible.max(axis=0))
        return crop_from_box(box, size, config["box_scale"], tuple(config["box_shift"]))
    from laplace_landmarks.detection import crop_from_detection, labelled_face_box

    box, _ = labelled_face_box(
        detector(image), sample.points, sample.visibility, fallback=config.get("fallback", False)
    )
    if box is None:
        raise ValueError("no face detected around the labelled points")
    return crop_from_detection(box, size)


def _crop_one(sample: Sample, config: dict, get_detector) -> tuple[np.ndarray, Crop]:
    """Decode, choose the crop and warp one sample; raises ImageError or ValueError."""
    image = image_io.load_image(sample.image_path, max_pixels=config["max_pixels"])
    if sample.points is None:
        from laplace_landmarks.detection import crop_from_detection

        detections = get_detector()(image)
        if not detections:
            raise ValueError("no face detected")
        crop = crop_from_detection(detections[0].box, config["size"])
    else:
        if not np.all(np.isfinite(sample.points)):
            raise ValueError("NaN or infinite landmark coordinates")
        detector = get_detector() if config["rule"] == "detector" else None
        crop = _labelled_crop(sample, image, config, detector)
    check_crop_fits(crop, image.shape)
    return warp_crop(image, crop), crop


def build_crop_cache(
    dataset: LandmarkDataset,
    cache_dir: str | Path,
    *,
    size: int = DEFAULT_SIZE,
    rule: CropRule = "five-point",
    extension: float = DEFAULT_EXTENSION,
    box_scale: float = 1.0,
    box_shift: tuple[float, float] = (0.0, 0.0),
    fallback: bool = False,
    max_pixels: int = 50_000_000,
    progress: bool = True,
) -> CropCache:
    """Crop every face of ``dataset`` once and cache the result in ``cache_dir``.

    Labelled faces use ``rule``: the paper's 5-point rule from the ground truth (68 points),
    a face box (the sample's box, else the points' bounding box, with ``box_scale``/``box_shift``)
    or the dlib detector (the detection holding the ground-truth centre, see
    :func:`~laplace_landmarks.detection.labelled_face_box`; with ``fallback`` a face without one
    gets the detector-equivalent box of its 5-point crop instead of being skipped, as the
    Landmarker-path evaluation does). Unlabelled faces always use the dlib detector's best box.
    Samples whose image cannot be read, is larger than ``max_pixels``, or has no face are skipped
    and listed in ``skipped``. A one-line summary goes to stderr.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if fallback and rule != "detector":
        raise ValueError(f"fallback applies to rule='detector' only, got rule={rule!r}")
    labelled = any(sample.points is not None for sample in dataset.samples)
    if rule == "five-point" and labelled and dataset.num_landmarks != 68:
        raise ValueError(
            f"rule: 'five-point' needs 68-point annotations, {dataset.name} has "
            f"{dataset.num_landmarks}; use rule='box' or rule='detector'"
        )
    config = {
        "size": int(size),
        "rule": rule,
        "extension": float(extension),
        "box_scale": float(box_scale),
        "box_shift": list(map(float, box_shift)),
        "max_pixels": int(max_pixels),
        **_detector_config(dataset, rule),
    }
    if rule == "detector" and labelled:  # how a labelled face meets its detection
        config["match"] = "holding the visible centre, nearest-centred"
        if fallback:
            config["fallback"] = "five-point-equivalent box"
    key = cache_key(dataset, config)
    path = Path(cache_dir) / f"{dataset.name}-{dataset.split}-{key[:20]}.pt".replace("/", "_")
    label = f"crop cache {dataset.name}/{dataset.split}"
    if path.exists():
        try:
            cache = CropCache.load(path)
            print(
                f"{label}: {len(cache)} crops, {len(cache.skipped)} skipped (cache hit: {path})",
                file=sys.stderr,
            )
            return cache
        except Exception as exc:  # a truncated or foreign file: rebuild it
            print(f"{label}: unreadable cache {path} ({exc}); rebuilding", file=sys.stderr)
    start = time.perf_counter()
    cache = _build(dataset, config, progress)
    cache.save(path)
    cache.file = path
    print(
        f"{label}: {len(cache)} crops, {len(cache.skipped)} skipped, built in "
        f"{time.perf_counter() - start:.1f} s -> {path}",
        file=sys.stderr,
    )
    return cache


def _detector_config(dataset: LandmarkDataset, rule: str) -> dict:
    """The detector's settings and calibration, part of the key when the detector is used."""
    if rule != "detector" and all(s.points is not None for s in dataset.samples):
        return {}
    from laplace_landmarks import detection

    return {
        "detector": "dlib-hog",
        "upsample": 1,
        "shift": list(detection.DETECTOR_CROP_SHIFT),
        "scale": detection.DETECTOR_CROP_SCALE,
    }


def _build(dataset: LandmarkDataset, config: dict, progress: bool) -> CropCache:
    labelled = [sample.points is not None for sample in dataset.samples]
    if any(labelled) and not all(labelled):
        raise ValueError("a dataset must be all labelled or all unlabelled")
    num_landmarks = dataset.num_landmarks if any(labelled) else 0
    detector = None

    def get_detector():
        nonlocal detector
        if detector is None:
            from laplace_landmarks.detection import DlibHogDetector

            detector = DlibHogDetector(upsample=config.get("upsample", 1))
        return detector

    crops, matrices, kept = [], [], []
    skipped = list(dataset.skipped)
    samples = dataset.samples
    if progress:
        from tqdm import tqdm

        samples = tqdm(samples, desc=f"cropping {dataset.name}/{dataset.split}", unit="img")
    for sample in samples:
        try:
            pixels, crop = _crop_one(sample, config, get_detector)
        except (ImageError, ValueError, OSError, Image.DecompressionBombError) as exc:
            skipped.append((str(sample.image_path), str(exc)))
            continue
        crops.append(torch.from_numpy(pixels).permute(2, 0, 1))
        matrices.append(crop.matrix)
        kept.append((sample, crop))
    return _assemble(crops, matrices, kept, skipped, config["size"], num_landmarks)


def _assemble(crops, matrices, kept, skipped, size, num_landmarks) -> CropCache:
    """Stack the kept crops; points and visibility are None when num_landmarks is 0."""
    points = visibility = None
    if kept and num_landmarks:
        points = torch.from_numpy(
            np.stack([crop.to_crop(s.points) for s, crop in kept]).astype(np.float32)
        )
        masks = [
            np.ones(len(s.points), bool) if s.visibility is None else s.visibility for s, _ in kept
        ]
        visibility = torch.from_numpy(np.stack(masks).astype(bool))
    elif not kept and num_landmarks:
        points = torch.zeros(0, num_landmarks, 2)
        visibility = torch.zeros(0, num_landmarks, dtype=torch.bool)
    empty = torch.zeros(0, 3, size, size, dtype=torch.uint8)
    return CropCache(
        images=torch.stack(crops) if crops else empty,
        points=points,
        visibility=visibility,
        matrices=torch.from_numpy(np.stack(matrices) if matrices else np.zeros((0, 2, 3))),
        identities=[s.identity for s, _ in kept],
        paths=[str(s.image_path) for s, _ in kept],
        skipped=skipped,
    )
