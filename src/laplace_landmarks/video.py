"""Video: read and write frames (PyAV), track faces from frame to frame, smooth the points.

Coordinates are (x, y), 0-based, with pixel centres at integers, in frame pixels; boxes are
(x0, y0, x1, y1) continuous edge coordinates.

Tracking (:class:`~laplace_landmarks.tracking.FaceTracker`, re-exported here): the detector
runs on the first frame and afterwards only when a face is lost; every other frame's crop comes
from the previous frame's (smoothed) points by the paper's 5-point rule. The lost rule and the
uncertainty-aware Kalman smoothing are documented in :mod:`laplace_landmarks.tracking` and
:mod:`laplace_landmarks.smoothing`.

Smoothing (``predict_video(..., smooth=...)``): ``"causal"`` (or ``True``) runs the Kalman
filter frame by frame, each output using only the frames up to it; ``"offline"`` first tracks
the same way (the crops, and so the network's measurements and the detector calls, are exactly
the causal run's), then replaces each track's points by the two-pass RTS smoother over that
track's raw measurements (:func:`smooth_offline`, :func:`~laplace_landmarks.smoothing.rts_smooth`),
which also uses the later frames; ``"none"`` (or ``False``) gives the raw per-frame predictions.

Example:
    >>> from laplace_landmarks import Landmarker
    >>> from laplace_landmarks.video import predict_video
    >>> frames = predict_video(Landmarker.pretrained(), "clip.mp4")   # doctest: +SKIP
    >>> frames[0].faces[0].points.shape, frames[0].detector_ran       # doctest: +SKIP
    ((68, 2), True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from laplace_landmarks.atomic import atomic_path
from laplace_landmarks.data.images import MAX_PIXELS, check_pixels
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.smoothing import DEFAULT_OFFLINE_PROCESS_NOISE, rts_smooth
from laplace_landmarks.tracking import FaceTracker, TrackedFace, box_for_points, face_size

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv"})
#: ``smooth=`` values of :func:`predict_video` (True means "causal", False "none").
SMOOTHING_KINDS = ("causal", "offline", "none")
__all__ = [
    "SMOOTHING_KINDS",
    "VIDEO_EXTENSIONS",
    "FaceTracker",
    "FrameResult",
    "TrackedFace",
    "VideoFrame",
    "predict_video",
    "read_frames",
    "smooth_offline",
    "smoothing_kind",
    "track_frames",
    "video_fps",
    "write_video",
]


@dataclass(frozen=True, eq=False)
class VideoFrame:
    """One decoded frame: its 0-based index, its time in seconds, and (H, W, 3) uint8 RGB."""

    index: int
    time: float
    image: np.ndarray


@dataclass(frozen=True, eq=False)
class FrameResult:
    """The faces of one frame; ``detector_ran`` says whether the detector ran on it."""

    index: int
    time: float
    faces: list[TrackedFace]
    detector_ran: bool

    def to_dict(self, decimals: int = 3) -> dict[str, Any]:
        """JSON-ready: ``frame``, ``time``, ``detector_ran``, ``faces`` (see TrackedFace)."""
        return {
            "frame": self.index,
            "time": round(self.time, 6),
            "detector_ran": self.detector_ran,
            "faces": [face.to_dict(decimals) for face in self.faces],
        }


def _import_av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise LandmarksError(
            "video needs PyAV: pip install 'laplace-landmarks[video]' (or pip install av)"
        ) from exc
    return av


def _open(path: str | Path) -> Any:
    av = _import_av()
    if not Path(path).is_file():
        raise LandmarksError(f"{path}: no such video file")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise LandmarksError(f"{path}: cannot open as a video ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise LandmarksError(f"{path}: holds no video stream")
    return container


def video_fps(path: str | Path) -> float:
    """The video's average frame rate (25.0 when the file does not say)."""
    container = _open(path)
    try:
        return _frame_rate(container.streams.video[0])
    finally:
        container.close()


def _frame_rate(stream: Any) -> float:
    """The stream's average frame rate; 25.0 when the file does not say (or says nonsense)."""
    rate = float(stream.average_rate or 0)
    return rate if np.isfinite(rate) and rate > 0 else 25.0


def _limited_video_stream(container: Any, max_pixels: int, path: str | Path) -> Any:
    """The first video stream, its header's frame size checked against ``max_pixels`` (a size
    the header leaves at 0 is checked on the first frame).

    Its decoder is told to refuse pictures over :func:`_decoder_pixel_limit`, so a frame whose
    size the header hides or changes mid-stream is never allocated far beyond the limit."""
    stream = container.streams.video[0]
    context = stream.codec_context
    if context is None:  # FFmpeg has no decoder for the stream's codec
        raise LandmarksError(f"{path}: no decoder for its video stream (unknown codec)")
    if context.width > 0 and context.height > 0:
        check_pixels((context.width, context.height), max_pixels, path, "video frame")
    context.options = {**context.options, "max_pixels": str(_decoder_pixel_limit(max_pixels))}
    return stream


