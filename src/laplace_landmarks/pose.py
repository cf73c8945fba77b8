"""Head pose (yaw, pitch, roll in degrees) from 68 landmarks: perspective PnP in numpy.

The 3D model, :data:`HEAD_MODEL`, holds the 16 points of :data:`RIGID_POINTS` that move least with
expression and do not slide along the face outline as the head turns: chin 8, nose bridge 27-30
(30 the tip), nose base 31-35, eye corners 36/39/42/45 and mouth corners 48/54. Coordinates are
millimetres in the head frame: x towards the subject's left (the image's right in a frontal
view), y down, z away from the camera (into the head, so the nose tip has the smallest z); the
origin is the centroid of the 16 points. Nothing was downloaded or copied; where the numbers come
from (:func:`head_model` recomputes them, ``tests/test_pose.py`` checks that it does):

- Shape, x/y/z up to scale: the 34 human-annotated 300W faces in ``tests/data`` (``.pts``) and
  their mirror images, by Tomasi-Kanade factorisation under scaled orthography (rank-3 SVD of the
  centred 2D points of all faces, then the metric upgrade that makes every face's camera rows
  orthogonal and of equal length). The faces' differing poses give the depth; different people
  and expressions are noise. The depth is the least certain part: the same solve with the 40
  ytf68 faces added puts the nose tip 35 mm in front of the outer eye corners instead of 46 mm.
  Were real heads that shallow, yaw and pitch here would read about 20 % low (a true 30-degree
  yaw as 24 degrees, measured on projections of the shallower model); roll is not affected.
- Orientation (what "frontal" means): turned so that its x/y projection best fits the same faces'
  2D Procrustes mean (:func:`laplace_landmarks.alignment.mean_shape`), so yaw = pitch = roll = 0
  is the average pose of those photos; symmetric left-right by construction (mirrored faces).
- Scale: outer eye corners 36-45 set 90 mm apart, a round value for the adult biocular width
  ex-ex, whose measured means run from about 88 to 98 mm by sex and population (e.g. 93.0 mm
  for men and 88.4 mm for women among Hong Kong Chinese young adults, BioMed Res. Int. 2013,
  article 821428). The scale only changes the translation (distance), never the angles.
- Check against anthropometry: the model's nasal tip protrusion (subnasale ~ point 33 to
  pronasale ~ point 30, straight line) is 19.3 mm; photogrammetric studies report about 20-21 mm
  for adults (e.g. 21.0 mm, Egyptian males, Aesthetic Plast. Surg. 2018, doi:10.1007/s00266-018-1197-8).

Solver (numpy only): a pinhole camera with focal length ``max(H, W)`` pixels by default and the
principal point at the image centre; a weak-perspective (scaled orthographic) fit gives the
start, then Levenberg-Marquardt on the rotation (axis-angle, updated on the left) and the
translation minimises the squared reprojection error. Uncertainty-aware: given the Laplace scales
b of :class:`~laplace_landmarks.inference.Face`, each coordinate is weighted by 1/b^2 (the
least-squares weight of a point whose spread is b), so uncertain points (an occluded eye corner,
a blurred chin) pull the pose less.

Angle convention (degrees; ``R = Rz(roll) @ Ry(-yaw) @ Rx(-pitch)`` maps the head frame into the
camera frame x right, y down, z forward; the angles are relative to the camera's axes):

- yaw > 0: the face turns to its own left, i.e. towards the image's right (the nose moves right);
- pitch > 0: the nose turns up;
- roll > 0: the face leans clockwise in the image (its left eye, on the image right, goes down).

Mirroring an image negates yaw and roll and keeps pitch.

Example:
    >>> from laplace_landmarks import Landmarker                    # doctest: +SKIP
    >>> from laplace_landmarks.data.images import load_image        # doctest: +SKIP
    >>> rgb = load_image("photo.jpg")                               # doctest: +SKIP
    >>> face = Landmarker.pretrained().predict(rgb)[0]              # doctest: +SKIP
    >>> estimate_pose(face.points, rgb.shape, scale=face.scale).to_dict()  # doctest: +SKIP
    {'yaw': -3.1, 'pitch': 4.2, 'roll': 1.0, ...}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from laplace_landmarks.alignment import mean_shape
from laplace_landmarks.data.markups import MIRROR_PERMUTATIONS, mirror_points

#: The 68-point indices the 3D model covers (rows of HEAD_MODEL, in this order).
RIGID_POINTS = (8, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 39, 42, 45, 48, 54)
#: Adult outer-canthal (ex-ex) width the model is scaled to, millimetres (module docstring).
OUTER_CANTHAL_WIDTH_MM = 90.0

#: (16, 3) millimetres, rows in RIGID_POINTS order, head frame (x subject's left, y down, z into
#: the head). Computed once by ``head_model([read_pts(p) for p in
#: sorted(Path("tests/data").rglob("*.pts"))])``, rounded to 0.1 mm; see the module docstring.
HEAD_MODEL = np.array([
        [0.0, 77.0, 28.0],  # 8
        [0.0, -34.7, -7.3],  # 27
        [0.0, -23.0, -14.0],  # 28
        [0.0, -11.6, -21.6],  # 29
        [0.0, 0.2, -28.7],  # 30
        [-14.6, 9.0, -7.2],  # 31
        [-7.5, 11.4, -11.6],  # 32
        [0.0, 13.3, -14.6],  # 33
        [7.5, 11.4, -11.6],  # 34
        [14.6, 9.0, -7.2],  # 35
        [-45.0, -31.9, 17.1],  # 36
        [-19.1, -30.2, 11.0],  # 39
        [19.1, -30.2, 11.0],  # 42
        [45.0, -31.9, 17.1],  # 45
        [-27.7, 31.2, 19.9],  # 48
        [27.7, 31.2, 19.9],  # 54
])  # fmt: skip

#: Names and RGB colours of the three axes :func:`pose_axes` returns, in order.
AXIS_NAMES = ("left", "down", "forward")
AXIS_COLOURS = ((230, 40, 40), (40, 200, 40), (40, 90, 255))


@dataclass(frozen=True, eq=False)
class HeadPose:
    """A head pose relative to the camera.

    yaw, pitch, roll: degrees, convention in the module docstring.
    rotation: (3, 3) head frame -> camera frame.
    translation: (3,) the model origin in camera coordinates, millimetres (z: the distance, only
        as right as the assumed focal length and head size).
    reprojection_error: mean distance in pixels between the points used and the model's
        projection of them.
    focal_length: the camera's focal length in pixels; principal_point: (cx, cy) pixels.
    """

    yaw: float
    pitch: float
    roll: float
    rotation: np.ndarray
    translation: np.ndarray
    reprojection_error: float
    focal_length: float
    principal_point: tuple[float, float]

    def to_dict(self, decimals: int = 2) -> dict[str, Any]:
        """JSON-ready: yaw, pitch, roll, rotation, translation, reprojection_error, focal_length."""
        return {
            "yaw": round(self.yaw, decimals),
            "pitch": round(self.pitch, decimals),
            "roll": round(self.roll, decimals),
            "rotation": np.round(self.rotation, 6).tolist(),
            "translation": np.round(self.translation, decimals).tolist(),
            "reprojection_error": round(self.reprojection_error, decimals),
            "focal_length": round(self.focal_length, decimals),
        }

    def project(self, model_points: Any) -> np.ndarray:
        """Image pixels of (N, 3) head-frame points (mm) under this pose and camera."""
        return project(
            model_points, self.rotation, self.translation, self.focal_length, self.principal_point
        )


def estimate_pose(
    points: Any,
    image_shape: Sequence[int],
    scale: Any = None,
    focal_length: float | None = None,
    iterations: int = 50,
) -> HeadPose:
    """Head pose from 68 landmarks by perspective PnP on :data:`HEAD_MODEL`.

    Args:
        points: (68, 2) landmarks in image pixels ((x, y), pixel centres at integers); only
            :data:`RIGID_POINTS` are used.
        image_shape: the image's ``(height, width)`` (``rgb.shape`` works): the principal point
            is its centre and the default focal length ``max(height, width)``.
        scale: optional (68, 2) Laplace scales b (pixels): weights each coordinate by 1/b^2.
        focal_length: focal length in pixels; None: ``max(height, width)``.
        iterations: at most this many Levenberg-Marquardt steps.

    Returns:
        A :class:`HeadPose`.

    Example:
        >>> truth = rotation_from_angles(yaw=20.0, pitch=-10.0, roll=5.0)
        >>> pixels = project(HEAD_MODEL, truth, [0.0, 0.0, 600.0], 640.0, (319.5, 239.5))
        >>> points = np.zeros((68, 2))
        >>> points[list(RIGID_POINTS)] = pixels
        >>> pose = estimate_pose(points, (480, 640))
        >>> round(pose.yaw, 3), round(pose.pitch, 3), round(pose.roll, 3)
        (20.0, -10.0, 5.0)
    """
    observed = _rigid(points, "points")
    height, width = int(image_shape[0]), int(image_shape[1])
    focal = float(max(height, width) if focal_length is None else focal_length)
    if not (np.isfinite(focal) and focal > 0):
        raise ValueError(f"focal_length must be positive, got {focal_length}")
    centre = ((width - 1) / 2.0, (height - 1) / 2.0)
    if np.ptp(observed, axis=0).min() <= 0:
        raise ValueError("points are degenerate (no spread along x or y)")
    weights = np.ones_like(observed) if scale is None else 1.0 / _rigid(scale, "scale") ** 2
    weights = weights / weights.mean()
    rotation, translation = weak_perspective_pose(observed, HEAD_MODEL, focal, centre, weights)
    rotation, translation = refine_pose(
        observed, HEAD_MODEL, rotation, translation, focal, centre, weights, iterations
    )
    residual = project(HEAD_MODEL, rotation, translation, focal, centre) - observed
    yaw, pitch, roll = angles_from_rotation(rotation)
    return HeadPose(
        yaw=yaw,
        pitch=pitch,
        roll=roll,
        rotation=rotation,
        translation=translation,
        reprojection_error=float(np.linalg.norm(residual, axis=1).mean()),
        focal_length=focal,
        principal_point=centre,
    )


def project(
    model_points: Any,
    rotation: Any,
    translation: Any,
    focal_length: float,
    principal_point: Sequence[float],
) -> np.ndarray:
    """Pinhole projection of (N, 3) head-frame points: ``f * (X / Z, Y / Z) + c`` of ``R p + t``.

    Example:
        >>> project([[10.0, 0.0, 0.0]], np.eye(3), [0.0, 0.0, 100.0], 500.0, (320.0, 240.0))
        array([[370., 240.]])
    """
    camera = np.asarray(model_points, dtype=np.float64) @ np.asarray(rotation).T + translation
    return focal_length * camera[:, :2] / camera[:, 2:3] + np.asarray(principal_point)


def rotation_from_angles(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """The head -> camera rotation ``Rz(roll) @ Ry(-yaw) @ Rx(-pitch)`` for angles in degrees.

    Example:
        >>> np.round(rotation_from_angles(0.0, 0.0, 90.0), 6) + 0.0   # clockwise quarter turn
        array([[ 0., -1.,  0.],
               [ 1.,  0.,  0.],
               [ 0.,  0.,  1.]])
    """
    y, p, r = np.radians([-yaw, -pitch, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def angles_from_rotation(rotation: Any) -> tuple[float, float, float]:
    """``(yaw, pitch, roll)`` in degrees of a head -> camera rotation (inverse of the above).

    Example:
        >>> np.round(angles_from_rotation(rotation_from_angles(30.0, -15.0, 10.0)), 6) + 0.0
        array([ 30., -15.,  10.])
    """
    r = np.asarray(rotation, dtype=np.float64)
    theta = np.arcsin(np.clip(-r[2, 0], -1.0, 1.0))
    phi = np.arctan2(r[2, 1], r[2, 2])
    psi = np.arctan2(r[1, 0], r[0, 0])
    return float(-np.degrees(theta)), float(-np.degrees(phi)), float(np.degrees(psi))


def axis_angle_to_matrix(vector: Any) -> np.ndarray:
    """Rodrigues' formula: the rotation by ``|v|`` radians about ``v``.

    Example:
        >>> np.round(axis_angle_to_matrix([0.0, 0.0, np.pi / 2]), 6) + 0.0
        array([[ 0., -1.,  0.],
               [ 1.,  0.,  0.],
               [ 0.,  0.,  1.]])
    """
    v = np.asarray(vector, dtype=np.float64)
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.eye(3) + _skew(v)
    k = _skew(v / angle)
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * k @ k


def weak_perspective_pose(
    observed: np.ndarray,
    model: np.ndarray,
    focal_length: float,
    principal_point: Sequence[float],
    weights: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Scaled-orthographic start: a weighted affine camera, made a scaled rotation.

    Fits ``x - x0 = A (X - X0)`` (each image axis by weighted least squares), takes the nearest
    pair of orthonormal rows times a scale s (SVD), completes the rotation with their cross
    product and puts the model centroid at depth ``focal_length / s`` on the ray through the
    observed centroid. Returns ``(rotation, translation)``.
    """
    centre = np.asarray(principal_point, dtype=np.float64)
    rows, means = [], []
    for axis in range(2):
        w = weights[:, axis] / weights[:, axis].sum()
        model_mean, image_mean = w @ model, w @ observed[:, axis]
        design = (model - model_mean) * np.sqrt(w)[:, None]
        target = (observed[:, axis] - image_mean) * np.sqrt(w)
        rows.append(np.linalg.lstsq(design, target, rcond=None)[0])
        means.append((model_mean, image_mean))
    u, sigma, vt = np.linalg.svd(np.array(rows), full_matrices=False)
    top = u @ vt
    rotation = np.vstack([top, np.cross(top[0], top[1])])
    depth = focal_length / float(sigma.mean())
    model_mean = (means[0][0] + means[1][0]) / 2
    image_mean = np.array([means[0][1], means[1][1]])
    ray = np.append((image_mean - centre) / focal_length, 1.0)
    return rotation, depth * ray - rotation @ model_mean


