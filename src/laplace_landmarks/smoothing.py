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

**Offline (two-pass) smoothing** (:func:`rts_smooth`): when every frame is available (a video
file), the Rauch-Tung-Striebel fixed-interval smoother runs this same filter forward over the
whole sequence and then a backward pass, so each frame's estimate also uses the frames after it.
It has no lag and cuts flicker further; on the last frame it equals the causal filter. It uses
the same model (transition, ``Q``, ``R = 2 b^2``), through :class:`LaplaceKalman` itself.

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
#: For :func:`rts_smooth` (motion="velocity"): chosen on the same validation video with
#: ``benchmarks/video_smoothing.py --tune`` (grid 0.001-0.03), as the largest flicker cut whose
#: NME cost stayed within 0.2 points for both rcn-lite models on the tracked path (predict VIDEO's
#: measurements). Smaller than the causal filter's: the two-pass smoother does not lag.
DEFAULT_OFFLINE_PROCESS_NOISE = 0.003
#: A point whose first measurement is missing starts from a diffuse prior: mean 0, standard
#: deviation DIFFUSE * face size (so its first valid measurement sets it).
DIFFUSE = 1e3


def laplace_variance(scale: np.ndarray) -> np.ndarray:
    """The variance ``2 b^2`` of a Laplace distribution with scale ``b`` (elementwise)."""
    return 2.0 * np.square(scale)


