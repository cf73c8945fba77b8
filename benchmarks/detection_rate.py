"""Detection rate of DlibHogDetector, and how close its crop is to the paper's 5-point crop.

    nice python benchmarks/detection_rate.py [--root ../shared/data] [--upsample 1] [--limit N]

Reports, per image set, the share of images with at least one detection and the time per image.
On ytf68 test it also matches each face to the detection containing its 5-point crop centre and
compares crop_from_detection(box) with the 5-point crop (extension 2.0): centre offset and
side-length error, both in % of the 5-point crop's side.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from calibrate_detector_crop import crop_center_side, match_detection

from laplace_landmarks.data.crops import crop_from_five_points, five_points_from_68
from laplace_landmarks.data.images import load_image
from laplace_landmarks.data.types import Sample
from laplace_landmarks.detection import DlibHogDetector, crop_from_detection
from laplace_landmarks.errors import ImageError


def detection_rate(paths: list[Path], detector: DlibHogDetector) -> dict:
    """Images with at least one face, unreadable images, and mean time per image."""
    found = unreadable = 0
    start = time.perf_counter()
    for path in paths:
        try:
            found += bool(detector(load_image(path)))
        except ImageError:
            unreadable += 1
    seconds = time.perf_counter() - start
    return {
        "images": len(paths),
        "found": found,
        "unreadable": unreadable,
        "ms": 1000 * seconds / max(1, len(paths)),
    }


def crop_agreement(samples: list[Sample], detector: DlibHogDetector) -> dict:
    """Detected / matched counts and per-face centre offset and side error (fractions)."""
    offsets, side_errors, detected = [], [], 0
    for sample in samples:
        detections = detector(load_image(sample.image_path))
        detected += bool(detections)
        reference = crop_from_five_points(five_points_from_68(sample.points))
        center, side = crop_center_side(reference)
        match = match_detection(detections, center)
        if match is None:
            continue
        det_center, det_side = crop_center_side(crop_from_detection(match.box))
        offsets.append(np.linalg.norm(det_center - center) / side)
        side_errors.append(abs(det_side / side - 1))
    return {
        "faces": len(samples),
        "detected": detected,
        "matched": len(offsets),
        "offsets": np.array(offsets),
        "side_errors": np.array(side_errors),
    }


def print_rate(name: str, rate: dict) -> None:
    share = 100 * rate["found"] / max(1, rate["images"])
    print(
        f"| {name} | {rate['images']} | {rate['found']} ({share:.1f}%) | {rate['unreadable']} "
        f"| {rate['ms']:.0f} |",
        flush=True,
    )


def print_agreement(name: str, stats: dict) -> None:
    offsets, sides = 100 * stats["offsets"], 100 * stats["side_errors"]
    print(
        f"| {name} | {stats['faces']} | {100 * stats['detected'] / stats['faces']:.1f}% "
        f"| {100 * stats['matched'] / stats['faces']:.1f}% | {offsets.mean():.1f}% "
        f"| {np.median(offsets):.1f}% | {sides.mean():.1f}% | {np.median(sides):.1f}% |"
    )


def main() -> None:
    from laplace_landmarks.data.datasets import load_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="data root (default: ../shared/data)")
    parser.add_argument("--upsample", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="images per set, for a quick run")
    args = parser.parse_args()
    detector = DlibHogDetector(upsample=args.upsample)
    print("| images | count | with a detection | unreadable | ms/image |")
    print("|---|---|---|---|---|")
    totals = {"images": 0, "found": 0, "unreadable": 0}
    for subset in ("lfw", "ytf"):
        unlabeled = load_dataset("unlabeled", subset, root=args.root, max_images=args.limit)
        rate = detection_rate([sample.image_path for sample in unlabeled.samples], detector)
        print_rate(f"unlabeled/{subset}", rate)
        totals = {key: totals[key] + rate[key] for key in totals}
    print_rate("unlabeled (all)", {**totals, "ms": float("nan")})
    samples = load_dataset("ytf68", "test", root=args.root).samples[: args.limit]
    start = time.perf_counter()
    stats = crop_agreement(samples, detector)
    milliseconds = 1000 * (time.perf_counter() - start) / max(1, len(samples))
    print_rate(
        "ytf68/test",
        {"images": len(samples), "found": stats["detected"], "unreadable": 0, "ms": milliseconds},
    )
    print(
        "\n| faces | count | detected | matched | centre offset mean | median "
        "| side error mean | median |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print_agreement("ytf68/test", stats)


if __name__ == "__main__":
    main()
