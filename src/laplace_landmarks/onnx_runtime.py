"""The ONNX Runtime session behind ``backend="onnx"``: exported crops -> landmarks, no torch model.

An exported graph (see :mod:`laplace_landmarks.export`) maps uint8 crops ``(N, 3, S, S)`` to
points and scales ``(N, K, 2)`` in crop pixels, (x, y), 0-based, pixel centres at integers.
:class:`OnnxSession` runs one on ONNX Runtime's CPU provider. This module is all that
:class:`~laplace_landmarks.inference.Landmarker` needs to run an ``.onnx`` file; exporting one
(``export``), the on-the-fly export cache (``onnx_cache``) and int8 quantisation
(``quantization``) live elsewhere.

Needs the optional packages: ``pip install laplace-landmarks[onnx]``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from laplace_landmarks.errors import LandmarksError

INSTALL_HINT = "pip install laplace-landmarks[onnx]"


def require_onnx(*modules: str) -> None:
    """Import ``modules`` (default: onnx, onnxscript, onnxruntime) or raise a clear error."""
    missing = []
    for name in modules or ("onnx", "onnxscript", "onnxruntime"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise LandmarksError(f"ONNX support needs the optional packages {missing}: {INSTALL_HINT}")


class OnnxSession:
    """An ONNX Runtime CPU session over an exported landmark model.

    Args:
        path: an ``.onnx`` file written by :func:`export_onnx` (or :func:`quantize_onnx`).
        threads: ONNX Runtime intra-op threads; None = ONNX Runtime's default (physical cores).

    ``predict(crops)`` takes uint8 ``(N, 3, S, S)`` crops and returns float32 points and scales
    ``(N, K, 2)`` as torch tensors, in crop pixels, (x, y), 0-based, pixel centres at integers.

    Raises LandmarksError naming ``path`` when the file is missing or ONNX Runtime cannot load it.
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        require_onnx("onnxruntime")
        import onnxruntime as ort

        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        self.path = Path(path)
        if not self.path.is_file():
            raise LandmarksError(f"{self.path}: no such ONNX file")
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's own InvalidProtobuf, Fail, ... (not exported)
            reason = " ".join(str(exc).split())  # one line
            raise LandmarksError(f"{self.path}: ONNX Runtime cannot load it ({reason})") from exc
        self.input_name = self.session.get_inputs()[0].name
        self.takes_uint8 = self.session.get_inputs()[0].type == "tensor(uint8)"

    def check_interface(self, crop_size: int) -> OnnxSession:
        """``self``, once sure the graph maps crops ``(N, 3, crop_size, crop_size)`` to two
        outputs (points, scale); LandmarksError naming the file otherwise (another model's
        file, or one for another crop size)."""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = list(inputs[0].shape[1:]) if len(inputs) == 1 else None
        if shape != [3, crop_size, crop_size] or len(outputs) != 2:
            found = [tuple(i.shape) for i in inputs]
            raise LandmarksError(
                f"{self.path}: not a landmark model for {crop_size}-pixel crops "
                f"(inputs {found}, {len(outputs)} outputs)"
            )
        return self

    def run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One ONNX Runtime call on uint8 ``(N, 3, S, S)`` crops: numpy points and scales."""
        feed = crops if self.takes_uint8 else crops.astype(np.float32) / 255.0
        points, scale = self.session.run(None, {self.input_name: np.ascontiguousarray(feed)})
        return points, scale

    def predict(self, crops: Tensor, batch_size: int = 256) -> tuple[Tensor, Tensor]:
        """Points and scales ``(N, K, 2)`` (float32 tensors) for uint8 crops ``(N, 3, S, S)``."""
        array = crops.numpy() if torch.is_tensor(crops) else np.asarray(crops)
        if array.dtype != np.uint8 or array.ndim != 4:
            raise ValueError(f"crops must be uint8 (N, 3, S, S), got {array.shape} {array.dtype}")
        parts = [self.run(array[i : i + batch_size]) for i in range(0, len(array), batch_size)]
        if not parts:
            k = self.session.get_outputs()[0].shape[1]
            return torch.zeros(0, int(k), 2), torch.zeros(0, int(k), 2)
        points = np.concatenate([p for p, _ in parts])
        scale = np.concatenate([s for _, s in parts])
        return torch.from_numpy(points), torch.from_numpy(scale)
