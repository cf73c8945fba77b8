"""Large jobs: a CSV manifest of images (and optional face boxes), run as a restartable stream.

Manifest format (UTF-8 CSV, a BOM is allowed, the header line is required)::

    path,x0,y0,x1,y1
    people/anna.jpg,40.5,32,180,190     # one face box
    people/group.jpg,10,10,90,95        # several rows with one path: several boxes
    people/group.jpg,120,12,200,98
    people/bob.jpg,,,,                  # no box: the detector finds the faces

(the ``#`` notes above are for this page only; CSV has no comments). The header needs a ``path``
column; the box columns ``x0,y0,x1,y1`` are optional, all four or none. Other columns are
ignored, header names are case-insensitive and surrounding spaces in any field are ignored.
Relative paths resolve against the manifest's folder. Boxes are (x0, y0, x1, y1) in image
pixels, continuous edge coordinates, as ``Landmarker.predict(image, boxes=...)`` takes them.

Bad rows stop the job before any image is processed: a manifest is a job description, and a
typo in a box would otherwise silently drop a face from hours of results. Every problem is a
one-line :class:`~laplace_landmarks.errors.LandmarksError` naming the file and line
(``manifest.csv:12: x1 is 'abc', not a number``): a missing field, a box value that is not a
finite number, an inverted or empty box, an empty path, a path given both with and without a
box, a file that is not UTF-8 CSV or has no ``path`` column. What can only be known when an image
is read (a missing or corrupt file, a box entirely outside the image) becomes that image's error
record instead, and the job goes on.

Output of :func:`run_manifest` (JSON Lines, one record per image, in manifest order)::

    {"path": "people/anna.jpg", "width": 250, "height": 250, "faces": [{"box": [...], ...}]}
    {"path": "people/gone.jpg", "error": "/data/people/gone.jpg: file not found"}

``path`` is the path as written in the manifest (the record's key; two spellings of one file are
two images), ``faces`` holds :meth:`Face.to_dict` entries (points and scales in image pixels,
(x, y), 0-based, pixel centres at integers, 3 decimals). Records are appended, flushed and
fsynced every ``flush_every`` images; a rerun with the same output skips the images already
recorded, and a last line cut off by a kill is removed first, so the finished file holds exactly
one record per image.

Example:
    >>> from laplace_landmarks import Landmarker
    >>> from laplace_landmarks.manifest import run_manifest
    >>> summary = run_manifest(Landmarker.load(), "manifest.csv", "out/landmarks.jsonl")  # doctest: +SKIP
    >>> print(summary)                                                                 # doctest: +SKIP
    1200 images, 1187 faces, 3 errors in 41.2 s (29.1 images/s)
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from laplace_landmarks.atomic import make_folder
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.outputs import progress as progress_report

Box = tuple[float, float, float, float]
BOX_COLUMNS = ("x0", "y0", "x1", "y1")


@dataclass(frozen=True)
class ManifestItem:
    """One image of a manifest.

    Attributes:
        path: the path as written in the manifest (the key of its output record).
        file: the absolute file path (relative paths resolved against the manifest's folder).
        boxes: its face boxes (x0, y0, x1, y1), or None to run the detector.
        line: the manifest line that first names it.

    Example:
        >>> item = ManifestItem("a.jpg", Path("/data/a.jpg"), boxes=None, line=2)
        >>> item.boxes is None  # no box: the detector runs
        True
    """

    path: str
    file: Path
    boxes: tuple[Box, ...] | None
    line: int


@dataclass(frozen=True)
class JobSummary:
    """What a job did: images processed (errors included), faces found, image errors, seconds.

    ``skipped`` counts images a restarted :func:`run_manifest` found already recorded.

    Example:
        >>> print(JobSummary(images=120, faces=118, errors=2, seconds=4.0))
        120 images, 118 faces, 2 errors in 4.0 s (30.0 images/s)
    """

    images: int
    faces: int
    errors: int
    seconds: float
    skipped: int = 0

    @property
    def images_per_second(self) -> float:
        """Images processed per second of this run (0 when nothing ran)."""
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        text = (
            f"{self.images} images, {self.faces} faces, {self.errors} errors in "
            f"{self.seconds:.1f} s ({self.images_per_second:.1f} images/s)"
        )
        return text + (f"; {self.skipped} already recorded" if self.skipped else "")


# --- reading ------------------------------------------------------------------------------------
def read_manifest(path: str | os.PathLike[str]) -> list[ManifestItem]:
    """Read and validate a manifest: one item per distinct path, in order of first appearance.

    Raises:
        LandmarksError: one line naming the file (and line) for a missing or malformed file
            or a bad row (see the module docstring).

    Example:
        >>> items = read_manifest("manifest.csv")  # doctest: +SKIP
        >>> items[0].path, items[0].boxes          # doctest: +SKIP
        ('people/anna.jpg', ((40.5, 32.0, 180.0, 190.0),))
    """
    manifest = Path(path)
    root = manifest.absolute().parent
    items: dict[str, ManifestItem] = {}
    for line, name, box in _rows(manifest):
        where = f"{manifest}:{line}"
        known = items.get(name)
        if known is None:
            boxes = None if box is None else (box,)
            items[name] = ManifestItem(name, root / name, boxes, line)
        elif box is None or known.boxes is None:
            raise LandmarksError(
                f"{where}: {name!r} is already listed on line {known.line}; a path may repeat "
                "only to add boxes (a row without a box runs the detector on the whole image)"
            )
        else:
            items[name] = ManifestItem(name, known.file, (*known.boxes, box), known.line)
    if not items:
        raise LandmarksError(f"{manifest}: no image rows under the header")
    return list(items.values())


def _rows(manifest: Path) -> Iterator[tuple[int, str, Box | None]]:
    """``(line, path, box or None)`` for each non-blank row, validated."""
    reader = csv.reader(io.StringIO(_read_text(manifest), newline=""), strict=True)
    try:
        header = next(reader, None)
        columns = _header_columns(header)
        for fields in reader:
            if any(field.strip() for field in fields):
                yield reader.line_num, *_parse_row(fields, columns, len(header), reader.line_num)
    except csv.Error as exc:
        raise LandmarksError(f"{manifest}:{reader.line_num}: not valid CSV ({exc})") from exc
    except _RowError as exc:
        raise LandmarksError(f"{manifest}:{exc.line}: {exc}") from None


def _read_text(manifest: Path) -> str:
    """The manifest's text (UTF-8, an optional BOM dropped)."""
    try:
        data = manifest.read_bytes()
    except OSError as exc:
        raise LandmarksError(f"manifest: cannot read {manifest} ({exc.strerror or exc})") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise LandmarksError(
            f"{manifest}:{line}: not UTF-8 text (a manifest is a UTF-8 CSV file)"
        ) from None


class _RowError(Exception):
    """A bad row; ``_rows`` adds the file name."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def _header_columns(header: list[str] | None) -> dict[str, int]:
    """Column index of ``path`` and, when present, of all four box columns."""
    if header is None:
        raise _RowError(1, "empty file (expected a header line with a 'path' column)")
    names = [name.strip().lower() for name in header]
    if "path" not in names:
        found = ", ".join(repr(name[:30]) for name in names[:6]) or "nothing"
        raise _RowError(1, f"not a manifest: the header has no 'path' column (found {found})")
    duplicated = sorted({name for name in names if name and names.count(name) > 1})
    if duplicated:
        raise _RowError(1, f"the header repeats column {duplicated[0]!r}")
    present = [name for name in BOX_COLUMNS if name in names]
    if present and len(present) < len(BOX_COLUMNS):
        missing = ", ".join(name for name in BOX_COLUMNS if name not in names)
        raise _RowError(1, f"the header has box column {present[0]} but not {missing}")
    return {name: names.index(name) for name in ("path", *present)}


def _parse_row(
    fields: list[str], columns: dict[str, int], count: int, line: int
) -> tuple[str, Box | None]:
    """The path and the box (None when every box field is empty) of one data row of a manifest
    whose header has ``count`` fields."""
    if len(fields) != count:
        missing = [name for name, index in columns.items() if index >= len(fields)]
        detail = f" (no {missing[0]})" if missing else " (a path with a comma must be quoted)"
        raise _RowError(line, f"{len(fields)} fields but the header has {count}{detail}")
    name = fields[columns["path"]].strip()
    if not name:
        raise _RowError(line, "empty path")
    values = [fields[columns[axis]].strip() for axis in BOX_COLUMNS if axis in columns]
    if not any(values):
        return name, None
    box = tuple(_number(value, axis, line) for axis, value in zip(BOX_COLUMNS, values, strict=True))
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        raise _RowError(line, f"box {list(box)} needs x1 > x0 and y1 > y0")
    return name, box


def _number(text: str, axis: str, line: int) -> float:
    if not text:
        raise _RowError(line, f"{axis} is empty (give all four box values or none)")
    try:
        value = float(text)
    except ValueError:
        raise _RowError(line, f"{axis} is {text[:40]!r}, not a number") from None
    if not math.isfinite(value):
        raise _RowError(line, f"{axis} is {text!r}, not a finite number")
    return value


# --- predicting ----------------------------------------------------------------------------------
def predict_record(landmarker: Any, item: ManifestItem) -> dict[str, Any]:
    """One image's output record: ``path, width, height, faces``, or ``path, error``.

    Errors an image can have (unreadable file, a box outside the image) become the record's
    ``error``; they never raise.

    Example:
        >>> record = predict_record(Landmarker.load(), read_manifest("m.csv")[0])  # doctest: +SKIP
        >>> sorted(record)                                                         # doctest: +SKIP
        ['faces', 'height', 'path', 'width']
    """
    return predict_records(landmarker, [item])[0]


def predict_records(landmarker: Any, items: Sequence[ManifestItem]) -> list[dict[str, Any]]:
    """:func:`predict_record` of every item, in order; the faces of a group of images go
    through the network together (:func:`~laplace_landmarks.batches.predict_groups`)."""
    from laplace_landmarks.batches import predict_groups
    from laplace_landmarks.data.images import load_image

    records = []
    for outcome in predict_groups(
        landmarker, items, lambda item: (load_image(item.file), item.boxes)
    ):
        item = outcome.item
        if outcome.error is not None or outcome.rgb is None:
            records.append({"path": item.path, "error": str(outcome.error)})
            continue
        height, width = outcome.rgb.shape[:2]
        records.append(
            {
                "path": item.path,
                "width": int(width),
                "height": int(height),
                "faces": [face.to_dict() for face in outcome.faces],
            }
        )
    return records


def run_manifest(
    landmarker: Any,
    manifest: str | os.PathLike[str] | Sequence[ManifestItem],
    out_path: str | os.PathLike[str],
    *,
    flush_every: int = 16,
    max_images: int | None = None,
    progress: bool = False,
) -> JobSummary:
    """Predict every image of ``manifest``, appending one JSON line per image to ``out_path``.

    Restartable: images already recorded in ``out_path`` are skipped, and a last line cut off
    by a kill is removed first. Records are flushed and fsynced every ``flush_every`` images (a
    kill loses at most that much work). Only one run may append to a file at a time.

    Args:
        landmarker: a :class:`~laplace_landmarks.inference.Landmarker` (anything with
            ``predict(image, boxes=None)`` returning faces with ``to_dict()``).
        manifest: a manifest file, or items from :func:`read_manifest`.
        out_path: the JSON Lines file (created with its folder when missing).
        flush_every: images per write + fsync.
        max_images: stop after this many new images (None: all); rerun to go on.
        progress: report progress on stderr (a bar on a terminal, plain lines in a log).

    Returns:
        The :class:`JobSummary` of this run (already recorded images count as ``skipped``).

    Raises:
        LandmarksError: a bad manifest, or an ``out_path`` that is not this job's output (a
            damaged line before the last, or records of paths the manifest does not list).

    Example:
        >>> run_manifest(Landmarker.load(threads=2), "m.csv", "out.jsonl", max_images=100)  # doctest: +SKIP
    """
    if flush_every < 1:
        raise LandmarksError(f"flush_every must be >= 1, got {flush_every}")
    if max_images is not None and max_images < 0:
        raise LandmarksError(f"max_images must be >= 0, got {max_images}")
    items = read_manifest(manifest) if isinstance(manifest, str | os.PathLike) else list(manifest)
    start = time.perf_counter()
    with _open_output(Path(out_path)) as handle:
        done = _recover(handle, Path(out_path), {item.path for item in items})
        todo = [item for item in items if item.path not in done][:max_images]
        images = faces = errors = 0
        for chunk in _chunks(_progress(todo, progress), flush_every):
            records = predict_records(landmarker, chunk)
            _append(handle, records)
            images += len(records)
            faces += sum(len(record.get("faces", ())) for record in records)
            errors += sum("error" in record for record in records)
    seconds = time.perf_counter() - start
    return JobSummary(images, faces, errors, seconds, skipped=len(done))


def iter_records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The records of a :func:`run_manifest` output file, streamed (a cut-off last line is
    left out).

    Example:
        >>> {r["path"]: len(r.get("faces", [])) for r in iter_records("out.jsonl")}  # doctest: +SKIP
    """
    with open(path, "rb") as handle:
        for line in handle:
            if line.endswith(b"\n") and line.strip():
                yield json.loads(line)


