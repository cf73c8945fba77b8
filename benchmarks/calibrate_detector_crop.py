"""Calibrate the dlib-box crop against the paper's 5-point crop on ytf68 TRAIN.

For every training face, run DlibHogDetector, keep the detection whose box centre is closest
to the 5-point crop centre (and contains it), and record, per face,
  shift = (crop centre - box centre) / (box width, box height)
  scale = 5-point crop side / ((box width + box height) / 2).
The medians become DETECTOR_CROP_SHIFT / DETECTOR_CROP_SCALE in laplace_landmarks/detection.py.

    nice python benchmarks/calibrate_detector_crop.py [--root ../shared/data] [--upsample 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from laplace_landmarks.data.crops import Crop, crop_from_five_points, five_points_from_68
from laplace_landmarks.data.datasets import load_dataset
from laplace_landmarks.data.images import load_image
from laplace_landmarks.data.types import Sample
from laplace_landmarks.detection import Detection, DlibHogDetector


def crop_center_side(crop: Crop) -> tuple[np.ndarray, float]:
    """The crop's square in image pixels: centre (x, y) and side."""
    x0, y0, x1, y1 = crop.box
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2]), x1 - x0


def match_detection(detections: list[Detection], center: np.ndarray) -> Detection | None:
    """The detection containing ``center`` whose box centre is closest to it, or None."""
    best, best_distance = None, np.inf
    for detection in detections:
        x0, y0, x1, y1 = detection.box
        if not (x0 <= center[0] <= x1 and y0 <= center[1] <= y1):
            continue
        distance = np.hypot((x0 + x1) / 2 - center[0], (y0 + y1) / 2 - center[1])
        if distance < best_distance:
            best, best_distance = detection, distance
    return best


def box_statistics(samples: list[Sample], detector: DlibHogDetector, load_image) -> dict:
    """Per-face shift (N, 2) and scale (N,) of the 5-point crop relative to the matched box."""
    shifts, scales, detected, matched = [], [], 0, 0
    for sample in samples:
        detections = detector(load_image(sample.image_path))
        detected += bool(detections)
        center, side = crop_center_side(crop_from_five_points(five_points_from_68(sample.points)))
        match = match_detection(detections, center)
        if match is None:
            continue
        matched += 1
        x0, y0, x1, y1 = match.box
        width, height = x1 - x0, y1 - y0
        shifts.append((center - [(x0 + x1) / 2, (y0 + y1) / 2]) / [width, height])
        scales.append(side / ((width + height) / 2))
    return {
        "shifts": np.array(shifts).reshape(-1, 2),
        "scales": np.array(scales),
        "detected": detected,
        "matched": matched,
        "total": len(samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="data root holding ytf68/")
    parser.add_argument("--upsample", type=int, default=1)
    args = parser.parse_args()
    samples = load_dataset("ytf68", "train", root=args.root).samples
    start = time.perf_counter()
    stats = box_statistics(samples, DlibHogDetector(upsample=args.upsample), load_image)
    elapsed = time.perf_counter() - start
    shift, scale = np.median(stats["shifts"], axis=0), float(np.median(stats["scales"]))
    print(
        f"ytf68 train: {stats['total']} faces, detected {stats['detected']}, "
        f"matched {stats['matched']}, {1000 * elapsed / stats['total']:.1f} ms/image"
    )
    print(f"DETECTOR_CROP_SHIFT = ({shift[0]:.4f}, {shift[1]:.4f})")
    print(f"DETECTOR_CROP_SCALE = {scale:.4f}")
    q = np.percentile(stats["scales"], [10, 90])
    print(
        f"scale 10-90th percentile: {q[0]:.3f}-{q[1]:.3f}; "
        f"shift MAD: {np.median(np.abs(stats['shifts'] - shift), axis=0).round(4)}"
    )


if __name__ == "__main__":
    main()
