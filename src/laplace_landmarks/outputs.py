"""Where and how ``predict`` writes, shared by the image and the video commands.

- Output names: ``unique_key`` keeps two inputs with the same stem from writing the same file.
- Text: ``printable`` turns any file name (even one that is not valid UTF-8) into printable
  text; ``dumps`` writes strict JSON (non-finite numbers become ``null``); ``face_values`` the
  CSV cells of one face.
- The ``--out`` folder: ``claim_out_folder`` locks it for one run and refuses, before any work,
  files an earlier run left there (unless ``--overwrite``); ``write_text_output`` writes the
  combined table there (atomically) or to stdout; ``format_document`` lays a JSON document out
  one list item per line (``predict`` and ``align``).
- Head pose (``--pose``): ``face_pose`` per face, ``pose_entry`` and ``pose_values`` its JSON and
  CSV forms.
- Overlays: ``draw_faces`` is the one drawing of boxes, points, 1-b uncertainty ellipses and
  pose axes, for image and video overlays alike; ``write_png`` saves one atomically.
- stderr: ``say`` prints a line, ``progress`` a progress bar on a terminal and occasional plain
  lines in a log, ``RunSummary`` the end-of-run counts.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import sys
import time
from collections.abc import Collection, Iterable, Iterator, Sequence, Sized
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from laplace_landmarks.atomic import make_folder
from laplace_landmarks.errors import LandmarksError

if TYPE_CHECKING:  # numpy and Pillow load when drawing: the command line starts without them
    import numpy as np
    from PIL import Image

    from laplace_landmarks.pose import HeadPose

T = TypeVar("T")

DEFAULT_OUT = Path("landmarks_out")  # overlays and files go here when --out is not given
TABLE_NAMES = {"json": "landmarks.json", "csv": "landmarks.csv"}  # the combined file in --out
LOCK_NAME = ".laplace-landmarks.lock"  # in --out while a run writes there
_UNWRITTEN_LOCK_SECONDS = 10.0  # an empty lock older than this is from a run killed at birth
#: Seconds between two plain progress lines when stderr is not a terminal (a log file).
PROGRESS_SECONDS = 10.0
POSE_COLUMNS = ("yaw", "pitch", "roll")  # the CSV columns --pose adds
DETECTED_COLOUR = (255, 64, 64)  # overlay box of a detected (or given) face
TRACKED_COLOUR = (64, 200, 255)  # overlay box of a face tracked from the previous video frame


def check_out_folder(out: Path) -> None:
    """Refuse an ``--out`` that exists and is not a folder (one-line LandmarksError)."""
    if out.exists() and not out.is_dir():
        raise LandmarksError(f"--out: {printable(out)} exists and is not a folder")


def unique_key(key: str, used: set[str]) -> str:
    """``key``, or ``key-2``, ``key-3``, ... when taken; records the result in ``used``.

    Keys are compared case-insensitively, so two outputs never share a file on a
    case-insensitive file system either.
    """
    candidate, n = key, 1
    while candidate.casefold() in used:
        n += 1
        candidate = f"{key}-{n}"
    used.add(candidate.casefold())
    return candidate


def overlay_name(key: str, suffix: str) -> str:
    """The ``--draw`` file of one input: ``<key>_landmarks<suffix>`` (``.png`` or ``.mp4``)."""
    return f"{key}_landmarks{suffix}"


def pts_name(key: str, face: int) -> str:
    """The ``--format pts`` file of one face: ``<key>_<face>.pts``."""
    return f"{key}_{face}.pts"


def planned_files(
    keys: Iterable[str], table: str | None, overlay: str | None, pts: bool = False
) -> list[str]:
    """The files a run will write into ``--out`` (for ``claim_out_folder``).

    Args:
        keys: the inputs' output keys (see ``unique_key``).
        table: the combined file's name (``TABLE_NAMES``), or None when it goes to stdout.
        overlay: the overlay suffix with ``--draw``, else None.
        pts: whether each face gets a ``.pts`` file; face 0's stands for all of an input's
            (a run with faces always writes it).
    """
    names = [] if table is None else [table]
    for key in keys:
        names += [pts_name(key, 0)] if pts else []
        names += [overlay_name(key, overlay)] if overlay else []
    return names


def printable(path: str | os.PathLike[str]) -> str:
    """A file name (or a message holding one) as valid Unicode: non-UTF-8 bytes become ``\\xNN``.

    On POSIX a file name is bytes; Python keeps undecodable bytes as lone surrogates, which
    neither UTF-8 files, strict JSON readers nor a strict stdout accept.
    ``b"caf\\xe9.jpg"`` -> ``caf\\xe9.jpg`` (a backslash, then ``xe9``).
    """
    text = os.fsdecode(path)
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) in nested dicts/lists replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def dumps(value: Any) -> str:
    """Strict JSON on one line: non-finite numbers become ``null``, never a bare ``NaN``."""
    return json.dumps(json_safe(value), allow_nan=False)


def landmark_columns(count: int) -> list[str]:
    """CSV columns of one face: ``x0,y0..,bx0,by0..,box_x0,box_y0,box_x1,box_y1,score``."""
    columns = [f"{axis}{k}" for k in range(count) for axis in ("x", "y")]
    columns += [f"b{axis}{k}" for k in range(count) for axis in ("x", "y")]
    return [*columns, "box_x0", "box_y0", "box_x1", "box_y1", "score"]


def face_values(face: Any) -> list[str]:
    """The ``landmark_columns`` cells of one face; a non-finite number is an empty cell."""
    numbers = [*face.points.ravel(), *face.scale.ravel(), *face.box]
    cells = [f"{v:.3f}" if math.isfinite(v) else "" for v in map(float, numbers)]
    score = None if face.score is None else float(face.score)
    return [*cells, f"{score:.6g}" if score is not None and math.isfinite(score) else ""]


def write_text_output(text: str, out: Path | None, name: str) -> None:
    """``text`` to stdout when ``out`` is None, else atomically to ``out / name``."""
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    from laplace_landmarks.atomic import atomic_write_text

    try:
        atomic_write_text(out / name, text)
    except OSError as exc:
        raise LandmarksError(f"cannot write {printable(out / name)}: {exc}") from exc


def format_document(document: dict[str, Any], lists: Collection[str]) -> str:
    """``document`` as strict JSON, readable: each key of ``lists`` on its own lines, one list
    item per line; the other keys in between share a line (a non-finite number is ``null``).

    Example:
        >>> print(format_document({"model": "m", "images": [{"a": 1}, {"a": 2}], "errors": []},
        ...                       ("images", "errors")), end="")
        {"model": "m",
         "images": [
          {"a": 1},
          {"a": 2}
         ],
         "errors": []}
    """
    lines: list[str] = []
    shared: list[str] = []
    for key, value in document.items():
        if key not in lists:
            shared.append(f"{dumps(key)}: {dumps(value)}")
            continue
        if shared:
            lines.append(", ".join(shared))
            shared = []
        items = "[\n  " + ",\n  ".join(map(dumps, value)) + "\n ]" if value else "[]"
        lines.append(f"{dumps(key)}: {items}")
    if shared:
        lines.append(", ".join(shared))
    return "{" + ",\n ".join(lines) + "}\n"


# --- stderr: messages, progress and the end-of-run summary ---------------------------------------
def say(message: str) -> None:
    """Print one line on stderr without breaking a progress bar on it."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def stderr_is_terminal() -> bool:
    """Whether stderr is a terminal (False for a log file, a pipe or a captured stream)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


def progress(items: Iterable[T], desc: str, unit: str, total: int | None = None) -> Iterator[T]:
    """``items``, reporting progress on stderr.

    On a terminal a tqdm bar; otherwise (a log file, a pipe) a plain line such as
    ``predict: 120/1000 img, 11.9 img/s`` every :data:`PROGRESS_SECONDS`, never a carriage
    return. Nothing for one item or none. ``total`` defaults to ``len(items)`` when it has one.
    """
    if total is None and isinstance(items, Sized):
        total = len(items)
    if total is not None and total <= 1:
        return iter(items)
    if stderr_is_terminal():
        from tqdm import tqdm

        return iter(tqdm(items, desc=desc, unit=unit, total=total, file=sys.stderr))
    return _plain_progress(items, desc, unit, total)


def _plain_progress(items: Iterable[T], desc: str, unit: str, total: int | None) -> Iterator[T]:
    start = last = time.monotonic()
    for count, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last >= PROGRESS_SECONDS:
            last = now
            done = f"{count}/{total}" if total is not None else str(count)
            rate = count / (now - start) if now > start else 0.0
            say(f"{desc}: {done} {unit}, {rate:.1f} {unit}/s")


@dataclass(frozen=True)
class RunSummary:
    """What a ``predict`` run did: the end-of-run line on stderr and the JSON ``summary``.

    images: images processed (a video run: frames); faces: faces found in them (a video run: one
    per face and frame); without_face: images (frames) with no face; errors: inputs skipped
    (the JSON ``errors``); seconds: the run's wall time; videos: videos processed, or None for
    an image run.

    Example:
        >>> print(RunSummary(images=3, faces=2, without_face=1, errors=1, seconds=2.04))
        3 images, 2 faces, 1 image without a face, 1 skipped, 2.0 s
        >>> RunSummary(40, 40, 0, 0, 9.5, videos=1).to_dict()["frames"]
        40
    """

    images: int
    faces: int
    without_face: int
    errors: int
    seconds: float
    videos: int | None = None

    @classmethod
    def of(
        cls,
        faces_per_image: Iterable[int],
        errors: int,
        seconds: float,
        videos: int | None = None,
    ) -> RunSummary:
        """The summary of images (or frames) with these face counts."""
        counts = list(faces_per_image)
        empty = sum(count == 0 for count in counts)
        return cls(len(counts), sum(counts), empty, errors, seconds, videos)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``images`` (a video run: ``videos``, ``frames``), ``faces``,
        ``without_face``, ``errors``, ``seconds``."""
        counted = {"images": self.images}
        if self.videos is not None:
            counted = {"videos": self.videos, "frames": self.images}
        return {
            **counted,
            "faces": self.faces,
            "without_face": self.without_face,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
        }

    def __str__(self) -> str:
        unit = "image" if self.videos is None else "frame"
        parts = [] if self.videos is None else [_counted(self.videos, "video")]
        parts += [_counted(self.images, unit), _counted(self.faces, "face")]
        parts += [f"{_counted(self.without_face, unit)} without a face", f"{self.errors} skipped"]
        return ", ".join(parts) + f", {self.seconds:.1f} s"


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


