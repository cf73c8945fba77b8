"""``laplace-landmarks predict VIDEO``: per-frame landmarks of video files, tracked and smoothed.

Reached from ``commands/predict.py`` when a path ends in ``.mp4 .avi .mov .mkv``. Coordinates
are (x, y) frame pixels, 0-based, with pixel centres at integers; boxes are (x0, y0, x1, y1)
continuous edge coordinates. JSON (one line per frame) or CSV (one row per face and frame) go to
stdout, or to ``--out DIR/landmarks.{json,csv}``; ``--draw`` writes ``DIR/<stem>_landmarks.mp4``
(``<stem>-2_landmarks.mp4``, ... for a second video with the same stem). Every file is written
atomically. A video that cannot be read is reported and skipped; exit 2
when none could be processed.

``--smooth offline`` (the default) tracks the whole video first (the causal filter places the
crops), then smooths each track with the two-pass RTS smoother; ``--draw`` then decodes the
video a second time to draw the smoothed points (no frames are held in memory).
``--smooth causal`` and ``none`` draw while tracking, in one pass. Overlays are drawn by
``outputs.draw_faces``, as image overlays are (boxes, points, 1-b uncertainty ellipses and, with
``--pose``, the head's axes). With ``--pose`` every face of the output also gets its head pose
(JSON ``pose``, CSV ``yaw,pitch,roll``), from its final (smoothed) points.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from laplace_landmarks.commands.arguments import landmarker_from_args
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.outputs import (
    DEFAULT_OUT,
    DETECTED_COLOUR,
    POSE_COLUMNS,
    TABLE_NAMES,
    TRACKED_COLOUR,
    RunSummary,
    claim_out_folder,
    draw_faces,
    dumps,
    face_pose,
    face_values,
    landmark_columns,
    overlay_name,
    planned_files,
    pose_entry,
    pose_values,
    printable,
    progress,
    say,
    unique_key,
    write_text_output,
)
from laplace_landmarks.smoothing import DEFAULT_OFFLINE_PROCESS_NOISE, DEFAULT_PROCESS_NOISE
from laplace_landmarks.video import VIDEO_EXTENSIONS, FrameResult, VideoFrame, smoothing_kind

#: ``--smooth`` when not given: a video file has every frame, so the two-pass smoother can use
#: the later ones too. On the validation video (tracked, both rcn-lite models) it left x0.21-0.23
#: of the unsmoothed flicker at -0.06 to -0.00 NME points, the causal filter x0.53-0.55 at
#: +0.06 to +0.10 (benchmarks/video_smoothing.py; docs/results.md, Video).
DEFAULT_SMOOTHING = "offline"


def is_video_run(paths: list[str]) -> bool:
    """True when any path names a video file (by extension)."""
    return any(Path(p).suffix.lower() in VIDEO_EXTENSIONS for p in paths)


@dataclass
class VideoResult:
    """One input video and what came out of it.

    ``poses`` (with ``--pose``): per frame, one head pose (or None) per face; else None.
    """

    path: Path
    fps: float = 25.0
    size: tuple[int, int] = (0, 0)
    detector_calls: int = 0
    frames: list[FrameResult] = field(default_factory=list)
    smoothing: str = DEFAULT_SMOOTHING
    poses: list[list[Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": printable(self.path),
            "width": self.size[0],
            "height": self.size[1],
            "fps": round(self.fps, 6),
            "frames": len(self.frames),
            "detector_calls": self.detector_calls,
            "smoothing": self.smoothing,
        }


def run_predict_video(args: argparse.Namespace) -> int:
    """Predict every video; exit 0 when at least one was processed, else 2."""
    start = time.perf_counter()
    _check_args(args)
    used: set[str] = set()
    keys = [unique_key(Path(raw).stem, used) for raw in args.paths]
    draw_dir = args.out or DEFAULT_OUT
    with _claim_outputs(args, keys, draw_dir):
        landmarker = landmarker_from_args(args)
        smooth = _smoothing(args)
        results, errors = [], []
        for raw, key in zip(args.paths, keys, strict=True):
            draw = draw_dir / overlay_name(key, ".mp4") if args.draw else None
            try:
                results.append(
                    predict_one_video(landmarker, Path(raw), smooth, draw, pose=args.pose)
                )
            except (LandmarksError, ValueError, OSError, MemoryError) as exc:
                errors.append({"path": printable(raw), "error": printable(str(exc))})
                say(f"skipped {printable(raw)}: {printable(str(exc))}")
        summary = video_summary(results, len(errors), time.perf_counter() - start)
        if args.format == "csv":
            text = video_csv(results, pose=args.pose)
        else:
            text = format_json(landmarker.name, smooth, results, errors, summary)
        write_text_output(text, args.out, TABLE_NAMES[args.format])
    if results and args.draw:
        say(f"overlay videos written to {printable(draw_dir)}")
    if not results:
        say("no video could be processed")
    say(f"predict: {summary}")
    return 0 if results else 2


def video_summary(results: list[VideoResult], errors: int, seconds: float) -> RunSummary:
    """The run's counts: videos, frames, faces over all frames, frames without a face."""
    faces = (len(frame.faces) for video in results for frame in video.frames)
    return RunSummary.of(faces, errors, seconds, videos=len(results))


