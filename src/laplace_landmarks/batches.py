"""Many images through one :class:`~laplace_landmarks.inference.Landmarker` in groups.

A folder of one-face photos would otherwise pay a network call (and its fixed cost) per face and
per pass. :func:`predict_groups` loads a group of images, sends all their faces through each pass
together (:meth:`Landmarker.predict_many`), and yields one result per image, in order. A group
that fails as a whole (one bad box, one face with non-finite output) is redone image by image, so
the error lands on the image it belongs to and every other image keeps its result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

T = TypeVar("T")

#: Images per group: enough that the per-call cost is spread thin, few enough that memory stays
#: small and progress moves (a one-face folder: 16 faces per network call).
GROUP_IMAGES = 16
#: Pixels per group at most (about three 50-megapixel images' worth of RGB bytes, 450 MB).
GROUP_PIXELS = 150_000_000

#: The errors that end one image's run, not the whole job (bad files, bad boxes, too large).
IMAGE_ERRORS = (ValueError, OSError, MemoryError)


@dataclass
class ImageOutcome(Generic[T]):
    """One item of :func:`predict_groups`: the item, its RGB array (None if it failed to load)
    and its faces, or the error that stopped it."""

    item: T
    rgb: np.ndarray | None
    faces: list[Any]
    error: Exception | None = None


def predict_groups(
    landmarker: Any,
    items: Iterable[T],
    load: Callable[[T], tuple[np.ndarray, Sequence[Sequence[float]] | None]],
    group_images: int = GROUP_IMAGES,
    group_pixels: int = GROUP_PIXELS,
) -> Iterator[ImageOutcome[T]]:
    """Predict every item, ``group_images`` images (or ``group_pixels`` pixels) at a time.

    ``load(item)`` gives the item's RGB array and its boxes (None: run the detector); an error
    in :data:`IMAGE_ERRORS` from it or from the prediction is that item's ``error``. Outcomes
    come in the order of ``items``, each as soon as its group is done.
    """
    if group_images < 1 or group_pixels < 1:
        raise ValueError(f"group sizes must be >= 1, got {group_images} and {group_pixels}")
    pending: list[tuple[T, np.ndarray | None, Any, Exception | None]] = []
    pixels = 0
    for item in items:
        try:
            rgb, boxes = load(item)
        except IMAGE_ERRORS as exc:
            pending.append((item, None, None, exc))
        else:
            pending.append((item, rgb, boxes, None))
            pixels += rgb.shape[0] * rgb.shape[1]
        if len(pending) >= group_images or pixels >= group_pixels:
            yield from _run_group(landmarker, pending)
            pending, pixels = [], 0
    yield from _run_group(landmarker, pending)


def _run_group(
    landmarker: Any, pending: list[tuple[T, np.ndarray | None, Any, Exception | None]]
) -> Iterator[ImageOutcome[T]]:
    """The outcomes of one group: all loaded images at once, else one by one."""
    loaded = [(rgb, boxes) for _, rgb, boxes, error in pending if error is None]
    try:
        together = landmarker.predict_many([r for r, _ in loaded], [b for _, b in loaded])
    except IMAGE_ERRORS:
        together = None  # redo one by one below, so the error names its own image
    found = iter(together or [])
    for item, rgb, boxes, error in pending:
        if error is not None:
            yield ImageOutcome(item, None, [], error)
        elif together is not None:
            yield ImageOutcome(item, rgb, next(found))
        else:
            try:
                yield ImageOutcome(item, rgb, landmarker.predict(rgb, boxes=boxes))
            except IMAGE_ERRORS as exc:
                yield ImageOutcome(item, rgb, [], exc)
