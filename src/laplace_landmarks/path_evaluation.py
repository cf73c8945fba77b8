"""The Landmarker-path protocol: score labelled faces the way a user's photo goes through.

For every labelled face: run dlib's HOG detector (``DlibHogDetector(upsample=1)``, as
``Landmarker`` does) on the whole image and take the detection whose box holds the ground-truth
centre (the mean of the visible points), the nearest-centred one if several do. Where no detection
holds it, the face gets its **fallback box**: the square box that the detector-box crop rule
(:func:`~laplace_landmarks.detection.crop_from_detection`) maps exactly onto the paper's
ground-truth 5-point crop, so a fallback face is cropped as well as the rule allows and dlib's
shape predictor gets a box of the detector's size. Such faces are scored and counted
(``no_detection``). Then ``Landmarker.predict(image, boxes=[box])`` with the model's own
settings: box crop -> network -> 5-point re-crop -> (mirrored) final pass -> image pixels.

Reported: inter-ocular NME mean and median (percent), AUC@threshold, FR@threshold (percent), the
coverage of the 90 % Laplace interval per axis (``|error| <= b * ln(10)``, b the predicted scale
in image pixels; share of visible point-axes) and the Spearman correlation of per-face mean scale
with per-face NME. With a dlib predictor, its 68 points on exactly the same boxes are scored
beside ours (no uncertainty). Points are (x, y), 0-based, pixel centres at integers.

``boxes`` (:data:`BOX_SOURCES`) swaps the HOG box for another one, the same for every system:
how the models cope with boxes from other detectors, or drawn by hand.

dlib's ``shape_predictor_68_face_landmarks.dat`` was trained on iBUG 300-W, whose licence excludes
commercial use; it is used here only for comparison and never ships with this package.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from laplace_landmarks.detection import labelled_face_box
from laplace_landmarks.dlib_reference import (
    dlib_points,
    find_dlib_predictor,
    load_dlib_predictor,
    teacher_points,
)
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.evaluation import (
    auc_at,
    calibration,
    failure_rate,
    nme_per_face,
    spearman_correlation,
)

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class PathFace:
    """One labelled face and the box it is scored from.

    points: (K, 2) ground truth, image pixels; visible: (K,) bool. box: (x0, y0, x1, y1),
    continuous edge coordinates; detected: False when it is the fallback box.
    """

    image_path: Path
    points: np.ndarray
    visible: np.ndarray
    box: Box
    detected: bool


def face_for(sample: Any, rgb: np.ndarray, detector: Callable[[np.ndarray], list]) -> PathFace:
    """The :class:`PathFace` of one labelled sample: its detection, else its fallback box."""
    visible = np.ones(len(sample.points), bool) if sample.visibility is None else sample.visibility
    visible = np.asarray(visible, bool)
    box, detected = labelled_face_box(detector(rgb), sample.points, visible)
    return PathFace(Path(sample.image_path), np.asarray(sample.points), visible, box, detected)


def score(
    pred: np.ndarray,
    gt: np.ndarray,
    visible: np.ndarray,
    scale: np.ndarray | None = None,
    threshold: float = 0.08,
) -> dict[str, Any]:
    """The path protocol's numbers for (N, K, 2) predictions; ``scale`` adds the uncertainty ones.

    NMEs in percent, ``fr_percent`` in percent, ``auc`` a fraction; ``coverage_90`` and
    ``coverage_90_per_axis`` ([x, y]) are shares of visible point-axes inside ``b * ln(10)``.
    """
    nme = nme_per_face(pred, gt, visible)
    result: dict[str, Any] = {
        "faces": int(nme.size),
        "nme_percent_mean": float(100 * nme.mean()),
        "nme_percent_median": float(100 * np.median(nme)),
        "auc": auc_at(nme, threshold),
        "fr_percent": 100 * failure_rate(nme, threshold),
    }
    if scale is not None:
        calib = calibration(pred, gt, scale, visible, levels=(0.9,))
        face_scale = np.array([s[v].mean() for s, v in zip(scale, visible, strict=True)])
        result["coverage_90"] = calib["coverage_90"]
        result["coverage_90_per_axis"] = calib["coverage_90_per_axis"]
        result["mean_scale_px"] = calib["mean_scale_px"]
        rho = spearman_correlation(face_scale, nme)
        result["spearman_face_scale_nme"] = None if math.isnan(rho) else rho
    result["nme_per_face"] = [float(e) for e in nme]
    return result


def split_label(data: str, split: str, root: str | Path | None = None) -> str:
    """An honest name for the scored split: 300W's names the subsets present, else data/split."""
    if data.lower() == "300w":
        from laplace_landmarks.data.datasets import split_label_300w

        return split_label_300w(split, root)
    return f"{data}/{split}"


