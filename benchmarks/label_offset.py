"""Where do dlib's 68 points sit relative to the ytf68 labels? A check of the labels' convention.

dlib's shape predictor was trained on human-labelled 300-W. On each ytf68 face with a dlib HOG
detection holding its ground-truth centre (same boxes as ``vs_dlib.py`` and
``evaluate --protocol landmarker``, from ``path_evaluation.path_faces``), this prints the mean
point offset ``dlib - label`` in % of the inter-ocular distance, x and y, as mean ± std over faces.
A systematic x offset here is the labels' habit, which a flip-augmented model cannot learn (see
``laplace-landmarks calibrate``). Validation split by default; never used to fit anything.

    nice python benchmarks/label_offset.py [--split val]
"""

from __future__ import annotations

import argparse

import numpy as np

from laplace_landmarks.data.datasets import load_dataset
from laplace_landmarks.data.images import load_image
from laplace_landmarks.detection import DlibHogDetector
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.path_evaluation import dlib_points, find_dlib_predictor, path_faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="val")
    args = parser.parse_args()
    import dlib

    try:
        predictor = dlib.shape_predictor(str(find_dlib_predictor()))
    except LandmarksError as exc:
        raise SystemExit(str(exc)) from None
    all_faces = path_faces(load_dataset("ytf68", args.split).samples, DlibHogDetector(upsample=1))
    faces = [f for f in all_faces if f.detected]
    offsets = []
    for face in faces:
        iod = np.linalg.norm(face.points[36] - face.points[45])
        found = dlib_points(predictor, load_image(face.image_path), face.box)
        offsets.append((found - face.points).mean(0) / iod * 100)
    mean, std = np.mean(offsets, axis=0), np.std(offsets, axis=0)
    missed = len(all_faces) - len(faces)
    print(f"ytf68/{args.split}: {len(faces)} faces ({missed} without a detection)")
    print(
        f"dlib - label, % of inter-ocular: x {mean[0]:+.2f} ± {std[0]:.2f}, y {mean[1]:+.2f} ± {std[1]:.2f}"
    )


if __name__ == "__main__":
    main()
