"""Share of ground-truth points inside the paper's 5-point crop, per extension factor, on ytf68.

    nice python benchmarks/crop_coverage.py [--root ../shared/data] [--warp 300]

Uses only the annotations (no image decoding) for the coverage table. With ``--warp N`` it also
crops N test images with and without the anti-aliasing pre-reduction and compares each with a
Lanczos reference (PIL resize of the zero-padded image), reporting ms per crop and the mean
absolute difference in grey levels.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from laplace_landmarks.data.crops import crop_from_five_points, five_points_from_68, warp_crop
from laplace_landmarks.data.datasets import default_data_root, load_dataset
from laplace_landmarks.data.images import load_image

EXTENSIONS = (1.5, 1.75, 2.0, 2.25, 2.5)


def coverage(points: np.ndarray, extension: float, size: int = 80) -> tuple[float, float]:
    """(share of points inside the crop, share of faces entirely inside) for (N, 68, 2) points."""
    inside = []
    for face in points:
        crop = crop_from_five_points(five_points_from_68(face), size, extension)
        moved = crop.to_crop(face)
        inside.append(((moved >= -0.5) & (moved <= size - 0.5)).all(axis=1))
    inside = np.array(inside)
    return float(inside.mean()), float(inside.all(axis=1).mean())


def reference_crop(image: np.ndarray, crop) -> np.ndarray:
    """An anti-aliased reference: Lanczos resize of the crop's box on a zero-padded image."""
    x0, y0, x1, y1 = crop.box
    pad = int(np.ceil(max(x1 - x0, y1 - y0))) + 2
    padded = Image.fromarray(np.pad(image, ((pad, pad), (pad, pad), (0, 0))))
    box = (x0 + 0.5 + pad, y0 + 0.5 + pad, x1 + 0.5 + pad, y1 + 0.5 + pad)  # to corner coords
    return np.asarray(padded.resize((crop.size, crop.size), Image.Resampling.LANCZOS, box=box))


def warp_quality(name: str, samples) -> None:
    """Time and error against the Lanczos reference, with and without pre-reduction."""
    rows = {True: [[], [], []], False: [[], [], []]}
    for sample in samples:
        image = load_image(sample.image_path)
        crop = crop_from_five_points(five_points_from_68(sample.points))
        reference = reference_crop(image, crop).astype(np.float64)
        for antialias in (False, True):
            start = time.perf_counter()
            warped = warp_crop(image, crop, antialias=antialias)
            rows[antialias][0].append(time.perf_counter() - start)
            rows[antialias][1].append(np.abs(warped - reference).mean())
            rows[antialias][2].append(1 / crop.scale)
    for antialias, (times, diffs, downscales) in rows.items():
        method = "reduce + bilinear" if antialias else "bilinear only"
        print(
            f"| {name} ({len(samples)}) | {np.median(downscales):.1f}x | {method} "
            f"| {1000 * np.mean(times):.2f} | {np.mean(diffs):.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="data root (default: ../shared/data)")
    parser.add_argument(
        "--warp",
        type=int,
        default=0,
        help="also time N ytf68 test crops and the 19 300W fixture images",
    )
    args = parser.parse_args()
    splits = {split: load_dataset("ytf68", split, root=args.root) for split in ("train", "test")}
    points = {name: np.stack([s.points for s in d.samples]) for name, d in splits.items()}
    points["all"] = np.concatenate([points["train"], points["test"]])
    print(
        "| extension | crop half-side | "
        + " | ".join(f"{name} ({len(p)}) points / faces inside" for name, p in points.items())
        + " |"
    )
    print("|---|---|" + "---|" * len(points))
    for extension in EXTENSIONS:
        cells = []
        for face_points in points.values():
            point_share, face_share = coverage(face_points, extension)
            cells.append(f"{100 * point_share:.2f}% / {100 * face_share:.1f}%")
        print(f"| {extension} | {1 + extension:g}r | " + " | ".join(cells) + " |")
    if args.warp:
        print("\n| images | median downscale | warp | ms/crop | mean abs diff to Lanczos (0-255) |")
        print("|---|---|---|---|---|")
        test = splits["test"].samples
        warp_quality("ytf68/test", test[:: max(1, len(test) // args.warp)][: args.warp])
        data_root = Path(args.root) if args.root else default_data_root()
        fixtures = load_dataset("folder", "all", root=data_root / "fixtures" / "300w")
        warp_quality("fixtures/300w", fixtures.samples)


if __name__ == "__main__":
    main()
