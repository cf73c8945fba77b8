"""Transforms of crops and their points: horizontal flip, random similarity, colour jitter.

Points are (x, y) crop pixels, 0-based, with pixel centres at integers. The paper's recipes use
no augmentation ("no training tricks"); these are for the separately named augmented recipes,
which :func:`augment` applies as a run's ``[data]`` section configures.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from laplace_landmarks.data.markups import MIRROR_PERMUTATIONS
from laplace_landmarks.run_config import DataConfig


def hflip(
    images: torch.Tensor | np.ndarray, points: torch.Tensor | np.ndarray, permutation: object
) -> tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray]:
    """Mirror images and points left-right.

    images: (B, 3, H, W) tensor, (3, H, W) tensor, or an (H, W, 3) array.
    points: (..., K, 2) crop pixels, (x, y), pixel centres at integers; x becomes W - 1 - x and
        the points are re-ordered so that point k of the result is point ``permutation[k]`` of
        the mirror image (a left eye corner stays a left eye corner).
    permutation: (K,) mirror permutation, e.g. ``MIRROR_PERMUTATIONS[68]``. Permute visibility
        the same way: ``visibility[..., permutation]``.
    Flipping twice is the identity.
    """
    if isinstance(images, np.ndarray):
        if images.ndim != 3 or images.shape[2] != 3:
            raise ValueError(f"images as an array must be (H, W, 3), got {images.shape}")
        width, flipped = images.shape[1], images[:, ::-1].copy()
    elif isinstance(images, torch.Tensor) and images.ndim in (3, 4):
        width, flipped = images.shape[-1], images.flip(-1)
    else:
        raise ValueError(f"images must be (B, 3, H, W) or (H, W, 3), got {type(images)}")
    order = np.asarray(permutation, dtype=np.int64)
    if points.ndim < 2 or points.shape[-1] != 2 or points.shape[-2] != len(order):
        raise ValueError(f"points must be (..., {len(order)}, 2), got {tuple(points.shape)}")
    if isinstance(points, torch.Tensor):
        mirrored = points.clone()
        index = torch.tensor(order, device=points.device)
    else:
        mirrored, index = np.array(points, dtype=np.float64), order
    mirrored[..., 0] = (width - 1) - mirrored[..., 0]
    return flipped, mirrored[..., index, :]


def _check_batch(images: torch.Tensor, points: torch.Tensor | None = None) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"images must be a (B, 3, H, W) tensor, got {getattr(images, 'shape', None)}"
        )
    if points is not None and (
        points.ndim != 3 or points.shape[0] != images.shape[0] or points.shape[-1] != 2
    ):
        raise ValueError(f"points must be (B, K, 2), got {tuple(points.shape)}")


def similarity_matrices(
    batch: int,
    size: tuple[int, int],
    rng: torch.Generator | None,
    max_rotation_deg: float = 0.0,
    max_scale: float = 0.0,
    max_shift: float = 0.0,
) -> torch.Tensor:
    """Random similarities (B, 2, 3) float64 in pixel coordinates, about the image centre.

    size: (H, W). Rotation is uniform in +-max_rotation_deg, scale in 1 +- max_scale and the shift
    in +-max_shift times the image side, per axis.
    """
    height, width = size
    uniform = torch.rand(batch, 4, generator=rng, dtype=torch.float64) * 2 - 1
    angle = uniform[:, 0] * math.radians(max_rotation_deg)
    scale = 1 + uniform[:, 1] * max_scale
    shift = uniform[:, 2:] * max_shift * torch.tensor([width, height], dtype=torch.float64)
    cos, sin = scale * torch.cos(angle), scale * torch.sin(angle)
    linear = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    center = torch.tensor([(width - 1) / 2, (height - 1) / 2], dtype=torch.float64)
    offset = center + shift - linear @ center
    return torch.cat([linear, offset[..., None]], dim=-1)


def warp_similarity(
    images: torch.Tensor, points: torch.Tensor, matrices: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply pixel-space affine maps (B, 2, 3) (input pixel -> output pixel) to images and points.

    images: (B, 3, H, W) float or uint8; bilinear, zeros outside. points: (B, K, 2), (x, y),
    pixel centres at integers. Uses ``affine_grid``/``grid_sample`` with align_corners=False.
    """
    _check_batch(images, points)
    height, width = images.shape[-2:]
    full = torch.zeros(len(matrices), 3, 3, dtype=torch.float64)
    full[:, :2], full[:, 2, 2] = matrices.to(torch.float64), 1.0
    # normalised coordinate u = (2x + 1) / W - 1 for align_corners=False
    to_norm = torch.tensor(
        [[2 / width, 0, 1 / width - 1], [0, 2 / height, 1 / height - 1], [0, 0, 1]],
        dtype=torch.float64,
    )
    theta = (to_norm @ torch.linalg.inv(full) @ torch.linalg.inv(to_norm))[:, :2]
    source = images.to(torch.float32)
    grid = F.affine_grid(theta.to(source), list(source.shape), align_corners=False)
    warped = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if images.dtype == torch.uint8:
        warped = warped.round().clamp(0, 255).to(torch.uint8)
    moved = points.to(torch.float64) @ full[:, :2, :2].transpose(1, 2) + full[:, None, :2, 2]
    return warped, moved.to(points.dtype)