def _claim_outputs(
    args: argparse.Namespace, keys: list[str], out: Path
) -> AbstractContextManager[Any]:
    """Lock ``out`` and refuse earlier files when this run writes files there (see outputs)."""
    table = TABLE_NAMES[args.format] if args.out is not None else None
    if table is None and not args.draw:
        return contextlib.nullcontext()
    names = planned_files(keys, table, ".mp4" if args.draw else None)
    return claim_out_folder(out, names, overwrite=getattr(args, "overwrite", False))


def _check_args(args: argparse.Namespace) -> None:
    others = [p for p in args.paths if Path(p).suffix.lower() not in VIDEO_EXTENSIONS]
    if others:
        raise LandmarksError(
            f"give either video files or images, not both (not a video: {others[0]})"
        )
    if args.format == "pts":
        raise LandmarksError("--format pts is for images; use json or csv for videos")
    if args.boxes:
        raise LandmarksError("--boxes is for images; videos use the detector and tracking")
    _smoothing(args)


def _smoothing(args: argparse.Namespace) -> str:
    """The smoothing kind from ``--smooth`` and its alias ``--no-smooth``."""
    chosen = getattr(args, "smooth", None)
    if getattr(args, "no_smooth", False):
        if chosen not in (None, "none"):
            raise LandmarksError(f"--no-smooth contradicts --smooth {chosen}")
        return "none"
    return chosen or DEFAULT_SMOOTHING


def predict_one_video(
    landmarker: Any,
    path: Path,
    smooth: bool | str = DEFAULT_SMOOTHING,
    draw: Path | None = None,
    pose: bool = False,
) -> VideoResult:
    """Track and smooth one video (``smooth``: "offline", "causal"/True or "none"/False); with
    ``draw``, write an overlay video of the output points there (atomically); with ``pose``,
    add every face's head pose (``VideoResult.poses``) and draw its axes."""
    from laplace_landmarks.video import (
        FaceTracker,
        read_frames,
        smooth_offline,
        track_frames,
        video_fps,
        write_video,
    )

    kind = smoothing_kind(smooth)
    result = VideoResult(path, fps=video_fps(path), smoothing=kind)
    tracker = FaceTracker(landmarker, smooth=kind != "none")
    live = draw if kind != "offline" else None  # offline: draw after smoothing

    def frames() -> Iterator[np.ndarray]:
        for frame, frame_result in track_frames(tracker, _progress(read_frames(path), path.name)):
            result.frames.append(frame_result)
            result.size = (frame.image.shape[1], frame.image.shape[0])
            yield frame.image if live is None else overlay(frame.image, frame_result, pose)

    if live is None:
        for _ in frames():
            pass
    else:
        write_video(live, frames(), result.fps)
    result.detector_calls = tracker.detector_calls
    if kind == "offline":
        result.frames = smooth_offline(result.frames, motion=tracker.motion)
        if draw is not None:
            write_video(draw, _redraw(path, result.frames, pose), result.fps)
    if pose:
        shape = (result.size[1], result.size[0])
        result.poses = [[face_pose(f, shape) for f in frame.faces] for frame in result.frames]
    return result


