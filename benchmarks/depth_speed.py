"""ONNX Runtime time per face of rcn-lite at width 1/8 and depth 0-4, side by side (one thread).

Speed does not depend on the weights, so each depth is a randomly initialised network exported
to ONNX. The sessions are timed in alternating rounds of 100 single-face calls; the script
prints the median ms per face and the median per-round ratio to depth 0. Behind
docs/results.md, "rcn-lite at depth 2".

    python benchmarks/depth_speed.py [--depths 0 1 2 3 4] [--rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from laplace_landmarks.export import OnnxSession, export_onnx, require_onnx
from laplace_landmarks.models import create_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()
    require_onnx()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    crops = np.random.default_rng(0).integers(0, 256, (1, 3, 80, 80), dtype=np.uint8)
    sessions = {}
    with tempfile.TemporaryDirectory() as folder:
        for depth in args.depths:
            model = create_model("rcn-lite", width=args.width, depth=depth).eval()
            path = export_onnx(model, Path(folder) / f"depth{depth}.onnx")
            sessions[depth] = OnnxSession(path, threads=1)
        for session in sessions.values():
            for _ in range(args.calls // 2):
                session.run(crops)
        times: dict[int, list[float]] = {depth: [] for depth in sessions}
        for _ in range(args.rounds):
            for depth, session in sessions.items():
                start = time.perf_counter()
                for _ in range(args.calls):
                    session.run(crops)
                times[depth].append((time.perf_counter() - start) / args.calls * 1e3)
    base = times[args.depths[0]]
    for depth, values in times.items():
        ms = statistics.median(values)
        ratio = statistics.median(a / b for a, b in zip(values, base, strict=True))
        print(f"depth {depth}: {ms:.3f} ms/face ({1000 / ms:.0f} faces/s), "
              f"{ratio:.2f}x depth {args.depths[0]}")  # fmt: skip


if __name__ == "__main__":
    main()
