"""CPU speed per width and backend: parameters, storage, FLOPs, faces/s, share of peak, frames/s.

For every width x backend, :func:`run_bench` measures, on ONE thread (torch and ONNX Runtime):

- ``params`` and ``storage MB`` (float32 parameters x 4 / 1e6) of the generator;
- ``MFLOP/face``: ``FlopCounterMode`` on one 80x80 face (2 FLOPs per multiply-add; convolutions
  only, the decoding's softmax and sums are not counted);
- ``faces/s`` on real face crops (the bundled samples), model + decoding, median of the repeats:
  ``torch`` = eager, one face per call; ``torch-batched`` = eager, ``batch_size`` faces per call;
  ``onnx`` / ``onnx-int8`` = ONNX Runtime fp32 / static int8 (:mod:`laplace_landmarks.export`),
  one face per call; ``onnx-batched`` = ONNX Runtime fp32, ``batch_size`` faces per call;
- ``GFLOP/s`` = faces/s x MFLOP/face and ``% peak``: that over the machine's single-thread fp32
  peak, measured in the same run as the best of 30 512x512x512 float32 matmuls
  (``torch.mm``, one thread), before and after the widths (the higher of the two counts);
- ``frames/s``: whole images through :meth:`Landmarker.predict` (dlib HOG detection, crop,
  network, 5-point refinement, mapping back) on one photo.

Widths without a shipped model use random weights (same speed; the ``weights`` column says so);
the int8 model of a random-weight network is calibrated on the sample crops.

Example:
    >>> rows, peak = run_bench(widths=[1 / 16], backends=["torch"], repeats=1)  # doctest: +SKIP
    >>> print(format_table(rows, peak))                                         # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from laplace_landmarks.machine import cpu_name
from laplace_landmarks.models import count_parameters, storage_mb

BACKENDS = ("torch", "torch-batched", "onnx", "onnx-batched", "onnx-int8")
DEFAULT_WIDTHS = (1.0, 0.5, 0.25, 0.125, 0.0625)
DEFAULT_IMAGE = "lfw_Naomi_Watts0.jpg"  # a bundled 250x250 LFW photo with one face
COLUMNS = (
    "arch",
    "width",
    "backend",
    "weights",
    "batch",
    "params",
    "storage MB",
    "MFLOP/face",
    "faces/s",
    "GFLOP/s",
    "% peak",
    "frames/s",
)


@dataclasses.dataclass(frozen=True)
class BenchRow:
    """One width x backend measurement (see the module docstring for each field)."""

    width: float
    backend: str
    weights: str
    arch: str
    batch: int
    params: int
    storage_mb: float
    mflop_per_face: float
    faces_per_s: float
    frames_per_s: float

    def gflops(self) -> float:
        return self.faces_per_s * self.mflop_per_face / 1e3

    def cells(self, peak_gflops: float) -> list[str]:
        return [
            self.arch,
            str(Fraction(self.width).limit_denominator(64)),
            self.backend,
            self.weights,
            str(self.batch),
            f"{self.params:,}",
            f"{self.storage_mb:.3f}",
            f"{self.mflop_per_face:,.1f}",
            f"{self.faces_per_s:,.1f}",
            f"{self.gflops():.1f}",
            f"{100 * self.gflops() / peak_gflops:.1f}",
            f"{self.frames_per_s:.1f}",
        ]


def flops_per_face(model: torch.nn.Module, size: int = 80) -> int:
    """FLOPs (2 per multiply-add) of one forward pass on a single ``(1, 3, size, size)`` face."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops()


