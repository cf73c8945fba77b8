"""Where the time of ``Landmarker.predict(image, boxes=[box])`` goes, per step (one thread).

Wraps the path's steps with timers and runs the shipped model (ONNX Runtime) on the first ytf68
test image with a box around its ground truth, then prints the mean ms per call of the whole path
and of each step (steps nest: ``predict_in_image`` holds ``warp`` and ``predict_tensor``, which
holds ``ort_run``).

    python benchmarks/path_profile.py --model rcn-lite
"""

from __future__ import annotations

import argparse
import collections
import functools
import time

import torch

import laplace_landmarks.export as export
import laplace_landmarks.inference as inference
from laplace_landmarks.data.datasets import load_dataset
from laplace_landmarks.data.images import load_image

STEPS = {
    "warp": (inference, "warp_crop"),
    "refined_crop": (inference, "_refined_crop"),
    "crop_from_detection": (inference, "crop_from_detection"),
    "check_boxes": (inference, "check_boxes"),
    "ort_run": (export.OnnxSession, "run"),
    "predict_tensor": (inference.Landmarker, "_predict_tensor"),
    "predict_in_image": (inference.Landmarker, "_predict_in_image"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="rcn-lite")
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    totals: dict[str, float] = collections.defaultdict(float)
    for label, (owner, name) in STEPS.items():
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*a, _f=original, _label=label, **k):
            start = time.perf_counter()
            try:
                return _f(*a, **k)
            finally:
                totals[_label] += time.perf_counter() - start

        setattr(owner, name, timed)
    sample = load_dataset("ytf68", "test").samples[0]
    rgb, pts = load_image(sample.image_path), sample.points
    box = (pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())
    landmarker = inference.Landmarker.pretrained(
        args.model, backend="onnx", threads=1, flip_test=False
    )
    for _ in range(30):
        landmarker.predict(rgb, boxes=[box])
    totals.clear()
    start = time.perf_counter()
    for _ in range(args.calls):
        landmarker.predict(rgb, boxes=[box])
    whole = (time.perf_counter() - start) / args.calls * 1e3
    print(f"{args.model}: whole path {whole:.3f} ms per call (mean of {args.calls})")
    for label, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        share = seconds / args.calls * 1e3
        print(f"  {label:20s} {share:.3f} ms  ({100 * share / whole:.0f} %)")


if __name__ == "__main__":
    main()
