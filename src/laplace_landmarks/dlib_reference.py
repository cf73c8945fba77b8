"""dlib's 68-point shape predictor: the reference every result is measured beside, and the
teacher ``data pseudo-label`` asks for labels.

Finding and loading the model file, dlib's points for one box, and the steadier teacher
(:func:`teacher_points` with ``tta``: the per-coordinate median over a few moved boxes and their
mirror images). dlib is imported inside the functions, so importing this module needs only numpy.

dlib's ``shape_predictor_68_face_landmarks.dat`` was trained on iBUG 300-W, whose licence excludes
commercial use; it is used here only for comparison and for pseudo-labels, and never ships with
this package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from laplace_landmarks.data.markups import MIRROR_PERMUTATIONS
from laplace_landmarks.errors import LandmarksError

Box = tuple[float, float, float, float]
DEBIAN_PREDICTOR = Path("/usr/share/dlib/shape_predictor_68_face_landmarks.dat")
INSTALL_HINT = "pip install face-recognition-models (or apt-get install libdlib-data)"


def find_dlib_predictor(path: str | Path | None = None) -> Path:
    """dlib's 68-point model: ``path``, else face-recognition-models' copy, else Debian's.

    Raises LandmarksError (one line, with how to install) when none is there.
    """
    if path is not None:
        if not Path(path).is_file():
            raise LandmarksError(f"dlib-predictor: {path} is not a file")
        return Path(path)
    found = _face_recognition_models_file()
    if found is not None:
        return found
    if DEBIAN_PREDICTOR.is_file():
        return DEBIAN_PREDICTOR
    raise LandmarksError(f"dlib: shape_predictor_68_face_landmarks.dat not found; {INSTALL_HINT}")


def _face_recognition_models_file() -> Path | None:
    """The 68-point file inside face-recognition-models, found without importing the package
    (its ``pose_predictor_model_location()`` needs ``pkg_resources``, gone from new setuptools)."""
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        return None
    found = Path(spec.origin).parent / "models" / "shape_predictor_68_face_landmarks.dat"
    return found if found.is_file() else None


def load_dlib_predictor(path: str | Path | None = None) -> Any:
    """dlib's ``shape_predictor`` from ``path`` (see :func:`find_dlib_predictor`); a file dlib
    cannot read is a one-line LandmarksError naming it."""
    import dlib

    found = find_dlib_predictor(path)
    try:
        return dlib.shape_predictor(str(found))
    except RuntimeError as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LandmarksError(f"dlib: {found} is not a dlib shape predictor ({message})") from None


def dlib_points(predictor: Any, rgb: np.ndarray, box: Box) -> np.ndarray:
    """dlib's (68, 2) points for one box; the box is rounded to dlib's inclusive pixel rectangle
    (a HOG detection's own rectangle comes back unchanged)."""
    import dlib

    x0, y0, x1, y1 = box
    rect = dlib.rectangle(round(x0 + 0.5), round(y0 + 0.5), round(x1 - 0.5), round(y1 - 0.5))
    return np.array([(p.x, p.y) for p in predictor(rgb, rect).parts()], dtype=np.float64)


#: (dx, dy, scale) of the boxes the ``tta`` teacher runs on: shifts in units of the box width.
TTA_BOXES: tuple[tuple[float, float, float], ...] = (
    (0.0, 0.0, 1.0),
    (0.04, 0.0, 1.0),
    (-0.04, 0.0, 1.0),
    (0.0, 0.04, 1.0),
    (0.0, -0.04, 1.0),
    (0.0, 0.0, 1.06),
    (0.0, 0.0, 0.94),
)


def teacher_points(predictor: Any, rgb: np.ndarray, box: Box, tta: bool = False) -> np.ndarray:
    """dlib's 68 points (float64, image pixels) for ``box`` in ``rgb``; with ``tta`` the
    per-coordinate median over :data:`TTA_BOXES` in the image and in its mirror image."""
    if not tta:
        return dlib_points(predictor, rgb, box)
    width = rgb.shape[1]
    mirrored = np.ascontiguousarray(rgb[:, ::-1])
    permutation = np.asarray(MIRROR_PERMUTATIONS[68])
    x0, y0, x1, y1 = box
    side, cx, cy = x1 - x0, (x0 + x1) / 2, (y0 + y1) / 2
    runs = []
    for dx, dy, scale in TTA_BOXES:
        half_w, half_h = (x1 - x0) * scale / 2, (y1 - y0) * scale / 2
        mx, my = cx + dx * side, cy + dy * side
        moved = (mx - half_w, my - half_h, mx + half_w, my + half_h)
        runs.append(dlib_points(predictor, rgb, moved))
        back = dlib_points(
            predictor, mirrored, (width - moved[2], moved[1], width - moved[0], moved[3])
        )
        back = back[permutation]
        back[:, 0] = width - 1 - back[:, 0]
        runs.append(back)
    return np.median(np.stack(runs), axis=0)
