"""Synthetic face videos with known ground truth, for testing tracking and smoothing.

A real photo with ground-truth 68 points (e.g. a bundled ``samples/*.jpg`` with its ``.pts``) is
moved, zoomed and rolled along a known smooth path: one similarity transform per frame, applied
with sub-pixel bilinear resampling. Each frame then gets mild sensor noise (Gaussian, per pixel)
and a JPEG round trip, so that a network's output jitters from frame to frame as on real video.
The ground-truth points go through the same similarity, so every frame has exact truth.

Coordinates are (x, y), 0-based, with pixel centres at integers, in the photo and in the frames.

Example:
    >>> from laplace_landmarks.video_synth import sample_photo, synthesize_video
    >>> photo, points = sample_photo("ytf68_Takeo_Hiranuma_00a")    # doctest: +SKIP
    >>> video = synthesize_video(photo, points, num_frames=40, size=(320, 240))  # doctest: +SKIP
    >>> len(video.frames), video.points.shape                       # doctest: +SKIP
    (40, (40, 68, 2))
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
#: Photos with ground truth: the reported (test) path uses TEST_PHOTO with seed 0; the process
#: noise is tuned on VALIDATION_PHOTO with seed 1 (a different person and a different path).
TEST_PHOTO = "ytf68_Takeo_Hiranuma_00a"
VALIDATION_PHOTO = "ytf68_Emmy_Rossum_20a"


@dataclass(frozen=True, eq=False)
class SyntheticVideo:
    """Frames and their exact ground truth.

    frames: T arrays (H, W, 3) uint8 RGB. points: (T, K, 2) float64 truth in frame pixels.
    matrices: (T, 2, 3) photo -> frame map of each frame (a similarity up to the sub-0.5 %
        anisotropy of rounding the pre-shrunk photo's size). fps: frames per second.
    """

    frames: list[np.ndarray]
    points: np.ndarray
    matrices: np.ndarray
    fps: float


def sample_photo(name: str = TEST_PHOTO) -> tuple[np.ndarray, np.ndarray]:
    """A bundled sample photo (RGB uint8) and its 68 ground-truth points, (x, y), 0-based."""
    from laplace_landmarks.data.formats import read_pts

    path = SAMPLES_DIR / f"{name}.jpg"
    photo = np.asarray(Image.open(path).convert("RGB"))
    return photo, read_pts(path.with_suffix(".pts"), expected_points=68)


def inter_ocular(points: np.ndarray) -> np.ndarray:
    """Outer-eye-corner distance (points 36 and 45) of (..., 68, 2) points, in pixels."""
    return np.linalg.norm(points[..., 36, :] - points[..., 45, :], axis=-1)


def smooth_path(
    num_frames: int, size: tuple[int, int], face_size: float, seed: int = 0
) -> np.ndarray:
    """(T, 4) rows (centre x, centre y, inter-ocular px, roll radians): a smooth random path.

    Sums of two sinusoids per parameter, with frequencies and phases drawn from ``seed``: the
    face centre wanders over the middle of a ``size = (width, height)`` frame, the inter-ocular
    distance varies by about +-20 % around ``face_size`` and the roll by up to about 8 degrees.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames) / max(num_frames - 1, 1)

    def wave(amplitude: float) -> np.ndarray:
        cycles = rng.uniform(0.4, 1.2, size=2)
        phase = rng.uniform(0, 2 * np.pi, size=2)
        return amplitude * 0.5 * np.sin(2 * np.pi * cycles[:, None] * t + phase[:, None]).sum(0)

    width, height = size
    cx = width / 2 + wave(0.12 * width)
    cy = height / 2 + wave(0.08 * height)
    zoom = face_size * np.exp(wave(0.2))
    roll = wave(np.deg2rad(8.0))
    return np.stack([cx, cy, zoom, roll], axis=1)


def similarity(
    points: np.ndarray, center: tuple[float, float], io_px: float, roll: float
) -> np.ndarray:
    """(2, 3) photo -> frame similarity putting the points' centroid at ``center`` with
    inter-ocular distance ``io_px`` and rotated by ``roll`` radians."""
    scale = io_px / float(inter_ocular(points))
    cos, sin = scale * np.cos(roll), scale * np.sin(roll)
    linear = np.array([[cos, -sin], [sin, cos]])
    offset = np.asarray(center, dtype=np.float64) - linear @ points.mean(axis=0)
    return np.concatenate([linear, offset[:, None]], axis=1)


