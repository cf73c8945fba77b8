"""Fine-tune a trained generator on crops made the way the detector path makes them.

The library does this now: ``laplace-landmarks train --init-from WEIGHTS --self-crops-from
NAME_OR_FILE`` (crops made by ``laplace_landmarks.self_crops``, cached). This script stays as a
thin caller for what the library does not do: teacher-labelled faces (``--pseudo``) and carrying
saved self crops to a machine without a face detector (``--save-crops``, ``--self-crops-file``).

Why (docs/results.md, "Where the detector path loses 0.4 points"): a crop aligned on the model's
own estimate locks the model's errors in, and ground-truth 5-point crops never show the model
that geometry. This script

1. crops every training face the way ``Landmarker.predict`` does: dlib HOG box (the detection
   holding the ground-truth centre), first pass, 5-point re-crop from the *model's own* estimate;
   the ground-truth points are mapped into that crop (faces without such a detection are skipped);
2. fine-tunes the model's raw weights on the ground-truth crops plus these "self crops"
   (``--epochs`` with the run's recipe, cosine from ``--lr``), with the same trainer, checkpoints
   and metrics as ``laplace-landmarks train``;
3. leaves ``OUT/last.pt`` for ``laplace-landmarks calibrate`` (the schedule ends at lr ~0, and
   val on ground-truth crops does not see the effect, so the last epoch is the candidate; choose
   between candidates on val through the detector path, ``benchmarks/shipped_accuracy.py``).

    python benchmarks/self_crop_finetune.py --crops-from rcn-lite \\
        --weights runs/long2-lite-w0.125/best.safetensors --epochs 12 --lr 5e-4 --out runs/ft-self

``--crops-from`` is the model whose detector path makes the crops (a shipped name or a weights
file: the calibrated model users run). ``--weights`` is where fine-tuning starts (the raw training
weights; a ``point_offset`` in them is dropped). ``--gt-only`` trains the control: the same
fine-tuning on ground-truth crops alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch


def self_crops(crops_from: str, samples, threads: int, label: str = "self crops"):
    """The CropCache of ``samples`` cropped by ``crops_from``'s detector path (not cached)."""
    from laplace_landmarks.checkpoints import resolve_checkpoint
    from laplace_landmarks.inference import Landmarker
    from laplace_landmarks.self_crops import make_self_crops

    landmarker = Landmarker.from_checkpoint(
        resolve_checkpoint(crops_from), refine=True, threads=threads, flip_test=False
    )
    return make_self_crops(landmarker, samples, label)


def concat(a, b):
    from laplace_landmarks.self_crops import concat_crop_caches

    return concat_crop_caches(a, b)


def pseudo_samples(paths: list[str], limit: int | None):
    """Samples of the faces that ``pseudo_label.py`` labelled with a teacher (one or more files)."""
    from laplace_landmarks.data.types import Sample

    samples = []
    for path in paths:
        try:
            labels = np.load(path)
            rows = list(zip(labels["paths"], labels["points"], labels["identities"], strict=True))
        except (OSError, KeyError, ValueError) as exc:
            raise SystemExit(f"--pseudo: {path} is not a pseudo_label.py file ({exc})") from exc
        samples += [
            Sample(Path(str(p)), points=np.asarray(q, np.float64), identity=f"pseudo/{i}")
            for p, q, i in rows
        ]
    return samples[:limit] if limit else samples


