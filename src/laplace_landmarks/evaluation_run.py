"""Evaluate a trained generator on a dataset split: crop, predict, map back, score.

Coordinates are (x, y), 0-based, with pixel centres at integers. Points and scales are predicted
in crop pixels (80x80 by default) and mapped back to image pixels with each crop's similarity
transform (`Crop.to_image` / `Crop.to_image_scale`); NME, AUC and FR are computed in image pixels
(a similarity leaves NME unchanged). Two crop protocols:

- ``five-point`` (default, the standard protocol): the paper's 5-point crop from the ground truth.
- ``box``: the annotation's face box (else the points' bounding box); for sets without 68 points.
- ``detector``: the dlib HOG box, the realistic user path. Faces the detector misses are skipped;
  ``with_skipped_as_failures`` then counts each skipped face as a failure (NME above the
  threshold, contributing 0 to the AUC), so protocols compare fairly.

`evaluate_checkpoint` returns one JSON-ready dict; `format_report` renders it as text. With
``plots_dir`` it checks first, before any work, that matplotlib imports and the folder is writable;
a plot that still fails afterwards is reported in ``plot_error`` instead of losing the numbers.
"""

from __future__ import annotations

import importlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from laplace_landmarks.atomic import atomic_write_text
from laplace_landmarks.checkpoints import resolve_checkpoint
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.evaluation import calibration, format_table, nme_per_face, summarize

CROP_PROTOCOLS = ("five-point", "detector", "box")
MAX_SKIPPED_LISTED = 50


