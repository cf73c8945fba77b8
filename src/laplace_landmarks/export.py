"""ONNX export, int8 quantisation and the ONNX Runtime session behind ``backend="onnx"``.

The exported graph is the generator *plus* its decoding (spatial softmax, softargmax mean and
Laplace scale), so ONNX Runtime alone maps crops to landmarks:

    crops   (N, 3, S, S) uint8 RGB in [0, 255] (or float32 in [0, 1] with ``input_dtype``)
    points  (N, K, 2) float32, crop pixels, (x, y), 0-based, pixel centres at integers
    scale   (N, K, 2) float32, the Laplace scale b per axis, crop pixels (times the model's
            fitted ``scale_factor``, as in torch)

The batch axis ``N`` is dynamic. Export uses the dynamo exporter
(``torch.onnx.export(..., dynamo=True)``); uint8 input exports cleanly (one ``Cast``) and is the
default, because it is what :meth:`Landmarker.predict_batch` takes and it moves 4x fewer bytes.
Every file is written atomically (temporary file in the same folder, then ``os.replace``). The
on-the-fly cache behind ``backend="onnx"`` (:func:`cached_session`) keeps a sha256 beside each
file and rebuilds, once, a file that fails it or does not load.

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
import functools
import hashlib
import importlib
import io
import warnings
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from laplace_landmarks.atomic import atomic_path, atomic_write_text
from laplace_landmarks.cache_dirs import onnx_cache_dir
from laplace_landmarks.decoding import decode_logits, output_stride, point_offset, scale_factor
from laplace_landmarks.errors import LandmarksError

EXPORT_VERSION = 2  # bump when the exported graph changes (invalidates the on-the-fly cache)
DEFAULT_OPSET = 18
INPUT_DTYPES = ("uint8", "float32")
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


def _crop_size(model: nn.Module) -> int:
    """The crop side ``model`` takes: ``model.config.input_size``, else 80."""
    return int(getattr(getattr(model, "config", None), "input_size", 80))


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    input_dtype: str = "uint8",
    opset: int = DEFAULT_OPSET,
    crop_size: int | None = None,
) -> Path:
    """Export ``model`` (a generator) with its decoding to ONNX at ``path``, atomically.

    Args:
        model: maps ``(N, 3, S, S)`` inputs in [-1, 1] to ``(N, K, S, S)`` logits.
        path: the ``.onnx`` file to write (one self-contained file, weights inside).
        input_dtype: ``"uint8"`` ([0, 255], default) or ``"float32"`` ([0, 1]).
        opset: the ONNX opset (18 by default; the dynamo exporter needs >= 18).
        crop_size: S; default ``model.config.input_size`` or 80.

    Returns:
        ``path`` as a Path.
    """
    require_onnx("onnx", "onnxscript")
    path = Path(path)
    size = crop_size or _crop_size(model)
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
    finally:
        model.train(was_training)
    return path


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


def cache_dir() -> Path:
    """Where ONNX exports are cached (see :func:`laplace_landmarks.cache_dirs.onnx_cache_dir`)."""
    return onnx_cache_dir()


def model_hash(model: nn.Module, input_dtype: str = "uint8", opset: int = DEFAULT_OPSET) -> str:
    """sha256 over the weights, the model config, the export settings and the torch version."""
    digest = hashlib.sha256()
    config = getattr(model, "config", None)
    digest.update(f"{EXPORT_VERSION}|{torch.__version__}|{input_dtype}|{opset}|{config}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cached_export(model: nn.Module, input_dtype: str = "uint8") -> Path:
    """The ONNX file of ``model`` in :func:`cache_dir`, exported on first use (keyed by hash).

    A file that does not match the sha256 checksum written beside it at export (``.sha256``;
    a truncated, corrupt or half-copied file, or one from before checksums) is exported again.
    """
    path = _cache_path(model, input_dtype)
    if not _checksum_matches(path):
        _export_to_cache(model, path, input_dtype)
    return path


def cached_session(
    model: nn.Module, threads: int | None = None, input_dtype: str = "uint8"
) -> OnnxSession:
    """An :class:`OnnxSession` on ``model``'s cached export (see :func:`cached_export`).

    A cache file that is missing, fails its checksum, does not load or does not take the
    model's crops is rebuilt once, atomically; LandmarksError naming the file when even the
    rebuilt one fails.
    """
    path = _cache_path(model, input_dtype)
    size = _crop_size(model)
    if _checksum_matches(path):
        try:
            return OnnxSession(path, threads).check_interface(size)
        except LandmarksError:
            pass  # intact but unusable (e.g. written by another exporter): rebuild it
    _export_to_cache(model, path, input_dtype)
    try:
        return OnnxSession(path, threads).check_interface(size)
    except LandmarksError as exc:
        raise LandmarksError(
            f"{path}: rebuilt the ONNX cache file, still unusable ({exc})"
        ) from exc


def _cache_path(model: nn.Module, input_dtype: str) -> Path:
    return cache_dir() / f"{model_hash(model, input_dtype)[:24]}.onnx"


def _checksum_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.sha256")


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _checksum_matches(path: Path) -> bool:
    """Whether ``path`` and its ``.sha256`` both exist and agree."""
    try:
        expected = _checksum_path(path).read_text(encoding="utf-8").strip()
        return _file_sha256(path) == expected
    except (OSError, UnicodeDecodeError):
        return False


def _export_to_cache(model: nn.Module, path: Path, input_dtype: str) -> None:
    """Export ``model`` to ``path`` and write its checksum, each file atomically."""
    try:
        export_onnx(model, path, input_dtype=input_dtype)
        atomic_write_text(_checksum_path(path), _file_sha256(path) + "\n")
    except OSError as exc:
        raise LandmarksError(f"{path}: cannot write the ONNX cache file ({exc})") from exc


def verify_onnx(
    path: str | Path, model: nn.Module, crops: Tensor, threads: int | None = 1
) -> dict[str, float]:
    """Run ``model`` (torch, float32) and the ONNX file on the same uint8 crops.

    Returns ``max_abs_points`` and ``max_abs_scale``: the largest absolute differences, in crop
    pixels, over all crops, landmarks and axes, plus ``faces`` (the number of crops).
    """
    from laplace_landmarks.decoding import predict_crops

    onnx_points, onnx_scale = OnnxSession(path, threads=threads).predict(crops)
    torch_points, torch_scale = predict_crops(model, crops)
    return {
        "faces": float(len(crops)),
        "max_abs_points": float((onnx_points - torch_points).abs().max()),
        "max_abs_scale": float((onnx_scale - torch_scale).abs().max()),
    }


def sample_crops(size: int = 80, root: str | Path | None = None) -> Tensor:
    """Real uint8 crops ``(N, 3, size, size)`` cut with the package's own crop code.

    Each bundled sample photo gives a crop per dlib HOG detection (:func:`crop_from_detection`)
    and, when a ``.pts`` file sits beside it, the paper's 5-point crop. With ``root`` (a
    ytf68-style folder such as ``tests/data/ytf68_slice``) its labelled faces are added too
    (5-point crops, both splits). Computed once per process and argument pair, then copied.
    """
    return _sample_crops(int(size), None if root is None else str(Path(root).resolve())).clone()


@functools.lru_cache(maxsize=4)
def _sample_crops(size: int, root: str | None) -> Tensor:
    from laplace_landmarks.data.crops import crop_from_five_points, five_points_from_68, warp_crop
    from laplace_landmarks.data.formats import read_pts
    from laplace_landmarks.data.images import load_image
    from laplace_landmarks.detection import DlibHogDetector, crop_from_detection

    folder = Path(str(resources.files("laplace_landmarks") / "samples"))
    detector, crops = DlibHogDetector(upsample=1), []
    for image_path in sorted(folder.glob("*.jpg")):
        rgb = load_image(image_path)
        regions = [crop_from_detection(d.box, size) for d in detector(rgb)]
        if image_path.with_suffix(".pts").is_file():
            five = five_points_from_68(read_pts(image_path.with_suffix(".pts")))
            regions.append(crop_from_five_points(five, size))
        crops += [warp_crop(rgb, region) for region in regions]
    if root is not None:
        crops += list(_dataset_crops(Path(root), size))
    return torch.from_numpy(np.ascontiguousarray(np.stack(crops).transpose(0, 3, 1, 2)))


def _dataset_crops(root: Path, size: int) -> Iterator[np.ndarray]:
    from laplace_landmarks.data.crops import crop_from_five_points, five_points_from_68, warp_crop
    from laplace_landmarks.data.datasets import load_dataset
    from laplace_landmarks.data.images import load_image

    for split in ("train", "test"):
        try:
            samples = load_dataset("ytf68", split, root=root).samples
        except (FileNotFoundError, ValueError) as exc:
            raise LandmarksError(
                f"--verify-root {root}: not a ytf68-style folder ({exc})"
            ) from None
        for sample in samples:
            crop = crop_from_five_points(five_points_from_68(sample.points), size)
            yield warp_crop(load_image(sample.image_path), crop)


def quantize_onnx(
    fp32_path: str | Path,
    out_path: str | Path,
    calibration: Tensor | None = None,
    *,
    mode: str = "static",
    per_channel: bool = False,
    keep_head_fp32: bool = True,
) -> Path:
    """int8-quantise an exported model with ONNX Runtime's tools, atomically.

    Args:
        fp32_path: a file from :func:`export_onnx` (uint8 input).
        out_path: where to write the int8 model.
        calibration: uint8 crops ``(N, 3, S, S)`` for ``mode="static"`` (activation ranges,
            MinMax); a few hundred real face crops are plenty.
        mode: ``"static"`` (QDQ int8 weights and uint8 activations for every Conv) or
            ``"dynamic"`` (int8 weights, activation ranges computed at run time).
        per_channel: per-output-channel weight scales.
        keep_head_fp32: leave the last Conv (the logits head) in float, a precaution because
            the logits feed a softmax over every pixel. On ytf68 it made no consistent NME
            difference either way (docs/results.md, benchmarks/quantization.py).
    """
    require_onnx("onnx", "onnxruntime")
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if mode not in ("static", "dynamic"):
        raise ValueError(f"mode must be 'static' or 'dynamic', got {mode!r}")
    if mode == "static" and (calibration is None or len(calibration) == 0):
        raise ValueError("calibration: static quantisation needs uint8 crops (N, 3, S, S)")
    out_path = Path(out_path)
    with atomic_path(out_path) as temporary:
        prepared = temporary.with_suffix(".pre.onnx")  # in atomic_path's private folder
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        convs = [n.name for n in onnx.load(str(prepared)).graph.node if n.op_type == "Conv"]
        nodes = convs[:-1] if keep_head_fp32 else convs
        if mode == "dynamic":
            quantize_dynamic(
                str(prepared),
                str(temporary),
                per_channel=per_channel,
                weight_type=QuantType.QInt8,
                nodes_to_quantize=nodes,
            )
        else:
            batches = [calibration[i : i + 16].numpy() for i in range(0, len(calibration), 16)]

            class Reader(CalibrationDataReader):
                def __init__(self) -> None:
                    self.batches = iter(batches)

                def get_next(self) -> dict[str, Any] | None:
                    batch = next(self.batches, None)
                    return None if batch is None else {"crops": batch}

            quantize_static(
                str(prepared),
                str(temporary),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_quantize=nodes,
            )
    return out_path