def load_labelled_faces(
    data: str, split: str, root: str | Path | None = None, limit: int | None = None
) -> list[Any]:
    """The first ``limit`` (all when None) labelled 68-point samples of a split, in file order."""
    from laplace_landmarks.data.datasets import load_dataset

    if limit is not None and limit < 1:
        raise LandmarksError(f"limit: must be >= 1, got {limit}")
    try:
        dataset = load_dataset(data, split, root=root)
    except (FileNotFoundError, ValueError) as exc:
        raise LandmarksError(f"data: {exc}") from exc
    if dataset.num_landmarks != 68:
        raise LandmarksError(f"{data}/{split}: the landmarker protocol needs 68 points")
    samples = [s for s in dataset.samples if s.points is not None][:limit]
    if not samples:
        raise LandmarksError(f"{data}/{split}: no labelled face")
    return samples


def load_landmarker(
    spec: str,
    flip_test: bool | None = None,
    threads: int | None = None,
    refine: bool | int | None = None,
    first_pass: str | bool | None = None,
) -> Any:
    """``Landmarker.load``: a shipped name takes its own ``flip_test`` and ``first_pass`` (None)
    from the index, a ``.pt``/``.safetensors`` file has them off unless asked."""
    from laplace_landmarks.inference import Landmarker

    if threads is not None and threads < 1:
        raise LandmarksError(f"threads: must be >= 1, got {threads}")
    return Landmarker.load(
        spec, refine=refine, threads=threads, flip_test=flip_test, first_pass=first_pass
    )


#: ``evaluate --protocol landmarker --boxes``: where each face's box comes from. ``detector``: the
#: HOG box (the headline protocol); ``points``: the tight box of the visible ground-truth points
#: (what landmark-fitted boxes look like); ``loose``: that box grown by 25 % of its width on each
#: side, 35 % of its height above and 15 % below (a detector that frames the head);
#: ``jitter``: the detector box with its centre moved by N(0, 0.08 of its side) per axis and its
#: side scaled by U(0.85, 1.15), seeded per face (``BOX_SEED`` + its index).
BOX_SOURCES = ("detector", "points", "loose", "jitter")
BOX_SEED = 0


def other_box(face: PathFace, source: str, index: int) -> Box:
    """``face``'s box for the ``source`` of :data:`BOX_SOURCES` (``index``: its place in the
    scored list, which seeds ``jitter``)."""
    if source == "detector":
        return face.box
    if source == "jitter":
        rng = np.random.default_rng(BOX_SEED + index)
        x0, y0, x1, y1 = face.box
        side = max(x1 - x0, y1 - y0)
        cx, cy = (
            (x0 + x1) / 2 + rng.normal(0, 0.08 * side),
            (y0 + y1) / 2 + rng.normal(0, 0.08 * side),
        )
        half = side * rng.uniform(0.85, 1.15) / 2
        return (cx - half, cy - half, cx + half, cy + half)
    shown = face.points[face.visible]
    (x0, y0), (x1, y1) = shown.min(axis=0), shown.max(axis=0)
    if source == "points":
        return (float(x0), float(y0), float(x1), float(y1))
    if source == "loose":
        w, h = x1 - x0, y1 - y0
        return (
            float(x0 - 0.25 * w),
            float(y0 - 0.35 * h),
            float(x1 + 0.25 * w),
            float(y1 + 0.15 * h),
        )
    raise LandmarksError(f"boxes: must be one of {BOX_SOURCES}, got {source!r:.40}")