def random_similarity(
    images: torch.Tensor,
    points: torch.Tensor,
    rng: torch.Generator | None = None,
    max_rotation_deg: float = 0.0,
    max_scale: float = 0.0,
    max_shift: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random rotation, scale and shift of (B, 3, H, W) images and their (B, K, 2) points.

    All zero (the default) is the identity. See :func:`similarity_matrices` for the ranges.
    """
    _check_batch(images, points)
    matrices = similarity_matrices(
        len(images), tuple(images.shape[-2:]), rng, max_rotation_deg, max_scale, max_shift
    )
    return warp_similarity(images, points, matrices)


def color_jitter(
    images: torch.Tensor,
    rng: torch.Generator | None = None,
    brightness: float = 0.0,
    contrast: float = 0.0,
) -> torch.Tensor:
    """Per-image random contrast (about the image mean) then brightness, factors in 1 +- value.

    images: (B, 3, H, W) float or uint8; uint8 stays uint8 (rounded, clipped to 0..255).
    """
    _check_batch(images)
    factors = 1 + (torch.rand(len(images), 2, generator=rng) * 2 - 1) * torch.tensor(
        [brightness, contrast]
    )
    source = images.to(torch.float32)
    mean = source.mean(dim=(1, 2, 3), keepdim=True)
    brightness_factor, contrast_factor = (
        factors[:, 0, None, None, None],
        factors[:, 1, None, None, None],
    )
    out = ((source - mean) * contrast_factor + mean) * brightness_factor
    if images.dtype == torch.uint8:
        return out.round().clamp(0, 255).to(torch.uint8)
    return out.to(images.dtype)


def augment(
    images: torch.Tensor,
    points: torch.Tensor,
    visibility: torch.Tensor,
    data: DataConfig,
    rng: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A training batch augmented as ``data`` configures; the identity for the paper's recipes.

    In order, each when configured: a horizontal flip of a random half of the faces (points and
    visibility mirrored with ``MIRROR_PERMUTATIONS``), a random similarity
    (``data.rotation_deg``, ``data.scale``, ``data.shift``) and colour jitter
    (``data.brightness``, ``data.contrast``). Every random draw comes from ``rng``.

    Args:
        images: (B, 3, H, W) uint8 crops.
        points: (B, K, 2) crop pixels.
        visibility: (B, K) bool.
    """
    if data.flip:
        perm = torch.as_tensor(np.array(MIRROR_PERMUTATIONS[points.shape[1]]))
        flipped_images, flipped_points = hflip(images, points, perm)
        chosen = torch.rand(len(images), generator=rng) < 0.5
        images = torch.where(chosen[:, None, None, None], flipped_images, images)
        points = torch.where(chosen[:, None, None], flipped_points, points)
        visibility = torch.where(chosen[:, None], visibility[:, perm], visibility)
    if data.rotation_deg or data.scale or data.shift:
        images, points = random_similarity(
            images, points, rng, data.rotation_deg, data.scale, data.shift
        )
    if data.brightness or data.contrast:
        images = color_jitter(images, rng, data.brightness, data.contrast)
    return images, points, visibility


JUNK_KINDS = ("noise", "blobs", "tiles")


def faceless_images(faces: torch.Tensor, count: int, rng: torch.Generator) -> torch.Tensor:
    """``count`` uint8 crops that hold no face, for the junk term (``loss.junk_weight``).

    Each is one of :data:`JUNK_KINDS`, drawn from ``rng``: uniform noise, smooth colour blobs
    (noise at 1/8 resolution, bilinearly upsampled), or one of ``faces`` cut into a 4x4 grid of
    tiles put back in random order and orientation (a face's colours and textures, not its
    layout).

    Args:
        faces: (B, 3, H, W) uint8 crops (the training batch), H and W divisible by 4.
        count: how many to make.
    """
    _check_batch(faces)
    _, channels, height, width = faces.shape
    if height % 4 or width % 4:
        raise ValueError(f"faceless_images: crops must be divisible by 4, got {height}x{width}")
    kinds = torch.randint(len(JUNK_KINDS), (count,), generator=rng)
    out = torch.randint(0, 256, (count, channels, height, width), generator=rng, dtype=torch.uint8)
    for i in torch.nonzero(kinds == 1).flatten().tolist():
        small = torch.rand(1, channels, max(1, height // 8), max(1, width // 8), generator=rng)
        big = F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)
        out[i] = (big[0] * 255).round().to(torch.uint8)
    th, tw = height // 4, width // 4
    for i in torch.nonzero(kinds == 2).flatten().tolist():
        face = faces[int(torch.randint(len(faces), (1,), generator=rng))]
        tiles = (
            face.reshape(channels, 4, th, 4, tw)
            .permute(1, 3, 0, 2, 4)
            .reshape(16, channels, th, tw)
        )
        tiles = tiles[torch.randperm(16, generator=rng)]
        flips = torch.rand(16, generator=rng) < 0.5
        tiles = torch.where(flips[:, None, None, None], tiles.flip(-1), tiles)
        out[i] = (
            tiles.reshape(4, 4, channels, th, tw)
            .permute(2, 0, 3, 1, 4)
            .reshape(channels, height, width)
        )
    return out
