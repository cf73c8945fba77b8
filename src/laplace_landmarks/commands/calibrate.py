"""``laplace-landmarks calibrate``: fit the per-landmark point offset of trained weights.

Runs the model on the ground-truth 5-point crops of a training split, takes the mean residual
(label - prediction) of each landmark as its ``point_offset`` (crop pixels), prints the NME of the
validation split before and after, and writes new safetensors weights. The input file is never
overwritten. Fit on training data only: the test split must not be used here.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``calibrate`` command."""
    p = subparsers.add_parser(
        "calibrate",
        help="fit a per-landmark point offset on the training split",
        description=__doc__,
    )
    p.add_argument("--checkpoint", required=True, help=".pt, .safetensors or a shipped name")
    p.add_argument("--out", required=True, help="new .safetensors weights file")
    p.add_argument("--data", default="ytf68", help="dataset name (default ytf68)")
    p.add_argument("--data-root", help="folder holding the dataset (default ../shared/data)")
    p.add_argument("--fit-split", default="trainval-train", help="split to fit on (training)")
    p.add_argument("--check-split", default="val", help="split to report (validation)")
    p.add_argument("--json", help="also write the numbers here")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.set_defaults(func=run_calibrate)


def run_calibrate(args: argparse.Namespace) -> int:
    from laplace_landmarks.calibration import calibrate_weights
    from laplace_landmarks.evaluation_run import write_json_atomic

    result = calibrate_weights(
        args.checkpoint,
        args.out,
        dataset=args.data,
        fit_split=args.fit_split,
        check_split=args.check_split,
        root=args.data_root,
        threads=args.threads,
    )
    print("| split | NME % before | NME % after |")
    print("|---|---|---|")
    for split, before in result["nme_before"].items():
        print(f"| {split} | {before:.3f} | {result['nme_after'][split]:.3f} |")
    dx, dy = result["mean_offset_px"]
    print(
        f"offset: mean ({dx:+.3f}, {dy:+.3f}) crop px, length mean "
        f"{result['offset_length_mean_px']:.3f} / max {result['offset_length_max_px']:.3f} px"
    )
    print(f"wrote {result['out']}")
    if args.json:
        write_json_atomic(result, args.json)
    return 0
