"""``laplace-landmarks evaluate --checkpoint PATH --data NAME --split S``: score a model.

Prints NME (inter-ocular and inter-pupil for 68 points, box-normalised otherwise), AUC@0.08,
FR@0.08, the mean predicted Laplace scale b (crop and image pixels), the Spearman correlation of
scale and error, and the coverage of the predicted 50 % / 90 % Laplace intervals. Points are
(x, y), 0-based, with pixel centres at integers, scored in image pixels.

Crops: ``five-point`` (default) is the standard protocol, the paper's crop from the ground-truth
5 points; ``detector`` uses dlib boxes, the path a user's photo takes. Faces that cannot be
cropped (e.g. the detector finds none) are skipped and counted; for the detector protocol an
extra line gives AUC and FR with every skipped face counted as a failure.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score a checkpoint on a dataset split (NME, AUC, FR, scale calibration)",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        help="a .pt checkpoint, a .safetensors weights file, or a shipped model name",
    )
    p.add_argument("--data", default="ytf68", help="dataset name (ytf68, 300w, aflw, wflw, ...)")
    p.add_argument("--split", default="test", help="split to score (default: test)")
    p.add_argument("--data-root", help="folder holding the dataset (default: ../shared/data)")
    p.add_argument(
        "--crop",
        choices=["five-point", "detector", "box"],
        default="five-point",
        help="five-point: ground-truth 5-point crops (standard, 68 points); detector: dlib "
        "boxes (the user path); box: the annotated face box (AFLW, WFLW, COFW)",
    )
    p.add_argument("--json", help="write every number (and per-landmark Spearman) here")
    p.add_argument("--plots", help="folder for ced.png and calibration.png")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--cache-dir", help="where crop caches go (default ~/.cache/laplace-landmarks)")
    p.add_argument("--threshold", type=float, default=0.08, help="AUC/FR threshold (0.08)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from laplace_landmarks.errors import LandmarksError
    from laplace_landmarks.evaluation_run import (
        evaluate_checkpoint,
        format_report,
        write_json_atomic,
    )

    if args.threads is not None and args.threads < 1:
        raise LandmarksError("--threads must be >= 1")
    if not args.threshold > 0:
        raise LandmarksError("--threshold must be > 0")
    result = evaluate_checkpoint(
        args.checkpoint,
        args.data,
        args.split,
        root=args.data_root,
        crop=args.crop,
        cache_dir=args.cache_dir,
        threads=args.threads,
        threshold=args.threshold,
        plots_dir=args.plots,
    )
    print(format_report(result))
    if args.json:
        print(f"wrote {write_json_atomic(result, args.json)}")
    for path in result["plots"]:
        print(f"wrote {path}")
    return 0
