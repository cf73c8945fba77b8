"""``laplace-landmarks predict``: landmarks for images and folders, as JSON, CSV or iBUG ``.pts``.

Coordinates are (x, y) image pixels, 0-based, with pixel centres at integers; boxes are
(x0, y0, x1, y1) continuous edge coordinates. The output schema is documented in
``docs/predict.md``. A bad input file is reported (stderr and the JSON ``errors`` list) and
skipped; it never stops the run. Every output file is written atomically (a temporary file in
the same folder, then ``os.replace``). A run that writes files locks its output folder and,
before any work, refuses files an earlier run left there unless ``--overwrite`` (see
``laplace_landmarks.outputs``). File names that are not UTF-8 are written with ``\\xNN``
escapes, and non-finite numbers as JSON ``null`` / empty CSV cells. Every run ends with one
summary line on stderr (``outputs.RunSummary``; also the JSON ``summary``).

``--manifest FILE`` runs a large job instead: one JSON line per image, appended to
``OUT/landmarks.jsonl`` by ``manifest.run_manifest`` and resumed after a kill (the images already
recorded are skipped). The output folder's lock keeps two runs apart; the JSON Lines file itself
is not refused, so a restart into the same folder resumes it, and ``--overwrite`` starts it
afresh.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from laplace_landmarks.batches import IMAGE_ERRORS, ImageOutcome, predict_groups
from laplace_landmarks.commands.arguments import (
    MAX_THREADS,
    add_first_pass,
    landmarker_from_args,
    refine_passes,
)
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.outputs import (
    DEFAULT_OUT,
    POSE_COLUMNS,
    TABLE_NAMES,
    RunSummary,
    claim_out_folder,
    draw_faces,
    face_pose,
    face_values,
    format_document,
    landmark_columns,
    overlay_name,
    planned_files,
    pose_entry,
    pose_values,
    printable,
    progress,
    pts_name,
    say,
    stderr_is_terminal,
    unique_key,
    write_png,
    write_text_output,
)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
FORMATS = ("json", "csv", "pts")
JSONL_NAME = "landmarks.jsonl"  # the --manifest output in --out
DOCUMENT_LISTS = ("images", "errors")  # the JSON keys written one item per line


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``predict`` command."""
    parser = subparsers.add_parser(
        "predict",
        help="find faces and their 68 landmarks with per-point uncertainty",
        description="Find faces and localise 68 landmarks, each with a Laplace scale "
        "(its uncertainty, in pixels), in images, folders, videos or a CSV manifest. Every run "
        "ends with a one-line summary on stderr. See docs/predict.md for the output schema.",
    )
    parser.add_argument(
        "paths", nargs="*", metavar="PATH", help="images, folders or videos (none with --manifest)"
    )
    parser.add_argument(
        "--manifest",
        type=Path,
        metavar="CSV",
        help="a large job instead of PATHs: a CSV with a path column (and optional x0,y0,x1,y1 "
        "boxes; see laplace_landmarks.manifest); streams one JSON line per image to "
        "OUT/landmarks.jsonl and, run again after a kill, skips the images already recorded",
    )
    parser.add_argument(
        "--boxes",
        type=Path,
        help="JSON file: image path (or file name) -> list of [x0, y0, x1, y1] face boxes; "
        "images not listed use the detector",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="shipped model name, weights path (.safetensors/.pt: needs torch) or an .onnx file "
        "made by `export`",
    )
    parser.add_argument("--format", choices=FORMATS, default="json", help="default: json")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: json/csv to stdout; .pts files, overlays and the "
        "--manifest landmarks.jsonl to ./landmarks_out)",
    )
    parser.add_argument(
        "--draw",
        action="store_true",
        help="write <name>_landmarks.png overlays (videos: <stem>_landmarks.mp4) into --out: "
        "boxes, points, their uncertainty ellipses and, with --pose, the head's axes",
    )
    parser.add_argument(
        "--pose",
        action="store_true",
        help="add each face's head pose: yaw, pitch, roll in degrees (and the rotation) to "
        "JSON, yaw/pitch/roll columns to CSV, and the head's axes to --draw overlays",
    )
    parser.add_argument(
        "--min-score",
        type=float,
        default=None,
        metavar="S",
        help="the least dlib detector score a detected face needs (an SVM margin, not a "
        "probability; default 0, dlib's own threshold). Real faces: 0.9-1.9 in the bundled "
        "samples, median 1.5 in the test photos, 1 in 8 of them under 0.5; false detections "
        "measured: upside-down faces up to 0.22, cartoon faces up to 1.15. A typical stricter "
        "value is 0.5; a negative one (e.g. -0.5) finds more faces and more false ones. "
        "Faces from --boxes have no score and are kept",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace files an earlier run left in the output folder (default: refuse to start); "
        "with --manifest: start OUT/landmarks.jsonl afresh instead of resuming it",
    )
    refine = parser.add_mutually_exclusive_group()
    refine.add_argument(
        "--refine",
        type=refine_passes,
        metavar="N",
        help="5-point re-crop passes after the box crop (default: the model's own: 0 for "
        "rcn-lite, which learned the HOG detector's boxes, 1 for the others); use 1 with "
        "rcn-lite and boxes from another detector or drawn by hand",
    )
    refine.add_argument(
        "--no-refine",
        action="store_true",
        help="skip the 5-point re-crop, one pass from the box (the same as --refine 0)",
    )
    parser.add_argument(
        "--flip-test",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="average the final pass with the mirrored crop, each point weighted by its inverse "
        "variance (one more network pass; 0.1 NME points better for the default on 300W val). "
        "Default: the model's own setting (on for rcn-lite-accurate[-112], off for the others and "
        "weights files)",
    )
    add_first_pass(parser)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for the network (default: 1 with ONNX Runtime, which stays fast when "
        "another process is busy; PyTorch's own default with --backend torch)",
    )
    parser.add_argument(
        "--backend",
        choices=("torch", "onnx"),
        default=None,
        help="network runtime: onnx (ONNX Runtime; the default for shipped models and .onnx "
        "files) or torch (PyTorch, the [train] extra; the default for weights files, which onnx "
        "exports into ~/.cache/laplace-landmarks/onnx on first use)",
    )
    # video files (.mp4 .avi .mov .mkv) are handled by commands/predict_video.py
    parser.add_argument(
        "--smooth",
        choices=("offline", "causal", "none"),
        default=None,
        help="video: how the points are smoothed over time. offline (default): after tracking, "
        "a two-pass (RTS) Kalman smoother over each track, which also uses later frames: no "
        "lag and the least flicker, since a video file has every frame (synthetic test video: "
        "flicker -75 to -81 %% against -48 to -61 %% for causal, at the same NME; "
        "docs/results.md, Video); causal: the Kalman filter frame by frame, each point from past frames only "
        "(what a live stream would allow); none: the network's raw points",
    )
    parser.add_argument("--no-smooth", action="store_true", help="video: same as --smooth none")
    parser.set_defaults(func=run_predict)


