"""Square face crops: the paper's 5-point rule, a face-box rule, and the warp itself.

Coordinates are (x, y), 0-based, with pixel centres at integers, in both the image and the crop.

A crop is a square region of the image, ``[cx - R, cx + R] x [cy - R, cy + R]`` in continuous
image coordinates (centre ``c``, half-side ``R``), resampled to ``size x size`` pixels. The region's
edges map to the crop's outer pixel edges, ``-0.5`` and ``size - 0.5`` (the ``align_corners=False``
convention), so crop pixel centre ``i`` corresponds to image coordinate
``cx - R + (i + 0.5) * 2R / size``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from PIL import Image, ImageOps

#: The paper (SPEC §6) extends the squared 5-point box "by twice its radius in every direction".
DEFAULT_EXTENSION = 2.0
DEFAULT_SIZE = 80


def _det2(m: np.ndarray) -> float:
    """Determinant of the 2x2 block ``m[:, :2]`` (closed form: np.linalg is slow at this size)."""
    a, b, c, d = (float(v) for v in (m[0, 0], m[0, 1], m[1, 0], m[1, 1]))
    return a * d - b * c  # Python floats: a huge matrix gives inf, not a numpy warning


def _inverse_affine(m: np.ndarray) -> np.ndarray:
    """The (2, 3) inverse of an invertible (2, 3) affine map, in closed form."""
    det = _det2(m)
    linear = np.array([[m[1, 1], -m[0, 1]], [-m[1, 0], m[0, 0]]]) / det
    return np.concatenate([linear, -(linear @ m[:, 2:])], axis=1)


def _as_points(points: object, name: str) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim < 1 or array.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (..., 2) as (x, y), got {array.shape}")
    return array


@dataclass(frozen=True, eq=False)
class Crop:
    """A similarity transform from image pixels to the pixels of a ``size x size`` crop.

    matrix: (2, 3) float64, ``[x', y'] = matrix[:, :2] @ [x, y] + matrix[:, 2]`` maps image
        coordinates to crop coordinates. Both are (x, y), 0-based, pixel centres at integers.
    size: the crop's side in pixels.

    Example:
        >>> crop = Crop.from_square(center=(100.0, 80.0), half_side=40.0, size=80)
        >>> crop.to_crop([[100.0, 80.0]])  # the centre of the square lands mid-crop
        array([[39.5, 39.5]])
    """

    matrix: np.ndarray
    size: int

    def __post_init__(self) -> None:
        matrix = np.array(self.matrix, dtype=np.float64)  # a private copy, made read-only below
        if matrix.shape != (2, 3) or not np.all(np.isfinite(matrix)):
            raise ValueError(f"matrix must be a finite (2, 3) array, got {matrix.shape}")
        if abs(_det2(matrix)) < 1e-12:
            raise ValueError("matrix must be invertible")
        if int(self.size) != self.size or self.size < 1:
            raise ValueError(f"size must be a positive integer, got {self.size}")
        matrix.flags.writeable = False  # inverse_matrix is cached: the map must not change
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(self, "size", int(self.size))

    @classmethod
    def from_square(cls, center: tuple[float, float], half_side: float, size: int) -> Crop:
        """The crop of the axis-aligned square with this centre and half-side (image pixels)."""
        if not (np.isfinite(half_side) and half_side > 0):
            raise ValueError(f"half_side must be positive and finite, got {half_side}")
        if not np.all(np.isfinite(center)):
            raise ValueError(f"center must be finite, got {center}")
        scale = size / (2.0 * half_side)
        cx, cy = float(center[0]), float(center[1])
        matrix = np.array(
            [
                [scale, 0.0, (half_side - cx) * scale - 0.5],
                [0.0, scale, (half_side - cy) * scale - 0.5],
            ]
        )
        return cls(matrix, size)

    @cached_property
    def inverse_matrix(self) -> np.ndarray:
        """(2, 3) float64 mapping crop coordinates back to image coordinates (computed once)."""
        inverse = _inverse_affine(self.matrix)
        inverse.flags.writeable = False  # shared by every call: not to be changed in place
        return inverse

    @property
    def scale(self) -> float:
        """Crop pixels per image pixel (isotropic for a similarity)."""
        return float(np.sqrt(abs(_det2(self.matrix))))

    @property
    def box(self) -> tuple[float, float, float, float]:
        """The image region (x0, y0, x1, y1) the crop covers, as continuous edge coordinates."""
        corners = self.to_image(np.array([[-0.5, -0.5], [self.size - 0.5, self.size - 0.5]]))
        (x0, y0), (x1, y1) = corners.min(axis=0), corners.max(axis=0)
        return float(x0), float(y0), float(x1), float(y1)

    def to_crop(self, points: object) -> np.ndarray:
        """Map image points (..., 2) to crop points (..., 2); (x, y), pixel centres at integers."""
        array = _as_points(points, "points")
        return array @ self.matrix[:, :2].T + self.matrix[:, 2]

    def to_image(self, points: object) -> np.ndarray:
        """Map crop points (..., 2) back to image points (..., 2); the exact inverse of to_crop."""
        array = _as_points(points, "points")
        inverse = self.inverse_matrix
        return array @ inverse[:, :2].T + inverse[:, 2]

    def to_image_scale(self, scale: object) -> np.ndarray:
        """Map per-axis scales (..., 2) (e.g. Laplace b) from crop pixels to image pixels.

        Every rule in this module gives rotation-free crops, so the axes are preserved and each
        scale is divided by :attr:`scale`.
        """
        return _as_points(scale, "scale") / self.scale


def five_points_from_68(points: object) -> np.ndarray:
    """The paper's 5 points from 68 iBUG points (SPEC §6).

    points: (..., 68, 2) image pixels, (x, y), 0-based, pixel centres at integers.
    Returns (..., 5, 2): right-eye centre (mean of 36-41), left-eye centre (mean of 42-47),
    nose tip (30), right mouth corner (48), left mouth corner (54). "Right" is the subject's.
    """
    array = _as_points(points, "points")
    if array.ndim < 2 or array.shape[-2] != 68:
        raise ValueError(f"points must have shape (..., 68, 2), got {array.shape}")
    return np.stack(
        [
            array[..., 36:42, :].mean(axis=-2),
            array[..., 42:48, :].mean(axis=-2),
            array[..., 30, :],
            array[..., 48, :],
            array[..., 54, :],
        ],
        axis=-2,
    )


def crop_from_five_points(
    five: object, size: int = DEFAULT_SIZE, extension: float = DEFAULT_EXTENSION
) -> Crop:
    """The paper's crop rule from five points (SPEC §6).

    Take the smallest axis-aligned box around the points (x, y image pixels, pixel centres at
    integers), make it square about its centre (half-side ``r`` = half its longer side) and extend
    it by ``extension * r`` on every side, so the crop's half-side is ``(1 + extension) * r``
    (``3r`` with the paper's ``extension=2.0``).
    """
    array = _as_points(five, "five")
    if array.ndim != 2 or len(array) < 2:
        raise ValueError(f"five must have shape (N >= 2, 2), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("five contains NaN or infinite coordinates")
    if not (np.isfinite(extension) and extension > -1):
        raise ValueError(f"extension must be > -1, got {extension}")
    low, high = array.min(axis=0), array.max(axis=0)
    radius = float((high - low).max()) / 2.0
    if radius <= 0:
        raise ValueError("five points are all identical; cannot build a crop")
    return Crop.from_square(tuple((low + high) / 2.0), (1.0 + extension) * radius, size)


def crop_from_box(
    box: tuple[float, float, float, float],
    size: int = DEFAULT_SIZE,
    scale: float = 1.0,
    shift: tuple[float, float] = (0.0, 0.0),
) -> Crop:
    """A square crop from a face box (x0, y0, x1, y1), continuous edge coordinates.

    The crop's centre is the box centre moved by ``shift * (width, height)`` and its side is
    ``scale * (width + height) / 2``.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    width, height = x1 - x0, y1 - y0
    if not (np.isfinite([x0, y0, x1, y1]).all() and width > 0 and height > 0):
        raise ValueError(f"box must be finite with x1 > x0 and y1 > y0, got {box}")
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be positive, got {scale}")
    center = ((x0 + x1) / 2 + shift[0] * width, (y0 + y1) / 2 + shift[1] * height)
    return Crop.from_square(center, scale * (width + height) / 4.0, size)


def _reduce_factor(crop: Crop, image_size: tuple[int, int]) -> int:
    """The integer box-filter factor for ``crop``: the integer part of its downscale factor.

    Capped at an eighth of the image's shorter side, so the region :func:`_prereduce` cuts
    stays within about 1.6x the image whatever the crop. The cap only bites when the image's
    shorter side spans fewer than 8 crop pixels (no face is left to see), trading some aliasing
    for bounded memory.
    """
    cap = max(1, min(image_size) // 8)
    return max(1, min(int(np.floor(1.0 / crop.scale)), cap))


def _blocks_on_image(origin: int, end: int, factor: int, length: int) -> tuple[int, int]:
    """The blocks ``[origin + k * factor, origin + (k + 1) * factor)`` for ``0 <= k < n`` (n
    blocks reaching ``end``) that overlap the pixels ``[0, length)``: ``(first k, last k + 1)``,
    an empty range when none does."""
    count = -(-(end - origin) // factor)
    first = max(0, (0 - origin) // factor)
    stop = min(count, -(-(length - origin) // factor))
    return first, max(first, stop)


def _prereduce(
    image: Image.Image | np.ndarray, crop: Crop
) -> tuple[Image.Image, np.ndarray] | None:
    """Cut the region the crop needs and box-filter it by an integer factor (anti-aliasing).

    The block grid starts one block before the crop's box and ends one block after it. Only the
    blocks that overlap the image are cut and reduced (Pillow pads a block that sticks out with
    zeros); one zero pixel of margin goes around the result. So the intermediate never holds
    more than the image itself plus a few blocks, however large the crop, and the result is
    exactly that of reducing the whole zero-padded grid.

    Returns the smaller image and the (2, 3) matrix from its coordinates to crop coordinates,
    or None when the crop does not overlap the image (the crop is all zeros).
    """
    size = (image.shape[1], image.shape[0]) if isinstance(image, np.ndarray) else image.size
    factor = _reduce_factor(crop, size)
    x0, y0, x1, y1 = crop.box
    left, top = int(np.floor(x0)) - factor, int(np.floor(y0)) - factor
    right, bottom = int(np.ceil(x1)) + factor, int(np.ceil(y1)) + factor
    first_x, stop_x = _blocks_on_image(left, right, factor, size[0])
    first_y, stop_y = _blocks_on_image(top, bottom, factor, size[1])
    if first_x == stop_x or first_y == stop_y:
        return None
    cut_left, cut_top = left + first_x * factor, top + first_y * factor
    cut = (cut_left, cut_top, left + stop_x * factor, top + stop_y * factor)
    region = _cut(image, cut)  # zero outside the image
    if factor > 1:
        region = region.reduce(factor)
    region = ImageOps.expand(region, border=1, fill=0)
    # padded pixel j has centre at image coordinate cut + factor * (j - 1) + (factor - 1) / 2
    shift_x = cut_left - factor + (factor - 1) / 2
    shift_y = cut_top - factor + (factor - 1) / 2
    to_region = np.array([[factor, 0.0, shift_x], [0.0, factor, shift_y]])
    matrix = crop.matrix[:, :2] @ to_region[:, :2]
    offset = crop.matrix[:, :2] @ to_region[:, 2] + crop.matrix[:, 2]
    return region, np.concatenate([matrix, offset[:, None]], axis=1)


def _cut(image: Image.Image | np.ndarray, box: tuple[int, int, int, int]) -> Image.Image:
    """``image.crop(box)`` (zeros outside the image) as a PIL image; from an array only the box
    is copied, not the whole image."""
    if not isinstance(image, np.ndarray):
        return image.crop(box)
    left, top, right, bottom = box
    height, width = image.shape[:2]
    inside = image[max(top, 0) : min(bottom, height), max(left, 0) : min(right, width)]
    if inside.shape[:2] == (bottom - top, right - left):
        return Image.fromarray(np.ascontiguousarray(inside))
    region = np.zeros((bottom - top, right - left, 3), np.uint8)
    y, x = max(top, 0) - top, max(left, 0) - left
    region[y : y + inside.shape[0], x : x + inside.shape[1]] = inside
    return Image.fromarray(region)


def warp_crop(image: np.ndarray | Image.Image, crop: Crop, antialias: bool = True) -> np.ndarray:
    """Resample the crop from an HxWx3 uint8 RGB image with bilinear interpolation.

    Image points map to crop points exactly as ``crop.to_crop`` says ((x, y), pixel centres at
    integers). Pixels outside the image are 0. With ``antialias`` the needed region is first
    box-filtered by the integer part of the downscale factor (PIL ``reduce``), which avoids
    aliasing and is faster on big faces; only the part of the image the crop covers is cut, so
    memory stays within about the image's size whatever the crop (see :func:`_prereduce`).
    Returns (size, size, 3) uint8.
    """
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be HxWx3 uint8, got {image.shape} {image.dtype}")
        if not antialias:
            image = Image.fromarray(image)
    elif image.mode != "RGB":
        raise ValueError(f"image must be RGB, got mode {image.mode}")
    if not antialias:
        source, matrix = image, crop.matrix
    elif (reduced := _prereduce(image, crop)) is not None:
        source, matrix = reduced
    else:
        return np.zeros((crop.size, crop.size, 3), dtype=np.uint8)  # the crop misses the image
    inverse = _inverse_affine(matrix)
    linear_inv, offset_inv = inverse[:, :2], inverse[:, 2]
    # PIL samples output pixel (u, v) at corner coordinates (u + 0.5, v + 0.5) and reads the input
    # at corner coordinates, whose pixel centres are at +0.5: shift both sides by half a pixel.
    offset_pil = offset_inv + 0.5 - linear_inv @ np.array([0.5, 0.5])
    coeffs = (*linear_inv[0], offset_pil[0], *linear_inv[1], offset_pil[1])
    warped = source.transform(
        (crop.size, crop.size), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR
    )
    return np.array(warped, dtype=np.uint8)  # a writable copy
