"""``laplace-landmarks predict``: landmarks for images and folders, as JSON, CSV or iBUG ``.pts``.

Coordinates are (x, y) image pixels, 0-based, with pixel centres at integers; boxes are
(x0, y0, x1, y1) continuous edge coordinates. The output schema is documented in
``docs/predict.md``. A bad input file is reported (stderr and the JSON ``errors`` list) and
skipped; it never stops the run. Every output file is written atomically (a temporary file in
the same folder, then ``os.replace``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.outputs import DEFAULT_OUT, check_out_folder

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
    if args.threads is not None and args.threads < 1:
        raise LandmarksError(f"--threads must be >= 1, got {args.threads}")
    out = args.out if args.out is not None else None
    file_out = out or DEFAULT_OUT
    if args.format == "pts" or args.draw or out is not None:
        check_out_folder(file_out)
    inputs, errors = collect_images(args.paths, exclude=file_out)
    boxes = load_boxes_file(args.boxes) if args.boxes else None
    landmarker = load_landmarker(
        args.model,
        refine=not args.no_refine,
        threads=args.threads,
        backend=args.backend,
        flip_test=args.flip_test,
    )
    results = []
    for result in _progress(inputs):
        try:
            _predict_one(landmarker, result, boxes, args, file_out)
        except (ValueError, OSError, MemoryError) as exc:
            errors.append({"path": str(result.path), "error": str(exc)})
            _say(f"skipped {result.path}: {exc}")
            continue
        results.append(result)
    document = {
        "model": landmarker.name,
        "version": _version(),
        "flip_test": landmarker.flip_test,
        "images": [r.entry for r in results],
        "errors": errors,
    }
    _write_tables(document, results, args.format, out)
    if results and (args.format == "pts" or args.draw):
        _say(f"files written to {file_out}")
    if not results:
        _say("no image could be processed")
        return 2
    return 0


def _predict_one(
    landmarker: Any, result: ImageResult, boxes: dict | None, args: Any, out: Path
) -> None:
    from laplace_landmarks.data.images import load_image

    rgb = load_image(result.path)
    faces = landmarker.predict(rgb, boxes=_boxes_for(boxes, result.path))
    result.faces = faces
    result.entry = {
        "path": str(result.path),
        "width": int(rgb.shape[1]),
        "height": int(rgb.shape[0]),
        "faces": [face.to_dict() for face in faces],
    }
    if not faces:
        _say(f"no face found in {result.path}")
        return
    if args.format == "pts":
        from laplace_landmarks.data.formats import write_pts

        for index, face in enumerate(faces):
            write_pts(out / f"{result.key}_{index}.pts", face.points)
    if args.draw:
        draw_overlay(rgb, faces, out / f"{result.key}_landmarks.png")


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
                errors.append({"path": raw, "error": "folder holds no image files"})
            named = [(p, p.relative_to(root).with_suffix("").as_posix()) for p in found]
        elif root.is_file():
            named = [(root, root.stem)]
        else:
            errors.append({"path": raw, "error": "no such file or folder"})
            named = []
        for path, key in named:
            results.append(ImageResult(path, _unique(key, used)))
    for error in errors:
        _say(f"skipped {error['path']}: {error['error']}")
    if not results:
        raise LandmarksError("no image to process: " + "; ".join(e["path"] for e in errors))
    return results, errors


def _unique(key: str, used: set[str]) -> str:
    candidate, n = key, 1
    while candidate in used:
        n += 1
        candidate = f"{key}-{n}"
    used.add(candidate)
    return candidate


def load_boxes_file(path: Path) -> dict[str, Any]:
    """Read ``--boxes``: a JSON object mapping an image path or file name to a list of boxes."""
    try:
        mapping = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LandmarksError(f"--boxes: cannot read {path} as JSON ({exc})") from exc
    if not isinstance(mapping, dict):
        raise LandmarksError(f"--boxes: {path} must hold a JSON object (path -> list of boxes)")
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
    if fmt == "json":
        text, name = format_document(document), "landmarks.json"
    else:
        text, name = landmarks_csv(results), "landmarks.csv"
    write_text_output(text, out, name)


def write_text_output(text: str, out: Path | None, name: str) -> None:
    """``text`` to stdout when ``out`` is None, else atomically to ``out / name``."""
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    from laplace_landmarks.atomic import atomic_write_text

    try:
        atomic_write_text(out / name, text)
    except OSError as exc:
        raise LandmarksError(f"cannot write {out / name}: {exc}") from exc


def format_document(document: dict[str, Any]) -> str:
    """The JSON document with one line per image and per error (readable, still plain JSON)."""

    def block(items: list[Any]) -> str:
        return "[\n  " + ",\n  ".join(json.dumps(i) for i in items) + "\n ]" if items else "[]"

    keys = [k for k in ("model", "version", "flip_test") if k in document]
    head = ", ".join(f"{json.dumps(k)}: {json.dumps(document[k])}" for k in keys)
    images, errors = block(document["images"]), block(document["errors"])
    return f'{{{head},\n "images": {images},\n "errors": {errors}}}\n'


def landmark_columns(count: int) -> list[str]:
    """CSV columns of one face: ``x0,y0..,bx0,by0..,box_x0,box_y0,box_x1,box_y1,score``."""
    columns = [f"{axis}{k}" for k in range(count) for axis in ("x", "y")]
    columns += [f"b{axis}{k}" for k in range(count) for axis in ("x", "y")]
    return [*columns, "box_x0", "box_y0", "box_x1", "box_y1", "score"]


def landmarks_csv(results: list[ImageResult]) -> str:
    """Rows ``image,face,x0,y0,...,x67,y67,bx0,by0,...,box_x0,box_y0,box_x1,box_y1,score``."""
    count = next((len(f.points) for r in results for f in r.faces), 68)
    header = ["image", "face", *landmark_columns(count)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for result in results:
        for index, face in enumerate(result.faces):
            numbers = [*face.points.ravel(), *face.scale.ravel(), *face.box]
            score = "" if face.score is None else f"{face.score:.6g}"
            writer.writerow([str(result.path), index, *(f"{v:.3f}" for v in numbers), score])
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