@dataclass
class ImageResult:
    """One input: where it came from, its output name, and what happened to it.

    ``poses`` holds one head pose (or None) per face with ``--pose``, else it is None.
    """

    path: Path
    key: str  # unique output name without suffix, e.g. "Bill_Frist/00a"
    entry: dict[str, Any] = field(default_factory=dict)
    faces: list[Any] = field(default_factory=list)
    poses: list[Any] | None = None


def run_predict(args: argparse.Namespace) -> int:
    """Predict the images, folders, videos or ``--manifest`` of ``args``; exit 0 when at least
    one input was processed, else 2."""
    from laplace_landmarks.commands.predict_video import is_video_run, run_predict_video

    check_threads(args.threads)
    check_min_score(args.min_score)
    if args.manifest is not None:
        return run_predict_manifest(args)
    if not args.paths:
        raise LandmarksError("nothing to predict: give image, folder or video PATHs, or --manifest")
    if is_video_run(args.paths):  # video files: tracked, smoothed, per-frame output
        return run_predict_video(args)
    return run_predict_images(args)


def run_predict_images(args: argparse.Namespace) -> int:
    """Predict every image of the paths; exit 0 when at least one was processed, else 2."""
    start = time.perf_counter()
    file_out = args.out or DEFAULT_OUT
    inputs, errors = collect_images(args.paths, exclude=file_out)
    boxes = load_boxes_file(args.boxes) if args.boxes else None
    with _claim_outputs(args, inputs, file_out):
        landmarker = landmarker_from_args(args)
        results = [
            outcome.item
            for outcome in predict_groups(
                landmarker, progress(inputs, "predict", "img"), lambda r: _load(r, boxes)
            )
            if _recorded(outcome, args, errors)
        ]
        summary = RunSummary.of(
            (len(r.faces) for r in results), len(errors), time.perf_counter() - start
        )
        document = {
            "model": landmarker.name,
            "version": _version(),
            "flip_test": landmarker.flip_test,
            "first_pass": None if landmarker.first_pass is None else landmarker.first_pass.name,
            "images": [r.entry for r in results],
            "errors": errors,
            "summary": summary.to_dict(),
        }
        _write_tables(document, results, args)
    if any(r.faces for r in results) and (args.format == "pts" or args.draw):
        say(f"files written to {printable(file_out)}")
    if not results:
        say("no image could be processed")
    say(f"predict: {summary}")
    return 0 if results else 2


