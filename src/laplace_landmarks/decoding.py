"""From a generator's logits to points and scales, in crop pixels.

Points are (x, y), 0-based, with pixel centres at integers. A model whose config has an
``output_stride`` s > 1 (``rcn-lite``: 2) emits heatmaps s times coarser than its input; its
means and scales are mapped back to crop pixels here (see ``heatmaps.to_heatmap_units``).

A generator may carry two fitted buffers (see ``calibration.py``), applied here so that every
path (torch, ONNX export, ensemble, ``Landmarker``) shares them: ``point_offset`` (K, 2) is added
to the means, and ``scale_factor`` () multiplies the scales.
"""

from __future__ import annotations

import torch
from torch import Tensor

from laplace_landmarks.heatmaps import laplace_scale, softargmax, spatial_softmax, to_crop_units
from laplace_landmarks.models import normalize_input


def decode_logits(
    logits: Tensor,
    temperature: float = 1.0,
    offset: Tensor | None = None,
    stride: int = 1,
    factor: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """``(B, K, H, W)`` logits -> softargmax means ``(B, K, 2)`` and Laplace scales ``(B, K, 2)``,
    in crop pixels (heatmap pixels times ``stride``), (x, y), 0-based, pixel centres at integers.

    ``offset`` (K, 2), if given, is added to the means after the scale is measured (the model's
    fitted ``point_offset``); ``factor`` (a scalar tensor), if given, multiplies the heatmap's
    own scale (the model's fitted ``scale_factor``). See ``calibration.py`` for both.
    """
    probs = spatial_softmax(logits, temperature)
    mean = softargmax(probs)
    scale = laplace_scale(probs, mean)
    if stride != 1:
        mean, scale = to_crop_units(mean, stride), scale * stride
    if factor is not None:
        scale = scale * factor
    return (mean if offset is None else mean + offset), scale


def output_stride(model: torch.nn.Module) -> int:
    """Crop pixels per heatmap pixel of ``model`` (1 unless its config says otherwise)."""
    module = getattr(model, "module", model)  # DistributedDataParallel wraps the model
    return int(getattr(getattr(module, "config", None), "output_stride", 1))


def point_offset(model: torch.nn.Module) -> Tensor | None:
    """The model's fitted ``point_offset`` buffer, or None when it has none."""
    offset = getattr(model, "point_offset", None)
    return offset if isinstance(offset, Tensor) else None


def scale_factor(model: torch.nn.Module) -> Tensor | None:
    """The model's fitted ``scale_factor`` buffer (a scalar tensor), or None when it has none."""
    factor = getattr(model, "scale_factor", None)
    return factor if isinstance(factor, Tensor) else None


@torch.inference_mode()
def predict_crops(
    model: torch.nn.Module, crops: Tensor, batch_size: int = 256, temperature: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Run ``model`` (in eval mode) on uint8 crops ``(N, 3, S, S)``: points and scales ``(N, K, 2)``."""
    was_training = model.training
    model.eval()
    means, scales = [], []
    device = next((p.device for p in model.parameters()), crops.device)
    try:
        for start in range(0, len(crops), batch_size):
            logits = model(normalize_input(crops[start : start + batch_size].to(device)))
            mean, scale = decode_logits(
                logits.float(),
                temperature,
                point_offset(model),
                output_stride(model),
                scale_factor(model),
            )
            means.append(mean.cpu())
            scales.append(scale.cpu())
    finally:
        model.train(was_training)
    if not means:
        k = getattr(getattr(model, "config", None), "num_landmarks", 0)
        return torch.zeros(0, k, 2), torch.zeros(0, k, 2)
    return torch.cat(means), torch.cat(scales)