def path_faces(
    samples: Sequence[Any],
    detector: Callable[[np.ndarray], list],
    progress: Callable[[str, int, int], None] | None = None,
) -> list[PathFace]:
    """:func:`face_for` of every labelled sample (the HOG pass over every image)."""
    from laplace_landmarks.data.images import load_image

    faces = []
    for index, sample in enumerate(samples):
        faces.append(face_for(sample, load_image(sample.image_path), detector))
        if progress is not None:
            progress("detect", index + 1, len(samples))
    return faces


def evaluate_path(
    landmarker: Any,
    faces: Sequence[PathFace],
    dlib_predictor: Any = None,
    threshold: float = 0.08,
    progress: Callable[[str, int, int], None] | None = None,
    dlib_tta: bool = False,
) -> dict[str, Any]:
    """Score ``landmarker`` (and a loaded dlib ``shape_predictor``, if given) on ``faces``.

    Each face is predicted by ``landmarker.predict(image, boxes=[face.box])``. Returns
    ``faces``, ``no_detection``, ``ours`` and ``dlib`` (None without a predictor; see
    :func:`score`), ``dlib_tta`` (with ``dlib_tta`` and a predictor: the ``pseudo-label --tta``
    teacher, :func:`~laplace_landmarks.dlib_reference.teacher_points`, on the same boxes; else
    None), ``seconds`` (ours, dlib: prediction time only) and ``per_face`` details.
    """
    from laplace_landmarks.data.images import load_image

    if not threshold > 0:
        raise LandmarksError(f"threshold: must be > 0, got {threshold}")
    if not faces:
        raise LandmarksError("faces: nothing to score")
    ours, ours_scale, theirs, steadied = [], [], [], []
    seconds = {"ours": 0.0, "dlib": 0.0}
    for index, face in enumerate(faces):
        rgb = load_image(face.image_path)
        start = time.perf_counter()
        predicted = landmarker.predict(rgb, boxes=[face.box])[0]
        seconds["ours"] += time.perf_counter() - start
        ours.append(predicted.points)
        ours_scale.append(predicted.scale)
        if dlib_predictor is not None:
            start = time.perf_counter()
            theirs.append(dlib_points(dlib_predictor, rgb, face.box))
            seconds["dlib"] += time.perf_counter() - start
            if dlib_tta:
                steadied.append(teacher_points(dlib_predictor, rgb, face.box, tta=True))
        if progress is not None:
            progress("predict", index + 1, len(faces))
    gt = np.stack([f.points for f in faces])
    visible = np.stack([f.visible for f in faces])
    ours_row = score(np.stack(ours), gt, visible, np.stack(ours_scale), threshold)
    dlib_row = score(np.stack(theirs), gt, visible, None, threshold) if theirs else None
    tta_row = score(np.stack(steadied), gt, visible, None, threshold) if steadied else None
    return {
        "faces": len(faces),
        "no_detection": sum(not f.detected for f in faces),
        "ours": ours_row,
        "dlib": dlib_row,
        "dlib_tta": tta_row,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "per_face": [_face_detail(f, i, ours_row, dlib_row) for i, f in enumerate(faces)],
    }


def _face_detail(face: PathFace, index: int, ours: dict, dlib: dict | None) -> dict[str, Any]:
    return {
        "image": face.image_path.name,
        "detected": face.detected,
        "box": [round(v, 2) for v in face.box],
        "nme_ours": ours["nme_per_face"][index],
        "nme_dlib": None if dlib is None else dlib["nme_per_face"][index],
    }


