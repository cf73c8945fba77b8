"""Our shipped models against dlib's 68-point predictor, timed side by side (``bench --vs-dlib``).

Everything runs on the core install (ONNX Runtime, no PyTorch) plus dlib's model file, which is
benchmark-only (see :func:`~laplace_landmarks.dlib_reference.find_dlib_predictor`). One thread
for both systems. Three measurements, each on the same photos and boxes for both:

- **per face**: the whole ``Landmarker.predict(image, boxes=[box])`` against dlib's
  ``predictor(image, rect)`` with its 68 parts read into an array; the box is the HOG detection
  holding the labelled face (the ``evaluate --protocol landmarker`` rule); detection excluded.
- **per photo** (frames/s): ``Landmarker.predict(image)`` (the built-in HOG detector, then every
  face) against the same detector call followed by dlib's predictor on every detection; photos
  where the detector finds one or two faces.
- **install size**: the bytes of the installed files of the core install's packages
  (``laplace-landmarks`` without extras and everything it requires, as installed here).

Calls alternate A/B, B/A photo by photo so that a busy machine slows both alike; medians.
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from laplace_landmarks.errors import LandmarksError

#: Timing rounds per face or photo before the timed ones (caches, ONNX Runtime's first runs).
WARMUP = 3


@dataclass
class SpeedRow:
    """One model against dlib: medians in milliseconds, and the ratios ours / dlib."""

    model: str
    passes: str  # Landmarker.passes: e.g. "2" or "rcn-lite + 1 mirrored"
    faces: int
    face_ms: float
    dlib_face_ms: float
    photos: int
    photo_ms: float
    dlib_photo_ms: float

    @property
    def face_ratio(self) -> float:
        return self.face_ms / self.dlib_face_ms

    @property
    def photo_ratio(self) -> float:
        return self.photo_ms / self.dlib_photo_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "face_ratio": self.face_ratio,
            "photo_ratio": self.photo_ratio,
            "frames_per_s": 1e3 / self.photo_ms,
            "dlib_frames_per_s": 1e3 / self.dlib_photo_ms,
        }


def ab_medians(
    call_a: Callable[[Any], Any], call_b: Callable[[Any], Any], items: Sequence[Any]
) -> tuple[float, float]:
    """Median seconds of ``call_a(item)`` and ``call_b(item)`` over ``items``, the order
    alternating A/B, B/A item by item; the first :data:`WARMUP` items are run, not timed."""
    times_a: list[float] = []
    times_b: list[float] = []
    for index, item in enumerate(items):
        pair = [(call_a, times_a), (call_b, times_b)]
        for call, times in pair if index % 2 == 0 else pair[::-1]:
            start = time.perf_counter()
            call(item)
            if index >= min(WARMUP, len(items) - 1):
                times.append(time.perf_counter() - start)
    if not times_a:
        raise LandmarksError("bench --vs-dlib: nothing to time (no face was detected)")
    return statistics.median(times_a), statistics.median(times_b)


def compare_with_dlib(
    models: Sequence[str],
    *,
    data: str = "300w",
    split: str | None = None,
    root: str | Path | None = None,
    faces: int = 200,
    predictor: str | Path | None = None,
) -> dict[str, Any]:
    """Time each shipped model (its own passes and mirroring, ONNX Runtime, one thread) against
    dlib on the first ``faces`` labelled faces of ``data``/``split`` that the HOG detector finds.

    Returns a JSON-ready dict: the rows (:class:`SpeedRow`), the core install's size, and what was
    measured on (data, faces, photos, dlib and ONNX Runtime versions, the CPU).
    Raises LandmarksError (one line) when dlib's model file, the data or a model is missing.
    """
    import dlib

    from laplace_landmarks.data.datasets import default_split
    from laplace_landmarks.data.images import load_image
    from laplace_landmarks.detection import DlibHogDetector
    from laplace_landmarks.dlib_reference import dlib_points, load_dlib_predictor
    from laplace_landmarks.inference import Landmarker
    from laplace_landmarks.path_evaluation import load_labelled_faces, path_faces, split_label

    if faces < 1:
        raise LandmarksError(f"faces: must be >= 1, got {faces}")
    split = split or default_split(data, "test")
    shape_predictor = load_dlib_predictor(predictor)
    landmarkers = {name: Landmarker.load(name, threads=1, backend="onnx") for name in models}
    detector = DlibHogDetector(upsample=1)
    samples = load_labelled_faces(data, split, root, None)
    found = [f for f in path_faces(samples, detector) if f.detected][:faces]
    face_items = [(load_image(f.image_path), f.box) for f in found]
    photos = [rgb for rgb, _ in face_items if 1 <= len(detector(rgb)) <= 2]

    def dlib_face(item: tuple[np.ndarray, Any]) -> np.ndarray:
        return dlib_points(shape_predictor, item[0], item[1])

    def dlib_photo(rgb: np.ndarray) -> list[np.ndarray]:
        return [dlib_points(shape_predictor, rgb, d.box) for d in detector(rgb)]

    rows = []
    for name, landmarker in landmarkers.items():
        ours_face, dlib_face_s = ab_medians(
            lambda item, lm=landmarker: lm.predict(item[0], boxes=[item[1]]),
            dlib_face,
            face_items,
        )
        ours_photo, dlib_photo_s = ab_medians(
            lambda rgb, lm=landmarker: lm.predict(rgb), dlib_photo, photos
        )
        rows.append(
            SpeedRow(
                name,
                landmarker.passes,
                len(face_items),
                1e3 * ours_face,
                1e3 * dlib_face_s,
                len(photos),
                1e3 * ours_photo,
                1e3 * dlib_photo_s,
            )
        )
    import onnxruntime

    from laplace_landmarks.machine import cpu_name

    return {
        "data": split_label(data, split, root),
        "faces": len(face_items),
        "photos_one_or_two_faces": len(photos),
        "threads": 1,
        "dlib": dlib.__version__,
        "onnxruntime": onnxruntime.__version__,
        "cpu": cpu_name(),
        "core_install_mb": core_install_bytes() / 1e6,
        "rows": [row.to_dict() for row in rows],
    }


def core_install_bytes(package: str = "laplace-landmarks") -> int:
    """Bytes of the installed files of ``package`` and of every package its core requirements
    (no extras) pull in, as installed in this environment: what a fresh core install holds in
    site-packages (the same versions), without making one. This package counts as its own
    folder of files, so an editable install counts what a wheel would hold (give or take
    ``.dist-info`` and bytecode)."""
    seen: set[str] = set()
    todo = [package]
    total = 0
    while todo:
        name = _canonical(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a requirement for another platform or Python, not installed here
        if name == _canonical(package):
            total += _package_bytes()  # its own files (an editable install lists none of them)
        else:
            for file in dist.files or []:
                path = Path(str(file.locate()))
                if path.is_file():
                    total += path.stat().st_size
        for requirement in dist.requires or []:
            if re.search(r"\bextra\s*==", requirement):
                continue
            todo.append(re.split(r"[\s;<>=!~\[(]", requirement.strip(), maxsplit=1)[0])
    return total


def _package_bytes() -> int:
    """Bytes of this package's files (modules, shipped weights and samples), no caches."""
    folder = Path(__file__).resolve().parent
    return sum(
        p.stat().st_size for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def format_speed_table(result: dict[str, Any]) -> str:
    """The markdown table of :func:`compare_with_dlib`'s result, with what it was measured on."""
    lines = [
        f"{result['data']}: {result['faces']} faces with a HOG detection (per-face timing), "
        f"{result['photos_one_or_two_faces']} photos with one or two detections (per-photo "
        f"timing); one thread; dlib {result['dlib']}, ONNX Runtime {result['onnxruntime']}, "
        f"{result['cpu']}; medians, A/B alternating",
        "",
        "| model | passes | ms / face (ours / dlib) | × dlib | ms / photo, detector included "
        "(ours / dlib) | × dlib | frames/s (ours / dlib) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['model']} | {row['passes']} | {row['face_ms']:.2f} / "
            f"{row['dlib_face_ms']:.2f} | {row['face_ratio']:.2f}× | {row['photo_ms']:.1f} / "
            f"{row['dlib_photo_ms']:.1f} | {row['photo_ratio']:.2f}× | "
            f"{row['frames_per_s']:.0f} / {row['dlib_frames_per_s']:.0f} |"
        )
    lines += ["", f"core install (no extras): {result['core_install_mb']:.0f} MB of site-packages"]
    return "\n".join(lines) + "\n"