def pseudo_crops(samples, args, config, cache_dir: Path):
    """Teacher-labelled faces: 5-point crops from the teacher's points, plus (unless
    ``--gt-only``) the crops the student's own detector path makes, the teacher's points mapped in."""
    from laplace_landmarks.data.cache import build_crop_cache
    from laplace_landmarks.data.types import LandmarkDataset

    dataset = LandmarkDataset("pseudo", Path(args.pseudo[0]).stem, 68, samples)
    d = config.data
    cache = build_crop_cache(dataset, cache_dir, size=d.size, extension=d.extension, progress=False)
    if args.gt_only:
        return cache
    return concat(cache, self_crops(args.crops_from, samples, args.threads, "pseudo self crops"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crops-from", required=True, help="shipped name or weights file")
    parser.add_argument("--weights", required=True, help="raw weights to start from")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--out", required=True)
    parser.add_argument("--gt-only", action="store_true", help="the control: no self crops")
    parser.add_argument("--data-root", help="ytf68 folder (default: ../shared/data)")
    parser.add_argument("--unlabeled", help="unlabelled faces for D (default: the run's)")
    parser.add_argument(
        "--pseudo",
        nargs="+",
        help="teacher-labelled faces (benchmarks/pseudo_label.py) to add to training",
    )
    parser.add_argument("--max-pseudo", type=int, help="first N pseudo-labelled faces")
    parser.add_argument("--max-train", type=int, help="first N training faces (tests)")
    parser.add_argument("--max-val", type=int, help="first N validation faces (tests)")
    parser.add_argument("--batch-size", type=int, help="default: the run's")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", help="crop caches (default ~/.cache/laplace-landmarks)")
    parser.add_argument(
        "--self-crops-file",
        help="self crops saved by --save-crops (skips making them again; same crops as that run)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="change one config value of the run, e.g. --set data.shift=0.06 (repeatable)",
    )
    parser.add_argument(
        "--save-crops",
        help="also write the self-crop cache to this .pt file (benchmarks/device_train.py carries "
        "it to a GPU machine, which has no face detector); with --epochs 0, stop there",
    )
    args = parser.parse_args()

    from laplace_landmarks.checkpoints import load_generator
    from laplace_landmarks.config import RunConfig
    from laplace_landmarks.training import Trainer, default_cache_dir, prepare_data

    torch.set_num_threads(args.threads)
    pseudo = pseudo_samples(args.pseudo, args.max_pseudo) if args.pseudo else None  # fail early
    model, config, _ = load_generator(args.weights)
    raw = config.to_dict()
    raw["train"].update(epochs=max(1, args.epochs), lr=args.lr, threads=args.threads)
    raw["data"].update(root=args.data_root, max_train=args.max_train, max_val=args.max_val)
    if args.batch_size:
        raw["train"]["batch_size"] = args.batch_size
    if args.unlabeled:
        raw["adversarial"]["unlabeled"] = args.unlabeled
    for item in args.set:
        dotted, sep, value = item.partition("=")
        section, _, field = dotted.partition(".")
        if not sep or section not in raw or field not in raw[section]:
            raise SystemExit(f"--set {item}: expected SECTION.FIELD=VALUE with a known field")
        try:
            raw[section][field] = json.loads(value)  # numbers, true/false, lists
        except json.JSONDecodeError:
            raw[section][field] = value  # a plain string
    config = RunConfig.from_dict(raw)
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    data = prepare_data(config, cache_dir, progress=False)
    if not args.gt_only:
        from laplace_landmarks.data.cache import CropCache
        from laplace_landmarks.data.datasets import load_dataset
        from laplace_landmarks.self_crops import self_crop_cache

        train = load_dataset(
            "ytf68", "trainval-train", root=args.data_root, max_images=args.max_train
        )
        if args.self_crops_file:
            extra = CropCache.load(args.self_crops_file)
        else:
            extra = self_crop_cache(args.crops_from, train, cache_dir, threads=args.threads)
            print(f"self crops: {len(extra)} crops", file=sys.stderr)
        if args.save_crops:
            extra.save(args.save_crops)
            print(f"self crops -> {args.save_crops}", file=sys.stderr)
            if args.epochs == 0:
                return
        data = dataclasses.replace(data, train=concat(data.train, extra))
    if args.pseudo:
        data = dataclasses.replace(
            data, train=concat(data.train, pseudo_crops(pseudo, args, config, cache_dir))
        )
    trainer = Trainer(config, args.out, progress=False, data=data)
    state = {k: v for k, v in model.state_dict().items() if k != "point_offset"}
    trainer.model.load_state_dict(state, strict=False)
    history = trainer.fit()
    print(
        f"done: {len(history)} epochs on {len(data.train)} crops, last val NME "
        f"{history[-1]['val_nme']:.3f}% (GT crops) -> {args.out}/last.pt"
    )


if __name__ == "__main__":
    main()