def _decoder_pixel_limit(max_pixels: int) -> int:
    """FFmpeg's ``max_pixels`` for a ``max_pixels`` frame limit: FFmpeg counts codec-aligned
    sizes (a 96x72 H.264 frame is checked as 128x80), so it gets twice the limit plus a
    megapixel of slack; the exact limit is checked on every decoded frame."""
    return 2 * max_pixels + 2**20


def read_frames(path: str | Path, max_pixels: int = MAX_PIXELS) -> Iterator[VideoFrame]:
    """Decode the first video stream frame by frame as RGB uint8 arrays.

    Frames may hold at most ``max_pixels`` pixels (the limit images have, ``data.images``):
    the stream header's size is checked before anything is decoded, the decoder refuses to
    allocate a bigger picture, and every decoded frame is checked again.

    Raises LandmarksError naming the file for a missing, unreadable, corrupt or too large
    video (naming the frame where decoding failed, if it got that far), or when PyAV is not
    installed.
    """
    av = _import_av()
    container = _open(path)
    index = 0
    try:
        stream = _limited_video_stream(container, max_pixels, path)
        rate = _frame_rate(stream)
        for frame in container.decode(stream):
            check_pixels((frame.width, frame.height), max_pixels, path, "video frame")
            time = float(frame.time) if frame.time is not None else index / rate
            yield VideoFrame(index, time, frame.to_ndarray(format="rgb24"))
            index += 1
    except LandmarksError:
        raise
    except (av.FFmpegError, OSError, ValueError, ArithmeticError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())  # one line
        raise LandmarksError(
            f"{path}: corrupt video, decoding failed at frame {index} ({reason})"
        ) from exc
    finally:
        container.close()
    if index == 0:
        raise LandmarksError(f"{path}: no frame could be decoded")


def write_video(
    path: str | Path, frames: Iterable[np.ndarray], fps: float, codec: str = "libx264"
) -> Path:
    """Encode (H, W, 3) uint8 RGB frames atomically (temporary file, then rename).

    Odd widths or heights are padded by one edge-replicated pixel (H.264 needs even sizes).
    The container follows the suffix (``.mp4``, ``.mkv``, ...). Returns ``path``.
    """
    av = _import_av()
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be positive, got {fps}")
    target = Path(path)
    try:
        with atomic_path(target) as tmp, av.open(str(tmp), mode="w") as container:
            _encode(container, frames, fps, codec)
    except av.FFmpegError as exc:
        raise LandmarksError(f"cannot write {target}: {exc}") from exc
    return target


def _encode(container: Any, frames: Iterable[np.ndarray], fps: float, codec: str) -> None:
    from fractions import Fraction

    av = _import_av()
    stream = None
    for image in frames:
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3):
            raise ValueError(f"frames must be (H, W, 3) uint8, got {getattr(image, 'shape', None)}")
        height, width = image.shape[:2]
        image = np.pad(image, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        if stream is None:
            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], "yuv420p"
        if (image.shape[1], image.shape[0]) != (stream.width, stream.height):
            raise ValueError("frames must all have the same size")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        container.mux(stream.encode(frame))
    if stream is None:
        raise ValueError("frames is empty: nothing to write")
    container.mux(stream.encode(None))


def smoothing_kind(smooth: bool | str) -> str:
    """``"causal"``, ``"offline"`` or ``"none"`` for a ``smooth=`` value (True is "causal",
    False is "none"); ValueError for anything else."""
    if smooth is True or smooth is False:
        return "causal" if smooth else "none"
    if isinstance(smooth, str) and smooth in SMOOTHING_KINDS:
        return smooth
    raise ValueError(f"smooth must be True, False or one of {SMOOTHING_KINDS}, got {smooth!r}")


