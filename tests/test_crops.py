"""Crops: the 5-point rule, the box rule, exact inverses and the warp's pixel-centre convention."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from laplace_landmarks.data.crops import (
    Crop,
    crop_from_box,
    crop_from_five_points,
    five_points_from_68,
    warp_crop,
)

finite = st.floats(-1000, 1000, allow_nan=False)


def render_dot(height: int, width: int, center: np.ndarray, sigma: float) -> np.ndarray:
    """An HxWx3 uint8 image with a Gaussian dot at (x, y) = center (pixel centres at integers)."""
    ys, xs = np.mgrid[0:height, 0:width]
    dot = np.exp(-((xs - center[0]) ** 2 + (ys - center[1]) ** 2) / (2 * sigma**2))
    return np.repeat((dot * 255).round().astype(np.uint8)[..., None], 3, axis=2)


def centroid(channel: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[0 : channel.shape[0], 0 : channel.shape[1]]
    weights = channel.astype(np.float64)
    return np.array([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()


def test_five_points_from_68_picks_eye_means_nose_and_mouth_corners():
    points = np.arange(136, dtype=np.float64).reshape(68, 2)
    five = five_points_from_68(points)
    assert five.shape == (5, 2)
    np.testing.assert_allclose(five[0], points[36:42].mean(axis=0))
    np.testing.assert_allclose(five[1], points[42:48].mean(axis=0))
    np.testing.assert_array_equal(five[2:], points[[30, 48, 54]])
    assert five_points_from_68(np.stack([points, points])).shape == (2, 5, 2)
    with pytest.raises(ValueError, match="68"):
        five_points_from_68(np.zeros((19, 2)))


def test_paper_rule_extends_the_square_by_twice_its_radius():
    # box x 10..50 (width 40), y 20..40 (height 20): square half-side r = 20 about (30, 30)
    five = np.array([[10, 20], [50, 20], [30, 30], [20, 40], [40, 40]], dtype=np.float64)
    crop = crop_from_five_points(five, size=80, extension=2.0)
    assert crop.box == pytest.approx((30 - 60, 30 - 60, 30 + 60, 30 + 60))
    assert crop.scale == pytest.approx(80 / 120)
    # the square's centre is the crop's centre; its edges are the crop's outer pixel edges
    np.testing.assert_allclose(
        crop.to_crop([[30, 30], [-30, -30], [90, 90]]), [[39.5, 39.5], [-0.5, -0.5], [79.5, 79.5]]
    )
    assert crop_from_five_points(five, extension=1.0).box == pytest.approx((-10, -10, 70, 70))


def test_box_rule_scale_and_shift():
    crop = crop_from_box((0, 0, 100, 80), size=80, scale=1.5, shift=(0.1, -0.25))
    x0, y0, x1, y1 = crop.box
    assert x1 - x0 == pytest.approx(1.5 * 90) and y1 - y0 == pytest.approx(1.5 * 90)
    assert ((x0 + x1) / 2, (y0 + y1) / 2) == pytest.approx((50 + 10, 40 - 20))


@pytest.mark.parametrize(
    "bad", [np.full((5, 2), 3.0), np.array([[0, 0], [np.nan, 1], [2, 2], [3, 3], [4, 4]])]
)
def test_degenerate_points_raise(bad):
    with pytest.raises(ValueError):
        crop_from_five_points(bad)


def test_bad_box_raises():
    with pytest.raises(ValueError, match="box"):
        crop_from_box((10, 10, 5, 20))


@settings(max_examples=200, deadline=None)
@given(
    five=st.lists(st.tuples(finite, finite), min_size=5, max_size=5),
    extension=st.floats(0.5, 3.0),
    size=st.integers(16, 256),
    query=st.tuples(finite, finite),
)
def test_round_trip_image_crop_image(five, extension, size, query):
    five = np.array(five)
    if np.ptp(five, axis=0).max() < 1.0:
        return
    crop = crop_from_five_points(five, size=size, extension=extension)
    points = np.vstack([five, query])
    assert np.abs(crop.to_image(crop.to_crop(points)) - points).max() < 0.01
    # every one of the five points lands inside the crop
    inside = crop.to_crop(five)
    assert inside.min() >= -0.5 and inside.max() <= size - 0.5


def test_to_image_scale_divides_by_the_zoom():
    crop = Crop.from_square((0.0, 0.0), half_side=80.0, size=80)  # 2 image px per crop px
    np.testing.assert_allclose(crop.to_image_scale([[1.0, 0.5]]), [[2.0, 1.0]])


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("half_side", [25.0, 60.0, 170.0])
def test_warp_puts_a_dot_where_to_crop_says(antialias, half_side):
    rng = np.random.default_rng(int(half_side))
    for _ in range(3):
        dot = rng.uniform([150, 120], [250, 180])
        image = render_dot(300, 400, dot, sigma=0.05 * half_side + 1.0)
        crop = Crop.from_square(tuple(dot + rng.uniform(-15, 15, 2)), half_side, 80)
        warped = warp_crop(image, crop, antialias=antialias)
        assert warped.shape == (80, 80, 3) and warped.dtype == np.uint8
        error = np.abs(centroid(warped[..., 0]) - crop.to_crop(dot))
        assert error.max() < 0.1, error


def test_identity_crop_copies_the_image_and_outside_is_black():
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    identity = Crop(np.array([[1.0, 0, 0], [0, 1.0, 0]]), 40)
    np.testing.assert_array_equal(warp_crop(image, identity)[:, :40], image[:, :40])
    outside = Crop(np.array([[1.0, 0, -500], [0, 1.0, 0]]), 40)
    assert warp_crop(image, outside).max() == 0


def test_warp_rejects_bad_images():
    crop = Crop.from_square((5.0, 5.0), 5.0, 8)
    with pytest.raises(ValueError, match="uint8"):
        warp_crop(np.zeros((10, 10, 3), np.float32), crop)
    with pytest.raises(ValueError, match="HxWx3"):
        warp_crop(np.zeros((10, 10), np.uint8), crop)


def test_crop_map_is_immutable_and_its_cached_inverse_is_exact():
    source = np.array([[0.5, 0.1, 3.0], [-0.1, 0.5, 7.0]])
    crop = Crop(source, 80)
    source[0, 0] = 9.0  # the crop keeps its own copy
    assert crop.matrix[0, 0] == 0.5
    with pytest.raises(ValueError):
        crop.matrix[0, 0] = 1.0  # read-only: the cached inverse cannot go stale
    points = np.array([[1.0, 2.0], [40.0, -3.5]])
    np.testing.assert_allclose(crop.to_image(crop.to_crop(points)), points, atol=1e-12)
    assert crop.inverse_matrix is crop.inverse_matrix
    reference = np.linalg.inv(np.vstack([crop.matrix, [0, 0, 1]]))[:2]
    np.testing.assert_allclose(crop.inverse_matrix, reference, atol=1e-12)


@settings(max_examples=150, deadline=None)
@given(
    width=st.integers(8, 90),
    height=st.integers(8, 90),
    cx=st.floats(-60, 150),
    cy=st.floats(-60, 150),
    half_side=st.floats(2, 200),
    size=st.sampled_from([16, 80]),
    seed=st.integers(0, 2**16),
)
def test_warp_from_an_array_equals_warp_from_its_pil_image(
    width, height, cx, cy, half_side, size, seed
):
    """An array is warped by copying only the region the crop needs (no whole-image copy); the
    pixels are exactly those of the PIL path, crops partly or wholly outside the image included."""
    from PIL import Image

    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    crop = Crop.from_square((cx, cy), half_side, size)
    expected = warp_crop(Image.fromarray(image), crop)
    np.testing.assert_array_equal(warp_crop(image, crop), expected)
