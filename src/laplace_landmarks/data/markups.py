"""Landmark mark-ups: named indices and the left/right mirror permutations.

Coordinates are (x, y), 0-based, with pixel centres at integers. Flipping an image of width W
horizontally maps a point to ``(W - 1 - x, y)``; because that swaps the subject's left and right,
the landmark order must then be permuted: ``flipped[MIRROR_PERMUTATIONS[K]]``. Every permutation
here is an involution (applying it twice gives the identity).

Orders:
- 68: iBUG / 300W. Index 36 is the outer corner of the subject's right eye, 45 of the left eye.
- 19: AFLW as in MMPose (brows 0-5, eyes 6-11, nose 12-14, mouth 15-17, chin 18).
- 98: WFLW (jaw 0-32, brows 33-50, nose 51-59, eyes 60-75, mouth 76-95, pupils 96-97).
- 29: COFW as in MMPose.
The 19, 98 and 29 pairs follow MMPose's ``swap`` tables (configs/_base_/datasets/*.py).
"""

from __future__ import annotations

import numpy as np

# 68-point iBUG indices.
RIGHT_EYE_68 = tuple(range(36, 42))  # the subject's right eye (image left in a frontal face)
LEFT_EYE_68 = tuple(range(42, 48))
NOSE_TIP_68 = 30
MOUTH_RIGHT_68 = 48
MOUTH_LEFT_68 = 54
RIGHT_EYE_OUTER_68 = 36
LEFT_EYE_OUTER_68 = 45

_PAIRS_68 = (
    [(i, 16 - i) for i in range(8)]  # jaw
    + [(17, 26), (18, 25), (19, 24), (20, 23), (21, 22)]  # eyebrows
    + [(31, 35), (32, 34)]  # nose base
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lips
    + [(60, 64), (61, 63), (65, 67)]  # inner lips
)
_PAIRS_19 = [(0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9), (12, 14), (15, 17)]
_PAIRS_98 = (
    [(i, 32 - i) for i in range(16)]  # jaw
    + [(33, 46), (34, 45), (35, 44), (36, 43), (37, 42)]  # upper brows
    + [(38, 50), (39, 49), (40, 48), (41, 47)]  # lower brows
    + [(55, 59), (56, 58)]  # nose base
    + [(60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73)]  # eyes
    + [(76, 82), (77, 81), (78, 80), (83, 87), (84, 86)]  # outer lips
    + [(88, 92), (89, 91), (93, 95), (96, 97)]  # inner lips, pupils
)
_PAIRS_29 = [
    (0, 1), (2, 3), (4, 6), (5, 7), (8, 9), (10, 11),
    (12, 14), (13, 15), (16, 17), (18, 19), (22, 23),
]  # fmt: skip


def permutation_from_pairs(num_landmarks: int, pairs: list[tuple[int, int]]) -> np.ndarray:
    """Build a mirror permutation of length ``num_landmarks`` that swaps each pair.

    Indices not named in ``pairs`` map to themselves. Raises ValueError if an index repeats or
    lies outside ``[0, num_landmarks)``.
    """
    perm = np.arange(num_landmarks, dtype=np.int64)
    seen: set[int] = set()
    for a, b in pairs:
        for index in (a, b):
            if not 0 <= index < num_landmarks or index in seen:
                raise ValueError(f"pairs: index {index} is out of range or repeated")
            seen.add(index)
        perm[a], perm[b] = b, a
    perm.setflags(write=False)
    return perm


MIRROR_PERMUTATIONS: dict[int, np.ndarray] = {
    68: permutation_from_pairs(68, _PAIRS_68),
    19: permutation_from_pairs(19, _PAIRS_19),
    98: permutation_from_pairs(98, _PAIRS_98),
    29: permutation_from_pairs(29, _PAIRS_29),
}


def mirror_points(points: np.ndarray, image_width: int) -> np.ndarray:
    """Mirror (K, 2) points for a horizontally flipped image of width ``image_width``.

    Points are (x, y), 0-based, pixel centres at integers, so x maps to ``image_width - 1 - x``.
    The landmark order is then permuted with ``MIRROR_PERMUTATIONS[K]`` so that index 36 is again
    the subject's right outer eye corner. Raises ValueError for an unknown K or a bad shape.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points: expected shape (K, 2), got {points.shape}")
    if points.shape[0] not in MIRROR_PERMUTATIONS:
        known = sorted(MIRROR_PERMUTATIONS)
        raise ValueError(f"points: no mirror permutation for K={points.shape[0]} (known: {known})")
    flipped = points.copy()
    flipped[:, 0] = (image_width - 1) - flipped[:, 0]
    return flipped[MIRROR_PERMUTATIONS[points.shape[0]]]