def check_output_folder(folder: str | Path, what: str) -> Path:
    """Create ``folder`` if needed and check that a file can be written in it.

    Raises LandmarksError naming ``what`` (e.g. ``--plots``) and the folder when it cannot."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise LandmarksError(f"{what} {folder}: cannot write files there ({reason})") from exc
    return folder


def check_output_file(path: str | Path, what: str) -> Path:
    """Check that ``path`` can be written (atomically, beside it) before the work that fills it."""
    path = Path(path)
    if path.is_dir():
        raise LandmarksError(f"{what} {path}: is a folder, expected a file name")
    check_output_folder(path.parent, what)
    return path


def check_plotting(folder: str | Path) -> Path:
    """Check that plots can be drawn (matplotlib imports) and written to ``folder``."""
    try:
        for module in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
            importlib.import_module(module)
    except ImportError as exc:
        raise LandmarksError(
            f"--plots {folder}: drawing plots needs matplotlib, which cannot be imported ({exc}); "
            "pip install 'laplace-landmarks[plots]', or leave out --plots"
        ) from exc
    return check_output_folder(folder, "--plots")


def _norms(num_landmarks: int) -> tuple[str, ...]:
    return ("inter-ocular", "inter-pupil") if num_landmarks == 68 else ("box",)


def load_split(config, dataset: str, split: str, root: str | None, crop: str, cache_dir: Path):
    """The labelled faces of ``dataset``/``split`` and their crop cache, cut for ``config``'s
    crop size by the ``crop`` protocol (one of :data:`CROP_PROTOCOLS`); returns (data, cache)."""
    from laplace_landmarks.data.cache import build_crop_cache
    from laplace_landmarks.data.datasets import load_dataset

    if crop not in CROP_PROTOCOLS:
        raise LandmarksError(f"crop: must be one of {CROP_PROTOCOLS}, got {crop!r}")
    try:
        data = load_dataset(dataset, split, root=root, seed=config.data.split_seed)
        cache = build_crop_cache(
            data,
            cache_dir,
            size=config.data.size,
            rule=crop,
            extension=config.data.extension,
            progress=False,
        )
    except LandmarksError:
        raise
    except (OSError, ValueError) as exc:  # missing or unreadable data, bad split
        raise LandmarksError(f"data: {exc}") from exc
    return data, cache


def _boxes_for(data, cache) -> np.ndarray | None:
    """Face boxes of the kept samples (for the ``box`` norm), matched in order; None if absent."""
    boxes, index = [], 0
    for sample in data.samples:
        if index < len(cache.paths) and str(sample.image_path) == cache.paths[index]:
            boxes.append(sample.box)
            index += 1
    if index != len(cache.paths) or any(box is None for box in boxes):
        return None
    return np.asarray(boxes, dtype=np.float64)


def _to_image(cache, mean: torch.Tensor, scale: torch.Tensor):
    """Predictions and ground truth of every face, mapped from crop to image pixels."""
    pred, pred_scale, gt = [], [], []
    for i in range(len(cache)):
        crop = cache.crop(i)
        pred.append(crop.to_image(mean[i].double().numpy()))
        pred_scale.append(crop.to_image_scale(scale[i].double().numpy()))
        gt.append(crop.to_image(cache.points[i].double().numpy()))
    return np.stack(pred), np.stack(pred_scale), np.stack(gt)


def _with_skipped(summary: dict[str, Any], skipped: int) -> dict[str, Any]:
    """AUC and FR over all faces, each skipped face counted as a failure."""
    scored = summary["num_faces_scored"]
    total = scored + skipped
    failures = summary["failure_rate"] * scored + skipped
    return {
        "num_faces": total,
        "num_skipped": skipped,
        "auc": summary["auc"] * scored / total if total else None,
        "failure_rate": failures / total if total else None,
    }


def evaluate_checkpoint(
    checkpoint: str | Path,
    dataset: str = "ytf68",
    split: str | None = None,
    *,
    root: str | None = None,
    crop: str = "five-point",
    cache_dir: str | Path | None = None,
    threads: int | None = None,
    threshold: float = 0.08,
    plots_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Score a checkpoint (path or shipped name) on ``dataset``/``split``; a JSON-ready dict.

    ``split`` None is the dataset's test split (`default_split`: ``common`` for 300W).

    Keys: ``checkpoint``, ``dataset``, ``split``, ``crop``, ``num_landmarks``, ``norms``,
    ``summary`` (`summarize` in image pixels, with ``calibration`` in image pixels),
    ``mean_scale_crop_px`` / ``mean_scale_image_px`` (mean predicted b), ``spearman_crop_px``
    (scale vs error in crop pixels, i.e. normalised for face size), ``per_face_nme`` (fractions,
    primary norm), ``num_skipped`` with the first skipped ``(path, reason)`` pairs, and
    ``with_skipped_as_failures`` (AUC and FR counting skipped faces as failures), and
    ``plots`` (the PNGs written to ``plots_dir``: see `write_plots`).
    """
    from laplace_landmarks.checkpoints import load_generator
    from laplace_landmarks.data.datasets import default_split
    from laplace_landmarks.decoding import predict_crops
    from laplace_landmarks.training import default_cache_dir

    split = split or default_split(dataset, "test")
    if plots_dir is not None:
        check_plotting(plots_dir)
    if threads:
        torch.set_num_threads(threads)
    path = resolve_checkpoint(checkpoint)
    model, config, metadata = load_generator(path)
    data, cache = load_split(
        config, dataset, split, root, crop, Path(cache_dir or default_cache_dir())
    )
    if len(cache) == 0:
        raise LandmarksError(f"{dataset}/{split}: no face could be cropped ({crop} protocol)")
    if cache.points.shape[1] != config.model.num_landmarks:
        raise LandmarksError(
            f"{dataset} has {cache.points.shape[1]} landmarks, the model predicts "
            f"{config.model.num_landmarks}"
        )
    mean, scale = predict_crops(model, cache.images, temperature=config.loss.temperature)
    pred, pred_scale, gt = _to_image(cache, mean, scale)
    norms = _norms(gt.shape[1])
    boxes = _boxes_for(data, cache) if "box" in norms else None
    summary = summarize(pred, gt, pred_scale, cache.visibility, boxes, norms, threshold)
    crop_calib = calibration(mean, cache.points, scale, cache.visibility)
    per_face = nme_per_face(pred, gt, cache.visibility, norms[0], boxes)
    plots, plot_error = [], None
    if plots_dir is not None:
        visible = cache.visibility.numpy()[..., None]
        abs_error = np.where(visible, (mean - cache.points).abs().numpy(), np.nan)
        label = f"{dataset}/{split} ({crop})"
        try:
            plots = write_plots(per_face, scale.numpy(), abs_error, plots_dir, label, threshold)
        except (ImportError, OSError, ValueError, RuntimeError) as exc:  # keep the numbers
            plot_error = f"--plots {plots_dir}: {type(exc).__name__}: {exc}"
    result = {
        "checkpoint": str(path),
        "checkpoint_metadata": metadata,
        "recipe": config.recipe,
        "width": config.model.width,
        "dataset": dataset,
        "split": split,
        "crop": crop,
        "num_landmarks": int(gt.shape[1]),
        "norms": list(norms),
        "summary": summary,
        "mean_scale_crop_px": crop_calib["mean_scale_px"],
        "mean_scale_image_px": summary["mean_scale_px"],
        "crop_size": int(config.data.size),
        "spearman_crop_px": crop_calib["spearman"],
        "per_face_nme": [float(v) for v in per_face],
        "num_skipped": len(cache.skipped),
        "skipped": [list(item) for item in cache.skipped[:MAX_SKIPPED_LISTED]],
        "with_skipped_as_failures": _with_skipped(summary, len(cache.skipped)),
        "plots": plots,
    }
    if plot_error is not None:
        result["plot_error"] = plot_error
    return result


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def format_report(result: dict[str, Any]) -> str:
    """A text report: the metrics table plus the scale and skipped-face lines."""
    summary, size = result["summary"], result["crop_size"]
    lines = [
        f"{result['dataset']}/{result['split']} with {result['checkpoint']} "
        f"({result['crop']} crops, {result['num_landmarks']} points, image pixels)",
        "",
        format_table({result["split"]: summary}),
        "",
        f"mean predicted b: {result['mean_scale_crop_px']:.3f} px in {size}x{size} crop pixels, "
        f"{result['mean_scale_image_px']:.3f} image px",
    ]
    calib = summary["calibration"]
    rho_crop, rho_image = result["spearman_crop_px"], calib["spearman"]
    lines.append(
        "Spearman(scale, error): "
        + ("–" if rho_crop is None else f"{rho_crop:.3f}")
        + " in crop px (face-size normalised), "
        + ("–" if rho_image is None else f"{rho_image:.3f}")
        + " in image px; per landmark in the JSON"
    )
    lines.append(
        f"Laplace interval coverage: 50% -> {_pct(calib['coverage_50'])}%, "
        f"90% -> {_pct(calib['coverage_90'])}% (calibrated: 50 / 90)"
    )
    lines.append(f"skipped faces: {result['num_skipped']} (not cropped or not detected)")
    if result["crop"] == "detector" or result["num_skipped"]:
        extra = result["with_skipped_as_failures"]
        thr = f"{summary['threshold']:g}"
        lines.append(
            f"counting skipped faces as failures ({extra['num_faces']} faces): "
            f"AUC@{thr} {extra['auc']:.4f}, FR@{thr} {_pct(extra['failure_rate'])}%"
        )
    return "\n".join(lines)


def write_json_atomic(payload: Any, path: str | Path) -> Path:
    """Write ``payload`` as indented JSON via a temporary file and a rename.

    Raises LandmarksError naming the path when it cannot be written."""
    try:
        return atomic_write_text(path, json.dumps(payload, indent=2))
    except OSError as exc:
        raise LandmarksError(f"{path}: cannot write the JSON ({exc.strerror or exc})") from exc


def write_plots(
    per_face_nme: np.ndarray,
    scale_crop: np.ndarray,
    abs_error_crop: np.ndarray,
    folder: str | Path,
    label: str,
    threshold: float = 0.08,
) -> list[str]:
    """``ced.png`` (per-face NME) and ``calibration.png`` (per-axis b vs |error|, crop px)."""
    from laplace_landmarks.plots import plot_calibration, plot_ced

    folder = Path(folder)
    errors = per_face_nme[np.isfinite(per_face_nme)]
    ced = plot_ced({label: errors}, folder / "ced.png", threshold)
    calib = plot_calibration(scale_crop, abs_error_crop, folder / "calibration.png")
    return [str(ced), str(calib)]
