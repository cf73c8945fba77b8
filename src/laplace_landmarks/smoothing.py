"""Uncertainty-aware temporal smoothing of landmarks: one Kalman filter per point and axis.

Coordinates are (x, y), 0-based, with pixel centres at integers, in image pixels.

Model (:class:`LaplaceKalman`):

- **Measurement noise** is the network's own uncertainty. A point predicted with Laplace scale
  ``b`` (per axis) has variance ``2 b^2``, so ``R = 2 b^2``: a confident point moves the estimate
  a lot, an uncertain one (occluded, blurred) hardly at all.
- **Motion** is ``"velocity"`` (the default: constant velocity, state = position and velocity,
  driven by white-noise acceleration) or ``"position"`` (constant position, a random walk). A
  face in video moves smoothly for many frames, so the constant-velocity model follows it without
  the lag a random walk has under strong smoothing; ``benchmarks/video_smoothing.py`` compares
  both on a validation video.
- **Process noise** is relative to the face size ``s`` (in pixels, e.g. the side of the 5-point
  box), so the same setting works for small and large faces: the standard deviation of the
  per-frame acceleration (velocity model) or step (position model) is ``process_noise * s``.
  With ``dt = 1`` frame the velocity model's ``Q = q^2 [[1/4, 1/2], [1/2, 1]]``, ``q =
  process_noise * s`` (the discrete white-noise-acceleration model).

The points and axes are independent filters, run together as numpy arrays.

Example:
    >>> import numpy as np
    >>> points, scale = np.zeros((68, 2)), np.ones((68, 2))
    >>> kf = LaplaceKalman(points, scale, face_size=100.0, process_noise=0.01)
    >>> smoothed = kf.update(points + 0.5, scale, face_size=100.0)
    >>> bool(0.0 < smoothed[0, 0] < 0.5)
    True
"""

from __future__ import annotations

import numpy as np

MOTION_MODELS = ("velocity", "position")
#: With motion="velocity": chosen on the validation video of benchmarks/video_smoothing.py --tune
#: (another photo and path than the reported test video), as the largest flicker cut whose NME
#: cost stayed within 0.2 points for both shipped models, filtering per-frame predictions.
DEFAULT_PROCESS_NOISE = 0.01


def laplace_variance(scale: np.ndarray) -> np.ndarray:
    """The variance ``2 b^2`` of a Laplace distribution with scale ``b`` (elementwise)."""
    return 2.0 * np.square(scale)


def _check(points: object, scale: object) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(points, dtype=np.float64)
    s = np.asarray(scale, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"points must have shape (K, 2) as (x, y), got {p.shape}")
    if s.shape != p.shape:
        raise ValueError(f"scale must have the shape of points {p.shape}, got {s.shape}")
    return p, s


class LaplaceKalman:
    """Per-point, per-axis Kalman filter whose measurement noise is the predicted Laplace scale.

    Args:
        points: (K, 2) first measurement (image pixels). scale: (K, 2) its Laplace scales b.
        face_size: the face size in pixels that ``process_noise`` is relative to.
        process_noise: per-frame acceleration (or step) standard deviation / face size.
        motion: ``"velocity"`` or ``"position"`` (see the module docstring).

    The velocity starts at 0 with the variance of a position measurement.
    """

    def __init__(
        self,
        points: object,
        scale: object,
        face_size: float,
        process_noise: float = DEFAULT_PROCESS_NOISE,
        motion: str = "velocity",
    ) -> None:
        if motion not in MOTION_MODELS:
            raise ValueError(f"motion must be one of {MOTION_MODELS}, got {motion!r}")
        if not (np.isfinite(process_noise) and process_noise >= 0):
            raise ValueError(f"process_noise must be >= 0, got {process_noise}")
        p, s = _check(points, scale)
        self.process_noise, self.motion = float(process_noise), motion
        n = 2 if motion == "velocity" else 1
        self.transition = np.array([[1.0, 1.0], [0.0, 1.0]]) if n == 2 else np.eye(1)
        self.mean = np.zeros((*p.shape, n))
        self.mean[..., 0] = p
        self.cov = np.zeros((*p.shape, n, n))
        for i in range(n):
            self.cov[..., i, i] = laplace_variance(s)
        self.face_size = float(face_size)

    def _process_cov(self, face_size: float) -> np.ndarray:
        q2 = (self.process_noise * face_size) ** 2
        if self.motion == "velocity":
            return q2 * np.array([[0.25, 0.5], [0.5, 1.0]])
        return q2 * np.eye(1)

    def predicted(self) -> np.ndarray:
        """(K, 2) where the points are expected in the next frame (the prior mean)."""
        return (self.mean @ self.transition.T)[..., 0]

    @property
    def points(self) -> np.ndarray:
        """(K, 2) the current (posterior) estimate, image pixels."""
        return self.mean[..., 0].copy()

    @property
    def scale(self) -> np.ndarray:
        """(K, 2) the posterior uncertainty as a Laplace scale: ``b = sqrt(variance / 2)``."""
        return np.sqrt(self.cov[..., 0, 0] / 2.0)

    def update(self, points: object, scale: object, face_size: float | None = None) -> np.ndarray:
        """Advance one frame and fold in a measurement; returns the (K, 2) smoothed points.

        Non-finite measurements (or scales) are skipped: those points only get the prediction.
        """
        z, s = _check(points, scale)
        if face_size is not None:
            self.face_size = float(face_size)
        f = self.transition
        mean = self.mean @ f.T
        cov = f @ self.cov @ f.T + self._process_cov(self.face_size)
        valid = np.isfinite(z) & np.isfinite(s) & (s > 0)
        innovation_var = cov[..., 0, 0] + laplace_variance(np.where(valid, s, 1.0))
        gain = np.where(valid[..., None], cov[..., :, 0] / innovation_var[..., None], 0.0)
        innovation = np.where(valid, z - mean[..., 0], 0.0)
        self.mean = mean + gain * innovation[..., None]
        self.cov = cov - gain[..., :, None] * cov[..., None, 0, :]
        return self.points