def smooth_offline(
    results: list[FrameResult], process_noise: float | None = None, motion: str = "velocity"
) -> list[FrameResult]:
    """Two-pass (RTS) smoothing of finished video results, track by track.

    The faces are grouped by ``track_id`` into runs of consecutive results (a track missing
    from a result ends its run). Each run's ``raw_points`` / ``raw_scale`` go through
    :func:`~laplace_landmarks.smoothing.rts_smooth` with the face size of each frame's crop, and
    replace ``points`` / ``scale`` (and, on tracked frames, the ``box`` derived from the
    points). Everything else, and the input list, is unchanged.

    Args:
        results: FrameResults in frame order (e.g. from :func:`predict_video`).
        process_noise: default ``smoothing.DEFAULT_OFFLINE_PROCESS_NOISE``.
        motion: ``"velocity"`` or ``"position"``.

    Returns:
        New FrameResults, one per input, in order.
    """
    noise = DEFAULT_OFFLINE_PROCESS_NOISE if process_noise is None else float(process_noise)
    runs: list[list[tuple[int, int]]] = []
    active: dict[int, list[tuple[int, int]]] = {}
    for i, result in enumerate(results):
        ids = [face.track_id for face in result.faces]
        if len(set(ids)) != len(ids):
            raise ValueError(f"frame {result.index}: two faces have the same track_id {ids}")
        for track_id in [t for t in active if t not in ids]:
            runs.append(active.pop(track_id))
        for j, track_id in enumerate(ids):
            active.setdefault(track_id, []).append((i, j))
    runs.extend(active.values())
    faces = [list(result.faces) for result in results]
    for run in runs:
        members = [results[i].faces[j] for i, j in run]
        shapes = {face.raw_points.shape for face in members}
        if len(shapes) != 1:
            raise ValueError(f"track {members[0].track_id}: point counts differ ({shapes})")
        points, scale = rts_smooth(
            np.stack([face.raw_points for face in members]),
            np.stack([face.raw_scale for face in members]),
            [face_size(face.crop) for face in members],
            process_noise=noise,
            motion=motion,
        )
        for (i, j), face, p, b in zip(run, members, points, scale, strict=True):
            faces[i][j] = _with_points(face, p, b)
    return [replace(result, faces=new) for result, new in zip(results, faces, strict=True)]


def _with_points(face: TrackedFace, points: np.ndarray, scale: np.ndarray) -> TrackedFace:
    box = face.box
    if not face.detected:  # a tracked frame's box follows its points; a detector box stays
        try:
            box = box_for_points(points, face.crop.size)
        except ValueError:
            pass  # degenerate points: keep the box the tracker gave
    return replace(face, points=points, scale=scale, box=box)


def predict_video(
    landmarker: Any,
    video: str | Path | Iterable[np.ndarray],
    smooth: bool | str = True,
    fps: float | None = None,
    tracker: FaceTracker | None = None,
    on_frame: Callable[[VideoFrame, FrameResult], None] | None = None,
    offline_process_noise: float | None = None,
    max_pixels: int = MAX_PIXELS,
    **tracker_options: Any,
) -> list[FrameResult]:
    """Landmarks of every frame of a video, tracked from frame to frame (see the module doc).

    Args:
        landmarker: a :class:`~laplace_landmarks.inference.Landmarker`.
        video: a video file path, or an iterable of (H, W, 3) uint8 RGB frames.
        smooth: ``"causal"`` / True (the Kalman filter, frame by frame), ``"offline"`` (track
            with the causal filter, then the two-pass RTS smoother over the whole video) or
            ``"none"`` / False (raw per-frame predictions).
        fps: the frame rate for the ``time`` of in-memory frames (default 25).
        tracker: a FaceTracker to use (e.g. to read its ``detector_calls`` afterwards); else
            one is built with ``smooth`` and ``tracker_options`` (process_noise, motion,
            max_faces, max_uncertainty, uncertainty_jump, max_size_drift). With "offline" the
            tracker's own filter places the crops; the output is smoothed afterwards.
        on_frame: called with each frame and its result as soon as it is done. Not allowed
            with "offline", whose points are only known once the whole video is tracked.
        offline_process_noise: the RTS smoother's process noise (default
            ``smoothing.DEFAULT_OFFLINE_PROCESS_NOISE``); its motion model is the tracker's.
        max_pixels: the most pixels a frame of a video file may have (see :func:`read_frames`).

    Returns:
        One :class:`FrameResult` per frame, in order.

    Raises:
        LandmarksError naming the file for a video that cannot be read (see
        :func:`read_frames`), or naming the frame's image for a bad in-memory frame.
    """
    kind = smoothing_kind(smooth)
    if kind == "offline" and on_frame is not None:
        raise ValueError(
            "on_frame sees each frame before the offline smoother has run; with "
            "smooth='offline' use the returned results"
        )
    tracker = tracker or FaceTracker(landmarker, smooth=kind != "none", **tracker_options)
    results = []
    for frame, result in track_frames(tracker, _frames(video, fps, max_pixels)):
        results.append(result)
        if on_frame is not None:
            on_frame(frame, result)
    if kind == "offline":
        results = smooth_offline(results, offline_process_noise, tracker.motion)
    return results


def track_frames(
    tracker: FaceTracker, frames: Iterable[VideoFrame]
) -> Iterator[tuple[VideoFrame, FrameResult]]:
    """Lazily run ``tracker`` over frames: yields each frame with its result, as it goes."""
    for frame in frames:
        calls = tracker.detector_calls
        faces = tracker.update(frame.image)
        yield frame, FrameResult(frame.index, frame.time, faces, tracker.detector_calls > calls)


def _frames(
    video: str | Path | Iterable[np.ndarray], fps: float | None, max_pixels: int = MAX_PIXELS
) -> Iterator[VideoFrame]:
    if isinstance(video, str | Path):
        yield from read_frames(video, max_pixels)
        return
    rate = fps or 25.0
    for index, image in enumerate(video):
        yield VideoFrame(index, index / rate, image)
