"""ONNX export of a generator with its decoding, and its verification against torch.

The exported graph is the generator *plus* its decoding (spatial softmax, softargmax mean and
Laplace scale), so ONNX Runtime alone maps crops to landmarks:

    crops   (N, 3, S, S) uint8 RGB in [0, 255] (or float32 in [0, 1] with ``input_dtype``)
    points  (N, K, 2) float32, crop pixels, (x, y), 0-based, pixel centres at integers
    scale   (N, K, 2) float32, the Laplace scale b per axis, crop pixels (times the model's
            fitted ``scale_factor``, as in torch)

The file's ONNX metadata (``metadata_props``) holds the fitted ``point_offset`` (JSON) and, when
given, the run ``config`` (JSON), so that ONNX Runtime alone, without torch or the weights file,
runs it as a :class:`~laplace_landmarks.inference.Landmarker` (see
:mod:`laplace_landmarks.onnx_runtime`). The batch axis ``N`` is dynamic. Export uses the dynamo exporter
(``torch.onnx.export(..., dynamo=True)``); uint8 input exports cleanly (one ``Cast``) and is the
default, because it is what :meth:`Landmarker.predict_batch` takes and it moves 4x fewer bytes.
Files are written atomically (temporary file in the same folder, then ``os.replace``).

The rest of the ONNX support lives beside it: the ONNX Runtime session
(:mod:`laplace_landmarks.onnx_runtime`), the on-the-fly export cache behind ``backend="onnx"``
(:mod:`laplace_landmarks.onnx_cache`), int8 quantisation (:mod:`laplace_landmarks.quantization`)
and the sample crops to verify and calibrate on (:mod:`laplace_landmarks.data.samples`).
``OnnxSession``, ``require_onnx``, ``INSTALL_HINT``, ``quantize_onnx`` and ``sample_crops`` are
re-exported here for the callers that import them from this module.

Needs the optional packages: ``pip install laplace-landmarks[onnx]``.

Example:
    >>> from laplace_landmarks.export import export_onnx, verify_onnx   # doctest: +SKIP
    >>> lm = Landmarker.pretrained("rcn-fast")                          # doctest: +SKIP
    >>> export_onnx(lm.model, "rcn-fast.onnx")                         # doctest: +SKIP
    >>> verify_onnx("rcn-fast.onnx", lm.model, sample_crops())          # doctest: +SKIP
    6.1e-06
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from laplace_landmarks.atomic import atomic_path
from laplace_landmarks.data.samples import sample_crops
from laplace_landmarks.decoding import (
    decode_logits,
    output_stride,
    point_offset,
    predict_crops,
    scale_factor,
)
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.onnx_runtime import INSTALL_HINT, OnnxSession, require_onnx
from laplace_landmarks.quantization import quantize_onnx
from laplace_landmarks.run_config import RunConfig

__all__ = [
    "DEFAULT_OPSET",
    "EXPORT_VERSION",
    "INPUT_DTYPES",
    "INSTALL_HINT",
    "CropsToLandmarks",
    "OnnxSession",
    "check_opset",
    "export_onnx",
    "model_crop_size",
    "quantize_onnx",
    "require_onnx",
    "sample_crops",
    "verify_onnx",
]

EXPORT_VERSION = 3  # bump when the exported graph changes (invalidates the on-the-fly cache)
DEFAULT_OPSET = 18
INPUT_DTYPES = ("uint8", "float32")


class CropsToLandmarks(nn.Module):
    """Generator + decoding as one module: crops ``(N, 3, S, S)`` -> points, scale ``(N, K, 2)``.

    ``input_dtype="uint8"`` takes [0, 255]; ``"float32"`` takes [0, 1] (no range check inside the
    graph). Both normalise to [-1, 1] exactly as :func:`~laplace_landmarks.models.normalize_input`.
    """

    def __init__(self, model: nn.Module, input_dtype: str = "uint8", temperature: float = 1.0):
        super().__init__()
        if input_dtype not in INPUT_DTYPES:
            raise ValueError(f"input_dtype must be one of {INPUT_DTYPES}, got {input_dtype!r}")
        self.model, self.input_dtype, self.temperature = model, input_dtype, float(temperature)

    def forward(self, crops: Tensor) -> tuple[Tensor, Tensor]:
        scaled = crops.to(torch.float32) / 255.0 if self.input_dtype == "uint8" else crops
        logits = self.model((scaled - 0.5) / 0.5)
        offset, stride = point_offset(self.model), output_stride(self.model)
        factor = scale_factor(self.model)
        return decode_logits(logits.float(), self.temperature, offset, stride, factor)


def model_crop_size(model: nn.Module) -> int:
    """The crop side ``model`` takes: ``model.config.input_size``, else 80."""
    return int(getattr(getattr(model, "config", None), "input_size", 80))


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    input_dtype: str = "uint8",
    opset: int = DEFAULT_OPSET,
    crop_size: int | None = None,
    config: RunConfig | None = None,
) -> Path:
    """Export ``model`` (a generator) with its decoding to ONNX at ``path``, atomically.

    Args:
        model: maps ``(N, 3, S, S)`` inputs in [-1, 1] to ``(N, K, S, S)`` logits.
        path: the ``.onnx`` file to write (one self-contained file, weights inside).
        input_dtype: ``"uint8"`` ([0, 255], default) or ``"float32"`` ([0, 1]).
        opset: the ONNX opset (18 by default; the dynamo exporter needs >= 18).
        crop_size: S; default ``config.data.size`` (the crops the model was trained on), else
            ``model.config.input_size``, else 80.
        config: the run config to store in the file's metadata (the Landmarker that loads the
            file alone takes its crop size and landmark count from it); None stores none.

    Returns:
        ``path`` as a Path.
    """
    require_onnx("onnx", "onnxscript")
    path = Path(path)
    if crop_size is None and config is not None:
        crop_size = int(config.data.size)
    size = crop_size or model_crop_size(model)
    was_training = model.training
    wrapper = CropsToLandmarks(model, input_dtype).eval()
    if input_dtype == "uint8":
        example = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8)
    else:
        example = torch.rand(2, 3, size, size)
    check_opset(opset)
    try:
        with atomic_path(path) as temporary, _quiet():
            program = torch.onnx.export(
                wrapper,
                (example,),
                dynamo=True,
                opset_version=opset,
                input_names=["crops"],
                output_names=["points", "scale"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                verbose=False,
            )
            program.save(str(temporary), external_data=False)
            _write_metadata(temporary, onnx_metadata(model, config))
    finally:
        model.train(was_training)
    return path


def onnx_metadata(model: nn.Module, config: RunConfig | None = None) -> dict[str, str]:
    """The metadata an exported file carries: ``config`` (when given) and ``point_offset``
    (the fitted buffer, zeros when the model has none), both JSON."""
    offset = point_offset(model)
    k = int(getattr(getattr(model, "config", None), "num_landmarks", 68))
    values = offset.detach().cpu().float().tolist() if offset is not None else [[0.0, 0.0]] * k
    metadata = {"point_offset": json.dumps(values)}
    if config is not None:
        metadata["config"] = json.dumps(config.to_dict())
    return metadata


def _write_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Set ``metadata`` as the ONNX file's ``metadata_props`` (rewriting it in place)."""
    import onnx

    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, metadata)
    onnx.save(proto, str(path))


def check_opset(opset: int) -> None:
    """Refuse an opset the exporter cannot write: the dynamo exporter needs >= 18, and the
    installed onnx package knows opsets up to ``onnx.defs.onnx_opset_version()``."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if not 18 <= opset <= newest:
        raise LandmarksError(f"opset: must be between 18 and {newest} (this onnx), got {opset}")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's progress prints and deprecation chatter (errors still raise)."""
    import logging

    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def verify_onnx(
    path: str | Path, model: nn.Module, crops: Tensor, threads: int | None = 1
) -> dict[str, float]:
    """Run ``model`` (torch, float32) and the ONNX file on the same uint8 crops.

    Returns ``max_abs_points`` and ``max_abs_scale``: the largest absolute differences, in crop
    pixels, over all crops, landmarks and axes, plus ``faces`` (the number of crops).
    """
    onnx_points, onnx_scale = OnnxSession(path, threads=threads).predict(crops.numpy())
    torch_points, torch_scale = predict_crops(model, crops)
    return {
        "faces": float(len(crops)),
        "max_abs_points": float(abs(onnx_points - torch_points.numpy()).max()),
        "max_abs_scale": float(abs(onnx_scale - torch_scale.numpy()).max()),
    }
