"""Frame-to-frame face tracking with uncertainty-aware smoothing (used by ``video``).

Coordinates are (x, y), 0-based, with pixel centres at integers, in frame pixels; boxes are
(x0, y0, x1, y1) continuous edge coordinates.

The detector runs on the first frame, and afterwards only when a face is lost or no face is
tracked. For every tracked face the next frame's crop is the paper's 5-point crop around the
face's previous points: the Kalman filter's one-frame prediction when smoothing, the raw previous
points otherwise. That is one forward pass per face and frame.

**The lost rule**, checked on every tracked frame against that frame's raw prediction. Let ``s``
be the face size: the side of the 5-point box that placed the crop (the crop's side / 3). Let
``u = mean(b) / s``: the predicted Laplace scales, averaged over all points and both axes,
relative to the face size. A face is lost when any of these holds:

1. ``u > max_uncertainty``: the network no longer knows where the points are.
2. ``u > uncertainty_jump * u_ref``, where ``u_ref`` is the running mean of ``u`` over the
   track's accepted frames (an exponential mean over about the last 25 once the track is that
   long): a sudden jump in uncertainty (occlusion, a cut, a face turning away).
3. The points collapse or explode: the new 5-point box side is under ``s / 2`` or over ``2 s``.
4. The points leave the image: the 5-point centre is outside it, or more than half the points
   are. Any NaN or inf counts as lost too.
5. The face size drifted: the new 5-point box side differs from the one at the track's
   detection by more than ``max_size_drift`` times. This bounds the crop -> points -> crop
   feedback of a weak model (one that predicts a shape a bit too large or too small grows or
   shrinks its crop frame after frame); a real zoom that large costs one detector call.

A lost face is dropped and the detector runs on the same frame. Each detection starts a new
track, with a fresh Kalman filter (:mod:`laplace_landmarks.smoothing`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from laplace_landmarks.data.crops import (
    DEFAULT_EXTENSION,
    Crop,
    crop_from_five_points,
    five_points_from_68,
    warp_crop,
)
from laplace_landmarks.data.images import to_rgb_array
from laplace_landmarks.detection import DETECTOR_CROP_SCALE, DETECTOR_CROP_SHIFT
from laplace_landmarks.inference import usable_detections
from laplace_landmarks.smoothing import DEFAULT_PROCESS_NOISE, LaplaceKalman

Box = tuple[float, float, float, float]


@dataclass(frozen=True, eq=False)
class TrackedFace:
    """One face in one frame, in frame pixels: (x, y), 0-based, pixel centres at integers.

    points, scale: (K, 2) the smoothed points and their posterior uncertainty as a Laplace scale
        (``sqrt(variance / 2)``); without smoothing, the raw prediction.
    raw_points, raw_scale: (K, 2) the network's own prediction on this frame.
    box: the detector's box on a detection frame; on a tracked frame the box the detector-crop
        rule would turn into the 5-point crop of ``points`` (so boxes look alike on both).
    score: the detector's score on a detection frame, else None.
    crop: the crop the network saw. track_id: the same number while a face is tracked.
    detected: True on the frame where the detector (re)found the face, False when tracked.
    """

    points: np.ndarray
    scale: np.ndarray
    raw_points: np.ndarray
    raw_scale: np.ndarray
    box: Box
    score: float | None
    crop: Crop = field(repr=False)
    track_id: int = 0
    detected: bool = True

    def to_dict(self, decimals: int = 3) -> dict[str, Any]:
        """JSON-ready: ``track``, ``detected``, ``box``, ``score``, ``points``, ``scale``."""
        return {
            "track": self.track_id,
            "detected": self.detected,
            "box": [round(float(v), decimals) for v in self.box],
            "score": None if self.score is None else round(float(self.score), 6),
            "points": np.round(self.points, decimals).tolist(),
            "scale": np.round(self.scale, decimals).tolist(),
        }


@dataclass
class _Track:
    track_id: int
    points: np.ndarray  # the latest (smoothed) points
    filter: LaplaceKalman | None
    u_ref: float
    size_ref: float
    frames: int = 1

    def next_points(self) -> np.ndarray:
        return self.filter.predicted() if self.filter is not None else self.points


def face_size(crop: Crop) -> float:
    """The side of the 5-point box a paper crop was built from: crop side / (1 + extension)."""
    return crop.size / crop.scale / (1.0 + DEFAULT_EXTENSION)


def box_for_crop(crop: Crop) -> Box:
    """The face box that ``crop_from_detection`` would turn into ``crop`` (its inverse)."""
    half = (crop.size - 1) / 2
    cx, cy = crop.to_image([[half, half]])[0]
    side = crop.size / crop.scale / DETECTOR_CROP_SCALE
    cx, cy = cx - DETECTOR_CROP_SHIFT[0] * side, cy - DETECTOR_CROP_SHIFT[1] * side
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def box_for_points(points: np.ndarray, crop_size: int) -> Box:
    """The box of a tracked frame: the one the detector-crop rule would turn into the 5-point
    crop of ``points`` (so boxes look alike on detected and tracked frames)."""
    return box_for_crop(crop_from_five_points(five_points_from_68(points), crop_size))


def _overlaps(box: Box, other: Box, threshold: float = 0.3) -> bool:
    """Intersection over union above ``threshold``."""
    w = min(box[2], other[2]) - max(box[0], other[0])
    h = min(box[3], other[3]) - max(box[1], other[1])
    inter = max(w, 0.0) * max(h, 0.0)
    area = (box[2] - box[0]) * (box[3] - box[1]) + (other[2] - other[0]) * (other[3] - other[1])
    return inter > threshold * (area - inter)


class FaceTracker:
    """Track faces through a video; ``update(frame)`` gives that frame's faces.

    Args:
        landmarker: a Landmarker (its detector, ``predict`` and ``predict_batch`` are used).
        smooth: run the Laplace Kalman filter on every track (else the raw points).
        process_noise, motion: the filter's settings (see :mod:`laplace_landmarks.smoothing`).
        max_faces: the most faces tracked at once (the detector's best ones).
        max_uncertainty, uncertainty_jump, max_size_drift: the lost rule (see the module
            docstring).

    ``detector_calls`` counts how often the detector ran.
    """

    def __init__(
        self,
        landmarker: Any,
        smooth: bool = True,
        process_noise: float = DEFAULT_PROCESS_NOISE,
        motion: str = "velocity",
        max_faces: int = 1,
        max_uncertainty: float = 0.5,
        uncertainty_jump: float = 2.0,
        max_size_drift: float = 1.5,
    ) -> None:
        if max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {max_faces}")
        if not (max_uncertainty > 0 and uncertainty_jump > 1 and max_size_drift > 1):
            raise ValueError(
                "needs max_uncertainty > 0, uncertainty_jump > 1 and max_size_drift > 1"
            )
        self.landmarker, self.smooth = landmarker, bool(smooth)
        self.process_noise, self.motion = float(process_noise), motion
        self.max_faces = int(max_faces)
        self.max_uncertainty, self.uncertainty_jump = float(max_uncertainty), uncertainty_jump
        self.max_size_drift = float(max_size_drift)
        self.detector_calls = 0
        self.tracks: list[_Track] = []
        self._ids = itertools.count()

    def reset(self) -> None:
        """Forget every track (e.g. at a known cut); the next frame runs the detector."""
        self.tracks = []

    def update(self, image: Any) -> list[TrackedFace]:
        """The faces of the next frame (an (H, W, 3) uint8 RGB array, PIL image or path)."""
        rgb = to_rgb_array(image, "image")
        faces = self._track(rgb) if self.tracks else []
        if len(faces) < len(self.tracks) or not self.tracks:
            self.tracks = [t for t in self.tracks if t.track_id in {f.track_id for f in faces}]
            faces += self._detect(rgb, faces)
        return faces

    def _track(self, rgb: np.ndarray) -> list[TrackedFace]:
        """One batched forward pass over the 5-point crops of all tracks; drops lost ones."""
        size = self.landmarker.crop_size
        crops, kept = [], []
        for track in self.tracks:
            try:
                crops.append(crop_from_five_points(five_points_from_68(track.next_points()), size))
            except ValueError:
                continue  # degenerate points: lost
            kept.append(track)
        if not crops:
            return []
        pil = Image.fromarray(rgb)
        stacked = np.stack([warp_crop(pil, crop) for crop in crops]).transpose(0, 3, 1, 2)
        points, scale = self.landmarker.predict_batch(np.ascontiguousarray(stacked))
        faces = []
        for track, crop, p, s in zip(kept, crops, points, scale, strict=True):
            raw_points, raw_scale = crop.to_image(p), crop.to_image_scale(s)
            u = float(np.mean(raw_scale)) / face_size(crop)
            if self._lost(raw_points, u, track, face_size(crop), rgb.shape):
                continue
            track.u_ref += (u - track.u_ref) / min(track.frames + 1, 25)
            track.frames += 1
            faces.append(self._advance(track, raw_points, raw_scale, crop, None, False))
        return faces

    def _lost(self, points: np.ndarray, u: float, track: _Track, size: float, shape: tuple) -> bool:
        """The lost rule of the module docstring."""
        if not (np.isfinite(points).all() and np.isfinite(u)):
            return True
        if u > self.max_uncertainty or u > self.uncertainty_jump * track.u_ref:
            return True
        five = five_points_from_68(points)
        side = float((five.max(axis=0) - five.min(axis=0)).max())
        if not 0.5 * size <= side <= 2.0 * size:
            return True
        drift = self.max_size_drift
        if not track.size_ref / drift <= side <= track.size_ref * drift:
            return True
        height, width = shape[:2]
        inside = (points[:, 0] >= -0.5) & (points[:, 0] <= width - 0.5)
        inside &= (points[:, 1] >= -0.5) & (points[:, 1] <= height - 0.5)
        cx, cy = (five.min(axis=0) + five.max(axis=0)) / 2
        return not (-0.5 <= cx <= width - 0.5 and -0.5 <= cy <= height - 0.5) or inside.mean() < 0.5

    def _advance(
        self,
        track: _Track,
        raw_points: np.ndarray,
        raw_scale: np.ndarray,
        crop: Crop,
        score: float | None,
        detected: bool,
    ) -> TrackedFace:
        """Fold this frame's measurement into the track and build its TrackedFace."""
        points, scale = raw_points, raw_scale
        if track.filter is not None:
            points = track.filter.update(raw_points, raw_scale, face_size(crop))
            scale = track.filter.scale
        track.points = points
        box = box_for_points(points, crop.size)
        return TrackedFace(
            points, scale, raw_points, raw_scale, box, score, crop, track.track_id, detected
        )

    def _detect(self, rgb: np.ndarray, tracked: list[TrackedFace]) -> list[TrackedFace]:
        """Run the detector; start a track for each new face not already tracked."""
        self.detector_calls += 1
        height, width = rgb.shape[:2]
        detections = [
            d
            for d in usable_detections(self.landmarker.detector(rgb), width, height)
            if not any(_overlaps(d.box, f.box) for f in tracked)
        ][: self.max_faces - len(tracked)]
        if not detections:
            return []
        found = self.landmarker.predict(rgb, boxes=[d.box for d in detections])
        faces = []
        for detection, face in zip(detections, found, strict=True):
            size = face_size(face.crop)
            u = float(np.mean(face.scale)) / size
            kalman = None
            if self.smooth:
                kalman = LaplaceKalman(
                    face.points, face.scale, size, self.process_noise, self.motion
                )
            track = _Track(next(self._ids), face.points, kalman, u, size)
            self.tracks.append(track)
            points, scale = face.points, face.scale
            faces.append(
                TrackedFace(
                    points,
                    scale,
                    points,
                    scale,
                    detection.box,
                    detection.score,
                    face.crop,
                    track.track_id,
                    True,
                )
            )
        return faces