# --- head pose (--pose) ----------------------------------------------------------------------
def face_pose(face: Any, image_shape: Sequence[int]) -> HeadPose | None:
    """The head pose of one face (``pose.estimate_pose``, each point weighted by its Laplace
    scale), or None when its points give none (non-finite or degenerate)."""
    from laplace_landmarks.pose import estimate_pose

    try:
        return estimate_pose(face.points, image_shape, scale=face.scale)
    except ValueError:
        return None


def pose_entry(entry: dict[str, Any], pose: HeadPose | None) -> dict[str, Any]:
    """A face's JSON entry with its ``pose`` (``HeadPose.to_dict``, or null) added."""
    return {**entry, "pose": None if pose is None else pose.to_dict()}


def pose_values(pose: HeadPose | None) -> list[str]:
    """The :data:`POSE_COLUMNS` cells (degrees, 2 decimals); empty cells without a pose."""
    if pose is None:
        return [""] * len(POSE_COLUMNS)
    return [f"{angle:.2f}" for angle in (pose.yaw, pose.pitch, pose.roll)]


# --- overlays ------------------------------------------------------------------------------------
def draw_faces(
    rgb: np.ndarray,
    faces: Sequence[Any],
    poses: Sequence[HeadPose | None] | None = None,
    box_colours: Sequence[tuple[int, int, int]] | None = None,
) -> np.ndarray:
    """The image with each face's box, its points (green) and their 1-b uncertainty ellipses
    (yellow, semi-axes the Laplace scales bx, by) and, given ``poses``, the head-pose axes from
    the nose tip (``pose.pose_axes``, coloured by ``pose.AXIS_COLOURS``: red towards the
    subject's left, green down, blue forward).

    Args:
        rgb: (H, W, 3) uint8 image (not modified).
        faces: objects with ``box``, ``points`` and ``scale`` (a ``Face`` or ``TrackedFace``).
        poses: one head pose (or None) per face; None draws no axes.
        box_colours: one RGB colour per face; default :data:`DETECTED_COLOUR` for all.

    Returns:
        A new (H, W, 3) uint8 array.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    from laplace_landmarks.plots import draw_landmarks

    picture = Image.fromarray(rgb)
    width = max(1, min(picture.size) // 300)
    draw = ImageDraw.Draw(picture)
    colours = box_colours or [DETECTED_COLOUR] * len(faces)
    for face, colour in zip(faces, colours, strict=True):
        draw.rectangle(face.box, outline=colour, width=width)
    for face in faces:
        picture = draw_landmarks(picture, face.points, face.scale)
    if poses is not None:
        _draw_pose_axes(picture, [pose for pose in poses if pose is not None], 2 * width)
    return np.asarray(picture)


def _draw_pose_axes(picture: Image.Image, poses: Sequence[HeadPose], width: int) -> None:
    import numpy as np
    from PIL import ImageDraw

    from laplace_landmarks.pose import AXIS_COLOURS, pose_axes

    draw = ImageDraw.Draw(picture)
    for pose in poses:
        segments = pose_axes(pose)
        if not np.isfinite(segments).all():
            continue
        for (start, end), colour in zip(segments, AXIS_COLOURS, strict=True):
            draw.line([tuple(start), tuple(end)], fill=colour, width=width)


def write_png(rgb: np.ndarray, path: Path) -> None:
    """Write an (H, W, 3) uint8 array as a PNG, atomically."""
    from PIL import Image

    from laplace_landmarks.atomic import atomic_path

    with atomic_path(path) as temporary:
        Image.fromarray(rgb).save(temporary, format="PNG")


@contextmanager
def claim_out_folder(out: Path, names: Iterable[str], overwrite: bool = False) -> Iterator[Path]:
    """Hold ``out`` for one run: create it, lock it, and check the files the run will write.

    Args:
        out: the output folder (created if missing; removed again if the run leaves it empty).
        names: the files the run will write, relative to ``out``.
        overwrite: replace files an earlier run left; otherwise such a file is refused here,
            before any work is done.

    Raises:
        LandmarksError: ``out`` is not a folder or cannot be created, another live run holds
            its lock, or (without ``overwrite``) one of ``names`` exists already.
    """
    check_out_folder(out)
    created = not out.exists()
    try:
        make_folder(out)
    except OSError as exc:
        raise LandmarksError(
            f"--out: cannot create {printable(out)} ({exc.strerror or exc})"
        ) from exc
    try:
        lock = _acquire_lock(out)
        try:
            if not overwrite:
                _refuse_existing(out, names)
            yield out
        finally:
            _release_lock(lock)
    finally:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only when empty: nothing was written


def _refuse_existing(out: Path, names: Iterable[str]) -> None:
    """Refuse (one line) when any of ``names`` is already in ``out``."""
    existing = [name for name in names if os.path.lexists(out / name)]
    if existing:
        files = f" and {len(existing) - 1} more files exist" if len(existing) > 1 else " exists"
        raise LandmarksError(
            f"--out: {printable(out / existing[0])}{files} from an earlier run; pass "
            "--overwrite to replace existing files, or choose another --out"
        )


def _lock_text() -> str:
    return f"{os.getpid()} {socket.gethostname()}\n"


def _acquire_lock(out: Path) -> Path:
    """Create ``out/LOCK_NAME`` exclusively (O_EXCL) holding "PID HOST"; return its path.

    A stale lock (see ``_live_holder``) is removed once and the creation retried. Two runs that
    find the same stale lock at the same instant could both take over; anything slower than
    that is serialised by O_EXCL.
    """
    lock = out / LOCK_NAME
    for _ in range(2):
        try:
            descriptor = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _live_holder(lock)
            if holder is not None:
                raise LandmarksError(
                    f"--out: {printable(out)} is in use by another run ({holder}); wait for "
                    f"it, or delete {printable(lock)} if no run is using the folder"
                ) from None
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()  # stale: its run was killed
            continue
        except OSError as exc:
            message = f"--out: cannot write in {printable(out)} ({exc.strerror or exc})"
            raise LandmarksError(message) from exc
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(_lock_text())
        return lock
    raise LandmarksError(f"--out: {printable(out)} is in use by another run (lock {LOCK_NAME})")


def _live_holder(lock: Path) -> str | None:
    """Who holds ``lock`` ("pid N on HOST"), or None when the lock is stale or gone.

    A lock is stale when its process no longer runs on this host, or when it is still empty
    long after its creation (the run died between creating and writing it). A lock from another
    host cannot be checked and counts as held.
    """
    try:
        text = lock.read_text(encoding="utf-8", errors="replace")
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return None
    except OSError:
        return "unreadable lock"
    pid, _, host = text.strip().partition(" ")
    if not (pid.isascii() and pid.isdigit() and int(pid) > 0 and host):
        return None if age > _UNWRITTEN_LOCK_SECONDS else "a run that is starting"
    if host == socket.gethostname() and not _pid_alive(int(pid)):
        return None
    return f"pid {pid} on {host}"


def _pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (True when it cannot be told)."""
    if os.name == "nt":  # os.kill would terminate the process there
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or no pid is that large
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _release_lock(lock: Path) -> None:
    """Remove ``lock`` if it is still this run's."""
    with contextlib.suppress(OSError):
        if lock.read_text(encoding="utf-8") == _lock_text():
            lock.unlink()
