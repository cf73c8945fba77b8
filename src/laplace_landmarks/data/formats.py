"""Landmark annotation formats: iBUG .pts, COCO keypoint JSON, dlib XML and the landmark CSV.

In memory every point is (x, y) float64, 0-based, with pixel centres at integers. On disk:
- iBUG ``.pts`` is 1-based (the top-left pixel centre is (1, 1)): 1 is subtracted on read and
  added on write, in exact decimal arithmetic, so ``read_pts(write_pts(p)) == p`` bit for bit.
- COCO keypoint JSON (MMPose's face files) is taken as 0-based, which is how MMPose uses it.
  What we found: MMPose's converters copy the source annotations verbatim (``float(x)``, no
  offset), so its 300W JSON holds the original 1-based ``.pts`` values, and AFLW/COFW hold the
  values of their MATLAB sources. Treating them as 0-based (as MMPose and published numbers do)
  leaves those sets about 1 px off our convention; we keep the values as stored.
  Flags: COCO ``v`` is 0 (not labelled), 1 (labelled, occluded: COFW) or 2 (labelled, visible);
  MMPose's 300W/AFLW/WFLW files use 1 everywhere. ``visibility`` is ``v > 0`` (the point is
  annotated and counts in losses and metrics); the raw flags are kept in ``meta["flags"]``.
  ``bbox`` ``[x, y, w, h]`` becomes ``box = (x, y, x + w, y + h)``.
- dlib XML (imglab / ``train_shape_predictor``) is 0-based. A box ``top left width height``
  becomes ``box = (left, top, left + width, top + height)``; a missing part is not visible.
- CSV (the ytf68 layout ``image,x0,y0,...,x67,y67``) is 0-based.

Numbers are written in the shortest form that reads back exactly (integers without a decimal
point, so dlib, which reads integer coordinates, accepts integral points). Every reader turns any
bad input (bad bytes, wrong structure, wrong count, NaN/inf) into `FormatError` naming the source
and the problem. Readers take a path (``str`` or ``Path``) or the content itself (``bytes``, or a
``str`` containing a newline). Writers write atomically (temporary file, then rename).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from laplace_landmarks.atomic import atomic_write_text
from laplace_landmarks.data.annotation_io import (
    MAX_POINTS,
    LandmarkRecord,
    Source,
    check_count,
    check_points,
    check_record,
    decode_text,
    format_number,
    make_record,
    parse_guarded,
    parse_number,
    source_label,
)
from laplace_landmarks.data.coco_json import read_coco_keypoints, write_coco_keypoints
from laplace_landmarks.data.dlib_xml import read_dlib_xml, write_dlib_xml
from laplace_landmarks.errors import FormatError

__all__ = [
    "LandmarkRecord",
    "read_pts",
    "write_pts",
    "read_coco_keypoints",
    "write_coco_keypoints",
    "read_dlib_xml",
    "write_dlib_xml",
    "read_landmarks_csv",
    "write_landmarks_csv",
]


def read_pts(path_or_text: Source, expected_points: int | None = None) -> np.ndarray:
    """Read an iBUG ``.pts`` file as (K, 2) float64 points, (x, y), 0-based.

    The file is 1-based (``version: 1``, ``n_points: K``, ``{``, K lines ``x y``, ``}``); 1 is
    subtracted exactly. Raises FormatError (naming the source) for a wrong count (against
    ``n_points`` or ``expected_points``), garbage, NaN or inf.
    """
    points = parse_guarded(path_or_text, _parse_pts)
    check_count(len(points), expected_points, source_label(path_or_text))
    return points


def _parse_pts(content: bytes, label: str) -> np.ndarray:
    lines = [line.strip() for line in decode_text(content, label).splitlines()]
    lines = [line for line in lines if line]
    if "{" not in lines:
        raise FormatError(f"{label}: missing the opening '{{'")
    start = lines.index("{")
    header: dict[str, str] = {}
    for line in lines[:start]:
        key, sep, value = line.partition(":")
        if not sep:
            raise FormatError(f"{label}: expected 'key: value' header or '{{', got {key[:40]!r}")
        header[key.strip().lower()] = value.strip()
    if "n_points" not in header:
        raise FormatError(f"{label}: missing the 'n_points' header")
    count = int(parse_number(header["n_points"], label, "n_points"))
    if not 0 < count <= MAX_POINTS or str(count) != header["n_points"]:
        raise FormatError(f"{label}: bad n_points {header['n_points'][:40]!r}")
    body = lines[start + 1 :]
    if not body or body[-1] != "}":
        raise FormatError(f"{label}: missing closing '}}'")
    if len(body) - 1 != count:
        raise FormatError(f"{label}: has {len(body) - 1} point lines, n_points says {count}")
    return np.array([_pts_line(line, label, i) for i, line in enumerate(body[:-1])])


def _pts_line(line: str, label: str, index: int) -> tuple[float, float]:
    fields = line.split()
    if len(fields) != 2:
        raise FormatError(f"{label}: point {index}: expected 'x y', got {line[:40]!r}")
    what = f"point {index}"
    return parse_number(fields[0], label, what, shift=1), parse_number(
        fields[1], label, what, shift=1
    )


def write_pts(path: str | Path, points: np.ndarray) -> None:
    """Write (K, 2) points, (x, y) 0-based, as an iBUG ``.pts`` file (1-based on disk)."""
    array = check_points(points)
    lines = [f"{format_number(x, 1)} {format_number(y, 1)}" for x, y in array]
    atomic_write_text(
        path, "version: 1\nn_points: {}\n{{\n{}\n}}\n".format(len(array), "\n".join(lines))
    )


def read_landmarks_csv(
    source: Source,
    expected_points: int | None = None,
    skipped: list[tuple[str, str]] | None = None,
) -> list[LandmarkRecord]:
    """Read a landmark CSV ``image,x0,y0,...,x{K-1},y{K-1}`` (the ytf68 layout), 0-based.

    All points are visible. A bad header raises FormatError; a bad row raises too, unless
    ``skipped`` is a list: then (where, reason) is appended there and the row left out.
    """
    parse = lambda content, label: _parse_csv(content, label, expected_points, skipped)  # noqa: E731
    return parse_guarded(source, parse)


def _parse_csv(content, label, expected_points, skipped) -> list[LandmarkRecord]:
    rows = csv.reader(io.StringIO(decode_text(content, label), newline=""))
    header = next(rows, None)
    count = (len(header) - 1) // 2 if header else 0
    wanted = ["image"] + [f"{axis}{i}" for i in range(count) for axis in "xy"]
    if not header or [h.strip() for h in header] != wanted or count == 0:
        raise FormatError(f"{label}: header must be 'image,x0,y0,...', got {str(header)[:60]}")
    check_count(count, expected_points, label)
    records = []
    for line_number, row in enumerate(rows, start=2):
        if not row:
            continue
        try:
            records.append(_csv_record(row, count, f"{label}:{line_number}"))
        except FormatError as error:
            if skipped is None:
                raise
            skipped.append((f"{label}:{line_number}", str(error)))
    return records


def _csv_record(row: list[str], count: int, where: str) -> LandmarkRecord:
    if len(row) != 2 * count + 1 or not row[0].strip():
        raise FormatError(f"{where}: expected an image name and {2 * count} numbers")
    if "\x00" in row[0]:
        raise FormatError(f"{where}: the image name contains a NUL character")
    values = [parse_number(v, where, f"column {i + 1}") for i, v in enumerate(row[1:])]
    line = where.rpartition(":")[2]
    return make_record(row[0].strip(), values, [True] * count, meta={"where": f"line {line}"})


def write_landmarks_csv(path: str | Path, records: Sequence[LandmarkRecord]) -> None:
    """Write records as ``image,x0,y0,...`` CSV (0-based). All records need the same K and
    every point visible (the format has no visibility)."""
    counts = {len(check_record(r)[0]) for r in records}
    if len(counts) > 1:
        raise ValueError(f"records: all records need the same number of points, got {counts}")
    count = counts.pop() if counts else 0
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image"] + [f"{axis}{i}" for i in range(count) for axis in "xy"])
    for record in records:
        if not np.asarray(record.visibility, dtype=bool).all():
            raise ValueError(f"records[{record.image!r}]: CSV cannot store invisible points")
        writer.writerow([record.image] + [format_number(v) for v in record.points.reshape(-1)])
    atomic_write_text(path, buffer.getvalue())