def refine_pose(
    observed: np.ndarray,
    model: np.ndarray,
    rotation: np.ndarray,
    translation: np.ndarray,
    focal_length: float,
    principal_point: Sequence[float],
    weights: np.ndarray,
    iterations: int = 50,
) -> tuple[np.ndarray, np.ndarray]:
    """Levenberg-Marquardt on the weighted squared reprojection error (6 parameters).

    The rotation is updated on the left, ``R <- exp([d]x) R``, and the translation additively,
    with analytic Jacobians of the pinhole projection. Returns ``(rotation, translation)``.
    """
    sqrt_w = np.sqrt(weights).ravel()

    def residuals(r: np.ndarray, t: np.ndarray) -> np.ndarray:
        return (project(model, r, t, focal_length, principal_point) - observed).ravel() * sqrt_w

    current = residuals(rotation, translation)
    cost, damping = float(current @ current), 1e-3
    for _ in range(iterations):
        jacobian = (
            _projection_jacobian(model, rotation, translation, focal_length) * sqrt_w[:, None]
        )
        normal, gradient = jacobian.T @ jacobian, jacobian.T @ current
        step = np.linalg.solve(normal + damping * np.diag(np.diag(normal) + 1e-12), -gradient)
        new_rotation = axis_angle_to_matrix(step[:3]) @ rotation
        new_translation = translation + step[3:]
        candidate = residuals(new_rotation, new_translation)
        new_cost = float(candidate @ candidate)
        if new_cost < cost:
            improvement = cost - new_cost
            rotation, translation, current, cost = (
                new_rotation,
                new_translation,
                candidate,
                new_cost,
            )
            damping = max(damping / 3.0, 1e-9)
            if improvement <= 1e-12 * max(cost, 1.0) or np.abs(step).max() < 1e-10:
                break
        else:
            damping *= 4.0
            if damping > 1e8:
                break
    return rotation, translation


