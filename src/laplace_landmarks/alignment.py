"""Aligned face crops: a similarity transform from 68 predicted points to a canonical layout.

Coordinates are (x, y), 0-based, with pixel centres at integers, in the image and in the crop
(as everywhere in the package). A transform is a (2, 3) float64 matrix ``M`` mapping image points
to crop points: ``crop = M[:, :2] @ image + M[:, 2]``; it is a similarity (rotation, uniform scale,
translation, never a reflection).

Three layouts (``template=``):

- ``"arcface"``: the five points of :func:`~laplace_landmarks.data.crops.five_points_from_68`
  (eye centres as the means of the 68-point eye contours, nose tip 30, mouth corners 48/54),
  least-squares fitted (Umeyama, no reflection) to the ArcFace 112x112 layout
  :data:`ARCFACE_TEMPLATE` (the standard coordinates face-recognition models are trained on).
- ``"mean68"``: all 68 points fitted to :data:`MEAN68_TEMPLATE`, a mean shape computed from the
  human-annotated 300W faces in ``tests/data`` (see :func:`mean68_template`), placed in the same
  112x112 frame as ArcFace.
- ``"ffhq"``: the FFHQ recipe (T. Karras et al., "A Style-Based Generator Architecture for
  Generative Adversarial Networks", CVPR 2019; the dataset's published alignment description):
  the eye-to-eye and eye-to-mouth vectors define an oriented square, which is resampled to
  ``size x size`` (1024 by default). Written here from that description; the original pads with
  a blurred reflection, here outside pixels are black.

Other sizes than the default scale the layout: ``--template arcface --size 224`` is the 112
layout enlarged 2x (pixel edges kept: ``(p + 0.5) * size / 112 - 0.5``).

Reliability: :func:`relative_scale` is the mean predicted Laplace scale b (both axes) of the 15
points the layouts lean on (eye contours 36-47, nose tip 30, mouth corners 48, 54) divided by the
inter-ocular distance (between the eye centres). A face is ``reliable`` when it is at most
``max_scale`` (default :data:`DEFAULT_MAX_SCALE`). How the default was chosen: with the then
default model (``rcn-lite-accurate``) on the 90 faces the detector finds in the bundled samples
and in ``tests/data`` (300W, ytf68, LFW, COFW, AFLW, WFLW images), the value ranges from 0.021
to 0.044 (median 0.027; the two largest are small faces, 24 and 15 px between the eyes); a box
on uniform grey gives 0.078, a background corner 0.083, uniform noise 0.21, and a sample face
blurred with a Gaussian of radius 16 px (eyes barely visible) 0.045, radius 32 px 0.073.
0.06 passed every real face with a margin of 1.4x over the largest and flagged the non-faces.
With today's default (``rcn-lite-accurate-112``, int8 ONNX) the same 90 faces give 0.017 to
0.042 (median 0.024), except one: a ytf68 frame turned to the side (Nicolas Eyzaguirre 11a, yaw
28-31 degrees by ``predict --pose``), 0.10, which it flags (its eye and jaw points get 2-3x the scale the 80 px model
gave them); on boxes of pure noise its median is 4.9 (``calibrate``'s check).

Example:
    >>> from laplace_landmarks import Landmarker                 # doctest: +SKIP
    >>> from laplace_landmarks.data.images import load_image     # doctest: +SKIP
    >>> rgb = load_image("photo.jpg")                            # doctest: +SKIP
    >>> face = Landmarker.pretrained().predict(rgb)[0]           # doctest: +SKIP
    >>> aligned = align_face(rgb, face.points, face.scale)       # doctest: +SKIP
    >>> aligned.image.shape, aligned.reliable                    # doctest: +SKIP
    ((112, 112, 3), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from laplace_landmarks.data.crops import Crop, five_points_from_68, warp_crop
from laplace_landmarks.data.markups import mirror_points

TEMPLATES = ("arcface", "mean68", "ffhq")
DEFAULT_SIZES = {"arcface": 112, "mean68": 112, "ffhq": 1024}
#: The frame ARCFACE_TEMPLATE and MEAN68_TEMPLATE are given in (pixels, square).
TEMPLATE_FRAME = 112
#: Largest relative scale of a reliable face (see the module docstring for how it was chosen).
DEFAULT_MAX_SCALE = 0.06
#: The points the reliability measure averages: eye contours, nose tip, mouth corners.
RELIABILITY_POINTS = (*range(36, 48), 30, 48, 54)

#: ArcFace's 112x112 five-point layout: the subject's right eye centre, left eye centre, nose
#: tip, right and left mouth corner (the standard coordinates of the insightface alignment).
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)

#: 68-point mean shape in the 112x112 ArcFace frame (iBUG order, (x, y) pixels). Computed once by
#: ``mean68_template([read_pts(p) for p in sorted(Path("tests/data").rglob("*.pts"))])``: the 34
#: human-annotated 300W faces of ``tests/data`` (300w_slice and fixtures/300w) and their mirror
#: images, similarity-normalised and averaged by generalised Procrustes analysis (so the shape is
#: exactly left-right symmetric), then placed by the least-squares similarity that takes its five
#: ArcFace points onto ARCFACE_TEMPLATE. tests/test_alignment.py recomputes it.
MEAN68_TEMPLATE = np.array([
        [12.7100, 54.0024], [13.1453, 65.1107], [14.3643, 76.1046], [16.8045, 86.8334],
        [21.4247, 96.7624], [28.6827, 105.3511], [37.2329, 112.3360], [46.2122, 117.5320],
        [56.2888, 119.2174], [66.3460, 117.4203], [75.2671, 112.1249], [83.7392, 105.0455],
        [90.9014, 96.3768], [95.4112, 86.3971], [97.7322, 75.6419], [98.8290, 64.6351],
        [99.1410, 53.5227], [20.9826, 44.7464], [26.4103, 39.9475], [33.8078, 38.3782],
        [41.4673, 39.1651], [48.8438, 41.6103], [62.8719, 41.5325], [70.2207, 39.0055],
        [77.8710, 38.1337], [85.2855, 39.6207], [90.7661, 44.3591], [55.9111, 51.1762],
        [55.9505, 58.2760], [55.9892, 65.2424], [56.0288, 72.3760], [47.4147, 77.5294],
        [51.5653, 79.0049], [56.0724, 80.2249], [60.5656, 78.9550], [64.6995, 77.4335],
        [29.5275, 53.0613], [34.1995, 50.4623], [39.7854, 50.4731], [44.7555, 53.9508],
        [39.4474, 54.9441], [33.9401, 54.8675], [67.0969, 53.8268], [72.0280, 50.2941],
        [77.6135, 50.2213], [82.3141, 52.7684], [77.9217, 54.6234], [72.4157, 54.7612],
        [39.8455, 90.7998], [45.6911, 87.9764], [51.9726, 86.5475], [56.1123, 87.4296],
        [60.2421, 86.5016], [66.5390, 87.8607], [72.4156, 90.6190], [66.8001, 96.8902],
        [60.7074, 99.6036], [56.1827, 100.1028], [51.6527, 99.6538], [45.5303, 97.0082],
        [42.3116, 91.1828], [51.9149, 90.2414], [56.1305, 90.6921], [60.3407, 90.1946],
        [69.9540, 91.0293], [60.4404, 94.2391], [56.1533, 94.8090], [51.8602, 94.2867],
])  # fmt: skip


@dataclass(frozen=True, eq=False)
class AlignedFace:
    """One aligned face crop.

    image: (size, size, 3) uint8 RGB crop.
    matrix: (2, 3) float64 similarity mapping image pixels to crop pixels.
    points: (K, 2) the landmarks in crop pixels.
    scale: (K, 2) the Laplace scales in crop pixels, per crop axis (see :func:`transform_scale`).
    relative_scale: mean scale of :data:`RELIABILITY_POINTS` over the inter-ocular distance.
    reliable: ``relative_scale <= max_scale`` (False for a non-finite value).
    template: the layout name.
    """

    image: np.ndarray
    matrix: np.ndarray
    points: np.ndarray
    scale: np.ndarray
    relative_scale: float
    reliable: bool
    template: str

    @property
    def size(self) -> int:
        """The crop's side in pixels."""
        return int(self.image.shape[0])

    def to_image(self, points: Any) -> np.ndarray:
        """Map crop points (..., 2) back to image pixels."""
        return apply_transform(invert_transform(self.matrix), points)

    def to_dict(self, decimals: int = 3) -> dict[str, Any]:
        """JSON-ready: template, size, transform (2x3), points, scale, reliable, relative_scale."""
        return {
            "template": self.template,
            "size": self.size,
            "transform": np.round(self.matrix, 6).tolist(),
            "points": np.round(self.points, decimals).tolist(),
            "scale": np.round(self.scale, decimals).tolist(),
            "reliable": bool(self.reliable),
            "relative_scale": round(float(self.relative_scale), 5),
        }