def render(photo: Image.Image, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resample ``photo`` through the (2, 3) photo -> frame similarity (bilinear, sub-pixel).

    Pixel centres are at integers on both sides; PIL works in corner coordinates, hence the
    half-pixel shifts (as in ``data.crops.warp_crop``).
    """
    linear_inv = np.linalg.inv(matrix[:, :2])
    offset_inv = -linear_inv @ matrix[:, 2]
    offset_pil = offset_inv + 0.5 - linear_inv @ np.array([0.5, 0.5])
    coeffs = (*linear_inv[0], offset_pil[0], *linear_inv[1], offset_pil[1])
    out = photo.transform(size, Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR)
    return np.asarray(out)


def add_camera_noise(
    frame: np.ndarray, rng: np.random.Generator, sigma: float, quality: int
) -> np.ndarray:
    """Gaussian sensor noise of ``sigma`` grey levels, then a JPEG round trip at ``quality``
    (either step is skipped when its value is 0)."""
    if sigma > 0:
        noisy = frame.astype(np.float32) + rng.normal(0.0, sigma, size=frame.shape)
        frame = np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
    if quality > 0:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
        frame = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return frame


def synthesize_video(
    photo: np.ndarray,
    points: np.ndarray,
    num_frames: int = 150,
    size: tuple[int, int] = (480, 360),
    face_size: float | None = None,
    seed: int = 0,
    noise: float = 3.0,
    jpeg_quality: int = 75,
    fps: float = 25.0,
) -> SyntheticVideo:
    """Move, zoom and roll ``photo`` along :func:`smooth_path` and render ``num_frames`` frames.

    Args:
        photo: (H, W, 3) uint8 RGB. points: its (68, 2) ground truth, (x, y), 0-based.
        size: the frames' (width, height). face_size: the mean inter-ocular distance in frame
            pixels (default: a quarter of the frame's smaller side).
        seed: draws the path and the noise. noise: sensor noise sigma in grey levels (0: none).
        jpeg_quality: 1-95, or 0 for no JPEG round trip.

    Returns:
        A :class:`SyntheticVideo`; ``points[t]`` is the truth of ``frames[t]`` in frame pixels.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (68, 2) or not np.isfinite(points).all():
        raise ValueError(f"points must be finite (68, 2), got {points.shape}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    face_size = face_size or min(size) / 4
    path = smooth_path(num_frames, size, face_size, seed)
    # Pre-shrink once with a good filter and pad by edge replication, so that the per-frame
    # bilinear warp neither aliases nor shows black borders.
    shrink = min(1.0, 1.25 * face_size / float(inter_ocular(points)))
    pad = max(photo.shape[:2])
    padded = np.pad(photo, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    small_size = (round(padded.shape[1] * shrink), round(padded.shape[0] * shrink))
    small = Image.fromarray(padded).resize(small_size, Image.Resampling.LANCZOS)
    factor = np.array(small_size) / np.array(padded.shape[1::-1])  # per axis, after rounding
    small_points = (points + pad + 0.5) * factor - 0.5  # pixel centres at integers on both sides
    rng = np.random.default_rng(seed + 1000)
    frames, truth, matrices = [], [], []
    for cx, cy, io_px, roll in path:
        frame_from_small = similarity(small_points, (cx, cy), io_px, roll)
        frame = add_camera_noise(render(small, frame_from_small, size), rng, noise, jpeg_quality)
        frames.append(frame)
        truth.append(small_points @ frame_from_small[:, :2].T + frame_from_small[:, 2])
        # photo -> frame: the (diagonal) photo -> small map, then the similarity
        linear = frame_from_small[:, :2] * factor
        offset = frame_from_small[:, :2] @ ((pad + 0.5) * factor - 0.5) + frame_from_small[:, 2]
        matrices.append(np.concatenate([linear, offset[:, None]], axis=1))
    return SyntheticVideo(frames, np.stack(truth), np.stack(matrices), float(fps))
