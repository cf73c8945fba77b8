"""Quantised and reduced-precision CPU paths: speed and the NME they cost on ytf68 TEST.

For each shipped model it compares, on ONE thread (torch and ONNX Runtime):

    torch fp32       eager PyTorch (the reference)
    torch bf16       eager PyTorch with bfloat16 weights and activations (decoding in fp32);
                     only where oneDNN reports native bf16 (AVX512-BF16/AMX) or with --bf16 on.
                     Elsewhere bf16 is emulated and ~10x slower than fp32, so by default the
                     script only prints a quick speed check (batch 8) instead of a table row.
    ort fp32         ONNX Runtime, the exported float model
    ort int8 dyn     ONNX Runtime dynamic int8 (int8 weights, activation ranges at run time)
    ort int8 static  ONNX Runtime static QDQ int8, per-tensor weights, MinMax calibration on
                     ytf68 TRAIN 5-point crops (--calibration faces)
    ort int8 st-pc   the same with per-channel weight scales
    ort int8 st-all  static per-tensor with the logits head quantised too

Every int8 variant but st-all keeps the head conv in float (see ``export.quantize_onnx``).
Accuracy: inter-ocular NME over all 845 ytf68 TEST faces, 5-point crops from the ground truth
(``build_crop_cache``), points compared in crop pixels (NME is unchanged by the crop's similarity
transform). Speed: faces/s at batch 1 (32 single-face calls) and batch 64 (one call), model +
decoding, median over --repeats rounds; the variants alternate inside every round, so a load
change hits all of them alike.

    python benchmarks/quantization.py                       # both shipped models, 5 rounds
    python benchmarks/quantization.py --models rcn-fast --repeats 3 --bf16 off
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from laplace_landmarks.data.cache import build_crop_cache
from laplace_landmarks.data.datasets import load_dataset
from laplace_landmarks.decoding import decode_logits, predict_crops
from laplace_landmarks.evaluation import nme_per_face
from laplace_landmarks.export import OnnxSession, export_onnx, quantize_onnx
from laplace_landmarks.inference import Landmarker
from laplace_landmarks.machine import cpu_name
from laplace_landmarks.models import normalize_input

INT8_VARIANTS = {  # name -> quantize_onnx keyword arguments
    "ort int8 dyn": {"mode": "dynamic"},
    "ort int8 static": {"mode": "static"},
    "ort int8 st-pc": {"mode": "static", "per_channel": True},
    "ort int8 st-all": {"mode": "static", "keep_head_fp32": False},
}


def crops_of(split: str, cache_dir: Path, max_images: int | None = None):
    dataset = load_dataset("ytf68", split, max_images=max_images)
    return build_crop_cache(dataset, cache_dir, progress=False)


def bf16_predictor(model: torch.nn.Module):
    """Eager bfloat16 forward, decoding in float32."""
    half = copy.deepcopy(model).to(torch.bfloat16).eval()

    @torch.inference_mode()
    def predict(crops: torch.Tensor):
        logits = half(normalize_input(crops).to(torch.bfloat16))
        return decode_logits(logits.float())

    return predict


def build_variants(lm: Landmarker, calibration, folder: Path, bf16: bool) -> dict:
    """name -> (callable uint8 crops -> (points, scale), file size in KB or None)."""
    variants = {"torch fp32": (lambda c: predict_crops(lm.model, c), None)}
    if bf16:
        variants["torch bf16"] = (bf16_predictor(lm.model), None)
    fp32 = export_onnx(lm.model, folder / "fp32.onnx")
    files = {"ort fp32": fp32}
    for name, options in INT8_VARIANTS.items():
        target = folder / (name.replace(" ", "_") + ".onnx")
        files[name] = quantize_onnx(fp32, target, calibration, **options)
    for name, path in files.items():
        session = OnnxSession(path, threads=1)
        variants[name] = (lambda c, s=session: s.predict(c), path.stat().st_size / 1e3)
    return variants


def time_round(predict, crops: torch.Tensor) -> tuple[float, float]:
    """Seconds per face at batch 1 (32 calls) and at batch 64 (one call)."""
    start = time.perf_counter()
    for i in range(32):
        predict(crops[i : i + 1])
    single = (time.perf_counter() - start) / 32
    start = time.perf_counter()
    predict(crops[:64])
    return single, (time.perf_counter() - start) / 64


def evaluate(name: str, lm: Landmarker, calibration, test, args) -> list[str]:
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        variants = build_variants(lm, calibration, Path(scratch), args.bf16)
        results = {}
        for variant, (predict, _) in variants.items():
            points, _scale = predict(test.images)
            nme = nme_per_face(points.double().numpy(), test.points.numpy(), test.visibility)
            results[variant] = (points.double().numpy(), nme)
        timing_crops = test.images[:64].contiguous()
        for predict, _ in variants.values():
            time_round(predict, timing_crops)  # warm-up
        times = {v: [] for v in variants}
        for _ in range(args.repeats):
            for variant, (predict, _) in variants.items():
                times[variant].append(time_round(predict, timing_crops))
    reference_points, reference_nme = results["torch fp32"]
    for variant, (_predict, size_kb) in variants.items():
        points, nme = results[variant]
        single = statistics.median(t[0] for t in times[variant])
        batched = statistics.median(t[1] for t in times[variant])
        rows.append(
            f"| {name} | {variant} | {'-' if size_kb is None else f'{size_kb:.0f}'} "
            f"| {100 * np.nanmean(nme):.3f} | {100 * (np.nanmean(nme) - np.nanmean(reference_nme)):+.3f} "
            f"| {np.abs(points - reference_points).max():.3f} "
            f"| {1 / single:,.0f} | {1 / batched:,.0f} |"
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["rcn-fast", "rcn-lite-accurate"])
    parser.add_argument("--repeats", type=int, default=5, help="timing rounds")
    parser.add_argument("--calibration", type=int, default=256, help="ytf68 train faces")
    parser.add_argument(
        "--cache-dir", type=Path, default=Path.home() / ".cache/laplace-landmarks/crops"
    )
    parser.add_argument("--bf16", choices=("auto", "on", "off"), default="auto")
    args = parser.parse_args()
    torch.set_num_threads(1)
    native_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    args.bf16 = args.bf16 == "on" or (args.bf16 == "auto" and native_bf16)
    test = crops_of("test", args.cache_dir)
    calibration = crops_of("train", args.cache_dir, args.calibration).images
    print(
        f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"oneDNN bf16 supported: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}, 1 thread, "
        f"{cpu_name()}; ytf68 test {len(test)} faces, calibration {len(calibration)} train faces\n"
    )
    print(
        "| model | variant | file KB | NME % | ΔNME (pp) | max Δ points px | faces/s b=1 | faces/s b=64 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        evaluate(name, Landmarker.pretrained(name, flip_test=False), calibration, test, args)
    if not args.bf16:
        print()
        for name in args.models:
            print(bf16_quick_check(Landmarker.pretrained(name).model, name, test.images[:8]))


def bf16_quick_check(model: torch.nn.Module, name: str, crops: torch.Tensor) -> str:
    """ms/face of eager fp32 and bf16 on one batch of 8 (best of 3), where bf16 is emulated."""
    timings = {}
    for label, predict in (
        ("fp32", lambda c: predict_crops(model, c)),
        ("bf16", bf16_predictor(model)),
    ):
        predict(crops)
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            predict(crops)
            best = min(best, time.perf_counter() - start)
        timings[label] = 1e3 * best / len(crops)
    return (
        f"{name}: torch bf16 (emulated, no native bf16) {timings['bf16']:.1f} ms/face vs "
        f"fp32 {timings['fp32']:.1f} ms/face at batch {len(crops)}; left out of the table"
    )


if __name__ == "__main__":
    main()
