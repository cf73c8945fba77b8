"""The ONNX Runtime session behind ``backend="onnx"``: exported crops -> landmarks, no torch model.

An exported graph (see :mod:`laplace_landmarks.export`) maps uint8 crops ``(N, 3, S, S)`` to
points and scales ``(N, K, 2)`` in crop pixels, (x, y), 0-based, pixel centres at integers.
:class:`OnnxSession` runs one on ONNX Runtime's CPU provider. This module is all that
:class:`~laplace_landmarks.inference.Landmarker` needs to run an ``.onnx`` file; exporting one
(``export``), the on-the-fly export cache (``onnx_cache``) and int8 quantisation
(``quantization``) live elsewhere.

A file written by :func:`~laplace_landmarks.export.export_onnx` also carries, as ONNX metadata
(``metadata_props``), the run config (``config``, JSON, as in a safetensors weights file) and the
fitted ``point_offset`` (JSON, ``(K, 2)``; ``flip_test`` takes it off before mirroring): with
them the file alone reproduces its weights' predictions (:func:`onnx_config`).

Needs only ONNX Runtime (a core dependency), never torch.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np

from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.run_config import RunConfig

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
    ``(N, K, 2)`` as numpy arrays, in crop pixels, (x, y), 0-based, pixel centres at integers.
    ``metadata`` holds the file's ONNX metadata (see the module docstring).

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
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

    def check_interface(self, crop_size: int) -> OnnxSession:
        """``self``, once sure the graph maps uint8 or float crops ``(N, 3, crop_size,
        crop_size)`` to two ``(N, K, 2)`` outputs (points, scale); LandmarksError naming the file
        otherwise (a foreign graph, another model's file, or one for another crop size)."""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = list(inputs[0].shape[1:]) if len(inputs) == 1 else None
        dtype_ok = len(inputs) == 1 and inputs[0].type in ("tensor(uint8)", "tensor(float)")
        outputs_ok = len(outputs) == 2 and all(
            len(o.shape) == 3 and o.shape[2] == 2 and o.shape[1] == outputs[0].shape[1]
            for o in outputs
        )
        if shape != [3, crop_size, crop_size] or not dtype_ok or not outputs_ok:
            found = [(i.type, tuple(i.shape)) for i in inputs]
            made = [tuple(o.shape) for o in outputs]
            raise LandmarksError(
                f"{self.path}: not a landmark model for {crop_size}-pixel crops "
                f"(inputs {found}, outputs {made}; expected crops (N, 3, {crop_size}, "
                f"{crop_size}) -> points and scale (N, K, 2))"
            )
        return self

    @property
    def num_landmarks(self) -> int | None:
        """K of the ``(N, K, 2)`` outputs when the graph fixes it, else None."""
        outputs = self.session.get_outputs()
        k = outputs[0].shape[1] if outputs and len(outputs[0].shape) == 3 else None
        return k if isinstance(k, int) else None

    def run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One ONNX Runtime call on uint8 ``(N, 3, S, S)`` crops: numpy points and scales."""
        feed = crops if self.takes_uint8 else crops.astype(np.float32) / 255.0
        points, scale = self.session.run(None, {self.input_name: np.ascontiguousarray(feed)})
        return points, scale

    def predict(self, crops: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Points and scales ``(N, K, 2)`` (float32 arrays) for uint8 crops ``(N, 3, S, S)`` (an
        array, or anything ``np.asarray`` takes, such as a CPU tensor)."""
        array = np.asarray(crops)
        if array.dtype != np.uint8 or array.ndim != 4:
            raise ValueError(f"crops must be uint8 (N, 3, S, S), got {array.shape} {array.dtype}")
        parts = [self.run(array[i : i + batch_size]) for i in range(0, len(array), batch_size)]
        if not parts:
            k = self.num_landmarks or 0
            return np.zeros((0, k, 2), np.float32), np.zeros((0, k, 2), np.float32)
        points = np.concatenate([p for p, _ in parts])
        scale = np.concatenate([s for _, s in parts])
        return points, scale

    def point_offset(self) -> np.ndarray | None:
        """The fitted ``(K, 2)`` point offset stored in the file's metadata, or None (a file
        without one: a foreign export, or one from before the metadata)."""
        text = self.metadata.get("point_offset")
        if text is None:
            return None
        try:
            offset = np.asarray(json.loads(text), dtype=np.float32)
        except (ValueError, TypeError) as exc:
            raise LandmarksError(f"{self.path}: its point_offset metadata is not numbers") from exc
        k = self.num_landmarks
        if offset.ndim != 2 or offset.shape[1] != 2 or (k is not None and len(offset) != k):
            raise LandmarksError(
                f"{self.path}: its point_offset metadata has shape {offset.shape}, expected "
                f"({k}, 2)"
            )
        if not np.isfinite(offset).all():
            raise LandmarksError(f"{self.path}: its point_offset metadata is not finite")
        return offset


def onnx_config(session: OnnxSession) -> RunConfig:
    """The run config stored in an exported file's metadata (validated as a weights file's is);
    for a file without one, the default config sized by the graph's crops and landmarks."""
    text = session.metadata.get("config")
    if text is not None:
        try:
            return RunConfig.from_dict(json.loads(text))
        except (ValueError, LandmarksError) as exc:
            reason = " ".join(str(exc).split())[:200]
            raise LandmarksError(
                f"{session.path}: its config metadata is unusable ({reason})"
            ) from exc
    inputs = session.session.get_inputs()
    size = inputs[0].shape[-1] if len(inputs) == 1 and inputs[0].shape else None
    raw: dict[str, dict[str, int]] = {}
    if isinstance(size, int):
        raw["data"] = {"size": size}
    if session.num_landmarks is not None:
        raw["model"] = {"num_landmarks": session.num_landmarks}
    try:
        return RunConfig.from_dict(raw)
    except LandmarksError as exc:
        raise LandmarksError(f"{session.path}: not a landmark model ({exc})") from exc