# --- the output file ------------------------------------------------------------------------------
@contextmanager
def _open_output(path: Path) -> Iterator[BinaryIO]:
    """``path`` opened for reading and appending, under an exclusive lock where the OS has one."""
    try:
        make_folder(path.parent)
        handle = open(path, "a+b")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise LandmarksError(f"cannot open {path} ({exc.strerror or exc})") from exc
    with handle:  # closing releases the lock
        _lock(handle, path)
        yield handle


def _lock(handle: BinaryIO, path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        raise LandmarksError(f"{path}: another run is writing to it") from exc


def _recover(handle: BinaryIO, path: Path, known: set[str]) -> set[str]:
    """The paths already recorded; truncates a cut-off last line (fsynced). Streams the file.

    Only the last line can be cut off (records are appended whole), so a bad line before it, or
    a record of a path the manifest does not list, means the file is not this job's output.
    """
    handle.seek(0)
    done: set[str] = set()
    end = 0  # the end of the last complete line
    for number, line in enumerate(handle, start=1):
        if not line.endswith(b"\n"):
            break  # cut off by a kill
        name = _record_path(line)
        if name in known:
            done.add(name)
        elif name is not None:
            raise LandmarksError(
                f"{path}:{number}: records {name!r}, which the manifest does not list; "
                "write to a new output file"
            )
        elif line.strip():
            raise LandmarksError(f"{path}:{number}: not a record (damaged or another file)")
        end += len(line)
    if end < handle.seek(0, os.SEEK_END):
        handle.truncate(end)
        _sync(handle)
    return done


def _record_path(line: bytes) -> str | None:
    """The ``path`` of a JSON record line, or None when the line is not one."""
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return None
    path = record.get("path") if isinstance(record, dict) else None
    return path if isinstance(path, str) else None


def _append(handle: BinaryIO, records: list[dict[str, Any]]) -> None:
    """Append the records as JSON lines in one write, then flush and fsync."""
    text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    handle.write(text.encode("utf-8"))
    _sync(handle)


def _sync(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _chunks(items: Iterable[ManifestItem], size: int) -> Iterator[list[ManifestItem]]:
    chunk: list[ManifestItem] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _progress(items: list[ManifestItem], enabled: bool) -> Iterable[ManifestItem]:
    """``items`` with the commands' progress report (a bar on a terminal, plain lines in a log)."""
    return progress_report(items, "manifest", "img") if enabled else items
