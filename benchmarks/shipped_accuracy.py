"""Accuracy of shipped models through the user path (``evaluate --protocol landmarker``).

A thin loop over :func:`laplace_landmarks.path_evaluation.run_landmarker_protocol`: every
labelled face gets the dlib HOG detection holding its ground-truth centre (else the
detector-equivalent box of its ground-truth 5-point crop, counted as "no detection"), then
``Landmarker.predict(image, boxes=[box])``: box crop -> network -> 5-point re-crop -> (mirrored)
final pass -> image pixels. Inter-ocular NME, AUC@0.08, FR@0.08, 90 % coverage, Spearman.

    nice python benchmarks/shipped_accuracy.py --model rcn-fast [--model rcn-lite-accurate] [--limit N]
    nice python benchmarks/shipped_accuracy.py --model rcn-lite-accurate --data 300w --split common

The same numbers for one model: ``laplace-landmarks evaluate --checkpoint NAME --data D --split S
--protocol landmarker``.
"""

from __future__ import annotations

import argparse
import json

from laplace_landmarks.path_evaluation import format_path_report, run_landmarker_protocol


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--data", default="ytf68")
    parser.add_argument("--split", default="test")
    parser.add_argument("--data-root")
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
    results = []
    for model in args.model:
        result = run_landmarker_protocol(
            model,
            args.data,
            args.split,
            args.data_root,
            limit=args.limit,
            flip_test=args.flip_test,
            threads=args.threads,
            refine=0 if args.no_refine else args.refine_passes,
        )
        print(format_path_report(result) + "\n", flush=True)
        results.append(result)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
