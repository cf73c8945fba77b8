"""Accuracy metrics (NME, CED, AUC, FR) and calibration of the predicted Laplace scales.

Coordinates are (x, y), 0-based, with pixel centres at integers. Everything here is plain numpy;
torch tensors are accepted and converted (detached, moved to the CPU). Per-face errors are
fractions of the normaliser (0.05 means 5 %); only `summarize` reports NME in percent.

Normalisers (`normalizer`, SPEC §7):

- ``"inter-ocular"``: distance between the outer eye corners. 68 points (300W): 36 and 45.
  98 points (WFLW): 60 and 72. 29 points (COFW): 8 and 9, the convention of HRNet's
  ``compute_nme`` (a choice: COFW papers differ between inter-ocular and inter-pupil).
- ``"inter-pupil"``: distance between the eye centres. 68 points: the means of 36-41 and 42-47.
  98 points: the annotated pupils 96 and 97. 29 points: the annotated pupils 16 and 17.
- ``"box"``: ``sqrt(w * h)`` of the given face box ``(x0, y0, x1, y1)``, or, without boxes,
  of the bounding box of the visible ground-truth points (AFLW, any K).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from laplace_landmarks.errors import LandmarksError

NORMALIZERS = ("inter-ocular", "inter-pupil", "box")

# K -> (left indices, right indices); each side is averaged, then the distance taken.
_EYE_INDICES: dict[str, dict[int, tuple[tuple[int, ...], tuple[int, ...]]]] = {
    "inter-ocular": {68: ((36,), (45,)), 98: ((60,), (72,)), 29: ((8,), (9,))},
    "inter-pupil": {
        68: (tuple(range(36, 42)), tuple(range(42, 48))),
        98: ((96,), (97,)),
        29: ((16,), (17,)),
    },
}


def as_numpy(value: Any, name: str, dtype: type = np.float64) -> np.ndarray:
    """``value`` (array-like or torch tensor, on any device) as a numpy array of ``dtype``."""
    if hasattr(value, "detach"):  # a torch tensor; avoids importing torch here
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise LandmarksError(f"{name} must be numeric, got {type(value).__name__}") from exc


def _check_points(value: Any, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Return ``value`` as float64 of shape (N, K, 2), or ``shape`` when given."""
    arr = as_numpy(value, name, np.float64)
    if arr.ndim != 3 or arr.shape[-1] != 2:
        raise LandmarksError(f"{name} must have shape (N, K, 2), got {arr.shape}")
    if shape is not None and arr.shape != shape:
        raise LandmarksError(f"{name} must have shape {shape} to match, got {arr.shape}")
    return arr


def _check_visibility(value: Any, shape: tuple[int, int]) -> np.ndarray:
    """Return the (N, K) bool mask; None means every landmark is visible."""
    if value is None:
        return np.ones(shape, dtype=bool)
    mask = as_numpy(value, "visibility", np.float64)
    if mask.shape != shape:
        raise LandmarksError(f"visibility must have shape {shape}, got {mask.shape}")
    return mask > 0.5


