"""Training throughput (images/s) per width and CPU setting, on cached real crops.

One supervised LaplaceKL step (forward, loss, backward, Adam) on batches of ytf68 crops from the
crop cache (so no JPEG decoding is timed), for each width and each setting:
threads (1, 2), memory format (contiguous, channels_last), and torch.compile (off, on).
Reports the median images/s over the timed steps after warm-up.

    nice python benchmarks/train_throughput.py [--widths 1/4 1/8] [--steps 6] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import time
from fractions import Fraction

import torch

from laplace_landmarks.data.cache import build_crop_cache
from laplace_landmarks.data.datasets import load_dataset
from laplace_landmarks.losses import laplace_kl_loss
from laplace_landmarks.models import create_model, normalize_input
from laplace_landmarks.training import default_cache_dir


def measure(
    width: float,
    crops,
    points,
    threads: int,
    channels_last: bool,
    compiled: bool,
    steps: int,
    batch: int,
) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model("rcn", width=width)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if compiled else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for i in range(steps + 2):
        index = torch.randint(len(crops), (batch,))
        images = normalize_input(crops[index])
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        start = time.perf_counter()
        loss = laplace_kl_loss(step_model(images), points[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--widths", nargs="+", default=["1", "1/2", "1/4", "1/8", "1/16"])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    args = parser.parse_args()
    cache = build_crop_cache(load_dataset("ytf68", "trainval-train"), default_cache_dir())
    settings = [(t, cl, False) for t in (1, 2) for cl in (False, True)]
    if args.compile:
        settings += [(2, False, True)]
    print("| width | threads | channels_last | compile | images/s |")
    print("|---|---|---|---|---|")
    for w in args.widths:
        width = float(Fraction(w))
        for threads, cl, comp in settings:
            rate = measure(
                width, cache.images, cache.points, threads, cl, comp, args.steps, args.batch
            )
            print(f"| {w} | {threads} | {cl} | {comp} | {rate:.1f} |", flush=True)


if __name__ == "__main__":
    main()