def measure_peak_gflops(size: int = 512, repeats: int = 30) -> float:
    """Single-thread float32 GFLOP/s of ``torch.mm`` on ``size x size`` matrices (best run).

    Short calls, best of many: on a shared machine the best call is the one least disturbed.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.randn(size, size), torch.randn(size, size)
        torch.mm(a, b)  # warm-up
        best = min(_seconds(lambda: torch.mm(a, b)) for _ in range(repeats))
    finally:
        torch.set_num_threads(previous)
    return 2 * size**3 / best / 1e9


def _seconds(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def median_rate(call: Callable[[], Any], items: int, repeats: int, budget_s: float = 5.0) -> float:
    """Items per second of ``call`` (which handles ``items`` items): median after one warm-up.

    Stops after ``repeats`` timed calls, or earlier (after at least one) once ``budget_s`` is spent.
    """
    call()
    times: list[float] = []
    while len(times) < max(1, repeats) and (not times or sum(times) < budget_s):
        times.append(_seconds(call))
    return items / statistics.median(times)


def sample_image(name: str | Path | None = None) -> Path:
    """A bundled sample photo by file name (default :data:`DEFAULT_IMAGE`), or a given path."""
    if name is not None and Path(name).is_file():
        return Path(name)
    return Path(str(resources.files("laplace_landmarks") / "samples")) / (name or DEFAULT_IMAGE)


def model_for_width(width: float, arch: str = "rcn") -> tuple[torch.nn.Module, Any, str]:
    """(generator, RunConfig, weights label): the shipped ``arch`` model of that width, else a
    randomly initialised one (index entries without ``arch`` are ``rcn``)."""
    from laplace_landmarks.checkpoints import build_generator, load_generator
    from laplace_landmarks.config import ModelConfig, RunConfig
    from laplace_landmarks.weights import list_pretrained

    for entry in list_pretrained():
        same_arch = entry.get("arch", "rcn") == arch
        if same_arch and abs(float(entry["width"]) - width) < 1e-9 and entry["path"].is_file():
            model, config, _ = load_generator(entry["path"])
            return model, config, entry["name"]
    config = dataclasses.replace(RunConfig(), model=ModelConfig(name=arch, width=width))
    torch.manual_seed(0)
    return build_generator(config).eval(), config, "random"


def run_bench(
    widths: Sequence[float] = DEFAULT_WIDTHS,
    backends: Sequence[str] = BACKENDS,
    repeats: int = 5,
    image: str | Path | None = None,
    batch_size: int = 64,
    budget_s: float = 5.0,
    arch: str = "rcn",
) -> tuple[list[BenchRow], float]:
    """Measure every width x backend on one thread; returns the rows and the peak GFLOP/s."""
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        raise ValueError(f"backends: unknown {unknown}; choose from {list(BACKENDS)}")
    if any(b.startswith("onnx") for b in backends):
        from laplace_landmarks.export import require_onnx

        require_onnx()
    from laplace_landmarks.export import sample_crops

    photo, crops = sample_image(image), sample_crops()
    batch = crops[torch.arange(batch_size) % len(crops)].contiguous()
    peak = measure_peak_gflops()
    rows: list[BenchRow] = []
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for width in widths:
                rows += _bench_width(
                    width, backends, crops, batch, photo, Path(scratch), repeats, arch
                )
        peak = max(peak, measure_peak_gflops())  # again at the end: load may have changed
    finally:
        torch.set_num_threads(previous)
    return rows, peak


def _bench_width(
    width, backends, crops, batch, photo, scratch, repeats, arch="rcn"
) -> list[BenchRow]:
    from laplace_landmarks.decoding import predict_crops
    from laplace_landmarks.inference import Landmarker

    model, config, weights = model_for_width(width, arch)
    base = {
        "arch": arch,
        "width": width,
        "weights": weights,
        "params": count_parameters(model),
        "storage_mb": storage_mb(model),
        "mflop_per_face": flops_per_face(model) / 1e6,
    }
    onnx_files = _onnx_files(model, backends, crops, scratch / f"{arch}-w{width:g}")
    rows, frames_cache = [], {}
    one = crops[:1].contiguous()
    for backend in backends:
        if backend.startswith("onnx"):
            from laplace_landmarks.export import OnnxSession

            session = OnnxSession(onnx_files[backend.replace("-batched", "")], threads=1)
            size = len(batch) if backend.endswith("-batched") else 1
            data = batch if size > 1 else one
            call = lambda s=session, d=data: s.predict(d)  # noqa: E731
        else:
            size = len(batch) if backend == "torch-batched" else 1
            data = batch if size > 1 else one
            call = lambda d=data, s=size: predict_crops(model, d, batch_size=s)  # noqa: E731
        faces = median_rate(call, size, repeats)
        key = "torch" if backend.startswith("torch") else backend.replace("-batched", "")
        if key not in frames_cache:
            landmarker = Landmarker(
                model,
                config,
                threads=1,
                backend="onnx" if key != "torch" else "torch",
                onnx_path=onnx_files.get(key),
            )
            frames_cache[key] = median_rate(lambda lm=landmarker: lm.predict(photo), 1, repeats)
        rows.append(
            BenchRow(
                backend=backend,
                batch=size,
                faces_per_s=faces,
                frames_per_s=frames_cache[key],
                **base,
            )
        )
    return rows


def _onnx_files(model, backends, crops, folder: Path) -> dict[str, Path]:
    from laplace_landmarks.export import export_onnx, quantize_onnx

    files: dict[str, Path] = {}
    if any(b.startswith("onnx") for b in backends):
        files["onnx"] = export_onnx(model, folder / "fp32.onnx")
    if "onnx-int8" in backends:
        files["onnx-int8"] = quantize_onnx(files["onnx"], folder / "int8.onnx", crops)
    return files


def format_table(rows: Sequence[BenchRow], peak_gflops: float) -> str:
    """A markdown table with :data:`COLUMNS`, headed by the machine and the measured peak."""
    lines = [
        f"torch {torch.__version__}, 1 thread, {cpu_name()}; fp32 peak {peak_gflops:.1f} "
        "GFLOP/s (best single-thread 512^3 torch.mm, before and after)",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(row.cells(peak_gflops)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def rows_to_json(rows: Sequence[BenchRow], peak_gflops: float) -> dict[str, Any]:
    """A JSON-ready dict: the peak, the CPU, torch's version and one dict per row."""
    return {
        "peak_gflops": peak_gflops,
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "threads": 1,
        "rows": [
            {**dataclasses.asdict(r), "gflops": r.gflops(), "peak_share": r.gflops() / peak_gflops}
            for r in rows
        ],
    }
