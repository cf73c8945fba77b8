"""Label unlabelled faces with a teacher model, for distillation into a smaller model.

Each image under ``--images`` (folders, searched recursively) goes through the teacher's user
path: dlib HOG detector, the detection nearest the image centre, ``Landmarker.predict(image,
boxes=[box])`` (box crop -> first pass -> 5-point re-crop -> second pass). Several ``--teacher``
models are averaged (points and scales, on the same crops: the first teacher's path chooses the
crops). Faces of the identities in ``--exclude-splits`` of ytf68 (default: val and test) are
dropped, so neither the selection split nor the test split leaks into training through a
person's other photos. ``--keep-fraction`` keeps the faces whose teacher is most certain: the
ones with the smallest mean predicted scale relative to the inter-ocular distance.

Writes an ``.npz`` with ``paths``, ``identities``, ``points`` (N, 68, 2; image pixels),
``scale`` (N, 68, 2) and ``boxes`` (N, 4), read by ``self_crop_finetune.py --pseudo FILE``.

    python benchmarks/pseudo_label.py --teacher rcn-lite-accurate \\
        --images ../shared/data/unlabeled/ytf ../shared/data/unlabeled/lfw --out pseudo.npz
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from laplace_landmarks.data.datasets import IMAGE_SUFFIXES
from laplace_landmarks.data.images import load_image
from laplace_landmarks.inference import Landmarker


def averaged(landmarkers):
    """The first Landmarker, its network pass replaced by the mean of all members' passes."""
    first = landmarkers[0]
    if len(landmarkers) == 1:
        return first
    forwards = [lm._forward for lm in landmarkers]

    def forward(crops):
        outs = [f(crops) for f in forwards]
        return sum(o[0] for o in outs) / len(outs), sum(o[1] for o in outs) / len(outs)

    first._forward = forward
    return first


def excluded_identities(splits: list[str], data_root: str | None) -> set[str]:
    from laplace_landmarks.data.datasets import load_dataset

    names: set[str] = set()
    for split in splits:
        names |= {s.identity for s in load_dataset("ytf68", split, root=data_root).samples}
    return names


def image_files(folders: list[str]) -> list[Path]:
    files = []
    for folder in folders:
        root = Path(folder)
        if not root.is_dir():
            raise SystemExit(f"--images: {folder} is not a folder")
        files += sorted(
            p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", action="append", required=True, help="name or weights file")
    parser.add_argument("--images", nargs="+", required=True, help="folders of face images")
    parser.add_argument("--out", required=True, help=".npz file")
    parser.add_argument("--exclude-splits", nargs="*", default=["val", "test"])
    parser.add_argument("--data-root", help="ytf68 folder for the excluded identities")
    parser.add_argument("--keep-fraction", type=float, default=1.0)
    parser.add_argument("--limit", type=int, help="first N images (tests)")
    parser.add_argument("--shard", default="0/1", help="I/N: every N-th image from the I-th")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if not 0 < args.keep_fraction <= 1:
        raise SystemExit("--keep-fraction must be in (0, 1]")
    try:
        index, count = map(int, args.shard.split("/"))
        assert 0 <= index < count
    except (ValueError, AssertionError):
        raise SystemExit(f"--shard must be I/N with 0 <= I < N, got {args.shard!r}") from None
    torch.set_num_threads(args.threads)

    from laplace_landmarks.evaluation import normalizer

    teachers = [
        Landmarker.load(name, refine=True, threads=args.threads, flip_test=False)
        for name in args.teacher
    ]
    teacher = averaged(teachers)
    excluded = excluded_identities(args.exclude_splits, args.data_root)
    found = image_files(args.images)
    files = [p for p in found if p.parent.name not in excluded]
    dropped_people = len(found) - len(files)
    files = files[: args.limit] if args.limit else files
    files = files[index::count]
    paths, identities, points, scales, boxes = [], [], [], [], []
    no_face = 0
    start = time.perf_counter()
    for path in files:
        rgb = load_image(path)
        detections = teacher.detector(rgb)
        if not detections:
            no_face += 1
            continue
        centre = np.array([rgb.shape[1], rgb.shape[0]]) / 2
        box = min(
            (d.box for d in detections),
            key=lambda b: np.hypot((b[0] + b[2]) / 2 - centre[0], (b[1] + b[3]) / 2 - centre[1]),
        )
        face = teacher.predict(rgb, boxes=[box])[0]
        paths.append(str(path))
        identities.append(path.parent.name)
        points.append(face.points)
        scales.append(face.scale)
        boxes.append(box)
    points_a, scale_a = np.array(points), np.array(scales)
    iod = normalizer(points_a, "inter-ocular")
    uncertainty = scale_a.mean(axis=(1, 2)) / iod
    keep = np.argsort(uncertainty, kind="stable")[: int(round(len(points_a) * args.keep_fraction))]
    keep.sort()
    np.savez_compressed(
        args.out,
        paths=np.array(paths)[keep],
        identities=np.array(identities)[keep],
        points=points_a[keep],
        scale=scale_a[keep],
        boxes=np.array(boxes)[keep],
        teachers=np.array(args.teacher),
    )
    print(
        f"pseudo labels: {len(keep)} faces kept of {len(points_a)} labelled "
        f"({no_face} images without a face, {dropped_people} images of excluded people, "
        f"{len(files)} images read; {time.perf_counter() - start:.0f} s) -> {args.out}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
