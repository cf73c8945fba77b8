"""``laplace-landmarks predict``: landmarks for images and folders, as JSON, CSV or iBUG ``.pts``.

Coordinates are (x, y) image pixels, 0-based, with pixel centres at integers; boxes are
(x0, y0, x1, y1) continuous edge coordinates. The output schema is documented in
``docs/predict.md``. A bad input file is reported (stderr and the JSON ``errors`` list) and
skipped; it never stops the run. Every output file is written atomically (a temporary file in
the same folder, then ``os.replace``). A run that writes files locks its output folder and,
before any work, refuses files an earlier run left there unless ``--overwrite`` (see
``laplace_landmarks.outputs``). File names that are not UTF-8 are written with ``\\xNN``
escapes, and non-finite numbers as JSON ``null`` / empty CSV cells.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import sys
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from laplace_landmarks.commands.arguments import MAX_THREADS
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.outputs import (
    DEFAULT_OUT,
    TABLE_NAMES,
    claim_out_folder,
    dumps,
    face_values,
    landmark_columns,
    overlay_name,
    planned_files,
    printable,
    pts_name,
    unique_key,
    write_text_output,
)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
FORMATS = ("json", "csv", "pts")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``predict`` command."""
    parser = subparsers.add_parser(
        "predict",
        help="find faces and their 68 landmarks with per-point uncertainty",
        description="Find faces and localise 68 landmarks, each with a Laplace scale "
        "(its uncertainty, in pixels). See docs/predict.md for the output schema.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="images, folders or videos")
    parser.add_argument(
        "--boxes",
        type=Path,
        help="JSON file: image path (or file name) -> list of [x0, y0, x1, y1] face boxes; "
        "images not listed use the detector",
    )
    parser.add_argument("--model", default=None, help="shipped model name or weights path")
    parser.add_argument("--format", choices=FORMATS, default="json", help="default: json")
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: json/csv to stdout)"
    )
    parser.add_argument(
        "--draw", action="store_true", help="write <name>_landmarks.png overlays into --out"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace files an earlier run left in the output folder (default: refuse to start)",
    )
    parser.add_argument("--no-refine", action="store_true", help="skip the 5-point re-crop")
    parser.add_argument(
        "--flip-test",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="average the final pass with the mirrored crop (1.5x the network time with the "
        "re-crop; 0.13-0.19 NME points better on ytf68 val). Default: the model's own setting "
        "(on for rcn-lite-accurate, off for the others and weights files)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--backend",
        choices=("torch", "onnx"),
        default="torch",
        help="network runtime: torch (default) or onnx (ONNX Runtime; needs the [onnx] extra; "
        "exports the model into ~/.cache/laplace-landmarks/onnx on first use)",
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
    """One input: where it came from, its output name, and what happened to it."""

    path: Path
    key: str  # unique output name without suffix, e.g. "Bill_Frist/00a"
    entry: dict[str, Any] = field(default_factory=dict)
    faces: list[Any] = field(default_factory=list)


def run_predict(args: argparse.Namespace) -> int:
    """Predict every input; exit 0 when at least one image was processed, else 2."""
    from laplace_landmarks.commands.predict_video import is_video_run, run_predict_video

    if is_video_run(args.paths):  # video files: tracked, smoothed, per-frame output
        return run_predict_video(args)
    check_threads(args.threads)
    file_out = args.out or DEFAULT_OUT
    inputs, errors = collect_images(args.paths, exclude=file_out)
    boxes = load_boxes_file(args.boxes) if args.boxes else None
    with _claim_outputs(args, inputs, file_out):
        landmarker = load_landmarker(
            args.model,
            refine=not args.no_refine,
            threads=args.threads,
            backend=args.backend,
            flip_test=args.flip_test,
        )
        results = [r for r in _progress(inputs) if _predicted(landmarker, r, boxes, args, errors)]
        document = {
            "model": landmarker.name,
            "version": _version(),
            "flip_test": landmarker.flip_test,
            "images": [r.entry for r in results],
            "errors": errors,
        }
        _write_tables(document, results, args.format, args.out)
    if results and (args.format == "pts" or args.draw):
        _say(f"files written to {printable(file_out)}")
    if not results:
        _say("no image could be processed")
        return 2
    return 0


def check_threads(threads: int | None) -> None:
    """Refuse a ``--threads`` outside 1..MAX_THREADS (torch would fail on it per image)."""
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise LandmarksError(f"--threads must be between 1 and {MAX_THREADS}, got {threads}")


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


def _predicted(
    landmarker: Any, result: ImageResult, boxes: dict | None, args: Any, errors: list[dict]
) -> bool:
    """Predict one input; on failure add it to ``errors``, say so and return False."""
    try:
        _predict_one(landmarker, result, boxes, args)
    except (ValueError, OSError, MemoryError) as exc:
        errors.append({"path": printable(result.path), "error": printable(str(exc))})
        _say(f"skipped {printable(result.path)}: {printable(str(exc))}")
        return False
    return True


def _predict_one(landmarker: Any, result: ImageResult, boxes: dict | None, args: Any) -> None:
    """Predict one input into ``result``; write its ``.pts`` files and overlay if asked."""
    from laplace_landmarks.data.images import load_image

    out = args.out or DEFAULT_OUT
    rgb = load_image(result.path)
    faces = landmarker.predict(rgb, boxes=_boxes_for(boxes, result.path))
    result.faces = faces
    result.entry = {
        "path": printable(result.path),
        "width": int(rgb.shape[1]),
        "height": int(rgb.shape[0]),
        "faces": [face.to_dict() for face in faces],
    }
    if not faces:
        _say(f"no face found in {printable(result.path)}")
        return
    if not all(np.isfinite(f.points).all() and np.isfinite(f.scale).all() for f in faces):
        _say(
            f"{printable(result.path)}: non-finite landmarks, written as null (JSON) / empty (CSV)"
        )
    if args.format == "pts":
        from laplace_landmarks.data.formats import write_pts

        for index, face in enumerate(faces):
            write_pts(out / pts_name(result.key, index), face.points)
    if args.draw:
        draw_overlay(rgb, faces, out / overlay_name(result.key, ".png"))


def draw_overlay(rgb: np.ndarray, faces: list[Any], path: Path) -> None:
    """Write the image with each face's box, points and 1-b uncertainty ellipses (atomically)."""
    from PIL import Image, ImageDraw

    from laplace_landmarks.plots import draw_landmarks

    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    for face in faces:
        draw.rectangle(face.box, outline=(255, 64, 64), width=max(1, min(image.size) // 300))
    for index, face in enumerate(faces):
        last = index == len(faces) - 1
        image = draw_landmarks(image, face.points, face.scale, path=path if last else None)


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
        _say(f"skipped {error['path']}: {error['error']}")
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


def load_landmarker(
    model: str | None,
    refine: bool,
    threads: int | None,
    backend: str = "torch",
    flip_test: bool | None = None,
) -> Any:
    """``Landmarker.load`` with the command's arguments (kept for the video command)."""
    from laplace_landmarks.inference import Landmarker

    return Landmarker.load(
        model, refine=refine, threads=threads, backend=backend, flip_test=flip_test
    )


def _write_tables(document: dict, results: list[ImageResult], fmt: str, out: Path | None) -> None:
    """JSON or CSV: to stdout without --out, else one combined file in --out, atomically."""
    if fmt == "pts":
        return
    text = format_document(document) if fmt == "json" else landmarks_csv(results)
    write_text_output(text, out, TABLE_NAMES[fmt])


def format_document(document: dict[str, Any]) -> str:
    """The JSON document with one line per image and per error (readable, still strict JSON:
    a non-finite number is written as ``null``)."""

    def block(items: list[Any]) -> str:
        return "[\n  " + ",\n  ".join(dumps(i) for i in items) + "\n ]" if items else "[]"

    keys = [k for k in ("model", "version", "flip_test") if k in document]
    head = ", ".join(f"{dumps(k)}: {dumps(document[k])}" for k in keys)
    images, errors = block(document["images"]), block(document["errors"])
    return f'{{{head},\n "images": {images},\n "errors": {errors}}}\n'


def landmarks_csv(results: list[ImageResult]) -> str:
    """Rows ``image,face,x0,y0,...,x67,y67,bx0,by0,...,box_x0,box_y0,box_x1,box_y1,score``
    (a non-finite number is an empty cell)."""
    count = next((len(f.points) for r in results for f in r.faces), 68)
    header = ["image", "face", *landmark_columns(count)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for result in results:
        for index, face in enumerate(result.faces):
            writer.writerow([printable(result.path), index, *face_values(face)])
    return buffer.getvalue()


def _progress(items: list[ImageResult]) -> Iterable[ImageResult]:
    from tqdm import tqdm

    return tqdm(items, desc="predict", unit="img", file=sys.stderr, disable=len(items) <= 1)


def _say(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def _version() -> str:
    from laplace_landmarks import __version__

    return __version__
