"""Our models against dlib's 68-point shape predictor: speed (A/B, one thread) and NME on ytf68 TEST.

Both systems get the SAME box on every ytf68 TEST image, from the library's Landmarker-path
protocol (:mod:`laplace_landmarks.path_evaluation`, also ``evaluate --protocol landmarker
--dlib``): the dlib HOG detection (``DlibHogDetector(upsample=1)``) holding the face's
ground-truth centre, nearest-centred; faces without one get the detector-equivalent box of their
ground-truth 5-point crop, are counted, and are scored in the NME but not timed.

- **NME** (inter-ocular, image pixels, all test faces): dlib ``predictor(image, rect)``
  against ``Landmarker.predict(image, boxes=[box])`` (detector-box crop, network, 5-point
  refinement, mapping back), by ``path_evaluation.evaluate_path``.
- **Speed**, one thread, on the first ``--timing-faces`` detected faces, A/B alternating face by
  face (the order flips every face), median ms per face:
  - *model only*: our network + decoding on one pre-cut 80x80 crop (the detector-box crop; ONNX
    Runtime fp32 unless ``--backends`` says otherwise) against dlib's ``predictor(image, rect)``
    (dlib reads the pixels it needs straight from the image, so it has no separate crop step);
  - *full path*: ``Landmarker.predict(image, boxes=[box])`` against ``predictor(image, rect)`` plus
    reading its 68 parts into an array. Detection is excluded from both.

dlib's model file is benchmark-only, never a dependency: Debian's ``libdlib-data``
(``apt-get install libdlib-data`` -> ``/usr/share/dlib/shape_predictor_68_face_landmarks.dat``) or
the PyPI package ``face-recognition-models``. It was trained on the iBUG 300-W data, whose licence
excludes commercial use (Debian ships the file itself as CC0).

    nice python benchmarks/vs_dlib.py                       # rcn-fast and rcn-lite-accurate
    nice python benchmarks/vs_dlib.py --models rcn-fast --timing-faces 100
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from laplace_landmarks.data.crops import warp_crop
from laplace_landmarks.data.datasets import load_dataset
from laplace_landmarks.data.images import load_image
from laplace_landmarks.detection import DlibHogDetector, crop_from_detection
from laplace_landmarks.dlib_reference import dlib_points, find_dlib_predictor
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.inference import Landmarker
from laplace_landmarks.machine import cpu_name
from laplace_landmarks.path_evaluation import PathFace, evaluate_path, path_faces


def detected_faces(faces: list[PathFace]) -> list[tuple]:
    """(face, rgb, box) for the faces that have a HOG detection (the timing set)."""
    return [(f, load_image(f.image_path), f.box) for f in faces if f.detected]


def nme_table(faces: list[PathFace], predictor, landmarkers: dict[str, Landmarker]) -> list[str]:
    rows = []
    for index, (name, lm) in enumerate(landmarkers.items()):
        result = evaluate_path(lm, faces, predictor if index == 0 else None)
        named = ([("dlib shape predictor", result["dlib"])] if index == 0 else []) + [
            (name, result["ours"])
        ]
        for label, row in named:
            rows.append(
                f"| {label} | {row['faces']} | {row['nme_percent_mean']:.3f} "
                f"| {row['nme_percent_median']:.3f} | {row['fr_percent']:.2f} |"
            )
            print(rows[-1], flush=True)
    return rows


def ab_times(call_a, call_b, faces) -> tuple[float, float]:
    """Median seconds per face of ``call_a(face)`` and ``call_b(face)``, alternating A/B, B/A."""
    times_a, times_b = [], []
    for index, face in enumerate(faces):
        order = [(call_a, times_a), (call_b, times_b)]
        for call, times in order if index % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            call(face)
            times.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b)


def speed_rows(faces, predictor, landmarkers: dict[str, Landmarker]) -> list[str]:
    def run_dlib(face):
        return dlib_points(predictor, face[1], face[2])

    rows = []
    for name, lm in landmarkers.items():
        crops = {id(f): _crop(f, lm.crop_size) for f in faces}
        for face in faces[:3]:  # warm-up both
            run_dlib(face)
            lm.predict(face[1], boxes=[face[2]])
        model = ab_times(run_dlib, lambda f, lm=lm, c=crops: lm.predict_batch(c[id(f)]), faces)
        full = ab_times(run_dlib, lambda f, lm=lm: lm.predict(f[1], boxes=[f[2]]), faces)
        for what, (dlib_s, ours_s) in (("model only", model), ("full path", full)):
            rows.append(
                f"| {name} | {what} | {len(faces)} | {1e3 * dlib_s:.2f} | {1e3 * ours_s:.2f} "
                f"| {ours_s / dlib_s:.2f}x |"
            )
            print(rows[-1], flush=True)
    return rows


def _crop(face, size: int) -> np.ndarray:
    crop = crop_from_detection(face[2], size)
    return warp_crop(face[1], crop).transpose(2, 0, 1)[None].copy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictor", type=Path, default=None, help="dlib 68-point .dat file")
    parser.add_argument("--models", nargs="+", default=["rcn-fast", "rcn-lite-accurate"])
    parser.add_argument("--backends", nargs="+", default=["onnx", "torch"])
    parser.add_argument("--timing-faces", type=int, default=200)
    parser.add_argument("--max-images", type=int, default=None, help="subsample the test split")
    parser.add_argument(
        "--flip-test",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="mirror our final pass (off by default here, unlike predict for the mirrored models)",
    )
    args = parser.parse_args()
    try:
        path = find_dlib_predictor(args.predictor)
    except LandmarksError as exc:
        print(f"{exc}; skipping")
        return
    import dlib

    torch.set_num_threads(1)
    predictor = dlib.shape_predictor(str(path))
    landmarkers = {
        f"{model} ({backend}{', mirrored' if args.flip_test else ''})": Landmarker.pretrained(
            model, backend=backend, threads=1, flip_test=args.flip_test
        )
        for model in args.models
        for backend in args.backends
    }
    dataset = load_dataset("ytf68", "test", max_images=args.max_images)
    faces = path_faces(dataset.samples, DlibHogDetector(upsample=1))
    timed = detected_faces(faces)
    print(
        f"dlib {dlib.__version__} predictor {path}; torch {torch.__version__}, 1 thread, "
        f"{cpu_name()}; ytf68 test: {len(faces)} faces, {len(timed)} with a detection holding "
        f"the GT centre, {len(faces) - len(timed)} without (fallback box, not timed)\n"
    )
    print("| system | faces | NME % mean | NME % median | FR@8% % |\n|---|---|---|---|---|")
    nme_table(faces, predictor, landmarkers)
    print("\n| ours | timing | faces | dlib ms/face | ours ms/face | ours / dlib |")
    print("|---|---|---|---|---|---|")
    speed_rows(timed[: args.timing_faces], predictor, landmarkers)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
