"""``laplace-landmarks export``: write a model (generator + decoding) as ONNX and check it.

The ONNX file maps crops ``(N, 3, 80, 80)`` (uint8 by default) to points and Laplace scales
``(N, 68, 2)`` in crop pixels, with a dynamic batch axis. After writing, the command runs ONNX
Runtime and the torch model on the same real face crops (the bundled sample photos, cut with the
package's crop code, plus ``--verify-root`` faces) and prints the largest differences in crop
pixels. With ``--quantize int8`` it writes a statically quantised model instead (calibrated on
ytf68 train crops when the data is available, else on the samples; 7-bit weights, so every x86
CPU computes the same integers) and reports its difference.
Needs ``pip install laplace-landmarks[onnx]``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from laplace_landmarks.commands.arguments import plain
from laplace_landmarks.errors import LandmarksError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` command."""
    parser = subparsers.add_parser(
        "export",
        help="export a model to ONNX and verify it with ONNX Runtime",
        description=plain(__doc__),
    )
    parser.add_argument("--model", default=None, help="shipped model name or weights path")
    parser.add_argument("--onnx", type=Path, required=True, metavar="OUT", help="the .onnx file")
    parser.add_argument("--quantize", choices=("int8",), default=None, help="write int8 instead")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    parser.add_argument(
        "--input",
        choices=("uint8", "float32"),
        default="uint8",
        dest="input_dtype",
        help="input type: uint8 in [0, 255] (default) or float32 in [0, 1]",
    )
    parser.add_argument(
        "--verify-root",
        type=Path,
        default=None,
        help="also verify on the labelled faces of this ytf68-style folder",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-3,
        help="fail when the float ONNX model differs from torch by more (crop px; default 1e-3)",
    )
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Export, verify, optionally quantise; exit 1 when float32 verification fails."""
    from laplace_landmarks import export
    from laplace_landmarks.inference import Landmarker

    export.require_onnx()
    if args.quantize and args.input_dtype != "uint8":
        raise LandmarksError("--quantize int8 needs --input uint8")
    landmarker = Landmarker.load(args.model, refine=False, threads=None, backend="torch")
    model = landmarker.model
    crops = export.sample_crops(landmarker.crop_size, args.verify_root)
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = Path(scratch) / "fp32.onnx" if args.quantize else args.onnx
        export.export_onnx(
            model, fp32, input_dtype=args.input_dtype, opset=args.opset, config=landmarker.config
        )
        result = export.verify_onnx(fp32, model, crops)
        print(_report("float32", landmarker.name, result))
        if result["max_abs_points"] > args.tolerance:
            print(f"FAILED: float32 ONNX differs from torch by more than {args.tolerance} px")
            return 1
        if args.quantize:
            calibration = calibration_crops(landmarker.crop_size, fallback=crops)
            export.quantize_onnx(fp32, args.onnx, calibration, mode="static")
            print(_report("int8", landmarker.name, export.verify_onnx(args.onnx, model, crops)))
    print(f"wrote {args.onnx} ({args.onnx.stat().st_size / 1e6:.3f} MB)")
    return 0


def _report(kind: str, name: str, result: dict[str, float]) -> str:
    return (
        f"{name} {kind} ONNX vs torch on {int(result['faces'])} real crops: max |diff| "
        f"points {result['max_abs_points']:.2e} px, scale {result['max_abs_scale']:.2e} px"
    )


def calibration_crops(size: int, fallback, count: int = 256):
    """Up to ``count`` 5-point crops of ytf68 TRAIN faces if the data is there, else ``fallback``."""
    from laplace_landmarks.cache_dirs import crop_cache_dir
    from laplace_landmarks.data.cache import build_crop_cache
    from laplace_landmarks.data.datasets import load_dataset

    try:
        dataset = load_dataset("ytf68", "train", max_images=count)
    except (FileNotFoundError, ValueError):
        print(f"calibration: ytf68 not found; using {len(fallback)} sample crops")
        return fallback
    cache = build_crop_cache(dataset, crop_cache_dir(), size=size, progress=False)
    print(f"calibration: {len(cache)} ytf68 train crops")
    return cache.images
