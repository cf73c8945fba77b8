"""``laplace-landmarks calibrate``: fit the point offset and the scale factor of trained weights.

Runs the model on the crops it was trained on (ground-truth 5-point crops, or the detector's
crops for a one-pass model trained with ``--crop detector``; ``--crop`` overrides) of a training
split, takes the mean residual
(label - prediction) of each landmark as its ``point_offset`` (crop pixels), and prints the NME of
the validation split before and after. Then, with that offset applied, it fits one
``scale_factor`` on the validation split: the factor on the predicted Laplace scales b that makes
the 90 % interval |error| <= b ln(10) cover 90 % of the validation points (per axis), and prints
the coverage before and after (``--no-scale`` skips this and keeps the file's factor). It writes
new safetensors weights; the input file is never overwritten. The test split is never used here.
The splits default to the dataset's: trainval-train / val for 300W and ytf68, train / val for a
folder dataset (e.g. one written by data pseudo-label) and the COCO sets.
"""

from __future__ import annotations

import argparse

from laplace_landmarks.commands.arguments import add_data_root, plain, thread_count
from laplace_landmarks.run_config import CHOICES


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``calibrate`` command."""
    p = subparsers.add_parser(
        "calibrate",
        help="fit the point offset (training split) and the scale factor (validation split)",
        description=plain(__doc__),
    )
    p.add_argument("--checkpoint", required=True, help=".pt, .safetensors or a shipped name")
    p.add_argument("--out", required=True, help="new .safetensors weights file")
    p.add_argument(
        "--data", default="ytf68", help="dataset name (ytf68, 300w, folder, ...; default ytf68)"
    )
    add_data_root(p)
    p.add_argument(
        "--fit-split",
        help="training split to fit the offset on (default: trainval-train for 300w and ytf68, "
        "else train)",
    )
    p.add_argument(
        "--check-split",
        help="validation split to report and to fit the scale factor on (default: val)",
    )
    p.add_argument(
        "--no-scale",
        action="store_true",
        help="do not fit the scale factor (keep the one in the file, 1 if it has none)",
    )
    p.add_argument(
        "--crop",
        choices=CHOICES["data.crop"],
        help="how faces are cut for fitting: ground-truth 5-point crops or the detector's crops "
        "(default: the crops the model was trained on, its config's data.crop)",
    )
    p.add_argument("--json", help="also write the numbers here")
    p.add_argument("--threads", type=thread_count, default=1, help="torch CPU threads")
    p.set_defaults(func=run_calibrate)


def run_calibrate(args: argparse.Namespace) -> int:
    from laplace_landmarks.calibration import calibrate_weights
    from laplace_landmarks.data.datasets import default_split
    from laplace_landmarks.evaluation_run import write_json_atomic

    check_split = args.check_split or default_split(args.data, "val")
    result = calibrate_weights(
        args.checkpoint,
        args.out,
        dataset=args.data,
        fit_split=args.fit_split or default_split(args.data, "fit"),
        check_split=check_split,
        root=args.data_root,
        threads=args.threads,
        fit_scale=not args.no_scale,
        crop=args.crop,
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
    fit = result["scale_fit"]
    if fit:
        print(
            f"90 % interval coverage on {check_split}: {100 * fit['coverage_before']:.1f} % "
            f"-> {100 * fit['coverage_after']:.1f} % (scale factor {fit['factor']:.4f}; "
            f"Laplace MLE would give {fit['mle_factor']:.4f})"
        )
    else:
        print(f"scale factor: {result['scale_factor']:.4f} (kept, --no-scale)")
    junk = result["faceless_relative_scale"]
    verdict = (
        "all flagged by align"
        if junk["min"] > junk["align_threshold"]
        else "WARNING: over-confident on junk, align would pass some"
    )
    print(
        f"on {junk['images']} boxes of pure noise (no face): relative scale median "
        f"{junk['median']:.3f}, min {junk['min']:.3f} (align's threshold {junk['align_threshold']}; "
        f"{verdict})"
    )
    print(f"wrote {result['out']}")
    if args.json:
        write_json_atomic(result, args.json)
    return 0