def pose_axes(pose: HeadPose, length: float = 50.0, origin: Any = None) -> np.ndarray:
    """The head's axes as 2D line segments, ready to draw: (3, 2, 2) ``[[start, end], ...]``.

    Rows follow :data:`AXIS_NAMES` (towards the subject's left, down, and forward out of the
    face), ``length`` millimetres each, from ``origin`` (a head-frame point in mm; default the
    model's nose tip, which projects near landmark 30). Colour them with :data:`AXIS_COLOURS`.

    Example:
        >>> frontal = HeadPose(0.0, 0.0, 0.0, np.eye(3), np.array([0, 0, 600.0]), 0.0, 640.0, (320, 240))
        >>> segments = pose_axes(frontal)
        >>> segments.shape, bool(segments[0, 1, 0] > segments[0, 0, 0])  # "left" points right
        ((3, 2, 2), True)
    """
    start = HEAD_MODEL[RIGID_POINTS.index(30)] if origin is None else np.asarray(origin, float)
    directions = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]])
    ends = pose.project(start + length * directions)
    origin_px = pose.project(start[None])[0]
    return np.stack([np.stack([origin_px, end]) for end in ends])


# --- how HEAD_MODEL was computed --------------------------------------------------------------
def head_model(
    shapes: Sequence[Any],
    indices: Sequence[int] = RIGID_POINTS,
    outer_canthal_width: float = OUTER_CANTHAL_WIDTH_MM,
) -> np.ndarray:
    """A 3D mean shape (mm) of ``indices`` from 2D 68-point ``shapes`` of faces in varied poses.

    Steps (module docstring for the reasoning): add each shape's mirror image; stack the centred
    2D points of ``indices`` of all shapes into a 2F x P matrix and keep its rank-3 SVD part
    ``M S``; find the symmetric L = Q Q^T that makes each face's two rows of M orthogonal and of
    equal length (least squares, smallest singular vector) and take S3 = Q^-1 S; turn S3 so that
    its x/y projection best fits the same points of :func:`~laplace_landmarks.alignment.mean_shape`
    (the nose tip in front); symmetrise; scale the outer eye corners to ``outer_canthal_width``.
    Needs 36 and 45 in ``indices``. Returns (P, 3), centroid at the origin.
    """
    indices = list(indices)
    flat = [np.asarray(s, dtype=np.float64) for s in shapes]
    flat += [mirror_points(s, 0) for s in flat]
    stacked = np.concatenate([(s[indices] - s[indices].mean(axis=0)).T for s in flat])
    u, sigma, vt = np.linalg.svd(stacked, full_matrices=False)
    motion, shape = u[:, :3] * np.sqrt(sigma[:3]), np.sqrt(sigma[:3])[:, None] * vt[:3]
    model = np.linalg.solve(_metric_upgrade(motion), shape).T
    frontal = mean_shape(shapes)[indices]
    model = _orient(model, frontal - frontal.mean(axis=0), indices.index(30))
    mirror = np.array([indices.index(int(j)) for j in MIRROR_PERMUTATIONS[68][indices]])
    model = (model + model[mirror] * [-1.0, 1.0, 1.0]) / 2
    model -= model.mean(axis=0)
    width = float(np.linalg.norm(model[indices.index(45)] - model[indices.index(36)]))
    return model * (outer_canthal_width / width)


