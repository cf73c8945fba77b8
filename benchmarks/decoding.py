"""Decoding variants on the validation split: does a better read-out of the heatmap lower NME?

For one model and the ytf68 ``val`` split (ground-truth 5-point crops; never the test split), the
logits are computed once and decoded in several ways:

- ``plain``: softargmax of the spatial softmax (what the package does), at temperature T;
- ``window r``: softargmax restricted to the (2r+1)^2 window around the arg-max (removes the pull
  of far-away probability mass);
- ``+flip``: the logits averaged with those of the mirrored crop (mirror permutation applied).

The model's fitted ``point_offset`` (``laplace-landmarks calibrate``) is added in every variant.

Prints inter-ocular NME % and FR@0.08 % for each, in image pixels.

    nice python benchmarks/decoding.py --model rcn-lite-accurate [--split val]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from laplace_landmarks.checkpoints import load_generator, resolve_checkpoint
from laplace_landmarks.data.markups import MIRROR_PERMUTATIONS
from laplace_landmarks.decoding import point_offset
from laplace_landmarks.evaluation import nme_per_face
from laplace_landmarks.evaluation_run import _load_split, _to_image
from laplace_landmarks.heatmaps import softargmax, spatial_softmax
from laplace_landmarks.models import normalize_input
from laplace_landmarks.training import default_cache_dir


@torch.inference_mode()
def all_logits(model, images: torch.Tensor, flip: bool) -> torch.Tensor:
    out = []
    for start in range(0, len(images), 128):
        batch = images[start : start + 128]
        out.append(model(normalize_input(batch.flip(-1) if flip else batch)).float())
    logits = torch.cat(out)
    if flip:
        perm = torch.tensor(np.array(MIRROR_PERMUTATIONS[logits.shape[1]]))
        logits = logits.flip(-1)[:, perm]
    return logits


def windowed(logits: torch.Tensor, radius: int) -> torch.Tensor:
    """Softargmax inside the window of ``radius`` px around each heatmap's arg-max."""
    _, _, h, w = logits.shape
    top = logits.flatten(2).argmax(-1)
    cy, cx = (top // w)[..., None, None], (top % w)[..., None, None]
    ys, xs = torch.arange(h).view(h, 1), torch.arange(w).view(1, w)
    inside = ((ys - cy).abs() <= radius) & ((xs - cx).abs() <= radius)
    return softargmax(spatial_softmax(logits.masked_fill(~inside, float("-inf"))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="rcn-lite-accurate")
    parser.add_argument("--split", default="val", choices=["val", "trainval-train"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, config, _ = load_generator(resolve_checkpoint(args.model))
    model.eval()
    _, cache = _load_split(config, "ytf68", args.split, None, "five-point", default_cache_dir())
    plain = all_logits(model, cache.images, flip=False)
    both = (plain + all_logits(model, cache.images, flip=True)) / 2

    offset = point_offset(model)

    def score(mean: torch.Tensor) -> str:
        mean = mean if offset is None else mean + offset  # the fitted calibration, if any
        pred, _, gt = _to_image(cache, mean, torch.ones_like(mean))
        errors = nme_per_face(pred, gt, cache.visibility, "inter-ocular", None)
        return f"{100 * np.mean(errors):.2f} | {100 * np.mean(errors > 0.08):.1f}"

    print(f"{args.model} on ytf68/{args.split} ({len(cache)} faces, GT 5-point crops)\n")
    print("| decoding | NME % | FR@0.08 % | +flip NME % | +flip FR % |")
    print("|---|---|---|---|---|")
    for t in (1.0, 0.7, 0.5):
        cells = [score(softargmax(spatial_softmax(x, t))) for x in (plain, both)]
        print(f"| plain, T = {t} | {cells[0]} | {cells[1]} |")
    for r in (3, 5, 8, 12):
        print(f"| window r = {r} | {score(windowed(plain, r))} | {score(windowed(both, r))} |")


if __name__ == "__main__":
    main()