def _redraw(path: Path, results: list[FrameResult], pose: bool = False) -> Iterator[np.ndarray]:
    """Decode the video again and draw each frame's (final) result on it."""
    from laplace_landmarks.video import read_frames

    count = 0
    for frame in _progress(read_frames(path), f"{path.name} (drawing)"):
        if frame.index >= len(results):
            raise LandmarksError(f"{path}: more frames on the second read than on the first")
        yield overlay(frame.image, results[frame.index], pose)
        count += 1
    if count != len(results):
        raise LandmarksError(f"{path}: {count} frames on the second read, {len(results)} before")


def overlay(image: np.ndarray, result: FrameResult, pose: bool = False) -> np.ndarray:
    """The frame drawn by ``outputs.draw_faces``: each face's box (red when detected, blue when
    tracked), points, 1-b uncertainty ellipses and, with ``pose``, its head's axes."""
    colours = [DETECTED_COLOUR if face.detected else TRACKED_COLOUR for face in result.faces]
    poses = [face_pose(face, image.shape) for face in result.faces] if pose else None
    return draw_faces(image, result.faces, poses, colours)


def format_json(
    model: str,
    smooth: bool | str,
    results: list[VideoResult],
    errors: list[dict[str, str]],
    summary: RunSummary | None = None,
) -> str:
    """``{"model", "version", "smooth", "smoothing", "process_noise", "videos": [{...,
    "results": [frame, ...]}], "errors", "summary"}``, one line per frame. ``smooth`` is whether
    the points are smoothed at all, ``smoothing`` which smoother ran ("offline", "causal" or
    "none") and ``process_noise`` its setting (null for none); ``summary`` the run's counts
    (``RunSummary.to_dict``; left out when None). A video with ``poses`` gives each face its
    ``pose``."""
    from laplace_landmarks import __version__

    kind = smoothing_kind(smooth)
    noise = {"offline": DEFAULT_OFFLINE_PROCESS_NOISE, "causal": DEFAULT_PROCESS_NOISE}.get(kind)
    head = {
        "model": model,
        "version": __version__,
        "smooth": kind != "none",
        "smoothing": kind,
        "process_noise": noise,
    }
    parts = [dumps(head)[:-1] + ',\n "videos": [']
    for number, video in enumerate(results):
        frames = ",\n    ".join(dumps(frame) for frame in frame_entries(video))
        opening = dumps(video.to_dict())[:-1]
        comma = "," if number < len(results) - 1 else ""
        parts.append(f'\n  {opening}, "results": [\n    {frames}\n  ]}}{comma}')
    parts.append("\n ],\n " + '"errors": ' + dumps(errors))
    if summary is not None:
        parts.append(',\n "summary": ' + dumps(summary.to_dict()))
    return "".join(parts) + "}\n"


def frame_entries(video: VideoResult) -> list[dict[str, Any]]:
    """The JSON entries of a video's frames (``FrameResult.to_dict``), each face with its
    ``pose`` when the video has poses."""
    entries = [frame.to_dict() for frame in video.frames]
    if video.poses is None:
        return entries
    for entry, poses in zip(entries, video.poses, strict=True):
        entry["faces"] = [pose_entry(f, p) for f, p in zip(entry["faces"], poses, strict=True)]
    return entries


def video_csv(results: list[VideoResult], pose: bool = False) -> str:
    """Rows ``video,frame,time,face,track,detected,x0,y0..x67,y67,bx0,by0..bx67,by67,
    box_x0,box_y0,box_x1,box_y1,score,smoothing`` and, with ``pose``, ``yaw,pitch,roll``: one
    per face and frame (frames without a face have no row); ``smoothing`` is "offline",
    "causal" or "none"."""
    count = next((len(f.points) for v in results for r in v.frames for f in r.faces), 68)
    header = ["video", "frame", "time", "face", "track", "detected", *landmark_columns(count)]
    header += ["smoothing", *(POSE_COLUMNS if pose else ())]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for video in results:
        poses = video.poses or [[None] * len(frame.faces) for frame in video.frames]
        for frame, frame_poses in zip(video.frames, poses, strict=True):
            for number, (face, head) in enumerate(zip(frame.faces, frame_poses, strict=True)):
                start = [printable(video.path), frame.index, f"{frame.time:.6g}", number]
                start += [face.track_id, int(face.detected)]
                cells = [*face_values(face), video.smoothing, *(pose_values(head) if pose else ())]
                writer.writerow([*start, *cells])
    return buffer.getvalue()


def _progress(frames: Iterator[VideoFrame], name: str) -> Iterator[VideoFrame]:
    return progress(frames, name, "frame")
