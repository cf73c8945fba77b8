"""``laplace-landmarks evaluate --checkpoint PATH --data NAME [--split S]``: score a model.

The split defaults to the dataset's test split: ``test`` for ytf68, AFLW, WFLW and COFW,
``common`` for 300W (which has no ``test``), ``all`` for a folder dataset.

Prints NME (inter-ocular and inter-pupil for 68 points, box-normalised otherwise), AUC@0.08,
FR@0.08, the mean predicted Laplace scale b (crop and image pixels), the Spearman correlation of
scale and error, and the coverage of the predicted 50 % / 90 % Laplace intervals. Points are
(x, y), 0-based, with pixel centres at integers, scored in image pixels.

Crops: ``five-point`` (default) is the standard protocol, the paper's crop from the ground-truth
5 points; ``detector`` uses dlib boxes, the path a user's photo takes. Faces that cannot be
cropped (e.g. the detector finds none) are skipped and counted; for the detector protocol an
extra line gives AUC and FR with every skipped face counted as a failure.

``--protocol landmarker`` scores the real user path instead: dlib HOG box (the detection holding
the ground-truth centre; else a ground-truth fallback box, counted) -> ``Landmarker.predict``
with the model's own refine and flip_test (``--refine 0``: one pass from the detector box). It
prints inter-ocular NME mean / median, AUC, FR, 90 % interval coverage and Spearman(face scale,
NME), and with ``--dlib`` dlib's 68-point shape predictor on the same boxes (trained on iBUG
300-W, non-commercial; comparison only). See ``laplace_landmarks.path_evaluation``.
"""

from __future__ import annotations

import argparse

from laplace_landmarks.commands.arguments import (
    add_data_root,
    add_first_pass,
    plain,
    refine_passes,
    thread_count,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score a checkpoint on a dataset split (NME, AUC, FR, scale calibration)",
        description=plain(__doc__.split("\n\n", 1)[1]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        help="a .pt checkpoint, a .safetensors weights file, or a shipped model name",
    )
    p.add_argument("--data", default="ytf68", help="dataset name (ytf68, 300w, aflw, wflw, ...)")
    p.add_argument(
        "--split",
        help="split to score (default: the dataset's test split: test, or common for 300w)",
    )
    add_data_root(p)
    p.add_argument(
        "--crop",
        choices=["five-point", "detector", "box"],
        default="five-point",
        help="five-point: ground-truth 5-point crops (standard, 68 points); detector: dlib "
        "boxes (the user path); box: the annotated face box (AFLW, WFLW, COFW)",
    )
    p.add_argument(
        "--protocol",
        choices=["crop", "landmarker"],
        default="crop",
        help="crop: score network crops made by --crop (default); landmarker: the user path, "
        "Landmarker.predict on the HOG detector box (headline numbers)",
    )
    p.add_argument(
        "--flip-test",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="landmarker protocol: mirror the final pass (default: the model's own setting)",
    )
    p.add_argument(
        "--refine",
        type=refine_passes,
        metavar="N",
        help="landmarker protocol: 5-point re-crop passes after the box crop (0: one pass from "
        "the detector box; default: the model's own setting: 0 for a model trained on detector "
        "crops, else 1)",
    )
    from laplace_landmarks.path_evaluation import BOX_SOURCES  # no torch

    add_first_pass(p, "landmarker protocol: ")
    p.add_argument(
        "--boxes",
        choices=BOX_SOURCES,
        help="landmarker protocol: each face's box, the same for every system: detector (the "
        "HOG box; default), points (the tight box of the ground-truth points), loose (that box "
        "grown: 25 %% of its width per side, 35 %% of its height above, 15 %% below), jitter "
        "(the HOG box moved by N(0, 8 %%) and scaled by U(0.85, 1.15), seeded)",
    )
    p.add_argument(
        "--dlib", action="store_true", help="landmarker protocol: score dlib's predictor too"
    )
    p.add_argument(
        "--dlib-tta",
        action="store_true",
        help="landmarker protocol: also score dlib as the pseudo-label --tta teacher (the median "
        "of its points on 7 boxes and their mirror images; 14 calls per face)",
    )
    p.add_argument(
        "--dlib-predictor",
        help="dlib's shape_predictor_68_face_landmarks.dat (default: face-recognition-models' "
        "copy, else /usr/share/dlib)",
    )
    p.add_argument("--limit", type=int, help="landmarker protocol: score only the first N faces")
    p.add_argument(
        "--json",
        help="write every number (and per-landmark Spearman) here; checked writable first",
    )
    p.add_argument(
        "--plots",
        help="folder for ced.png and calibration.png (needs matplotlib); checked before scoring",
    )
    p.add_argument("--threads", type=thread_count, help="torch CPU threads")
    p.add_argument("--cache-dir", help="where crop caches go (default ~/.cache/laplace-landmarks)")
    p.add_argument("--threshold", type=float, default=0.08, help="AUC/FR threshold (0.08)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from laplace_landmarks.errors import LandmarksError
    from laplace_landmarks.evaluation_run import (
        check_output_file,
        evaluate_checkpoint,
        format_report,
        write_json_atomic,
    )

    if args.threads is not None and args.threads < 1:
        raise LandmarksError("--threads must be >= 1")
    if not args.threshold > 0:
        raise LandmarksError("--threshold must be > 0")
    if args.json:
        check_output_file(args.json, "--json")
    if args.protocol == "landmarker":
        return _run_landmarker(args)
    path_only = {
        "--dlib": args.dlib,
        "--dlib-tta": args.dlib_tta,
        "--dlib-predictor": args.dlib_predictor is not None,
        "--limit": args.limit is not None,
        "--flip-test/--no-flip-test": args.flip_test is not None,
        "--refine": args.refine is not None,
        "--first-pass": args.first_pass is not None,
        "--boxes": args.boxes is not None,
    }
    given = [flag for flag, used in path_only.items() if used]
    if given:
        raise LandmarksError(f"{given[0]} needs --protocol landmarker")
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
    if "plot_error" in result:
        raise LandmarksError(f"{result['plot_error']} (the numbers above are complete)")
    return 0


def _run_landmarker(args: argparse.Namespace) -> int:
    import sys

    from laplace_landmarks.errors import LandmarksError
    from laplace_landmarks.evaluation_run import write_json_atomic
    from laplace_landmarks.path_evaluation import format_path_report, run_landmarker_protocol

    if args.plots or args.crop != "five-point":
        raise LandmarksError("--plots and --crop do not apply to --protocol landmarker")

    def progress(stage: str, done: int, total: int) -> None:
        if done % 50 == 0 or done == total:
            print(f"{stage}: {done}/{total} faces", file=sys.stderr, flush=True)

    result = run_landmarker_protocol(
        args.checkpoint,
        args.data,
        args.split,
        args.data_root,
        limit=args.limit,
        flip_test=args.flip_test,
        threads=args.threads,
        dlib=args.dlib or args.dlib_predictor is not None,
        dlib_predictor=args.dlib_predictor,
        dlib_tta=args.dlib_tta,
        threshold=args.threshold,
        refine=args.refine,
        first_pass=args.first_pass,
        boxes=args.boxes or "detector",
        progress=progress,
    )
    print(format_path_report(result))
    if args.json:
        print(f"wrote {write_json_atomic(result, args.json)}")
    return 0
