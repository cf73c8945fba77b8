"""Post-training calibration: a per-landmark shift of the means (fitted on train) and one factor
on the Laplace scales (fitted on validation).

Trained heatmap models carry a small systematic offset per landmark. On ytf68 the shipped
flip-augmented models put the points about 0.5 crop px to the left of their labels *on their own
training faces*: flip augmentation forces a left-right symmetric model, while the labels (made by an
automatic detector, see ``../shared/data/README.md``) are not symmetric. A constant ``(K, 2)``
shift, the mean residual ``label - prediction`` over the training crops, removes it. It is stored in
the generator's ``point_offset`` buffer, so every path (torch, ONNX export, evaluation) applies it.

Fit on the training split only; check on the validation split; the test split is never used.

**Scale factor.** Each point is a ``Laplace(mean, b)`` per axis, so its central 90 % interval is
``|error| <= b * ln(10)``. On real labels a model's heatmap spread b can be too narrow or too
wide. One scalar ``c``, stored in the generator's ``scale_factor`` buffer and multiplied into b by
every path, corrects that. It is fitted on the *validation* split after the offset is applied (the
offset was fitted on train, so val errors are honest): ``c`` is the 90 % quantile over visible
(point, axis) pairs of ``|error| / (b * ln 10)``, which makes the 90 % interval cover 90 % of them.
The quantile is used rather than the Laplace MLE ``mean(|error| / b)`` because the target is the
interval's coverage and real errors have heavier tails than a Laplace (the MLE is reported too).
One scalar, not one per landmark: it is robust with a few hundred validation faces, and it
commutes with the left-right mirror of the flip test.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.run_config import CHOICES


@torch.inference_mode()
def fit_point_offset(
    model: torch.nn.Module, images: torch.Tensor, points: torch.Tensor, visibility: torch.Tensor
) -> torch.Tensor:
    """Mean ``label - prediction`` per landmark over the crops, in crop pixels: ``(K, 2)``.

    The model's current ``point_offset`` is ignored (the fit is of the raw decoded means).
    Landmarks never visible get 0.
    """
    from laplace_landmarks.decoding import predict_crops

    if not isinstance(getattr(model, "point_offset", None), torch.Tensor):
        raise LandmarksError("calibrate: this model has no point_offset buffer")
    if len(images) == 0:
        raise LandmarksError("calibrate: no training crops to fit on")
    saved = model.point_offset.clone()
    model.point_offset.zero_()
    try:
        mean, _ = predict_crops(model, images)
    finally:
        model.point_offset.copy_(saved)
    vis = visibility.bool()[..., None].expand_as(mean)
    residual = torch.where(vis, points.float() - mean, torch.zeros_like(mean))
    counts = vis.sum(0).clamp_min(1)
    return residual.sum(0) / counts


def scale_factor_for_coverage(
    error: torch.Tensor, scale: torch.Tensor, visibility: torch.Tensor, level: float = 0.9
) -> float:
    """The factor c on the scales that puts a share ``level`` of the visible per-axis errors inside
    the Laplace central interval ``|error| <= c * b * ln(1 / (1 - level))``.

    Args:
        error: ``(N, K, 2)`` label - prediction, crop pixels, (x, y).
        scale: ``(N, K, 2)`` predicted Laplace scale b, positive where visible.
        visibility: ``(N, K)`` mask; only visible landmarks count.
        level: the interval's probability, in (0, 1).

    Returns:
        The smallest ratio ``|error| / (b ln(1 / (1 - level)))`` with at least ``level`` of all
        ratios at or below it (the empirical quantile), so the fitted coverage is >= ``level``.
    """
    ratio = _error_to_scale_ratio(error, scale, visibility, level)
    rank = max(1, math.ceil(level * ratio.numel() - 1e-9))
    return float(ratio.kthvalue(rank).values)


def _error_to_scale_ratio(
    error: torch.Tensor, scale: torch.Tensor, visibility: torch.Tensor, level: float
) -> torch.Tensor:
    """The flat float64 ``|error| / (b ln(1 / (1 - level)))`` over visible (point, axis) pairs."""
    if not 0.0 < level < 1.0:
        raise LandmarksError(f"calibrate: coverage level must be in (0, 1), got {level}")
    if error.ndim != 3 or error.shape[-1] != 2 or scale.shape != error.shape:
        raise LandmarksError(
            f"calibrate: error and scale must both be (N, K, 2), got {tuple(error.shape)} "
            f"and {tuple(scale.shape)}"
        )
    if visibility.shape != error.shape[:2]:
        raise LandmarksError(
            f"calibrate: visibility must be {tuple(error.shape[:2])}, got {tuple(visibility.shape)}"
        )
    visible = visibility.bool()
    err, b = error[visible].double().abs(), scale[visible].double()
    if err.numel() == 0:
        raise LandmarksError("calibrate: no visible landmark to fit the scale factor on")
    if not bool(torch.isfinite(err).all() and torch.isfinite(b).all() and (b > 0).all()):
        raise LandmarksError("calibrate: errors must be finite and scales finite and positive")
    return (err / (b * math.log(1.0 / (1.0 - level)))).flatten()


@dataclass(frozen=True)
class ScaleFit:
    """A fitted ``scale_factor`` and what it does on the data it was fitted on.

    ``coverage_before`` / ``coverage_after``: the share of visible (point, axis) pairs inside the
    ``level`` Laplace interval with the raw scale (factor 1) and with ``factor``;
    ``mle_factor``: the Laplace maximum-likelihood factor ``mean(|error| / b)``, for comparison.
    """

    factor: float
    mle_factor: float
    coverage_before: float
    coverage_after: float
    level: float
    faces: int


@torch.inference_mode()
def fit_scale_factor(
    model: torch.nn.Module,
    images: torch.Tensor,
    points: torch.Tensor,
    visibility: torch.Tensor,
    level: float = 0.9,
) -> ScaleFit:
    """Fit ``scale_factor`` on uint8 crops ``(N, 3, S, S)`` and their labels ``(N, K, 2)`` (crop
    pixels, (x, y), 0-based, pixel centres at integers). The model's current ``scale_factor`` is
    ignored (the fit is of the raw decoded scales); its ``point_offset`` is applied. The model is
    not changed.
    """
    from laplace_landmarks.decoding import predict_crops

    if not isinstance(getattr(model, "scale_factor", None), torch.Tensor):
        raise LandmarksError("calibrate: this model has no scale_factor buffer")
    if len(images) == 0:
        raise LandmarksError("calibrate: no validation crops to fit the scale factor on")
    saved = model.scale_factor.clone()
    model.scale_factor.fill_(1.0)
    try:
        mean, scale = predict_crops(model, images)
    finally:
        model.scale_factor.copy_(saved)
    error = points.float() - mean
    factor = scale_factor_for_coverage(error, scale, visibility, level)
    ratio = _error_to_scale_ratio(error, scale, visibility, level)
    return ScaleFit(
        factor=factor,
        mle_factor=float(ratio.mean() * math.log(1.0 / (1.0 - level))),
        coverage_before=float((ratio <= 1.0).double().mean()),
        coverage_after=float((ratio <= factor).double().mean()),
        level=level,
        faces=len(images),
    )


def calibrate_weights(
    checkpoint: str | Path,
    out: str | Path,
    *,
    dataset: str = "ytf68",
    fit_split: str = "trainval-train",
    check_split: str = "val",
    root: str | None = None,
    cache_dir: str | Path | None = None,
    threads: int | None = 1,
    fit_scale: bool = True,
    crop: str | None = None,
) -> dict[str, Any]:
    """Fit ``point_offset`` on ``fit_split``, report NME on ``check_split``, then (unless
    ``fit_scale`` is False) fit ``scale_factor`` on ``check_split``; write safetensors.

    ``crop`` is how the faces are cut, ``"five-point"`` (ground-truth 5-point crops) or
    ``"detector"`` (the detector's box, the one-pass path); None: the crops the model was
    trained on (``config.data.crop``), which are the crops its own inference path feeds it.

    Returns a JSON-ready dict: the NME % (primary norm, ground-truth crops) of ``check_split``
    and ``fit_split`` before and after, the mean and largest offset length in crop px, and
    ``scale_factor`` with the 90 % interval coverage of ``check_split`` before (raw scale, new
    offset) and after (``scale_fit``; None with ``fit_scale=False``, which keeps the file's factor).
    """
    from laplace_landmarks.checkpoints import load_generator, resolve_checkpoint, save_weights
    from laplace_landmarks.evaluation_run import load_split
    from laplace_landmarks.training import default_cache_dir, validation_nme

    if "test" in (fit_split, check_split):
        raise LandmarksError("calibrate: the test split is for scoring only, not for fitting")
    out = Path(out)
    if out.suffix != ".safetensors":
        raise LandmarksError(f"out: must end in .safetensors, got {out}")
    if threads is not None and threads < 1:
        raise LandmarksError(f"calibrate: threads must be >= 1, got {threads}")
    if threads:
        torch.set_num_threads(threads)
    path = resolve_checkpoint(checkpoint)
    if out.resolve() == path.resolve():
        raise LandmarksError("out: must differ from the checkpoint (it is never overwritten)")
    model, config, metadata = load_generator(path)
    crop = crop or config.data.crop
    if crop not in CHOICES["data.crop"]:
        choices = " or ".join(repr(c) for c in CHOICES["data.crop"])
        raise LandmarksError(f"crop: must be {choices}, got {crop!r}")
    cache_root = Path(cache_dir or default_cache_dir())
    caches = {
        split: load_split(config, dataset, split, root, crop, cache_root)[1]
        for split in (fit_split, check_split)
    }
    for split, cache in caches.items():
        if len(cache) and cache.points.shape[1] != config.model.num_landmarks:
            raise LandmarksError(
                f"calibrate: {dataset}/{split} has {cache.points.shape[1]} landmarks, {path} "
                f"predicts {config.model.num_landmarks}"
            )

    def nme(split: str) -> float:
        return validation_nme(model, caches[split])[0]

    before = {split: nme(split) for split in caches}
    fit = caches[fit_split]
    offset = fit_point_offset(model, fit.images, fit.points, fit.visibility)
    with torch.no_grad():
        model.point_offset.copy_(offset)
    after = {split: nme(split) for split in caches}
    scale_fit = None
    if fit_scale:
        check = caches[check_split]
        scale_fit = fit_scale_factor(model, check.images, check.points, check.visibility)
        with torch.no_grad():
            model.scale_factor.fill_(scale_fit.factor)
    lengths = offset.norm(dim=-1)
    result = {
        "checkpoint": str(path),
        "out": str(out),
        "dataset": dataset,
        "fit_split": fit_split,
        "check_split": check_split,
        "crop": crop,
        "nme_before": before,
        "nme_after": after,
        "mean_offset_px": [float(v) for v in offset.mean(0)],
        "offset_length_mean_px": float(lengths.mean()),
        "offset_length_max_px": float(lengths.max()),
        "scale_factor": float(model.scale_factor),
        "scale_fit": None if scale_fit is None else dataclasses.asdict(scale_fit),
    }
    extra = {k: v for k, v in metadata.items() if k != "config"}
    extra["point_offset"] = (
        f"fitted on {dataset}/{fit_split} ({len(fit)} faces, {crop} crops); {check_split} NME "
        f"{before[check_split]:.3f} -> {after[check_split]:.3f} %"
    )
    if scale_fit is not None:
        extra["scale_factor"] = f"{scale_fit.factor:.6g}"
        extra["scale_factor_fit"] = (
            f"fitted on {dataset}/{check_split} ({scale_fit.faces} faces) after the point "
            f"offset; 90 % interval coverage {100 * scale_fit.coverage_before:.1f} -> "
            f"{100 * scale_fit.coverage_after:.1f} %"
        )
    save_weights(model, config, out, extra=extra, verify=True)
    from laplace_landmarks.alignment import DEFAULT_MAX_SCALE, faceless_relative_scales
    from laplace_landmarks.inference import Landmarker

    # honest on junk: the calibrated model's scale on boxes over pure noise (no face); the
    # model in memory is what save_weights wrote and verified, so no second read of the file
    junk = faceless_relative_scales(Landmarker(model, config, backend="torch"))
    result["faceless_relative_scale"] = {
        "images": len(junk),
        "median": float(np.median(junk)),
        "min": float(junk.min()),
        "align_threshold": DEFAULT_MAX_SCALE,
    }
    return result
