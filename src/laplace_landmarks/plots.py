"""Figures: CED curves, scale calibration, training curves, and landmark overlays.

Coordinates are (x, y), 0-based, with pixel centres at integers. matplotlib is optional: the
chart functions import it lazily and draw with the Agg canvas directly (no pyplot, so no global
backend state is touched); `draw_landmarks` needs only Pillow. Every PNG is written atomically
(a temporary file beside the target, then `os.replace`).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from laplace_landmarks.atomic import atomic_path
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.evaluation import as_numpy


def new_figure(ncols: int = 1, nrows: int = 1, size: tuple[float, float] = (5.0, 4.0)) -> Any:
    """A matplotlib Figure bound to an Agg canvas, with (nrows, ncols) axes."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "plotting needs matplotlib: pip install 'laplace-landmarks[plots]'"
        ) from exc
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file in the target folder, then rename it to ``path``."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def save_figure(fig: Any, path: str | os.PathLike[str]) -> Path:
    fig.tight_layout()
    return _atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def plot_ced(
    errors_by_name: Mapping[str, Any], path: str | os.PathLike[str], max_error: float = 0.08
) -> Path:
    """Plot CED curves, one per model or split, with AUC and FR at ``max_error`` in the legend.

    Args:
        errors_by_name: name -> (N,) per-face NME fractions (e.g. from `nme_per_face`).
        path: the PNG to write. max_error: the x-axis limit and the AUC/FR threshold.

    Returns:
        The written path.
    """
    from laplace_landmarks.evaluation import auc_at, ced_curve, failure_rate

    if not errors_by_name:
        raise LandmarksError("errors_by_name is empty")
    fig = new_figure()
    ax = fig.add_subplot()
    for name, errors in errors_by_name.items():
        thresholds, fraction = ced_curve(errors, max_error, steps=401)
        auc, fr = auc_at(errors, max_error), failure_rate(errors, max_error)
        label = f"{name} (AUC {auc:.3f}, FR {100 * fr:.1f} %)"
        ax.plot(100 * thresholds, fraction, label=label)
    ax.set(xlim=(0, 100 * max_error), ylim=(0, 1), xlabel="NME (%)", ylabel="share of faces")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return save_figure(fig, path)


def plot_calibration(scale: Any, errors: Any, path: str | os.PathLike[str], bins: int = 10) -> Path:
    """Binned predicted scale against the observed mean error (a reliability diagram).

    Points are split into ``bins`` equal-count bins by predicted scale; each bin plots its
    mean scale against its mean error. The dashed y = x line is calibration when ``errors`` are
    per-axis absolute errors matching per-axis scales (for Laplace(mu, b), E|x - mu| = b).

    Args:
        scale: predicted scales in pixels, any shape, e.g. (N, K, 2).
        errors: observed errors in pixels, the same number of elements. Non-finite pairs
            (e.g. invisible landmarks given as NaN) are dropped.
        path: the PNG to write. bins: the number of bins (fewer if there are fewer points).
    """
    from laplace_landmarks.evaluation import spearman_correlation

    s = as_numpy(scale, "scale").ravel()
    e = as_numpy(errors, "errors").ravel()
    if s.shape != e.shape:
        raise LandmarksError(f"scale and errors must have the same size, got {s.size}, {e.size}")
    keep = np.isfinite(s) & np.isfinite(e)
    s, e = s[keep], e[keep]
    if s.size == 0:
        raise LandmarksError("scale and errors have no finite pair to plot")
    groups = np.array_split(np.argsort(s, kind="stable"), min(bins, s.size))
    mean_s = np.array([s[g].mean() for g in groups])
    mean_e = np.array([e[g].mean() for g in groups])
    fig = new_figure()
    ax = fig.add_subplot()
    top = float(max(mean_s.max(), mean_e.max())) * 1.05 or 1.0
    ax.plot([0, top], [0, top], "--", color="grey", label="calibrated (y = x)")
    rho = spearman_correlation(s, e)
    ax.plot(mean_s, mean_e, "o-", label=f"observed (Spearman {rho:.3f})")
    ax.set(xlabel="predicted scale b (px)", ylabel="mean error (px)", xlim=(0, top), ylim=(0, top))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    return save_figure(fig, path)