def check_threads(threads: int | None) -> None:
    """Refuse a ``--threads`` outside 1..MAX_THREADS (torch would fail on it per image)."""
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise LandmarksError(f"--threads must be between 1 and {MAX_THREADS}, got {threads}")


def check_min_score(min_score: float | None) -> None:
    """Refuse a ``--min-score`` that is not a finite number."""
    if min_score is not None and not math.isfinite(min_score):
        raise LandmarksError(f"--min-score must be a finite number, got {min_score}")


def _claim_outputs(
    args: argparse.Namespace, inputs: list[ImageResult], out: Path
) -> AbstractContextManager[Any]:
    """Lock ``out`` and refuse earlier files when this run writes files there (see outputs)."""
    table = TABLE_NAMES.get(args.format) if args.out is not None else None
    overlay = ".png" if args.draw else None
    pts = args.format == "pts"
    if table is None and overlay is None and not pts:
        return contextlib.nullcontext()
    names = planned_files((r.key for r in inputs), table, overlay, pts)
    return claim_out_folder(out, names, overwrite=args.overwrite)


def _load(result: ImageResult, boxes: dict | None) -> tuple[np.ndarray, list | None]:
    """One input's RGB array and its boxes from ``--boxes`` (None: detect)."""
    from laplace_landmarks.data.images import load_image

    return load_image(result.path), _boxes_for(boxes, result.path)


def _recorded(outcome: ImageOutcome, args: Any, errors: list[dict]) -> bool:
    """Record one predicted input (see ``_record``); on failure add it to ``errors``, say so and
    return False."""
    result = outcome.item
    try:
        if outcome.error is not None:
            raise outcome.error
        _record(result, outcome.rgb, outcome.faces, args)
    except IMAGE_ERRORS as exc:
        errors.append({"path": printable(result.path), "error": printable(str(exc))})
        say(f"skipped {printable(result.path)}: {printable(str(exc))}")
        return False
    return True


def _record(result: ImageResult, rgb: np.ndarray, faces: list[Any], args: Any) -> None:
    """Put one input's faces into ``result``; write its ``.pts`` files and overlay if asked."""
    out = args.out or DEFAULT_OUT
    result.faces = faces
    result.poses = [face_pose(face, rgb.shape) for face in faces] if args.pose else None
    result.entry = {
        "path": printable(result.path),
        "width": int(rgb.shape[1]),
        "height": int(rgb.shape[0]),
        "faces": face_entries(faces, result.poses),
    }
    if not faces:
        say(f"no face found in {printable(result.path)}")
        return
    if not all(np.isfinite(f.points).all() and np.isfinite(f.scale).all() for f in faces):
        say(f"{printable(result.path)}: non-finite landmarks, written as null (JSON) / empty (CSV)")
    if args.format == "pts":
        from laplace_landmarks.data.formats import write_pts

        for index, face in enumerate(faces):
            write_pts(out / pts_name(result.key, index), face.points)
    if args.draw:
        write_png(draw_faces(rgb, faces, result.poses), out / overlay_name(result.key, ".png"))


def face_entries(faces: list[Any], poses: list[Any] | None) -> list[dict[str, Any]]:
    """The JSON entries of an image's faces (``Face.to_dict``), each with its ``pose`` when
    ``poses`` is given."""
    entries = [face.to_dict() for face in faces]
    if poses is None:
        return entries
    return [pose_entry(entry, pose) for entry, pose in zip(entries, poses, strict=True)]


def collect_images(
    paths: Iterable[str], exclude: Path | None = None
) -> tuple[list[ImageResult], list[dict[str, str]]]:
    """Expand files and folders (recursively, by extension) into inputs with unique output keys.

    A file named on the command line is always tried, whatever its extension; inside folders only
    image extensions count, hidden files are skipped, and so is the ``exclude`` folder (the
    output folder, so overlays are not read back as inputs). Missing paths become errors.
    """
    results: list[ImageResult] = []
    errors: list[dict[str, str]] = []
    used: set[str] = set()
    skip = exclude.resolve() if exclude is not None else None
    for raw in paths:
        root = Path(raw)
        if root.is_dir():
            found = [
                p
                for p in sorted(root.rglob("*"))
                if p.suffix.lower() in IMAGE_EXTENSIONS
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(root).parts)
                and (skip is None or skip not in p.resolve().parents)
            ]
            if not found:
                errors.append({"path": printable(raw), "error": "folder holds no image files"})
            named = [(p, p.relative_to(root).with_suffix("").as_posix()) for p in found]
        elif root.is_file():
            named = [(root, root.stem)]
        else:
            errors.append({"path": printable(raw), "error": "no such file or folder"})
            named = []
        for path, key in named:
            results.append(ImageResult(path, unique_key(key, used)))
    for error in errors:
        say(f"skipped {error['path']}: {error['error']}")
    if not results:
        raise LandmarksError("no image to process: " + "; ".join(e["path"] for e in errors))
    return results, errors


