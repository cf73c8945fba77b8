"""Video: read and write frames (PyAV), track faces from frame to frame, smooth the points.

Coordinates are (x, y), 0-based, with pixel centres at integers, in frame pixels; boxes are
(x0, y0, x1, y1) continuous edge coordinates.

Tracking (:class:`~laplace_landmarks.tracking.FaceTracker`, re-exported here): the detector
runs on the first frame and afterwards only when a face is lost; every other frame's crop comes
from the previous frame's (smoothed) points by the paper's 5-point rule. The lost rule and the
uncertainty-aware Kalman smoothing are documented in :mod:`laplace_landmarks.tracking` and
:mod:`laplace_landmarks.smoothing`.

Example:
    >>> from laplace_landmarks import Landmarker
    >>> from laplace_landmarks.video import predict_video
    >>> frames = predict_video(Landmarker.pretrained(), "clip.mp4")   # doctest: +SKIP
    >>> frames[0].faces[0].points.shape, frames[0].detector_ran       # doctest: +SKIP
    ((68, 2), True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from laplace_landmarks.atomic import atomic_path
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.tracking import FaceTracker, TrackedFace

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv"})
__all__ = [
    "VIDEO_EXTENSIONS",
    "FaceTracker",
    "FrameResult",
    "TrackedFace",
    "VideoFrame",
    "predict_video",
    "read_frames",
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
        rate = container.streams.video[0].average_rate
        return float(rate) if rate else 25.0
    finally:
        container.close()


def read_frames(path: str | Path) -> Iterator[VideoFrame]:
    """Decode the first video stream frame by frame as RGB uint8 arrays.

    Raises LandmarksError for a missing, unreadable or corrupt file (naming the frame where
    decoding failed, if it got that far), or when PyAV is not installed.
    """
    av = _import_av()
    container = _open(path)
    stream = container.streams.video[0]
    rate = float(stream.average_rate) if stream.average_rate else 25.0
    index = 0
    try:
        for frame in container.decode(stream):
            time = float(frame.time) if frame.time is not None else index / rate
            yield VideoFrame(index, time, frame.to_ndarray(format="rgb24"))
            index += 1
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise LandmarksError(
            f"{path}: corrupt video, decoding failed at frame {index} ({exc})"
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


def predict_video(
    landmarker: Any,
    video: str | Path | Iterable[np.ndarray],
    smooth: bool = True,
    fps: float | None = None,
    tracker: FaceTracker | None = None,
    on_frame: Callable[[VideoFrame, FrameResult], None] | None = None,
    **tracker_options: Any,
) -> list[FrameResult]:
    """Landmarks of every frame of a video, tracked from frame to frame (see the module doc).

    Args:
        landmarker: a :class:`~laplace_landmarks.inference.Landmarker`.
        video: a video file path, or an iterable of (H, W, 3) uint8 RGB frames.
        smooth: run the uncertainty-aware Kalman filter (else raw per-frame predictions).
        fps: the frame rate for the ``time`` of in-memory frames (default 25).
        tracker: a FaceTracker to use (e.g. to read its ``detector_calls`` afterwards); else
            one is built with ``smooth`` and ``tracker_options`` (process_noise, motion,
            max_faces, max_uncertainty, uncertainty_jump, max_size_drift).
        on_frame: called with each frame and its result as soon as it is done.

    Returns:
        One :class:`FrameResult` per frame, in order.
    """
    tracker = tracker or FaceTracker(landmarker, smooth=smooth, **tracker_options)
    results = []
    for frame, result in track_frames(tracker, _frames(video, fps)):
        results.append(result)
        if on_frame is not None:
            on_frame(frame, result)
    return results


def track_frames(
    tracker: FaceTracker, frames: Iterable[VideoFrame]
) -> Iterator[tuple[VideoFrame, FrameResult]]:
    """Lazily run ``tracker`` over frames: yields each frame with its result, as it goes."""
    for frame in frames:
        calls = tracker.detector_calls
        faces = tracker.update(frame.image)
        yield frame, FrameResult(frame.index, frame.time, faces, tracker.detector_calls > calls)


def _frames(video: str | Path | Iterable[np.ndarray], fps: float | None) -> Iterator[VideoFrame]:
    if isinstance(video, str | Path):
        yield from read_frames(video)
        return
    rate = fps or 25.0
    for index, image in enumerate(video):
        yield VideoFrame(index, index / rate, image)
