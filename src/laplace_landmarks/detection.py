"""Face detectors (offline: nothing is downloaded) and the detector-box crop rule.

Boxes are (x0, y0, x1, y1) in continuous image coordinates, where pixel centres sit at integers
((x, y), 0-based), so a box covering pixels ``left..right`` spans ``left - 0.5`` to
``right + 0.5``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from laplace_landmarks.data.crops import (
    DEFAULT_SIZE,
    Crop,
    crop_from_box,
    crop_from_five_points,
    five_points_from_68,
)

# Calibration of the dlib HOG box against the paper's 5-point crop (extension 2.0), from
# `nice python benchmarks/calibrate_detector_crop.py` on the ytf68 TRAIN split only (2,944
# faces, DlibHogDetector(upsample=1); 2,843 faces had a detection containing their 5-point crop
# centre). Medians over those faces: (crop centre - box centre) / (box width, box height), and
# crop side / ((box width + box height) / 2). The scale's 10th-90th percentiles are 1.245-1.647.
DETECTOR_CROP_SHIFT: tuple[float, float] = (0.0229, 0.0454)
DETECTOR_CROP_SCALE: float = 1.4378


@dataclass(frozen=True)
class Detection:
    """One face: box (x0, y0, x1, y1), continuous edge coordinates, and a detector score."""

    box: tuple[float, float, float, float]
    score: float


def detection_holding(
    detections: list[Detection] | tuple[Detection, ...], centre
) -> tuple[float, float, float, float] | None:
    """The box, among ``detections``, that holds ``centre`` (x, y) and is nearest-centred on it.

    How a labelled face is matched to a detection (evaluation, self crops): None when no box
    holds the centre."""
    cx, cy = float(centre[0]), float(centre[1])
    holding = [
        d.box for d in detections if d.box[0] <= cx <= d.box[2] and d.box[1] <= cy <= d.box[3]
    ]
    if not holding:
        return None
    return min(holding, key=lambda b: math.hypot((b[0] + b[2]) / 2 - cx, (b[1] + b[3]) / 2 - cy))


def fallback_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """The box whose detector-rule crop is exactly the ground-truth 5-point crop (68 points).

    :func:`crop_from_detection` makes a square of side ``DETECTOR_CROP_SCALE * w`` centred at the
    box centre plus ``DETECTOR_CROP_SHIFT * w``; this inverts it for the 5-point crop's square.
    """
    x0, y0, x1, y1 = crop_from_five_points(five_points_from_68(points)).box
    side = (x1 - x0) / DETECTOR_CROP_SCALE
    cx = (x0 + x1) / 2 - DETECTOR_CROP_SHIFT[0] * side
    cy = (y0 + y1) / 2 - DETECTOR_CROP_SHIFT[1] * side
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def labelled_face_box(
    detections: list[Detection] | tuple[Detection, ...],
    points: np.ndarray,
    visible: np.ndarray | None = None,
    fallback: bool = True,
) -> tuple[tuple[float, float, float, float] | None, bool]:
    """The detector box of a labelled face and whether the detector found it.

    The box is :func:`detection_holding` the ground-truth centre (the mean of the ``visible``
    points, all when None); without one, :func:`fallback_box` of the (68) points when
    ``fallback``, else None. How the Landmarker-path evaluation and ``data.crop = "detector"``
    training crops place a labelled face."""
    points = np.asarray(points, dtype=np.float64)
    shown = points if visible is None else points[np.asarray(visible, bool)]
    box = detection_holding(detections, np.nanmean(shown, axis=0))
    if box is not None:
        return box, True
    return (fallback_box(points) if fallback else None), False


class FaceDetector(Protocol):
    """Anything that finds faces in an HxWx3 uint8 RGB image, best score first."""

    def __call__(self, image: np.ndarray) -> list[Detection]: ...


class DlibHogDetector:
    """dlib's built-in HOG + linear SVM frontal face detector (ships inside dlib, no download).

    upsample: how many times dlib doubles the image before detecting (finds faces down to about
        40 px with 1, 80 px with 0; each step costs about 4x the time).
    threshold: dlib's ``adjust_threshold``, the least score a detection keeps (``predict
        --min-score``); lower finds more faces and more false positives.

    The score is the SVM margin: unbounded, not a probability, 0 at dlib's own decision
    threshold. Measured with ``upsample=1`` (best detection per image): the four bundled
    samples score 0.92-1.85; the 86 photos in ``tests/data`` (ytf68, 300W, LFW) a median of
    1.52, 10th percentile 0.48, 11 of them under 0.5 and 3 only -0.29 to -0.09 (missed at 0). False
    detections: upside-down ytf68 faces reach 0.22 (3 of 40 above 0), cartoon smiley faces
    drawn with Pillow 1.15 (39 of 40 above 0), while line charts with grids, markers and text
    never pass -0.51 and random noise -0.85.
    """

    def __init__(self, upsample: int = 1, threshold: float = 0.0) -> None:
        import dlib

        if upsample < 0:
            raise ValueError(f"upsample must be >= 0, got {upsample}")
        self.upsample = int(upsample)
        self.threshold = float(threshold)
        self._detector = dlib.get_frontal_face_detector()

    def __call__(self, image: np.ndarray) -> list[Detection]:
        """Detect faces in an HxWx3 uint8 RGB image; returns detections sorted by score."""
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be an HxWx3 array, got {getattr(image, 'shape', None)}")
        if image.dtype != np.uint8:
            raise ValueError(f"image must be uint8, got {image.dtype}")
        rects, scores, _ = self._detector.run(
            np.ascontiguousarray(image), self.upsample, self.threshold
        )
        detections = [
            Detection(
                box=(r.left() - 0.5, r.top() - 0.5, r.right() + 0.5, r.bottom() + 0.5),
                score=float(s),
            )
            for r, s in zip(rects, scores, strict=True)
        ]
        return sorted(detections, key=lambda d: d.score, reverse=True)


def crop_from_detection(box: tuple[float, float, float, float], size: int = DEFAULT_SIZE) -> Crop:
    """The crop for a dlib HOG box that imitates the paper's 5-point rule (extension 2.0).

    Uses the calibrated :data:`DETECTOR_CROP_SHIFT` and :data:`DETECTOR_CROP_SCALE`.
    """
    return crop_from_box(box, size=size, scale=DETECTOR_CROP_SCALE, shift=DETECTOR_CROP_SHIFT)