def run_landmarker_protocol(
    checkpoint: str,
    data: str,
    split: str | None = None,
    root: str | Path | None = None,
    *,
    limit: int | None = None,
    flip_test: bool | None = None,
    threads: int | None = None,
    dlib: bool = False,
    dlib_predictor: str | Path | None = None,
    dlib_tta: bool = False,
    threshold: float = 0.08,
    refine: bool | int | None = None,
    first_pass: str | bool | None = None,
    boxes: str = "detector",
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """``evaluate --protocol landmarker``: load everything, run :func:`path_faces` and
    :func:`evaluate_path`, and add the split's honest label, the settings and the machine.

    ``split`` None is the dataset's test split (``common`` for 300W). ``progress(stage, done,
    total)`` (stage "detect" or "predict") is called after each face. Bad input raises
    LandmarksError (one line)."""
    from laplace_landmarks.data.datasets import default_split
    from laplace_landmarks.machine import cpu_name

    if boxes not in BOX_SOURCES:
        raise LandmarksError(f"boxes: must be one of {BOX_SOURCES}, got {boxes!r:.40}")
    split = split or default_split(data, "test")
    predictor_path = find_dlib_predictor(dlib_predictor) if dlib or dlib_tta else None
    samples = load_labelled_faces(data, split, root, limit)
    landmarker = load_landmarker(checkpoint, flip_test, threads, refine, first_pass)
    predictor = None if predictor_path is None else load_dlib_predictor(predictor_path)
    faces = path_faces(samples, landmarker.detector, progress)
    faces = [replace(f, box=other_box(f, boxes, i)) for i, f in enumerate(faces)]
    result = evaluate_path(landmarker, faces, predictor, threshold, progress, dlib_tta)
    settings = {
        "checkpoint": str(checkpoint),
        "model": landmarker.name,
        "data": data,
        "split": split,
        "data_root": None if root is None else str(root),
        "protocol": "landmarker",
        "limit": limit,
        "refine": landmarker.refine,
        "flip_test": landmarker.flip_test,
        "first_pass": None if landmarker.first_pass is None else landmarker.first_pass.name,
        "threads": threads,
        "threshold": threshold,
        "detector": "dlib HOG, upsample 1",
        "fallback_box": "detector-equivalent box of the ground-truth 5-point crop",
        "boxes": boxes,
        "dlib_predictor": None if predictor_path is None else str(predictor_path),
        "dlib_tta": dlib_tta,
    }
    machine = {"cpu": cpu_name(), "cpu_count": os.cpu_count()}
    return {
        "label": split_label(data, split, root),
        "settings": settings,
        "machine": machine,
        **result,
    }


def format_path_report(result: dict[str, Any]) -> str:
    """The printed report: a header naming the split and settings, then one row per system."""
    s, threshold = result["settings"], result["settings"]["threshold"]
    lines = [
        f"Landmarker path on {result['label']} ({s['data']}/{s['split']}): {result['faces']} faces, "
        f"{result['no_detection']} without a HOG detection (scored from the fallback box)",
        f"model {s['model']} (refine {s['refine']}, flip_test {s['flip_test']}"
        + (f", first pass {s['first_pass']}" if s.get("first_pass") else "")
        + ("" if s.get("boxes", "detector") == "detector" else f"; boxes: {s['boxes']}")
        + "); "
        f"inter-ocular NME; CPU {result['machine']['cpu']}",
        "",
        f"| system | faces | NME % mean | NME % median | AUC@{threshold:g} | FR@{threshold:g} % "
        "| 90 % interval coverage (x, y) | Spearman(face scale, NME) |",
        "|---|---|---|---|---|---|---|---|",
        _row(s["model"], result["ours"]),
    ]
    if result["dlib"] is not None:
        lines.append(_row("dlib shape predictor (68, iBUG 300-W, non-commercial)", result["dlib"]))
    if result.get("dlib_tta") is not None:
        lines.append(
            _row(
                "dlib, median of 7 boxes and their mirrors (pseudo-label --tta)", result["dlib_tta"]
            )
        )
    return "\n".join(lines)


def _row(name: str, row: dict[str, Any]) -> str:
    coverage, rho = "-", "-"
    if "coverage_90" in row:
        x, y = row["coverage_90_per_axis"]
        coverage = f"{row['coverage_90']:.3f} ({x:.3f}, {y:.3f})"
        rho = (
            "n/a"
            if row["spearman_face_scale_nme"] is None
            else f"{row['spearman_face_scale_nme']:.3f}"
        )
    return (
        f"| {name} | {row['faces']} | {row['nme_percent_mean']:.2f} | "
        f"{row['nme_percent_median']:.2f} | {row['auc']:.3f} | {row['fr_percent']:.1f} | "
        f"{coverage} | {rho} |"
    )