def _check_finite_where_visible(arr: np.ndarray, visible: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(arr).all(axis=-1) & visible
    if bad.any():
        face, point = np.argwhere(bad)[0]
        raise LandmarksError(f"{name} has NaN or inf at visible landmark {point} of face {face}")


def _check_errors(errors: Any, name: str = "errors") -> np.ndarray:
    arr = as_numpy(errors, name, np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise LandmarksError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise LandmarksError(f"{name} must be finite and non-negative")
    return arr


def _box_size(points: np.ndarray, visible: np.ndarray, boxes: Any) -> np.ndarray:
    if boxes is None:
        inf = np.inf
        lo = np.where(visible[..., None], points, inf).min(axis=1)
        hi = np.where(visible[..., None], points, -inf).max(axis=1)
        width, height = (hi - lo).T
    else:
        box = as_numpy(boxes, "boxes", np.float64)
        if box.shape != (points.shape[0], 4):
            raise LandmarksError(f"boxes must have shape ({points.shape[0]}, 4), got {box.shape}")
        width, height = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    with np.errstate(invalid="ignore"):
        return np.sqrt(width * height)


def normalizer(
    points_gt: Any, kind: str = "inter-ocular", boxes: Any = None, visibility: Any = None
) -> np.ndarray:
    """The NME normaliser d of every face, in pixels.

    Args:
        points_gt: (N, K, 2) ground truth, (x, y), 0-based, pixel centres at integers.
        kind: one of ``NORMALIZERS`` (see the module docstring for the indices).
        boxes: (N, 4) face boxes ``(x0, y0, x1, y1)``, used by ``"box"`` only.
        visibility: (N, K) mask; ``"box"`` without boxes spans the visible points only.

    Returns:
        (N,) float64, each finite and positive (else ValueError naming the face).

    Example:
        >>> pts = np.zeros((1, 68, 2)); pts[0, 45] = (30.0, 40.0)
        >>> normalizer(pts, "inter-ocular")
        array([50.])
    """
    points = _check_points(points_gt, "points_gt")
    visible = _check_visibility(visibility, points.shape[:2])
    dist = _raw_normalizer(points, kind, boxes, visible)
    _check_normalizer(dist, kind, np.ones(dist.shape, dtype=bool), "points_gt")
    return dist


def _raw_normalizer(points: np.ndarray, kind: str, boxes: Any, visible: np.ndarray) -> np.ndarray:
    if kind == "box":
        return _box_size(points, visible, boxes)
    if kind not in _EYE_INDICES:
        raise LandmarksError(f"kind must be one of {NORMALIZERS}, got {kind!r}")
    table, num = _EYE_INDICES[kind], points.shape[1]
    if num not in table:
        known = ", ".join(str(k) for k in table)
        raise LandmarksError(f"kind {kind!r} needs K in ({known}), got K={num}; try 'box'")
    left, right = (list(side) for side in table[num])
    return np.linalg.norm(points[:, left].mean(axis=1) - points[:, right].mean(axis=1), axis=-1)


def _check_normalizer(dist: np.ndarray, kind: str, needed: np.ndarray, name: str) -> None:
    bad = ~(np.isfinite(dist) & (dist > 0)) & needed
    if bad.any():
        face = int(np.argmax(bad))
        raise LandmarksError(f"{name} gives a zero or undefined {kind} normaliser for face {face}")


def nme_per_face(
    pred: Any, gt: Any, visibility: Any = None, norm: str = "inter-ocular", boxes: Any = None
) -> np.ndarray:
    """Normalised mean error of every face: mean over visible k of ||pred_k - gt_k||_2 / d.

    Args:
        pred, gt: (N, K, 2) points, (x, y), 0-based, pixel centres at integers. Invisible
            points may hold NaN.
        visibility: (N, K) mask (bool or 0/1); invisible landmarks contribute nothing.
        norm: the normaliser kind (see `normalizer`); boxes: (N, 4) for ``"box"``.

    Returns:
        (N,) float64 fractions (not percent). A face without visible landmarks gets NaN.

    Example:
        >>> gt = np.zeros((1, 68, 2)); gt[0, 45, 0] = 100.0
        >>> pred = gt.copy(); pred[0, :, 1] += 5.0
        >>> nme_per_face(pred, gt)
        array([0.05])
    """
    gt_arr = _check_points(gt, "gt")
    pred_arr = _check_points(pred, "pred", gt_arr.shape)
    visible = _check_visibility(visibility, gt_arr.shape[:2])
    _check_finite_where_visible(gt_arr, visible, "gt")
    _check_finite_where_visible(pred_arr, visible, "pred")
    dist = np.where(visible, np.linalg.norm(pred_arr - gt_arr, axis=-1), 0.0)
    count = visible.sum(axis=1)
    d = _raw_normalizer(gt_arr, norm, boxes, visible)
    _check_normalizer(d, norm, count > 0, "gt")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, dist.sum(axis=1) / np.maximum(count, 1) / d, np.nan)


def ced_curve(
    errors: Any, max_error: float = 0.08, steps: int = 161
) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: the share of faces with error <= t for each threshold t.

    Args:
        errors: (N,) per-face NME fractions. max_error: the last threshold. steps: >= 2.

    Returns:
        thresholds (steps,) from 0 to ``max_error``, and fractions (steps,) in [0, 1].
    """
    errs = np.sort(_check_errors(errors))
    if steps < 2 or not max_error > 0:
        raise LandmarksError(f"need steps >= 2 and max_error > 0, got {steps}, {max_error}")
    thresholds = np.linspace(0.0, max_error, steps)
    return thresholds, np.searchsorted(errs, thresholds, side="right") / errs.size


def auc_at(errors: Any, threshold: float = 0.08) -> float:
    """Area under the CED from 0 to ``threshold``, divided by ``threshold``; in [0, 1].

    Computed exactly (no discretisation): the CED integral equals mean(max(0, threshold - e)).
    All-zero errors give 1; errors all above the threshold give 0.
    """
    errs = _check_errors(errors)
    if not threshold > 0:
        raise LandmarksError(f"threshold must be positive, got {threshold}")
    return float(np.clip(1.0 - errs / threshold, 0.0, 1.0).mean())


def failure_rate(errors: Any, threshold: float = 0.08) -> float:
    """The share of faces (a fraction in [0, 1]) whose error is strictly above ``threshold``."""
    return float((_check_errors(errors) > threshold).mean())


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they span."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], values.size]  # exclusive
    group_rank = (starts + ends + 1) / 2.0  # mean of starts+1 .. ends
    ranks = np.empty(values.size)
    ranks[order] = np.repeat(group_rank, ends - starts)
    return ranks


def spearman_correlation(a: Any, b: Any) -> float:
    """Spearman rank correlation of two (M,) samples, ties given average ranks.

    Returns NaN when M < 2 or either sample is constant (the correlation is undefined).
    """
    x = as_numpy(a, "a", np.float64).ravel()
    y = as_numpy(b, "b", np.float64).ravel()
    if x.shape != y.shape:
        raise LandmarksError(f"a and b must have the same size, got {x.size} and {y.size}")
    if x.size < 2:
        return math.nan
    rx, ry = _average_ranks(x), _average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry) / denom if denom > 0 else math.nan


def _float_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def calibration(
    pred: Any, gt: Any, scale: Any, visibility: Any = None, levels: Sequence[float] = (0.5, 0.9)
) -> dict[str, Any]:
    """How well predicted Laplace scales track the real errors (all in pixels).

    Args:
        pred, gt: (N, K, 2) points, (x, y), 0-based, pixel centres at integers.
        scale: (N, K, 2) predicted Laplace scale b per axis, positive, in pixels.
        visibility: (N, K) mask; only visible landmarks count.
        levels: central-interval probabilities p to check.

    Returns:
        A JSON-ready dict (NaN becomes None):

        - ``spearman``: rank correlation, pooled over visible points, between the predicted
          scale (mean of the two axes) and the Euclidean error; ``spearman_per_landmark``: (K,).
        - ``coverage_50``, ``coverage_90``: the share of per-axis |error| within the Laplace
          central interval half-width ``b * ln(1 / (1 - p))``, averaged over axes and visible
          points (a calibrated model gives p); ``coverage_50_per_axis``: ``[x, y]``.
        - ``mean_scale_px`` (the "heatmap spread") and ``mean_scale_px_per_axis``;
          ``mean_abs_error_px_per_axis`` (equals the mean b when calibrated).
    """
    gt_arr = _check_points(gt, "gt")
    pred_arr = _check_points(pred, "pred", gt_arr.shape)
    scale_arr = _check_points(scale, "scale", gt_arr.shape)
    visible = _check_visibility(visibility, gt_arr.shape[:2])
    for arr, name in ((gt_arr, "gt"), (pred_arr, "pred"), (scale_arr, "scale")):
        _check_finite_where_visible(arr, visible, name)
    if not visible.any():
        raise LandmarksError("visibility marks no landmark visible")
    if (scale_arr[visible] <= 0).any():
        raise LandmarksError("scale must be positive at every visible landmark")
    abs_err = np.abs(pred_arr - gt_arr)  # (N, K, 2)
    euclid, point_scale = np.linalg.norm(abs_err, axis=-1), scale_arr.mean(axis=-1)
    per_landmark = [
        spearman_correlation(point_scale[visible[:, k], k], euclid[visible[:, k], k])
        for k in range(gt_arr.shape[1])
    ]
    result: dict[str, Any] = {
        "spearman": _float_or_none(spearman_correlation(point_scale[visible], euclid[visible])),
        "spearman_per_landmark": [_float_or_none(v) for v in per_landmark],
    }
    for p in levels:
        inside = abs_err[visible] <= scale_arr[visible] * math.log(1.0 / (1.0 - p))  # (M, 2)
        key = f"coverage_{round(100 * p)}"
        result[key] = float(inside.mean())
        result[f"{key}_per_axis"] = inside.mean(axis=0).tolist()
    result["mean_scale_px"] = float(scale_arr[visible].mean())
    result["mean_scale_px_per_axis"] = scale_arr[visible].mean(axis=0).tolist()
    result["mean_abs_error_px_per_axis"] = abs_err[visible].mean(axis=0).tolist()
    return result


def summarize(
    pred: Any,
    gt: Any,
    scale: Any = None,
    visibility: Any = None,
    boxes: Any = None,
    norms: Sequence[str] = ("inter-ocular", "inter-pupil"),
    threshold: float = 0.08,
) -> dict[str, Any]:
    """All metrics of one split as a JSON-serialisable dict of python floats and lists.

    Args:
        pred, gt: (N, K, 2) points, (x, y), 0-based, pixel centres at integers.
        scale: optional (N, K, 2) predicted Laplace scales per axis, in pixels.
        visibility: (N, K) mask. boxes: (N, 4) ``(x0, y0, x1, y1)`` for the ``"box"`` norm.
        norms: normaliser kinds; AUC and FR use the first. threshold: for AUC and FR.

    Returns:
        ``num_faces``, ``num_faces_scored`` (faces with a visible landmark), ``nme_percent``
        ({norm: mean NME in %}), ``primary_norm``, ``threshold``, ``auc`` and ``failure_rate``
        (fractions), ``mean_scale_px`` and ``calibration`` (None without ``scale``).
    """
    if not norms:
        raise LandmarksError("norms must name at least one normaliser")
    per_norm = {n: nme_per_face(pred, gt, visibility, n, boxes) for n in norms}
    primary = per_norm[norms[0]]
    scored = np.isfinite(primary)
    if not scored.any():
        raise LandmarksError("visibility leaves no face with a visible landmark")
    calib = None if scale is None else calibration(pred, gt, scale, visibility)
    return {
        "num_faces": int(primary.size),
        "num_faces_scored": int(scored.sum()),
        "nme_percent": {n: float(100.0 * np.nanmean(e)) for n, e in per_norm.items()},
        "primary_norm": norms[0],
        "threshold": float(threshold),
        "auc": auc_at(primary[scored], threshold),
        "failure_rate": failure_rate(primary[scored], threshold),
        "mean_scale_px": None if calib is None else calib["mean_scale_px"],
        "calibration": calib,
    }


def _fmt(value: float | None, digits: int, factor: float = 1.0) -> str:
    return "–" if value is None else f"{factor * value:.{digits}f}"


def format_table(summary_by_split: dict[str, dict[str, Any]]) -> str:
    """A markdown table with one row per split, from `summarize` outputs.

    Columns: faces, NME % per normaliser (the union over splits), AUC and FR (%) at the
    threshold, and, when any split has scales, mean scale (px), Spearman and coverage (%).
    """
    if not summary_by_split:
        raise LandmarksError("summary_by_split is empty")
    summaries = list(summary_by_split.values())
    norms = list(dict.fromkeys(n for s in summaries for n in s["nme_percent"]))
    thr = f"{summaries[0]['threshold']:g}"
    calibrated = any(s.get("calibration") for s in summaries)
    header = ["split", "faces", *(f"NME % ({n})" for n in norms), f"AUC@{thr}", f"FR@{thr} %"]
    if calibrated:
        header += ["scale px", "Spearman", "cover 50 %", "cover 90 %"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for split, s in summary_by_split.items():
        row = [split, str(s["num_faces"]), *(_fmt(s["nme_percent"].get(n), 2) for n in norms)]
        row += [_fmt(s["auc"], 4), _fmt(s["failure_rate"], 2, 100.0)]
        if calibrated:
            c = s.get("calibration") or {}
            row += [_fmt(c.get("mean_scale_px"), 2), _fmt(c.get("spearman"), 3)]
            row += [_fmt(c.get("coverage_50"), 1, 100.0), _fmt(c.get("coverage_90"), 1, 100.0)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
