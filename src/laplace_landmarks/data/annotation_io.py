"""Shared plumbing for the annotation readers and writers (see `formats` for conventions).

Points in memory are (x, y) float64, 0-based, with pixel centres at integers.
"""

from __future__ import annotations

import csv
import decimal
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from laplace_landmarks.errors import FormatError

Source = str | Path | bytes
MAX_POINTS = 100_000
EXACT = decimal.Context(prec=1000, Emax=10**6, Emin=-(10**6))
PARSE_ERRORS = (
    ValueError, TypeError, KeyError, IndexError, AttributeError, ArithmeticError,
    RecursionError, UnicodeError, LookupError, csv.Error, ET.ParseError, decimal.InvalidOperation,
)  # fmt: skip


@dataclass(frozen=True, eq=False)
class LandmarkRecord:
    """One annotated face read from a multi-face annotation file.

    image: the image file name as stored in the annotation (relative to the dataset root).
    points: (K, 2) float64, (x, y), 0-based, pixel centres at integers.
    visibility: (K,) bool, True where the point is annotated (counts in losses and metrics).
    box: optional face box (x0, y0, x1, y1) in the same pixel coordinates.
    meta: format-specific extras kept for faithful re-writing (COCO ids, flags, ...), and
        ``where``: the entry's place in its file for messages (``line 5``, ``annotation 3``).
    """

    image: str
    points: np.ndarray
    visibility: np.ndarray
    box: tuple[float, float, float, float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def read_source(source: Source) -> tuple[bytes, str]:
    """Return (content, label) where label names the file (or '<text>') in error messages."""
    if isinstance(source, bytes):
        return source, "<bytes>"
    if isinstance(source, str) and "\n" in source:
        return source.encode("utf-8", "surrogatepass"), "<text>"
    if not isinstance(source, str | Path):
        raise FormatError(f"expected a path, bytes or text, got {type(source).__name__}")
    path = Path(source)
    try:
        return path.read_bytes(), str(path)
    except (OSError, ValueError) as error:
        raise FormatError(
            f"{path}: cannot read annotation file ({getattr(error, 'strerror', None) or error})"
        ) from error


def parse_guarded(source: Source, parse: Callable[[bytes, str], Any]) -> Any:
    """Run ``parse(content, label)``, turning any parsing exception into FormatError."""
    content, label = read_source(source)
    try:
        return parse(content, label)
    except FormatError:
        raise
    except PARSE_ERRORS as error:
        raise FormatError(f"{label}: malformed ({type(error).__name__}: {error})") from error


def decode_text(content: bytes, label: str) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise FormatError(
            f"{label}: not UTF-8 text ({error.reason} at byte {error.start})"
        ) from error


def parse_number(text: str, label: str, what: str, shift: int = 0) -> float:
    """Parse a decimal number, subtract ``shift`` exactly, and check the result is finite."""
    try:
        if shift:  # exact decimal arithmetic: format_number(parse_number(t, shift), shift) == t
            result = float(EXACT.subtract(decimal.Decimal(text.strip()), decimal.Decimal(shift)))
        else:
            result = float(text)  # correctly rounded, the same as going through Decimal
    except decimal.Overflow:
        raise FormatError(f"{label}: {what}: {text[:40]!r} is out of range") from None
    except (ValueError, ArithmeticError):
        if text.strip().lower().lstrip("+-") in ("nan", "snan", "inf", "infinity"):
            raise FormatError(f"{label}: {what}: {text[:40]!r} is not finite") from None
        raise FormatError(f"{label}: {what}: {text[:40]!r} is not a number") from None
    if not math.isfinite(result):
        literal = text.strip().lower().lstrip("+-") in ("nan", "inf", "infinity")
        reason = "is not finite" if literal else "is out of range"
        raise FormatError(f"{label}: {what}: {text[:40]!r} {reason}")
    return result


def format_number(value: float, shift: int = 0) -> str:
    """The shortest decimal that `parse_number(..., shift)` reads back as exactly ``value``."""
    exact = EXACT.add(decimal.Decimal(repr(float(value))), decimal.Decimal(shift))
    text = format(exact, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def check_points(points: Any, name: str = "points") -> np.ndarray:
    """Validate user points for writing: (K, 2) finite floats."""
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{name}: expected shape (K, 2), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: contains NaN or inf")
    return array


def check_count(count: int, expected: int | None, label: str) -> None:
    if expected is not None and count != expected:
        raise FormatError(f"{label}: has {count} points, expected {expected}")


def make_record(image: str, points: list, visibility: list, box=None, meta=None) -> LandmarkRecord:
    pts = np.array(points, dtype=np.float64).reshape(-1, 2)
    vis = np.array(visibility, dtype=bool).reshape(-1)
    return LandmarkRecord(image, pts, vis, box, meta or {})


def source_label(source: Source) -> str:
    if isinstance(source, bytes):
        return "<bytes>"
    return "<text>" if isinstance(source, str) and "\n" in source else str(source)


def check_record(record: LandmarkRecord) -> tuple[np.ndarray, np.ndarray]:
    points = check_points(record.points, f"records[{record.image!r}].points")
    visibility = np.asarray(record.visibility, dtype=bool).reshape(-1)
    if len(visibility) != len(points):
        raise ValueError(f"records[{record.image!r}].visibility: length {len(visibility)} != K")
    return points, visibility


def xywh_from_box(box: Any, stored: Any = None) -> list[float]:
    """``[x, y, w, h]`` for a box ``(x0, y0, x1, y1)``; ``stored`` (the ``[x, y, w, h]`` read
    from the file) is returned instead when it gives exactly this box, so round trips are exact."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if isinstance(stored, list | tuple) and len(stored) == 4:
        x, y, w, h = (float(v) for v in stored)
        if (x, y, x + w, y + h) == (x0, y0, x1, y1):
            return [x, y, w, h]
    return [x0, y0, x1 - x0, y1 - y0]