def _read_numeric_columns(csv_path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Columns of a CSV with at least one number; empty or non-numeric cells become NaN."""
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns: dict[str, np.ndarray] = {}
    for name in rows[0].keys() if rows else []:
        values = []
        for row in rows:
            try:
                values.append(float(row[name]))
            except (TypeError, ValueError):
                values.append(math.nan)
        if np.isfinite(values).any():
            columns[name] = np.array(values)
    return columns


def plot_training_curves(
    metrics_csv_path: str | os.PathLike[str], path: str | os.PathLike[str]
) -> Path:
    """One panel per numeric column of a ``metrics.csv`` (train_loss, val_nme, ...) vs epoch.

    The x axis is the ``epoch`` column when present, else the row number. Missing cells are
    skipped, so validation metrics logged every few epochs still plot.
    """
    columns = _read_numeric_columns(metrics_csv_path)
    x = columns.pop("epoch", None)
    if not columns:
        raise LandmarksError(f"{metrics_csv_path} has no numeric column to plot besides epoch")
    if x is None:
        x = np.arange(len(next(iter(columns.values()))), dtype=np.float64)
    ncols = min(3, len(columns))
    nrows = math.ceil(len(columns) / ncols)
    fig = new_figure(ncols, nrows, size=(4.0, 3.0))
    for index, (name, values) in enumerate(columns.items()):
        ax = fig.add_subplot(nrows, ncols, index + 1)
        ok = np.isfinite(values) & np.isfinite(x)
        ax.plot(x[ok], values[ok], ".-" if ok.sum() < 30 else "-")
        ax.set(title=name, xlabel="epoch")
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


def draw_landmarks(
    image_uint8: Any,
    points: Any,
    scale: Any = None,
    path: str | os.PathLike[str] | None = None,
    color: tuple[int, int, int] = (0, 255, 0),
) -> Image.Image:
    """Draw landmarks, each with an ellipse whose semi-axes are its per-axis scale (1 b).

    Uses Pillow only. Args:
        image_uint8: (H, W, 3) or (H, W) uint8 array, or a PIL image.
        points: (K, 2) points, (x, y), 0-based, pixel centres at integers; NaN rows skipped.
        scale: optional (K, 2) Laplace scales (bx, by) in pixels.
        path: where to save (atomically; the format follows the suffix), or None.

    Returns:
        A new RGB PIL image; the input is not modified.
    """
    if isinstance(image_uint8, Image.Image):
        image = image_uint8.convert("RGB")
    else:
        array = np.asarray(image_uint8)
        if (
            array.dtype != np.uint8
            or array.ndim not in (2, 3)
            or array.shape[2:] not in ((), (3,), (4,))
        ):
            raise LandmarksError(
                f"image_uint8 must be (H, W), (H, W, 3) or (H, W, 4) uint8, got {array.shape} {array.dtype}"
            )
        image = Image.fromarray(array).convert("RGB")
    pts = as_numpy(points, "points")
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise LandmarksError(f"points must have shape (K, 2), got {pts.shape}")
    scales = None
    if scale is not None:
        scales = as_numpy(scale, "scale")
        if scales.shape != pts.shape:
            raise LandmarksError(f"scale must have shape {pts.shape}, got {scales.shape}")
    draw = ImageDraw.Draw(image)
    dot = max(1.0, min(image.size) / 200)
    for k, (x, y) in enumerate(pts):
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        if scales is not None and np.isfinite(scales[k]).all() and (scales[k] > 0).all():
            bx, by = scales[k]
            draw.ellipse([x - bx, y - by, x + bx, y + by], outline=(255, 200, 0))
        draw.ellipse([x - dot, y - dot, x + dot, y + dot], fill=color)
    if path is not None:
        suffix = Path(path).suffix.lower().lstrip(".") or "png"
        fmt = {"jpg": "JPEG", "jpeg": "JPEG"}.get(suffix, suffix.upper())
        _atomic_write(path, lambda tmp: image.save(tmp, format=fmt))
    return image