def _valid(points: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Which measurements are used: finite, with a finite positive scale."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(points) & np.isfinite(scale) & (scale > 0)


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

    The velocity starts at 0 with the variance of a position measurement. A point whose first
    measurement is not finite (or whose scale is not finite and positive) starts from a diffuse
    prior instead (mean 0, standard deviation ``DIFFUSE * face_size``), so that its first valid
    measurement sets it.
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
        valid = _valid(p, s)
        diffuse = (DIFFUSE * float(face_size)) ** 2
        self.mean = np.zeros((*p.shape, n))
        self.mean[..., 0] = np.where(valid, p, 0.0)
        self.cov = np.zeros((*p.shape, n, n))
        for i in range(n):
            self.cov[..., i, i] = np.where(
                valid, laplace_variance(np.where(valid, s, 1.0)), diffuse
            )
        self.face_size = float(face_size)

    def _process_cov(self, face_size: float) -> np.ndarray:
        q2 = (self.process_noise * face_size) ** 2
        if self.motion == "velocity":
            return q2 * np.array([[0.25, 0.5], [0.5, 1.0]])
        return q2 * np.eye(1)

    def predict_state(
        self, mean: np.ndarray, cov: np.ndarray, face_size: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """The one-frame prediction of a state: ``(F m, F P F^T + Q(face_size))``.

        ``mean`` (..., n) and ``cov`` (..., n, n) are any state of this filter's model (``n`` = 2
        for velocity, 1 for position); the filter itself is not changed.
        """
        f = self.transition
        return mean @ f.T, f @ cov @ f.T + self._process_cov(face_size)

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

        Non-finite measurements (or scales, or scales <= 0) are skipped: those points only get
        the prediction.
        """
        z, s = _check(points, scale)
        if face_size is not None:
            self.face_size = float(face_size)
        mean, cov = self.predict_state(self.mean, self.cov, self.face_size)
        valid = _valid(z, s)
        innovation_var = cov[..., 0, 0] + laplace_variance(np.where(valid, s, 1.0))
        gain = np.where(valid[..., None], cov[..., :, 0] / innovation_var[..., None], 0.0)
        innovation = np.where(valid, z - mean[..., 0], 0.0)
        self.mean = mean + gain * innovation[..., None]
        self.cov = cov - gain[..., :, None] * cov[..., None, 0, :]
        return self.points


def rts_smooth(
    points: object,
    scale: object,
    face_sizes: object,
    process_noise: float = DEFAULT_OFFLINE_PROCESS_NOISE,
    motion: str = "velocity",
) -> tuple[np.ndarray, np.ndarray]:
    """Offline (fixed-interval, Rauch-Tung-Striebel) smoothing of one track's points.

    A forward pass of :class:`LaplaceKalman` over all frames (started on frame 0, as the causal
    filter is), then a backward pass that folds in the later frames:
    ``G_t = P_t F^T (P_t+1|t)^-1``, ``m_t <- m_t + G_t (m_t+1 - m_t+1|t)``,
    ``P_t <- P_t + G_t (P_t+1 - P_t+1|t) G_t^T``.

    Args:
        points: (T, K, 2) measurements (image pixels); non-finite ones are skipped, as in
            :meth:`LaplaceKalman.update` (a point missing on frame 0 starts from a diffuse prior).
        scale: (T, K, 2) their Laplace scales b (measurement variance ``2 b^2``); non-finite or
            <= 0 scales are skipped too.
        face_sizes: (T,) face size in pixels per frame (or one number), which ``process_noise``
            is relative to.
        process_noise, motion: the model, as for :class:`LaplaceKalman`.

    Returns:
        ``(points, scale)``: (T, K, 2) smoothed points and their posterior uncertainty as a
        Laplace scale ``sqrt(variance / 2)``. The last frame equals the causal filter's.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> truth = np.linspace(0, 30, 50)[:, None, None] + np.zeros((50, 3, 2))
        >>> scale = np.ones((50, 3, 2))
        >>> measured = truth + rng.laplace(0, scale)
        >>> smoothed, b = rts_smooth(measured, scale, face_sizes=100.0, process_noise=0.01)
        >>> raw_error, error = np.abs(measured - truth).mean(), np.abs(smoothed - truth).mean()
        >>> smoothed.shape, bool(error < 0.6 * raw_error), bool(np.all(b < scale))
        ((50, 3, 2), True, True)
    """
    z = np.asarray(points, dtype=np.float64)
    s = np.asarray(scale, dtype=np.float64)
    if z.ndim != 3 or z.shape[-1] != 2 or z.shape[0] < 1:
        raise ValueError(f"points must have shape (T, K, 2) as (x, y) with T >= 1, got {z.shape}")
    if s.shape != z.shape:
        raise ValueError(f"scale must have the shape of points {z.shape}, got {s.shape}")
    frames = len(z)
    sizes = np.asarray(face_sizes, dtype=np.float64)
    if sizes.ndim == 0:
        sizes = np.full(frames, float(sizes))
    if sizes.shape != (frames,):
        raise ValueError(
            f"face_sizes must be one number or have shape ({frames},), got {sizes.shape}"
        )
    if not (np.isfinite(sizes).all() and (sizes > 0).all()):
        raise ValueError("face_sizes must be finite and positive")
    kalman = LaplaceKalman(z[0], s[0], sizes[0], process_noise, motion)
    means = np.empty((frames, *kalman.mean.shape))
    covs = np.empty((frames, *kalman.cov.shape))
    means[0], covs[0] = kalman.mean, kalman.cov
    for t in range(1, frames):  # forward: the causal filter, keeping every posterior
        kalman.update(z[t], s[t], sizes[t])
        means[t], covs[t] = kalman.mean, kalman.cov
    f = kalman.transition
    for t in range(frames - 2, -1, -1):  # backward, in place: means/covs[t+1] are smoothed
        prior_mean, prior_cov = kalman.predict_state(means[t], covs[t], sizes[t + 1])
        # G = P F^T prior^-1, so G^T = prior^-1 F P (both covariances are symmetric)
        gain = np.swapaxes(np.linalg.solve(prior_cov, f @ covs[t]), -1, -2)
        means[t] += (gain @ (means[t + 1] - prior_mean)[..., None])[..., 0]
        cov = covs[t] + gain @ (covs[t + 1] - prior_cov) @ np.swapaxes(gain, -1, -2)
        covs[t] = (cov + np.swapaxes(cov, -1, -2)) / 2
    return means[..., 0], np.sqrt(np.maximum(covs[..., 0, 0], 0.0) / 2.0)
