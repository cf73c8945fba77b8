"""Post-training point calibration: a per-landmark shift of the decoded means, fitted on train.

Trained heatmap models carry a small systematic offset per landmark. On ytf68 the shipped
flip-augmented models put the points about 0.5 crop px to the left of their labels *on their own
training faces*: flip augmentation forces a left-right symmetric model, while the labels (made by an
automatic detector, see ``../shared/data/README.md``) are not symmetric. A constant ``(K, 2)``
shift, the mean residual ``label - prediction`` over the training crops, removes it. It is stored in
the generator's ``point_offset`` buffer, so every path (torch, ONNX export, evaluation) applies it.

Fit on the training split only; check on the validation split; the test split is never used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from laplace_landmarks.errors import LandmarksError


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
) -> dict[str, Any]:
    """Fit ``point_offset`` on ``fit_split``, report NME on ``check_split``, write safetensors.

    Returns a JSON-ready dict: the NME % (primary norm, ground-truth crops) of ``check_split``
    and ``fit_split`` before and after, and the mean and largest offset length in crop px.
    """
    from laplace_landmarks.checkpoints import load_generator, save_weights
    from laplace_landmarks.evaluation_run import _load_split, resolve_checkpoint
    from laplace_landmarks.training import default_cache_dir, validation_nme

    if "test" in (fit_split, check_split):
        raise LandmarksError("calibrate: the test split is for scoring only, not for fitting")
    out = Path(out)
    if out.suffix != ".safetensors":
        raise LandmarksError(f"out: must end in .safetensors, got {out}")
    if threads:
        torch.set_num_threads(threads)
    path = resolve_checkpoint(checkpoint)
    if out.resolve() == path.resolve():
        raise LandmarksError("out: must differ from the checkpoint (it is never overwritten)")
    model, config, metadata = load_generator(path)
    cache_root = Path(cache_dir or default_cache_dir())
    caches = {
        split: _load_split(config, dataset, split, root, "five-point", cache_root)[1]
        for split in (fit_split, check_split)
    }

    def nme(split: str) -> float:
        return validation_nme(model, caches[split])[0]

    before = {split: nme(split) for split in caches}
    fit = caches[fit_split]
    offset = fit_point_offset(model, fit.images, fit.points, fit.visibility)
    with torch.no_grad():
        model.point_offset.copy_(offset)
    after = {split: nme(split) for split in caches}
    lengths = offset.norm(dim=-1)
    result = {
        "checkpoint": str(path),
        "out": str(out),
        "dataset": dataset,
        "fit_split": fit_split,
        "check_split": check_split,
        "nme_before": before,
        "nme_after": after,
        "mean_offset_px": [float(v) for v in offset.mean(0)],
        "offset_length_mean_px": float(lengths.mean()),
        "offset_length_max_px": float(lengths.max()),
    }
    extra = {k: v for k, v in metadata.items() if k != "config"}
    extra["point_offset"] = (
        f"fitted on {dataset}/{fit_split} ({len(fit)} faces); {check_split} NME "
        f"{before[check_split]:.3f} -> {after[check_split]:.3f} %"
    )
    save_weights(model, config, out, extra=extra)
    return result
