"""``laplace-landmarks predict VIDEO``: per-frame landmarks of video files, tracked and smoothed.

Reached from ``commands/predict.py`` when a path ends in ``.mp4 .avi .mov .mkv``. Coordinates
are (x, y) frame pixels, 0-based, with pixel centres at integers; boxes are (x0, y0, x1, y1)
continuous edge coordinates. JSON (one line per frame) or CSV (one row per face and frame) go to
stdout, or to ``--out DIR/landmarks.{json,csv}``; ``--draw`` writes ``DIR/<stem>_landmarks.mp4``.
Every file is written atomically. A video that cannot be read is reported and skipped; exit 2
when none could be processed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.video import VIDEO_EXTENSIONS, FrameResult, VideoFrame


def is_video_run(paths: list[str]) -> bool:
    """True when any path names a video file (by extension)."""
    return any(Path(p).suffix.lower() in VIDEO_EXTENSIONS for p in paths)


@dataclass
class VideoResult:
    """One input video and what came out of it."""

    path: Path
    fps: float = 25.0
    size: tuple[int, int] = (0, 0)
    detector_calls: int = 0
    frames: list[FrameResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "width": self.size[0],
            "height": self.size[1],
            "fps": round(self.fps, 6),
            "frames": len(self.frames),
            "detector_calls": self.detector_calls,
        }


def run_predict_video(args: argparse.Namespace) -> int:
    """Predict every video; exit 0 when at least one was processed, else 2."""
    from laplace_landmarks.commands import predict as image_predict

    _check_args(args)
    out = args.out
    draw_dir = out or image_predict.DEFAULT_OUT
    if out is not None or args.draw:
        image_predict._check_out_folder(draw_dir)
    backend = {"backend": args.backend} if hasattr(args, "backend") else {}
    landmarker = image_predict.load_landmarker(
        args.model, refine=not args.no_refine, threads=args.threads, **backend
    )
    smooth = not getattr(args, "no_smooth", False)
    results, errors = [], []
    for raw in args.paths:
        path = Path(raw)
        try:
            draw = draw_dir / f"{path.stem}_landmarks.mp4" if args.draw else None
            results.append(predict_one_video(landmarker, path, smooth, draw))
        except (LandmarksError, ValueError, OSError, MemoryError) as exc:
            errors.append({"path": raw, "error": str(exc)})
            _say(f"skipped {raw}: {exc}")
    text = format_json(landmarker.name, smooth, results, errors)
    if args.format == "csv":
        text = video_csv(results)
    _write(text, out, "landmarks.json" if args.format == "json" else "landmarks.csv")
    if not results:
        _say("no video could be processed")
        return 2
    if args.draw:
        _say(f"overlay videos written to {draw_dir}")
    return 0


def _check_args(args: argparse.Namespace) -> None:
    others = [p for p in args.paths if Path(p).suffix.lower() not in VIDEO_EXTENSIONS]
    if others:
        raise LandmarksError(
            f"give either video files or images, not both (not a video: {others[0]})"
        )
    if args.format == "pts":
        raise LandmarksError("--format pts is for images; use json or csv for videos")
    if getattr(args, "boxes", None):
        raise LandmarksError("--boxes is for images; videos use the detector and tracking")
    if args.threads is not None and args.threads < 1:
        raise LandmarksError(f"--threads must be >= 1, got {args.threads}")


def predict_one_video(
    landmarker: Any, path: Path, smooth: bool, draw: Path | None = None
) -> VideoResult:
    """Track and smooth one video; with ``draw``, stream an overlay video there (atomically)."""
    from laplace_landmarks.video import FaceTracker, read_frames, track_frames, video_fps

    result = VideoResult(path, fps=video_fps(path))
    tracker = FaceTracker(landmarker, smooth=smooth)

    def frames() -> Iterator[np.ndarray]:
        for frame, frame_result in track_frames(tracker, _progress(read_frames(path), path.name)):
            result.frames.append(frame_result)
            result.size = (frame.image.shape[1], frame.image.shape[0])
            yield frame.image if draw is None else overlay(frame.image, frame_result)

    if draw is None:
        for _ in frames():
            pass
    else:
        from laplace_landmarks.video import write_video

        write_video(draw, frames(), result.fps)
    result.detector_calls = tracker.detector_calls
    return result


def overlay(image: np.ndarray, result: FrameResult) -> np.ndarray:
    """The frame with each face's box (red when detected, green when tracked), points and
    1-b uncertainty ellipses."""
    from PIL import Image, ImageDraw

    from laplace_landmarks.plots import draw_landmarks

    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    for face in result.faces:
        colour = (255, 64, 64) if face.detected else (64, 200, 255)
        draw.rectangle(face.box, outline=colour, width=max(1, min(picture.size) // 300))
    for face in result.faces:
        picture = draw_landmarks(picture, face.points, face.scale)
    return np.asarray(picture)


def format_json(
    model: str, smooth: bool, results: list[VideoResult], errors: list[dict[str, str]]
) -> str:
    """``{"model", "version", "smooth", "videos": [{..., "results": [frame, ...]}], "errors"}``,
    one line per frame."""
    from laplace_landmarks import __version__

    head = {"model": model, "version": __version__, "smooth": smooth}
    parts = [json.dumps(head)[:-1] + ',\n "videos": [']
    for number, video in enumerate(results):
        frames = ",\n    ".join(json.dumps(f.to_dict()) for f in video.frames)
        opening = json.dumps(video.to_dict())[:-1]
        comma = "," if number < len(results) - 1 else ""
        parts.append(f'\n  {opening}, "results": [\n    {frames}\n  ]}}{comma}')
    parts.append("\n ],\n " + '"errors": ' + json.dumps(errors) + "}\n")
    return "".join(parts)


def video_csv(results: list[VideoResult]) -> str:
    """Rows ``video,frame,time,face,track,detected,x0,y0..x67,y67,bx0,by0..bx67,by67,
    box_x0,box_y0,box_x1,box_y1,score``: one per face and frame (frames without a face have
    no row)."""
    count = next((len(f.points) for v in results for r in v.frames for f in r.faces), 68)
    from laplace_landmarks.commands.predict import landmark_columns

    header = ["video", "frame", "time", "face", "track", "detected", *landmark_columns(count)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for video in results:
        for frame in video.frames:
            for number, face in enumerate(frame.faces):
                numbers = [*face.points.ravel(), *face.scale.ravel(), *face.box]
                score = "" if face.score is None else f"{face.score:.6g}"
                head = [str(video.path), frame.index, f"{frame.time:.6g}", number, face.track_id]
                writer.writerow([*head, int(face.detected), *(f"{v:.3f}" for v in numbers), score])
    return buffer.getvalue()


def _write(text: str, out: Path | None, name: str) -> None:
    from laplace_landmarks.commands.predict import write_text_output

    write_text_output(text, out, name)


def _progress(frames: Iterator[VideoFrame], name: str) -> Iterator[VideoFrame]:
    from tqdm import tqdm

    return tqdm(frames, desc=name, unit="frame", file=sys.stderr, disable=None)


def _say(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)
