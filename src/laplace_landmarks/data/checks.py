"""Sanity checks for annotated faces that a loader accepts but no crop can use.

The loaders refuse what is malformed (bad numbers, NaN, wrong counts); these checks catch what is
well formed but meaningless: every point in one place, coordinates far beyond any image, a face
box of zero size, a crop many times larger than its image. Coordinates are (x, y), 0-based, with
pixel centres at integers.
"""

from __future__ import annotations

import numpy as np

from laplace_landmarks.data.crops import (
    Crop,
    crop_from_box,
    crop_from_five_points,
    five_points_from_68,
)
from laplace_landmarks.data.types import Sample

#: Image pixels. No image `load_image` accepts (50 MP at most) has a point this far out.
MAX_COORDINATE = 1e6
#: A crop whose side is this many times the image's longer side comes from wrong points.
MAX_CROP_TO_IMAGE = 8.0


def labelled_crop(sample: Sample, extension: float) -> Crop:
    """The paper's 5-point crop for 68 points, else the visible points' box scaled like it.

    Raises ValueError when the points (or the face box) give no crop.
    """
    if sample.points.shape[0] == 68:
        return crop_from_five_points(five_points_from_68(sample.points), extension=extension)
    points = _visible(sample)
    if len(points) == 0:
        raise ValueError("no visible points")
    box = sample.box or (*points.min(axis=0), *points.max(axis=0))
    return crop_from_box(box, scale=1.0 + extension / 4)


def face_problem(sample: Sample, extension: float) -> str | None:
    """Why this labelled face cannot be cropped or checked, or None when it is usable."""
    visible = _visible(sample)
    if len(visible) == 0:
        return "no visible points"
    largest = float(np.abs(sample.points).max())
    if largest > MAX_COORDINATE:
        return f"a coordinate reaches {largest:.3g} px, beyond any image (limit {MAX_COORDINATE:g})"
    if (visible == visible[0]).all():
        x, y = visible[0]
        return f"all {len(visible)} visible points are identical ({x:g}, {y:g})"
    if sample.box is not None:
        box_problem = _box_problem(sample.box)
        if box_problem is not None:
            return f"the face box {tuple(float(v) for v in sample.box)} {box_problem}"
    try:
        labelled_crop(sample, extension)
    except ValueError as error:
        return f"no crop can be built ({error})"
    return None


def check_crop_fits(crop: Crop, image_shape: tuple[int, ...]) -> None:
    """Raise ValueError when ``crop`` is far larger than the (H, W, ...) image it is cut from.

    Warping such a crop would allocate its whole region (mostly outside the image) for nothing;
    the face's points are wrong.
    """
    side = crop.size / crop.scale
    longest = max(image_shape[0], image_shape[1])
    if not side <= MAX_CROP_TO_IMAGE * longest:
        raise ValueError(
            f"the crop ({side:.3g} px wide) is over {MAX_CROP_TO_IMAGE:g}x the image "
            f"({image_shape[1]}x{image_shape[0]}); the face's points are likely wrong"
        )


def _visible(sample: Sample) -> np.ndarray:
    return sample.points if sample.visibility is None else sample.points[sample.visibility]


def _box_problem(box: tuple[float, float, float, float]) -> str | None:
    """Why a face box (x0, y0, x1, y1) is unusable, or None."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not np.isfinite([x0, y0, x1, y1]).all() or max(map(abs, (x0, y0, x1, y1))) > MAX_COORDINATE:
        return "lies beyond any image"
    if not (x1 > x0 and y1 > y0):
        return "has zero size" if (x1 == x0 or y1 == y0) else "has a negative size"
    return None