def similarity_transform(
    source: Any, target: Any, weights: Sequence[float] | np.ndarray | None = None
) -> np.ndarray:
    """Least-squares similarity (Umeyama 1991, reflection excluded) taking ``source`` to ``target``.

    Minimises ``sum_i w_i |s R source_i + t - target_i|^2`` over rotations R (det +1), scales
    s > 0 and translations t.

    Args:
        source: (N, 2) points, N >= 2.
        target: (N, 2) points.
        weights: (N,) non-negative weights; None weighs every point 1.

    Returns:
        (2, 3) float64 ``[s R | t]``.

    Example:
        >>> m = similarity_transform([[0, 0], [1, 0]], [[1, 1], [1, 3]])
        >>> np.round(m, 6) + 0.0
        array([[ 0., -2.,  1.],
               [ 2.,  0.,  1.]])
    """
    src, dst = np.asarray(source, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape or len(src) < 2:
        raise ValueError(
            f"source and target must be (N >= 2, 2) alike, got {src.shape}, {dst.shape}"
        )
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(src),) or not np.all(w >= 0) or w.sum() <= 0:
        raise ValueError(f"weights must be (N,) non-negative with a positive sum, got {w.shape}")
    w = w / w.sum()
    mean_src, mean_dst = w @ src, w @ dst
    a, b = src - mean_src, dst - mean_dst
    variance = float(w @ (a**2).sum(axis=1))
    if not np.isfinite(variance) or variance <= 0:
        raise ValueError("source points are all identical (or not finite)")
    u, sigma, vt = np.linalg.svd((b * w[:, None]).T @ a)
    d = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ d @ vt
    scale = float(np.trace(np.diag(sigma) @ d)) / variance
    linear = scale * rotation
    return np.concatenate([linear, (mean_dst - linear @ mean_src)[:, None]], axis=1)


