"""Forward pass of the RCN generator per width: parameters, storage, FLOPs and CPU speed.

Prints a markdown table. FLOPs come from ``torch.utils.flop_counter.FlopCounterMode``, which
counts 2 FLOPs per multiply-add (convolutions only; activations, pooling and upsampling are not
counted). Speed is eager PyTorch, one intra-op thread, ``torch.inference_mode()``, random input,
median wall time over ``--repeats`` timed runs after warm-up (at least 3 runs; fewer than
``--repeats`` once a measurement has used ``--budget-s`` seconds).

    python benchmarks/forward.py                      # all 5 widths, 5 repeats
    python benchmarks/forward.py --widths 1/8 1/16 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from fractions import Fraction

import torch
from torch.utils.flop_counter import FlopCounterMode

from laplace_landmarks.machine import cpu_name
from laplace_landmarks.models import count_parameters, create_model, storage_mb

PAPER_STORAGE_MB = {1.0: 7.496, 0.5: 1.919, 0.25: 0.507, 0.125: 0.162, 0.0625: 0.076}
PAPER_FPS = {1.0: 4.92, 0.5: 11.92, 0.25: 16.77, 0.125: 21.38, 0.0625: 26.51}


def flops_per_face(model: torch.nn.Module, size: int) -> int:
    """FLOPs (2 per multiply-add) of one forward pass on a single (1, 3, size, size) face."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops()


def median_seconds(
    model: torch.nn.Module, batch: int, size: int, repeats: int, budget_s: float
) -> float:
    """Median wall time of ``model`` on a random (batch, 3, size, size) input, after warm-up.

    Stops after ``repeats`` runs, or after at least 3 runs once ``budget_s`` seconds are spent.
    """
    images = torch.randn(batch, 3, size, size)
    times: list[float] = []
    with torch.inference_mode():
        for _ in range(2 if batch == 1 else 1):  # warm-up: allocator, oneDNN primitive caches
            model(images)
        while len(times) < repeats and (len(times) < 3 or sum(times) < budget_s):
            start = time.perf_counter()
            model(images)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def benchmark_width(width: float, args: argparse.Namespace) -> list[str]:
    model = create_model("rcn", width=width, num_landmarks=args.num_landmarks).eval()
    flops = flops_per_face(model, args.size)
    row = [
        str(Fraction(width).limit_denominator(64)),
        str(model.config.channels),
        f"{count_parameters(model):,}",
        f"{storage_mb(model):.3f}",
        f"{PAPER_STORAGE_MB.get(width, float('nan')):.3f}",
        f"{flops / 1e6:,.1f}",
    ]
    for batch in args.batch_sizes:
        faces_per_s = batch / median_seconds(model, batch, args.size, args.repeats, args.budget_s)
        row += [f"{faces_per_s:,.1f}", f"{faces_per_s * flops / 1e9:.1f}"]
    return row + [f"{PAPER_FPS.get(width, float('nan')):.2f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", nargs="+", default=["1", "1/2", "1/4", "1/8", "1/16"])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per batch size")
    parser.add_argument(
        "--budget-s", type=float, default=10.0, help="stop repeating (after 3 runs) past this"
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--num-landmarks", type=int, default=68)
    parser.add_argument("--size", type=int, default=80, help="square input size")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, {cpu_name()}, ", end="")
    print(f"input {args.size}x{args.size}, K={args.num_landmarks}, median of <= {args.repeats}\n")
    header = ["width", "C", "params", "storage MB (fp32)", "paper MB", "MFLOP/face"]
    for batch in args.batch_sizes:
        header += [f"faces/s b={batch}", f"GFLOP/s b={batch}"]
    header.append("paper fps")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for width in args.widths:
        row = benchmark_width(float(Fraction(width)), args)
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
