"""Where do dlib's 68 points sit relative to the ytf68 labels? A check of the labels' convention.

dlib's shape predictor was trained on human-labelled 300-W. On each ytf68 face with a dlib HOG
detection holding its ground-truth centre (same boxes as ``vs_dlib.py``), this prints the mean
point offset ``dlib - label`` in % of the inter-ocular distance, x and y, as mean ± std over faces.
A systematic x offset here is the labels' habit, which a flip-augmented model cannot learn (see
``laplace-landmarks calibrate``). Validation split by default; never used to fit anything.

    nice python benchmarks/label_offset.py [--split val]
"""

from __future__ import annotations

import argparse

import numpy as np
from vs_dlib import detected_faces, dlib_points, find_predictor

from laplace_landmarks.data.datasets import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="val")
    args = parser.parse_args()
    import dlib

    path = find_predictor(None)
    if path is None:
        raise SystemExit("dlib's shape_predictor_68_face_landmarks.dat not found (libdlib-data)")
    predictor = dlib.shape_predictor(str(path))
    faces, missed = detected_faces(load_dataset("ytf68", args.split))
    offsets = []
    for sample, rgb, _, rect in faces:
        iod = np.linalg.norm(sample.points[36] - sample.points[45])
        offsets.append((dlib_points(predictor, rgb, rect) - sample.points).mean(0) / iod * 100)
    mean, std = np.mean(offsets, axis=0), np.std(offsets, axis=0)
    print(f"ytf68/{args.split}: {len(faces)} faces ({missed} without a detection)")
    print(
        f"dlib - label, % of inter-ocular: x {mean[0]:+.2f} ± {std[0]:.2f}, y {mean[1]:+.2f} ± {std[1]:.2f}"
    )


if __name__ == "__main__":
    main()