def apply_transform(matrix: Any, points: Any) -> np.ndarray:
    """Map (..., 2) points through a (2, 3) affine matrix.

    Example:
        >>> apply_transform([[2, 0, 1], [0, 2, 0]], [[1.0, 1.0]])
        array([[3., 2.]])
    """
    m, p = np.asarray(matrix, dtype=np.float64), np.asarray(points, dtype=np.float64)
    return p @ m[:, :2].T + m[:, 2]


def invert_transform(matrix: Any) -> np.ndarray:
    """The (2, 3) inverse of an invertible (2, 3) affine matrix.

    Example:
        >>> invert_transform([[2.0, 0.0, 1.0], [0.0, 2.0, 4.0]])
        array([[ 0.5,  0. , -0.5],
               [ 0. ,  0.5, -2. ]])
    """
    m = np.asarray(matrix, dtype=np.float64)
    full = np.vstack([m, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def transform_scale(matrix: Any, scale: Any) -> np.ndarray:
    """Per-axis Laplace scales (..., 2) carried through the similarity ``matrix``.

    Each point's scales are treated as a diagonal spread ``diag(bx^2, by^2)``; the result is the
    square root of the diagonal of ``A diag(b^2) A^T`` (A the linear part): exact for an
    axis-aligned crop (each b times the zoom), a second-moment approximation when the crop is
    rotated.

    Example:
        >>> transform_scale([[2.0, 0.0, 5.0], [0.0, 2.0, 5.0]], [[1.0, 3.0]])
        array([[2., 6.]])
    """
    linear = np.asarray(matrix, dtype=np.float64)[:, :2]
    b = np.asarray(scale, dtype=np.float64)
    return np.sqrt((b**2) @ (linear**2).T)


def inter_ocular_distance(points: Any) -> float:
    """Distance between the eye centres (means of 36-41 and 42-47) of 68 points, in their units."""
    eyes = five_points_from_68(points)[:2]
    return float(np.linalg.norm(eyes[1] - eyes[0]))


def relative_scale(points: Any, scale: Any) -> float:
    """Mean Laplace scale of :data:`RELIABILITY_POINTS` (both axes) over the inter-ocular distance.

    Example:
        >>> points = MEAN68_TEMPLATE
        >>> round(relative_scale(points, np.full((68, 2), 0.035 * inter_ocular_distance(points))), 3)
        0.035
    """
    b = np.asarray(scale, dtype=np.float64)
    distance = inter_ocular_distance(points)
    if b.shape != (68, 2):
        raise ValueError(f"scale must be (68, 2) as (bx, by), got {b.shape}")
    if distance <= 0:
        return float("inf")
    return float(b[list(RELIABILITY_POINTS)].mean() / distance)


def template_points(template: str, size: int | None = None) -> np.ndarray:
    """The ``arcface`` (5, 2) or ``mean68`` (68, 2) layout in a ``size x size`` crop (default 112).

    Example:
        >>> template_points("arcface", 224)[0]
        array([ 77.0892, 103.8926])
    """
    layouts = {"arcface": ARCFACE_TEMPLATE, "mean68": MEAN68_TEMPLATE}
    if template not in layouts:
        raise ValueError(f"template must be one of {sorted(layouts)}, got {template!r}")
    size = DEFAULT_SIZES[template] if size is None else _check_size(size)
    return (layouts[template] + 0.5) * (size / TEMPLATE_FRAME) - 0.5


def alignment_matrix(points: Any, template: str = "arcface", size: int | None = None) -> np.ndarray:
    """The (2, 3) image -> crop similarity for 68 ``points`` and a layout (see :data:`TEMPLATES`).

    Example:
        >>> m = alignment_matrix(MEAN68_TEMPLATE, "mean68")      # the template onto itself
        >>> np.allclose(m, [[1, 0, 0], [0, 1, 0]], atol=1e-9)
        True
    """
    points = _check_points(points)
    if template == "ffhq":
        return ffhq_matrix(points, DEFAULT_SIZES["ffhq"] if size is None else size)
    target = template_points(template, size)
    source = five_points_from_68(points) if template == "arcface" else points
    return similarity_transform(source, target)


def ffhq_matrix(points: Any, size: int = 1024) -> np.ndarray:
    """The FFHQ oriented square of 68 ``points`` as an image -> ``size x size`` crop similarity.

    With e the eye centres' midpoint, ``v_ee`` the right-to-left eye vector and ``v_em`` the
    vector from e to the mouth-corner midpoint: the square's x axis is ``v_ee - rot90(v_em)``
    (``rot90(x, y) = (-y, x)``), normalised to half-side ``max(2 |v_ee|, 1.8 |v_em|)``; its y
    axis is x turned 90 degrees clockwise in the image; its centre ``e + 0.1 v_em``. The square's
    edges become the crop's outer pixel edges (-0.5 and size - 0.5), its x axis the crop's x.

    Example:
        >>> m = ffhq_matrix(MEAN68_TEMPLATE, 1024)
        >>> np.round(apply_transform(m, five_points_from_68(MEAN68_TEMPLATE)[:2]), 1)  # eyes level
        array([[383.5, 486. ],
               [639.5, 486. ]])
    """
    points, size = _check_points(points), _check_size(size)
    eye_right, eye_left, _, mouth_right, mouth_left = five_points_from_68(points)
    eye_mid = (eye_right + eye_left) / 2
    eye_to_eye = eye_left - eye_right
    eye_to_mouth = (mouth_right + mouth_left) / 2 - eye_mid
    axis = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    length = float(np.hypot(*axis))
    half_side = max(2.0 * float(np.hypot(*eye_to_eye)), 1.8 * float(np.hypot(*eye_to_mouth)))
    if not (np.isfinite(length) and length > 0 and half_side > 0):
        raise ValueError("points are degenerate: no FFHQ square")
    cos, sin = axis / length
    zoom = size / (2.0 * half_side)
    linear = zoom * np.array([[cos, sin], [-sin, cos]])
    centre = eye_mid + 0.1 * eye_to_mouth
    offset = (size - 1) / 2.0 - linear @ centre
    return np.concatenate([linear, offset[:, None]], axis=1)


def warp_face(image: np.ndarray | Image.Image, matrix: Any, size: int) -> np.ndarray:
    """Resample a ``size x size`` uint8 RGB crop through the image -> crop ``matrix`` (bilinear).

    When the crop shrinks the face by 2x or more the image is first box-filtered by the integer
    part of the factor (PIL ``reduce``) against aliasing. Pixels outside the image are black.
    Crop pixel centres land exactly where ``apply_transform(matrix, ...)`` says.

    Example:
        >>> rgb = np.zeros((50, 60, 3), np.uint8)
        >>> warp_face(rgb, [[0.5, 0, 0], [0, 0.5, 0]], 32).shape
        (32, 32, 3)
    """
    pil = image if isinstance(image, Image.Image) else Image.fromarray(_check_rgb(image))
    matrix, size = np.asarray(matrix, dtype=np.float64), _check_size(size)
    zoom = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    factor = max(1, int(np.floor(1.0 / zoom))) if zoom > 0 else 1
    if factor > 1:
        # reduced pixel j covers source pixels factor*j .. factor*j + factor-1 (centre below)
        pil = pil.reduce(factor)
        shift = (factor - 1) / 2.0
        matrix = np.concatenate(
            [matrix[:, :2] * factor, (matrix[:, :2] @ [shift, shift] + matrix[:, 2])[:, None]],
            axis=1,
        )
    pil = pil if pil.mode == "RGB" else pil.convert("RGB")
    return warp_crop(pil, Crop(matrix, size), antialias=False)


def faceless_relative_scales(landmarker: Any, count: int = 12, size: int = 300) -> np.ndarray:
    """:func:`relative_scale` of ``landmarker``'s prediction on ``count`` images that hold no
    face: uniform RGB noise (seeds 0 .. count-1), ``size`` px, with the box from ``size / 6`` to
    ``5 size / 6`` on both axes. An honest model predicts a wide scale there, above
    :data:`DEFAULT_MAX_SCALE`, so :func:`align_face` flags every one as unreliable; ``calibrate``
    prints the median and minimum.

    Example:
        >>> from laplace_landmarks import Landmarker                 # doctest: +SKIP
        >>> faceless_relative_scales(Landmarker.pretrained()).min() > DEFAULT_MAX_SCALE  # doctest: +SKIP
        True
    """
    if count < 1 or size < 32:
        raise ValueError(
            f"faceless_relative_scales: need count >= 1 and size >= 32, got {count}, {size}"
        )
    box = (size / 6, size / 6, 5 * size / 6, 5 * size / 6)
    values = []
    for seed in range(count):
        noise = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
        face = landmarker.predict(noise, boxes=[box])[0]
        values.append(relative_scale(face.points, face.scale))
    return np.asarray(values)


def align_face(
    image: np.ndarray | Image.Image,
    points: Any,
    scale: Any,
    template: str = "arcface",
    size: int | None = None,
    max_scale: float = DEFAULT_MAX_SCALE,
) -> AlignedFace:
    """Warp one face to a canonical layout and judge whether the alignment can be trusted.

    Args:
        image: (H, W, 3) uint8 RGB array (or PIL image) the points refer to.
        points: (68, 2) landmarks in image pixels (e.g. ``Face.points``).
        scale: (68, 2) their Laplace scales in image pixels (``Face.scale``).
        template: ``"arcface"``, ``"mean68"`` or ``"ffhq"``.
        size: crop side in pixels; None: 112 (arcface, mean68) or 1024 (ffhq).
        max_scale: largest :func:`relative_scale` still ``reliable``.

    Returns:
        An :class:`AlignedFace` (the crop, the transform, points and scales in crop pixels).

    Example:
        >>> rgb = np.zeros((112, 112, 3), np.uint8)
        >>> face = align_face(rgb, MEAN68_TEMPLATE, np.full((68, 2), 0.5))
        >>> face.image.shape, face.reliable
        ((112, 112, 3), True)
    """
    if template not in TEMPLATES:
        raise ValueError(f"template must be one of {list(TEMPLATES)}, got {template!r}")
    size = DEFAULT_SIZES[template] if size is None else _check_size(size)
    points = _check_points(points)
    b = np.asarray(scale, dtype=np.float64)
    matrix = alignment_matrix(points, template, size)
    rel = relative_scale(points, b)
    return AlignedFace(
        image=warp_face(image, matrix, size),
        matrix=matrix,
        points=apply_transform(matrix, points),
        scale=transform_scale(matrix, b),
        relative_scale=rel,
        reliable=bool(np.isfinite(rel) and rel <= max_scale),
        template=template,
    )


# --- how MEAN68_TEMPLATE was computed ----------------------------------------------------------
def mean_shape(shapes: Sequence[Any], mirror: bool = True, iterations: int = 100) -> np.ndarray:
    """Generalised Procrustes mean of 68-point shapes: centroid 0, unit norm, eyes level.

    Every shape (and, with ``mirror``, its mirror image, which makes the mean exactly
    left-right symmetric) is centred and scaled to unit Frobenius norm; then, until the mean
    stops changing, each is fitted to the current mean by :func:`similarity_transform` and the
    mean is recomputed, re-centred, re-scaled and turned so the line from the subject's right eye
    centre to the left one points along +x.

    Example:
        >>> base = MEAN68_TEMPLATE
        >>> turned = base @ np.array([[0.0, -1.0], [1.0, 0.0]]) * 3 + 7  # same shape, moved
        >>> np.allclose(mean_shape([base]), mean_shape([turned]))
        True
    """
    normalised = [_normalise(_check_points(s)) for s in shapes]
    if mirror:
        normalised += [_normalise(mirror_points(s, 0)) for s in normalised]
    if not normalised:
        raise ValueError("mean_shape needs at least one shape")
    mean = normalised[0]
    for _ in range(iterations):
        fitted = [apply_transform(similarity_transform(s, mean), s) for s in normalised]
        updated = _level_eyes(_normalise(np.mean(fitted, axis=0)))
        converged = np.abs(updated - mean).max() < 1e-12
        mean = updated
        if converged:
            break
    return mean


def mean68_template(shapes: Sequence[Any]) -> np.ndarray:
    """:func:`mean_shape` of ``shapes`` placed in the 112x112 frame by a 5-point ArcFace fit.

    This is how :data:`MEAN68_TEMPLATE` was made (see its comment for the shapes used).
    """
    mean = mean_shape(shapes)
    return apply_transform(similarity_transform(five_points_from_68(mean), ARCFACE_TEMPLATE), mean)


def _normalise(shape: np.ndarray) -> np.ndarray:
    centred = shape - shape.mean(axis=0)
    return centred / np.linalg.norm(centred)


def _level_eyes(shape: np.ndarray) -> np.ndarray:
    eye_right, eye_left = five_points_from_68(shape)[:2]
    angle = np.arctan2(*(eye_left - eye_right)[::-1])
    cos, sin = np.cos(angle), np.sin(angle)
    return shape @ np.array([[cos, -sin], [sin, cos]])  # rotates by -angle


# --- argument checks ---------------------------------------------------------------------------
def _check_points(points: Any) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.shape != (68, 2):
        raise ValueError(f"points must be (68, 2) as (x, y), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("points contain NaN or inf")
    return array


def _check_size(size: Any) -> int:
    if int(size) != size or int(size) < 8:
        raise ValueError(f"size must be an integer >= 8, got {size}")
    return int(size)


def _check_rgb(image: np.ndarray) -> np.ndarray:
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3):
        raise ValueError(
            f"image must be an (H, W, 3) uint8 array, got {getattr(image, 'shape', image)}"
        )
    if image.shape[2] != 3:
        raise ValueError(f"image must be an (H, W, 3) uint8 array, got {image.shape}")
    return image
