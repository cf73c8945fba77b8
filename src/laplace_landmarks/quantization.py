"""int8 quantisation of an exported landmark model with ONNX Runtime's tools.

Static (QDQ, activation ranges calibrated on real face crops) or dynamic; the logits head may
stay in float. See docs/results.md and ``benchmarks/quantization.py`` for what it costs in NME.

Needs the optional packages: ``pip install laplace-landmarks[onnx]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from laplace_landmarks.atomic import atomic_path
from laplace_landmarks.onnx_runtime import require_onnx


def quantize_onnx(
    fp32_path: str | Path,
    out_path: str | Path,
    calibration: Tensor | None = None,
    *,
    mode: str = "static",
    per_channel: bool = False,
    keep_head_fp32: bool = True,
    reduce_range: bool = True,
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
        reduce_range: 7-bit weights (-64..64). ONNX Runtime's u8 x s8 kernels on x86 CPUs
            without VNNI add pairs of products in int16 (VPMADDUBSW), which saturates when
            255 * |w1| + 255 * |w2| > 32767; with 7-bit weights the sum is at most 32640, so the
            integer results are the same on every x86 CPU (with VNNI or without), and a shipped
            int8 file gives the same points everywhere up to float rounding.
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
                reduce_range=reduce_range,
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
                reduce_range=reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_quantize=nodes,
            )
    return out_path
