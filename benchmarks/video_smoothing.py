"""Video tracking and uncertainty-aware smoothing on a synthetic video with known truth.

A bundled sample photo with ground-truth 68 points is moved, zoomed and rolled along a smooth
random path, with sensor noise and a JPEG round trip per frame (``laplace_landmarks.video_synth``).
For each shipped model this prints a markdown table of:

- NME (%, inter-ocular, against the known truth; frames without a face are left out and counted);
- jitter (% of the inter-ocular distance): with ``e_t = (pred_t - truth_t) / io_t``, the mean
  over frames t and points k of ``||e_t,k - e_t-1,k||``, i.e. frame-to-frame flicker with the
  true motion removed;
- detector calls and frames/s (wall clock of ``predict_video``, single torch thread).

Rows: the detector and 5-point refine on every frame (no tracking), tracking without smoothing,
and tracking with the Laplace Kalman filter. The process noise is tuned with ``--tune`` on a
DIFFERENT photo and path (``VALIDATION_PHOTO``, seed 1) than the reported test video
(``TEST_PHOTO``, seed 0); the default comes from ``smoothing.DEFAULT_PROCESS_NOISE``.

    nice python benchmarks/video_smoothing.py            # the test table (about 2-4 min)
    nice python benchmarks/video_smoothing.py --tune     # the validation grid first
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from laplace_landmarks import Landmarker
from laplace_landmarks.smoothing import DEFAULT_PROCESS_NOISE
from laplace_landmarks.video import FaceTracker, FrameResult, predict_video
from laplace_landmarks.video_synth import (
    TEST_PHOTO,
    VALIDATION_PHOTO,
    inter_ocular,
    sample_photo,
    synthesize_video,
)

MODELS = ("rcn-fast", "rcn-accurate")
GRID = (0.001, 0.003, 0.01, 0.03, 0.1)


def metrics(results: list[FrameResult], truth: np.ndarray) -> dict[str, float]:
    """NME (%), jitter (% of inter-ocular) and missed frames of the first face per frame."""
    pred = np.full(truth.shape, np.nan)
    for result in results:
        if result.faces:
            pred[result.index] = result.faces[0].points
    errors = (pred - truth) / inter_ocular(truth)[:, None, None]
    found = np.isfinite(errors).all(axis=(1, 2))
    nme = np.linalg.norm(errors[found], axis=-1).mean()
    steps = np.linalg.norm(np.diff(errors, axis=0), axis=-1)  # NaN where a frame has no face
    both = found[1:] & found[:-1]
    return {"nme": 100 * nme, "jitter": 100 * steps[both].mean(), "missed": int((~found).sum())}


def per_frame_detection(landmarker: Landmarker, frames: list[np.ndarray]) -> list[FrameResult]:
    """No tracking: the detector and the refine step on every frame (for reference)."""
    from laplace_landmarks.tracking import TrackedFace

    results = []
    for index, frame in enumerate(frames):
        faces = landmarker.predict(frame)[:1]
        tracked = [
            TrackedFace(f.points, f.scale, f.points, f.scale, f.box, f.score, f.crop) for f in faces
        ]
        results.append(FrameResult(index, index / 25.0, tracked, True))
    return results


def run(landmarker: Landmarker, frames: list, mode: str, **options) -> tuple[list, int, float]:
    """(results, detector calls, frames/s) for one mode: 'detect', 'raw' or 'smooth'."""
    start = time.perf_counter()
    if mode == "detect":
        results, calls = per_frame_detection(landmarker, frames), len(frames)
    else:
        tracker = FaceTracker(landmarker, smooth=mode == "smooth", **options)
        results = predict_video(landmarker, frames, tracker=tracker)
        calls = tracker.detector_calls
    return results, calls, len(frames) / (time.perf_counter() - start)


def make_video(photo_name: str, seed: int, args: argparse.Namespace):
    photo, points = sample_photo(photo_name)
    return synthesize_video(
        photo, points, args.frames, tuple(args.size), args.face_size, seed=seed, fps=25.0
    )


def tune(landmarkers: dict[str, Landmarker], args: argparse.Namespace) -> None:
    """Validation grid: jitter and NME change against tracking without smoothing."""
    video = make_video(VALIDATION_PHOTO, 1, args)
    print(f"### Validation ({VALIDATION_PHOTO}, path seed 1, {args.frames} frames)\n")
    print("| model | motion | process noise | NME % | jitter % | jitter vs raw | ΔNME (points) |")
    print("|---|---|---|---|---|---|---|")
    for name, landmarker in landmarkers.items():
        raw = metrics(run(landmarker, video.frames, "raw")[0], video.points)
        print(f"| {name} | raw | - | {raw['nme']:.2f} | {raw['jitter']:.3f} | 1.00 | 0 |")
        for motion in ("velocity", "position"):
            for noise in GRID:
                results = run(
                    landmarker, video.frames, "smooth", process_noise=noise, motion=motion
                )[0]
                m = metrics(results, video.points)
                print(
                    f"| {name} | {motion} | {noise:g} | {m['nme']:.2f} | {m['jitter']:.3f} | "
                    f"{m['jitter'] / raw['jitter']:.2f} | {m['nme'] - raw['nme']:+.2f} |"
                )
    print()


def report(landmarkers: dict[str, Landmarker], args: argparse.Namespace) -> None:
    video = make_video(TEST_PHOTO, 0, args)
    width, height = args.size
    print(
        f"### Test ({TEST_PHOTO}, path seed 0, {args.frames} frames of {width}x{height}, "
        f"inter-ocular about {args.face_size:g} px; {args.motion} model, process noise "
        f"{args.process_noise:g}; torch threads {torch.get_num_threads()})\n"
    )
    print(
        "| model | mode | NME % | jitter % | jitter vs raw | detector calls | missed | frames/s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    options = {"process_noise": args.process_noise, "motion": args.motion}
    for name, landmarker in landmarkers.items():
        raw_jitter = None
        for mode in ("detect", "raw", "smooth"):
            if mode == "detect" and args.skip_detect:
                continue
            results, calls, fps = run(landmarker, video.frames, mode, **options)
            m = metrics(results, video.points)
            raw_jitter = m["jitter"] if mode == "raw" else raw_jitter
            ratio = f"{m['jitter'] / raw_jitter:.2f}" if raw_jitter else "-"
            label = {"detect": "detect every frame", "raw": "tracked", "smooth": "tracked + Kalman"}
            print(
                f"| {name} | {label[mode]} | {m['nme']:.2f} | {m['jitter']:.3f} | {ratio} | "
                f"{calls} | {m['missed']} | {fps:.1f} |"
            )
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--size", type=int, nargs=2, default=(480, 360), metavar=("W", "H"))
    parser.add_argument("--face-size", type=float, default=80.0, help="mean inter-ocular px")
    parser.add_argument("--process-noise", type=float, default=DEFAULT_PROCESS_NOISE)
    parser.add_argument("--motion", choices=("velocity", "position"), default="velocity")
    parser.add_argument("--tune", action="store_true", help="print the validation grid first")
    parser.add_argument("--skip-detect", action="store_true", help="skip the per-frame baseline")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    landmarkers = {name: Landmarker.pretrained(name) for name in args.models}
    if args.tune:
        tune(landmarkers, args)
    report(landmarkers, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