def load_boxes_file(path: Path) -> dict[str, Any]:
    """Read ``--boxes``: a JSON object mapping an image path or file name to a list of boxes."""
    try:
        mapping = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad UTF-8 or JSON
        raise LandmarksError(f"--boxes: cannot read {printable(path)} as JSON ({exc})") from exc
    if not isinstance(mapping, dict):
        raise LandmarksError(
            f"--boxes: {printable(path)} must hold a JSON object (path -> list of boxes)"
        )
    return mapping


def _boxes_for(mapping: dict[str, Any] | None, path: Path) -> list | None:
    """The boxes listed for ``path`` (by the path as given, the resolved path or the file name)."""
    if mapping is None:
        return None
    for key in (str(path), path.as_posix(), path.name):
        if key in mapping:
            return mapping[key]
    resolved = path.resolve()
    for key, value in mapping.items():
        if Path(key).resolve() == resolved:
            return value
    return None


def _write_tables(document: dict, results: list[ImageResult], args: argparse.Namespace) -> None:
    """JSON or CSV: to stdout without --out, else one combined file in --out, atomically."""
    if args.format == "pts":
        return
    if args.format == "json":
        text = format_document(document, DOCUMENT_LISTS)
    else:
        text = landmarks_csv(results, pose=args.pose)
    write_text_output(text, args.out, TABLE_NAMES[args.format])


def landmarks_csv(results: list[ImageResult], pose: bool = False) -> str:
    """Rows ``image,face,x0,y0,...,x67,y67,bx0,by0,...,box_x0,box_y0,box_x1,box_y1,score``
    and, with ``pose``, ``yaw,pitch,roll`` (a non-finite number is an empty cell)."""
    count = next((len(f.points) for r in results for f in r.faces), 68)
    header = ["image", "face", *landmark_columns(count), *(POSE_COLUMNS if pose else ())]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for result in results:
        poses = result.poses or [None] * len(result.faces)
        for index, (face, head) in enumerate(zip(result.faces, poses, strict=True)):
            cells = pose_values(head) if pose else []
            writer.writerow([printable(result.path), index, *face_values(face), *cells])
    return buffer.getvalue()


def run_predict_manifest(args: argparse.Namespace) -> int:
    """``--manifest``: append one JSON line per image to ``OUT/landmarks.jsonl``, resuming an
    earlier run's file (``--overwrite`` starts it afresh); exit 2 when every image this run
    tried failed, else 0."""
    from laplace_landmarks.manifest import read_manifest, run_manifest

    check_manifest_args(args)
    items = read_manifest(args.manifest)  # a bad manifest fails before anything is written
    out = args.out or DEFAULT_OUT
    records = out / JSONL_NAME
    # No file is refused: the lock alone keeps two runs apart, and a restart resumes the file.
    with claim_out_folder(out, []):
        landmarker = landmarker_from_args(args)
        if args.overwrite:
            _discard(records)
        summary = run_manifest(landmarker, items, records, progress=stderr_is_terminal())
    say(f"records in {printable(records)}")
    failed = summary.images > 0 and summary.errors == summary.images
    if failed:
        say("no image could be processed")
    say(f"predict: {summary}")
    return 2 if failed else 0


def _discard(path: Path) -> None:
    """Remove an earlier run's file (``--overwrite``); a missing one is fine."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise LandmarksError(
            f"--overwrite: cannot remove {printable(path)} ({exc.strerror or exc})"
        ) from exc


def check_manifest_args(args: argparse.Namespace) -> None:
    """Refuse, in one line, the options a ``--manifest`` run cannot honour."""
    if args.paths:
        raise LandmarksError("--manifest takes no PATH arguments: list the images in the manifest")
    if args.boxes is not None:
        raise LandmarksError("--boxes is for PATH runs; give boxes in the manifest's x0,y0,x1,y1")
    unsupported = [
        option
        for option, given in (
            (f"--format {args.format}", args.format != "json"),
            ("--draw", args.draw),
            ("--pose", args.pose),
        )
        if given
    ]
    if unsupported:
        raise LandmarksError(
            f"--manifest writes JSON Lines only (OUT/{JSONL_NAME}); {unsupported[0]} is for "
            "PATH runs"
        )


def _version() -> str:
    from laplace_landmarks import __version__

    return __version__
