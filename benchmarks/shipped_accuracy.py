"""Accuracy of a model through the user path on the ytf68 test split.

Each test image goes through ``Landmarker.predict`` with the default offline detector (dlib HOG):
detector box -> crop -> network -> re-crop by the 5-point rule -> network -> image pixels. The
detected face whose box centre is nearest the ground-truth centre is scored (inter-ocular NME).
Images where the detector finds no face are counted and reported separately (and, in the
"all faces" column, scored with the 5-point ground-truth crop so no face is dropped silently).

    nice python benchmarks/shipped_accuracy.py --model rcn-fast [--model rcn-accurate] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from laplace_landmarks.commands.predict import load_landmarker
from laplace_landmarks.data.datasets import load_dataset
from laplace_landmarks.data.images import load_image
from laplace_landmarks.evaluation import auc_at, failure_rate, nme_per_face


def score_model(name: str, samples, flip_test: bool | None, refine: int) -> dict:
    lm = load_landmarker(name, refine=refine, threads=None, flip_test=flip_test)
    flip_test = lm.flip_test  # None took the shipped model's own setting
    errors, fallback, missed = [], [], 0
    start = time.perf_counter()
    for sample in samples:
        image = load_image(sample.image_path)
        gt = sample.points
        faces = lm.predict(image)
        if not faces:
            missed += 1
            x0, y0 = gt.min(0)
            x1, y1 = gt.max(0)
            faces = lm.predict(image, boxes=[(x0, y0, x1, y1)])
            fallback.append(nme_per_face(faces[0].points[None], gt[None])[0])
            continue
        centre = gt.mean(0)
        best = min(faces, key=lambda f: np.hypot(*(np.add(f.box[:2], f.box[2:]) / 2 - centre)))
        errors.append(nme_per_face(best.points[None], gt[None])[0])
    seconds = time.perf_counter() - start
    det = np.array(errors)
    all_faces = np.concatenate([det, np.array(fallback)])
    return {
        "model": name,
        "refine": refine,
        "flip_test": flip_test,
        "images": len(samples),
        "detected": len(det),
        "missed": missed,
        "nme_detected_percent": float(det.mean() * 100),
        "nme_all_percent": float(all_faces.mean() * 100),
        "auc_0.08": float(auc_at(det)),
        "fr_0.08": float(failure_rate(det)),
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int)
    parser.add_argument(
        "--flip-test",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mirror the final pass; default: the model's own setting (as `predict` does)",
    )
    parser.add_argument("--no-refine", action="store_true")
    parser.add_argument("--refine-passes", type=int, default=1, help="5-point re-crop passes")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    samples = load_dataset("ytf68", args.split).samples[: args.limit]
    passes = 0 if args.no_refine else args.refine_passes
    rows = [score_model(m, samples, args.flip_test, passes) for m in args.model]
    print(
        "| model | refine | flip | images | detected | NME % (detected) | NME % (all) | "
        "AUC@0.08 | FR@0.08 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['refine']} | {r['flip_test']} | {r['images']} | {r['detected']} "
            f"| {r['nme_detected_percent']:.2f} | {r['nme_all_percent']:.2f} | "
            f"{r['auc_0.08']:.3f} | {r['fr_0.08'] * 100:.1f}% |"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
