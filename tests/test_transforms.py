"""Flip, random similarity and colour jitter: images and points move together."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from laplace_landmarks.data.markups import MIRROR_PERMUTATIONS
from laplace_landmarks.data.transforms import (
    color_jitter,
    faceless_images,
    hflip,
    random_similarity,
    similarity_matrices,
    warp_similarity,
)


def dot_batch(centers: torch.Tensor, size: int = 64, sigma: float = 2.0) -> torch.Tensor:
    """(B, 3, size, size) float images with a Gaussian dot at each (x, y) centre."""
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    dist2 = (xs - centers[:, 0, None, None]) ** 2 + (ys - centers[:, 1, None, None]) ** 2
    return torch.exp(-dist2 / (2 * sigma**2))[:, None].repeat(1, 3, 1, 1).float()


def centroids(images: torch.Tensor) -> torch.Tensor:
    weights = images[:, 0].double()
    ys, xs = torch.meshgrid(
        torch.arange(images.shape[-2]), torch.arange(images.shape[-1]), indexing="ij"
    )
    total = weights.sum(dim=(1, 2))
    return torch.stack([(weights * xs).sum((1, 2)) / total, (weights * ys).sum((1, 2)) / total], 1)


@pytest.mark.parametrize("num_landmarks", [68, 19, 98, 29])
def test_flipping_twice_is_identity(num_landmarks):
    permutation = MIRROR_PERMUTATIONS[num_landmarks]
    images = torch.rand(2, 3, 80, 80)
    points = torch.rand(2, num_landmarks, 2) * 79
    once_images, once_points = hflip(images, points, permutation)
    assert not torch.allclose(once_points, points)
    twice_images, twice_points = hflip(once_images, once_points, permutation)
    assert torch.equal(twice_images, images)
    torch.testing.assert_close(twice_points, points)


def test_flip_moves_x_to_width_minus_one_minus_x_and_swaps_eyes():
    points = np.zeros((68, 2))
    points[36] = (10.0, 30.0)  # outer corner of the subject's right eye
    image = np.zeros((80, 90, 3), np.uint8)
    image[30, 10] = 255
    flipped_image, flipped = hflip(image, points, MIRROR_PERMUTATIONS[68])
    assert flipped_image[30, 90 - 1 - 10, 0] == 255
    # after mirroring, the old right outer corner is the new left outer corner (index 45)
    np.testing.assert_allclose(flipped[45], (79.0, 30.0))


def test_flip_rejects_wrong_point_count():
    with pytest.raises(ValueError, match="68"):
        hflip(torch.zeros(1, 3, 8, 8), torch.zeros(1, 19, 2), MIRROR_PERMUTATIONS[68])


def test_similarity_points_follow_the_image():
    generator = torch.Generator().manual_seed(0)
    centers = torch.tensor([[31.5, 30.0], [25.2, 36.7], [40.0, 28.3], [33.3, 33.3]])
    images = dot_batch(centers)
    warped, moved = random_similarity(
        images, centers[:, None], generator, max_rotation_deg=30, max_scale=0.2, max_shift=0.1
    )
    assert not torch.allclose(moved[:, 0], centers, atol=0.5)
    torch.testing.assert_close(centroids(warped), moved[:, 0].double(), atol=0.05, rtol=0)


def test_known_rotation_about_the_centre():
    # 90 degrees about the centre of a 64x64 image, (x, y) -> (63 - y, x) with pixel centres
    matrix = torch.tensor([[[0.0, -1.0, 63.0], [1.0, 0.0, 0.0]]])
    images = dot_batch(torch.tensor([[20.0, 10.0]]))
    warped, moved = warp_similarity(images, torch.tensor([[[20.0, 10.0]]]), matrix)
    torch.testing.assert_close(moved, torch.tensor([[[53.0, 20.0]]]))
    assert tuple(torch.nonzero(warped[0, 0] == warped[0, 0].max())[0].tolist()) == (20, 53)


def test_zero_ranges_are_the_identity_and_uint8_stays_uint8():
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    points = torch.rand(2, 5, 2) * 15
    warped, moved = random_similarity(images, points)
    assert warped.dtype == torch.uint8 and torch.equal(warped, images)
    torch.testing.assert_close(moved, points)
    assert torch.equal(color_jitter(images), images)


def test_similarity_ranges():
    matrices = similarity_matrices(500, (80, 80), torch.Generator().manual_seed(1), 10, 0.1, 0.05)
    scale = torch.linalg.det(matrices[:, :, :2]).sqrt()
    angle = torch.atan2(matrices[:, 1, 0], matrices[:, 0, 0])
    assert scale.min() >= 0.9 and scale.max() <= 1.1 and scale.max() > 1.08
    assert angle.abs().max() <= math.radians(10) + 1e-9


def test_color_jitter_changes_contrast_and_brightness_within_range():
    images = torch.rand(64, 3, 8, 8)
    out = color_jitter(images, torch.Generator().manual_seed(0), brightness=0.2, contrast=0.3)
    ratio = out.mean(dim=(1, 2, 3)) / images.mean(dim=(1, 2, 3))
    assert ratio.min() >= 0.8 - 1e-5 and ratio.max() <= 1.2 + 1e-5 and ratio.std() > 0.05


def test_faceless_images_are_seeded_and_keep_the_faces_pixels_only_in_tiles():
    faces = torch.randint(0, 256, (3, 3, 80, 80), generator=torch.Generator().manual_seed(5)).to(
        torch.uint8
    )
    a = faceless_images(faces, 24, torch.Generator().manual_seed(0))
    b = faceless_images(faces, 24, torch.Generator().manual_seed(0))
    assert a.shape == (24, 3, 80, 80) and a.dtype == torch.uint8 and torch.equal(a, b)
    assert not torch.equal(a, faceless_images(faces, 24, torch.Generator().manual_seed(1)))
    # every 20x20 tile of a "tiles" image is a (possibly mirrored) tile of one of the faces
    face_tiles = {
        t.flip(-1).numpy().tobytes() if flip else t.numpy().tobytes()
        for f in faces
        for r in range(4)
        for c in range(4)
        for t in [f[:, 20 * r : 20 * r + 20, 20 * c : 20 * c + 20]]
        for flip in (False, True)
    }
    kinds = {"tiles": 0, "other": 0}
    for image in a:
        tiles = [
            image[:, 20 * r : 20 * r + 20, 20 * c : 20 * c + 20] for r in range(4) for c in range(4)
        ]
        from_faces = sum(t.numpy().tobytes() in face_tiles for t in tiles)
        assert from_faces in (0, 16)  # a whole scrambled face, or noise / blobs
        kinds["tiles" if from_faces else "other"] += 1
        if from_faces:  # a scrambled face is not the face itself
            assert not any(torch.equal(image, f) for f in faces)
    assert kinds["tiles"] > 0 and kinds["other"] > 0
    with pytest.raises(ValueError, match="divisible by 4"):
        faceless_images(faces[:, :, :78, :78], 2, torch.Generator())
