"""``laplace-landmarks bench``: parameters, storage, FLOPs and one-thread CPU speed per width.

For each width x backend (torch, torch-batched, onnx, onnx-batched, onnx-int8) it prints
parameters, float32 storage, MFLOP per face, faces/s, the share of the machine's measured
single-thread fp32 peak, and whole-image frames/s through ``Landmarker.predict`` (dlib HOG
detection included). ``--arch`` picks the generator: by default that of the default shipped
model (``rcn-lite``, output stride 2; ``laplace-landmarks models`` lists them); ``rcn`` is the
paper's. Widths without a shipped model run with random weights. See ``laplace_landmarks.bench``
for details. The ONNX backends need ``pip install laplace-landmarks[onnx]``.

``--vs-dlib`` instead times the shipped models against dlib's 68-point predictor on the same
labelled photos and boxes, one thread, A/B alternating (``laplace_landmarks.speed``; the core
install, no PyTorch, plus dlib's model file): ms per face over the whole ``predict`` path, ms per
photo and frames/s with the HOG detector included, and the core install's site-packages size.
"""

from __future__ import annotations

import argparse
import json
from fractions import Fraction
from pathlib import Path

from laplace_landmarks.commands.arguments import add_data_root, plain
from laplace_landmarks.config import GENERATORS
from laplace_landmarks.errors import LandmarksError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` command."""
    parser = subparsers.add_parser(
        "bench", help="CPU speed, size and FLOPs per width and backend", description=plain(__doc__)
    )
    parser.add_argument(
        "--widths", nargs="+", default=["1", "1/2", "1/4", "1/8", "1/16"], help="e.g. 1/4 1/8"
    )
    parser.add_argument(
        "--backends",
        default="torch,torch-batched,onnx,onnx-batched,onnx-int8",
        help="comma-separated subset of torch,torch-batched,onnx,onnx-batched,onnx-int8",
    )
    parser.add_argument(
        "--arch",
        choices=GENERATORS,
        help="generator: rcn-lite (output stride 2) or the paper's rcn (default: the default "
        "shipped model's)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement")
    parser.add_argument("--batch-size", type=int, default=64, help="faces per *-batched call")
    parser.add_argument(
        "--image", type=Path, default=None, help="photo for frames/s (default: a bundled sample)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--vs-dlib",
        action="store_true",
        help="time the shipped models against dlib's 68-point predictor on labelled photos "
        "(per face, per photo with detection, frames/s, core install size)",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(VS_DLIB_MODELS),
        help=f"--vs-dlib: shipped names or model files (default: {' '.join(VS_DLIB_MODELS)})",
    )
    parser.add_argument(
        "--data", default="300w", help="--vs-dlib: labelled dataset of the photos (default 300w)"
    )
    parser.add_argument(
        "--split", help="--vs-dlib: its split (default: the test split, 300W's common)"
    )
    add_data_root(parser)
    parser.add_argument(
        "--faces",
        type=int,
        default=200,
        help="--vs-dlib: time this many detected faces (default 200)",
    )
    parser.add_argument(
        "--dlib-predictor",
        help="--vs-dlib: dlib's shape_predictor_68_face_landmarks.dat (default: "
        "face-recognition-models' copy, else /usr/share/dlib)",
    )
    parser.set_defaults(func=run_bench_command)


#: ``bench --vs-dlib``'s models: the shipped 300W models, fast to default.
VS_DLIB_MODELS = ("rcn-lite", "rcn-lite-medium", "rcn-lite-accurate-112")


def parse_widths(values: list[str]) -> list[float]:
    """``["1", "1/8", "0.25"]`` -> ``[1.0, 0.125, 0.25]``; a clear error for anything else."""
    widths = []
    for value in values:
        try:
            width = float(Fraction(value))
        except (ValueError, ZeroDivisionError, OverflowError) as exc:
            raise LandmarksError(f"--widths: {value!r} is not a number like 1/8 or 0.25") from exc
        if width <= 0:
            raise LandmarksError(f"--widths: {value!r} must be > 0")
        widths.append(width)
    return widths


def default_arch() -> str:
    """The generator of the default shipped model (index entries without ``arch`` are rcn)."""
    from laplace_landmarks.weights import pretrained_entry

    return pretrained_entry().get("arch", "rcn")


def run_bench_command(args: argparse.Namespace) -> int:
    if args.vs_dlib:
        return run_vs_dlib(args)
    from laplace_landmarks import bench

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(backends) - set(bench.BACKENDS))
    if unknown or not backends:
        raise LandmarksError(f"--backends: unknown {unknown}; choose from {list(bench.BACKENDS)}")
    if args.repeats < 1 or args.batch_size < 1:
        raise LandmarksError("--repeats and --batch-size must be >= 1")
    if args.image is not None and not args.image.is_file():
        raise LandmarksError(f"--image: {args.image} does not exist")
    rows, peak = bench.run_bench(
        parse_widths(args.widths),
        backends,
        repeats=args.repeats,
        image=args.image,
        batch_size=args.batch_size,
        arch=args.arch or default_arch(),
    )
    if args.json:
        print(json.dumps(bench.rows_to_json(rows, peak), indent=1))
    else:
        print(bench.format_table(rows, peak), end="")
    return 0


def run_vs_dlib(args: argparse.Namespace) -> int:
    """``bench --vs-dlib``: the table (or JSON) of ``speed.compare_with_dlib``."""
    from laplace_landmarks import speed

    if args.faces < 1:
        raise LandmarksError(f"--faces must be >= 1, got {args.faces}")
    result = speed.compare_with_dlib(
        args.models,
        data=args.data,
        split=args.split,
        root=args.data_root,
        faces=args.faces,
        predictor=args.dlib_predictor,
    )
    print(json.dumps(result, indent=1) if args.json else speed.format_speed_table(result), end="")
    return 0