def _metric_upgrade(motion: np.ndarray) -> np.ndarray:
    """Q (3x3) with ``L = Q Q^T`` making every pair of rows of ``motion @ Q`` orthogonal, equal."""

    def quadratic(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # coefficients of a^T L b in L's 6
        return np.stack(
            [
                a[:, 0] * b[:, 0],
                a[:, 0] * b[:, 1] + a[:, 1] * b[:, 0],
                a[:, 0] * b[:, 2] + a[:, 2] * b[:, 0],
                a[:, 1] * b[:, 1],
                a[:, 1] * b[:, 2] + a[:, 2] * b[:, 1],
                a[:, 2] * b[:, 2],
            ],
            axis=1,
        )

    first, second = motion[0::2], motion[1::2]
    system = np.concatenate(
        [quadratic(first, first) - quadratic(second, second), quadratic(first, second)]
    )
    l00, l01, l02, l11, l12, l22 = np.linalg.svd(system)[2][-1]
    values, vectors = np.linalg.eigh(np.array([[l00, l01, l02], [l01, l11, l12], [l02, l12, l22]]))
    values = values if values.sum() > 0 else -values
    if np.any(values <= 0):
        raise ValueError("metric upgrade failed: the shapes hold too little pose variation")
    return vectors * np.sqrt(values)


def _orient(model: np.ndarray, frontal: np.ndarray, nose_tip: int) -> np.ndarray:
    """Rotate (P, 3) ``model`` so its x/y best fit (P, 2) ``frontal`` and the nose tip has the least z."""
    affine = np.linalg.lstsq(model - model.mean(axis=0), frontal, rcond=None)[0].T
    u, _, vt = np.linalg.svd(affine, full_matrices=False)
    top = u @ vt
    rotated = (model - model.mean(axis=0)) @ np.vstack([top, np.cross(top[0], top[1])]).T
    if rotated[nose_tip, 2] > rotated[:, 2].mean():  # depth is only known up to a mirror
        rotated[:, 2] *= -1
    return rotated


def _rigid(array: Any, name: str) -> np.ndarray:
    values = np.asarray(array, dtype=np.float64)
    if values.shape != (68, 2):
        raise ValueError(f"{name} must be (68, 2), got {values.shape}")
    values = values[list(RIGID_POINTS)]
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} has NaN or inf at the points the pose uses")
    if name == "scale" and not np.all(values > 0):
        raise ValueError("scale must be positive at the points the pose uses")
    return values


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def _projection_jacobian(
    model: np.ndarray, rotation: np.ndarray, translation: np.ndarray, focal_length: float
) -> np.ndarray:
    """d(projection)/d(rotation update, translation): (2N, 6), rows x0, y0, x1, y1, ..."""
    rotated = model @ rotation.T
    camera = rotated + translation
    x, y, z = camera.T
    # d(u, v)/d(camera point): f/z * [[1, 0, -x/z], [0, 1, -y/z]]
    d_proj = np.zeros((len(model), 2, 3))
    d_proj[:, 0, 0] = d_proj[:, 1, 1] = focal_length / z
    d_proj[:, 0, 2] = -focal_length * x / z**2
    d_proj[:, 1, 2] = -focal_length * y / z**2
    # d(camera point)/d(d) = -[R p]x (left update), d/d(t) = I
    d_rot = -np.stack([_skew(p) for p in rotated])
    jacobian = np.concatenate([d_proj @ d_rot, d_proj], axis=2)
    return jacobian.reshape(-1, 6)
