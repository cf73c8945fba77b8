"""``laplace-landmarks align``: aligned face crops (ArcFace, mean-shape or FFHQ layout) and a JSON.

For every face found in the inputs (images or folders, as ``predict`` takes them) it writes
``OUT/<name>_face<i>.png`` and one ``OUT/align.json``::

    {"model": ..., "version": ..., "template": "arcface", "size": 112, "max_scale": 0.06,
     "faces": [{"image": "in/a.jpg", "face": 0, "file": "a_face0.png", "box": [x0, y0, x1, y1],
                "transform": [[a, b, tx], [c, d, ty]], "points": [[x, y], ...],
                "scale": [[bx, by], ...], "reliable": true, "relative_scale": 0.027}, ...],
     "errors": [{"path": "in/bad.jpg", "error": "..."}]}

``transform`` maps image pixels to crop pixels; ``points`` and ``scale`` are in crop pixels. A
face whose ``relative_scale`` (mean Laplace scale of the eye, nose-tip and mouth-corner points
over the inter-ocular distance; ``laplace_landmarks.alignment``) exceeds ``--max-scale`` is
written with ``"reliable": false``, or with ``--skip-unreliable`` listed with ``"file": null`` and
no PNG. A bad input file is reported (stderr and ``errors``) and skipped. Exit 0 when at least
one image was processed, else 2. Like ``predict``, the run locks ``--out`` and refuses files an
earlier run left there unless ``--overwrite`` (``outputs.claim_out_folder``); files are written
atomically and the JSON is strict (a non-finite number is ``null``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from laplace_landmarks import __version__
from laplace_landmarks.alignment import DEFAULT_MAX_SCALE, DEFAULT_SIZES, TEMPLATES
from laplace_landmarks.commands.predict import ImageResult, collect_images
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.outputs import (
    claim_out_folder,
    format_document,
    printable,
    say,
    write_png,
    write_text_output,
)

ALIGN_JSON = "align.json"
DOCUMENT_LISTS = ("faces", "errors")  # the JSON keys written one item per line


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``align`` command."""
    parser = subparsers.add_parser(
        "align",
        help="write aligned face crops (ArcFace, mean-shape or FFHQ layout) and align.json",
        description="Find faces, fit a similarity from their 68 landmarks to a canonical layout "
        "and write the aligned crops, with a JSON of transforms, crop points and a reliability "
        "flag from the predicted uncertainty.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="images or folders")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--template",
        choices=TEMPLATES,
        default="arcface",
        help="arcface: 5 points onto the ArcFace 112x112 layout (default); mean68: all 68 points "
        "onto a 300W mean shape in the same frame; ffhq: the FFHQ oriented square",
    )
    parser.add_argument(
        "--size", type=int, default=None, help="crop side in pixels (default 112; ffhq 1024)"
    )
    parser.add_argument("--model", default=None, help="shipped model name or weights path")
    parser.add_argument(
        "--max-scale",
        type=float,
        default=DEFAULT_MAX_SCALE,
        help="largest mean relative Laplace scale (scale / inter-ocular distance) of a reliable "
        f"face (default {DEFAULT_MAX_SCALE}: real photos give 0.02-0.045, non-faces 0.08 and up)",
    )
    parser.add_argument(
        "--skip-unreliable", action="store_true", help="write no crop for unreliable faces"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace files an earlier run left in the output folder (default: refuse to start)",
    )
    parser.set_defaults(func=run_align)


def crop_name(key: str, face: int) -> str:
    """The crop file of one face: ``<key>_face<face>.png``."""
    return f"{key}_face{face}.png"


def run_align(args: argparse.Namespace) -> int:
    """Align every face of every input; exit 0 when at least one image was processed, else 2."""
    if args.size is not None and args.size < 8:
        raise LandmarksError(f"--size must be >= 8, got {args.size}")
    if not args.max_scale > 0:
        raise LandmarksError(f"--max-scale must be positive, got {args.max_scale}")
    inputs, errors = collect_images(args.paths, exclude=args.out)
    planned = [ALIGN_JSON, *(crop_name(r.key, 0) for r in inputs)]  # face 0 stands for all
    with claim_out_folder(args.out, planned, overwrite=args.overwrite):
        from laplace_landmarks.inference import Landmarker

        landmarker = Landmarker.load(args.model, refine=True, threads=None)
        entries: list[dict[str, Any]] = []
        processed = 0
        for result in inputs:
            try:
                entries += align_image(landmarker, result, args)
            except (ValueError, OSError, MemoryError) as exc:
                errors.append({"path": printable(result.path), "error": printable(str(exc))})
                say(f"skipped {printable(result.path)}: {printable(str(exc))}")
                continue
            processed += 1
        document = {
            "model": landmarker.name,
            "version": __version__,
            "template": args.template,
            "size": args.size or DEFAULT_SIZES[args.template],
            "max_scale": args.max_scale,
            "faces": entries,
            "errors": errors,
        }
        write_text_output(format_document(document, DOCUMENT_LISTS), args.out, ALIGN_JSON)
    if not processed:
        say("no image could be processed")
        return 2
    return 0


def align_image(landmarker: Any, result: ImageResult, args: argparse.Namespace) -> list[dict]:
    """Predict one input, write its crops, return its JSON entries (one per face)."""
    from laplace_landmarks.alignment import align_face
    from laplace_landmarks.data.images import load_image

    rgb = load_image(result.path)
    faces = landmarker.predict(rgb)
    if not faces:
        say(f"no face found in {printable(result.path)}")
    entries = []
    for index, face in enumerate(faces):
        aligned = align_face(
            rgb, face.points, face.scale, args.template, args.size, max_scale=args.max_scale
        )
        name = crop_name(result.key, index)
        write = aligned.reliable or not args.skip_unreliable
        if write:
            write_png(aligned.image, args.out / name)
        if not aligned.reliable:
            say(
                f"{printable(result.path)} face {index}: unreliable alignment (relative scale "
                f"{aligned.relative_scale:.3f} > {args.max_scale})" + ("" if write else ", skipped")
            )
        entries.append(
            {
                "image": printable(result.path),
                "face": index,
                "file": name if write else None,
                "box": [round(float(v), 3) for v in face.box],
                **aligned.to_dict(),
            }
        )
    return entries
