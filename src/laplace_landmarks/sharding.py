"""``--shard K/N``: N processes share a grid of runs; process K trains runs K, K+N, K+2N, ...

Used by ``laplace-landmarks reproduce`` and ``laplace-landmarks study``.

Example:
    >>> parse_shard("2/3")
    (2, 3)
    >>> take_shard(list("abcdefg"), (2, 3))
    ['b', 'e']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from laplace_landmarks.errors import LandmarksError

T = TypeVar("T")


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` as ``(K, N)``; anything else is a one-line LandmarksError."""
    try:
        k, n = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise LandmarksError(
            f"shard: expected whole numbers K/N such as 1/2, got {text!r}"
        ) from None
    return check_shard((k, n))


def check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    """``shard`` itself, or a LandmarksError unless ``1 <= K <= N``."""
    k, n = shard
    if not 1 <= k <= n:
        raise LandmarksError(f"shard: K/N needs 1 <= K <= N, got {k}/{n}")
    return k, n


def take_shard(runs: Sequence[T], shard: tuple[int, int] | None) -> list[T]:
    """This shard's share of ``runs`` (every N-th from the K-th); all of them for None."""
    if shard is None:
        return list(runs)
    k, n = check_shard(shard)
    return list(runs[k - 1 :: n])
