"""Label unlabelled faces with dlib's 68-point predictor: extra, noisy 300W-style labels.

dlib's predictor was trained on iBUG 300-W, whose labels follow the human 68-point mark-up, and
on 300W's HELEN test faces it is about twice as accurate as a network trained on 970 faces. Its
points on the unlabelled faces are therefore a large (noisy) extra training set in the right
mark-up. For each image: dlib HOG detector, the detection nearest the image centre, dlib's
predictor on that box. Images without a detection are skipped and counted.

The output is a ``folder`` dataset (``laplace-landmarks train --data folder``): each labelled
image is copied to ``OUT/<split>/<sub-folder>/<name>`` beside a 300W ``.pts`` (1-based, official
header). ``val_fraction`` of the sub-folders (identities, for LFW and YTF) go to ``OUT/val``, the
rest to ``OUT/train``, so the two splits share no person. ``OUT/labels.json`` records the source,
the teacher and the counts.

Licence: dlib's model was trained on iBUG 300-W (research use only); weights trained on these
labels inherit that restriction.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from laplace_landmarks.atomic import make_folder
from laplace_landmarks.data.datasets import held_out_identities, load_dataset
from laplace_landmarks.data.formats import write_pts
from laplace_landmarks.data.images import load_image
from laplace_landmarks.errors import LandmarksError


def central_detection(detections: list, width: int, height: int):
    """The detection whose box centre is nearest the image centre, or None."""
    if not detections:
        return None
    cx, cy = width / 2, height / 2
    return min(
        detections,
        key=lambda d: np.hypot((d.box[0] + d.box[2]) / 2 - cx, (d.box[1] + d.box[3]) / 2 - cy),
    )


def pseudo_label_folder(
    images: str | Path,
    out: str | Path,
    *,
    predictor: str | Path | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
) -> dict:
    """Label every image under ``images`` with dlib into the folder dataset ``out``.

    Returns the summary written to ``out/labels.json``. Raises LandmarksError for a missing
    input folder, an output folder that already holds labels, or no labelled face at all.
    """
    from laplace_landmarks.detection import DlibHogDetector
    from laplace_landmarks.path_evaluation import (
        dlib_points,
        find_dlib_predictor,
        load_dlib_predictor,
    )

    images, out = Path(images), Path(out)
    if not images.is_dir():
        raise LandmarksError(f"pseudo-label: image folder {images} not found")
    if (out / "labels.json").exists():
        raise LandmarksError(f"pseudo-label: {out} already holds labels; choose another --out")
    if limit is not None and limit < 1:
        raise LandmarksError(f"pseudo-label: --limit must be >= 1, got {limit}")
    faces = load_dataset("unlabeled", "all", root=images).samples[:limit]  # sorted, recursive
    files = [face.image_path for face in faces]
    if not files:
        raise LandmarksError(f"pseudo-label: no images under {images}")
    model_path = find_dlib_predictor(predictor)
    shape_predictor = load_dlib_predictor(model_path)
    detector = DlibHogDetector(upsample=1)
    groups = sorted({face.identity for face in faces})  # sub-folders: one person each
    held_out = held_out_identities(groups, seed, val_fraction) if len(groups) > 1 else set()
    counts = {"train": 0, "val": 0, "no_face": 0, "unreadable": 0}
    start = time.perf_counter()
    for index, path in enumerate(files):
        try:
            rgb = np.asarray(load_image(str(path)))
        except (LandmarksError, OSError, ValueError):
            counts["unreadable"] += 1
            continue
        detection = central_detection(detector(rgb), rgb.shape[1], rgb.shape[0])
        if detection is None:
            counts["no_face"] += 1
            continue
        points = dlib_points(shape_predictor, rgb, detection.box)
        relative = path.relative_to(images)
        split = "val" if faces[index].identity in held_out else "train"
        target = out / split / relative
        make_folder(target.parent)
        shutil.copyfile(path, target)
        write_pts(target.with_suffix(".pts"), points)
        counts[split] += 1
        if progress and (index + 1) % 500 == 0:
            print(f"pseudo-label: {index + 1}/{len(files)} images", file=sys.stderr)
    if counts["train"] + counts["val"] == 0:
        raise LandmarksError(f"pseudo-label: no face was detected in {len(files)} images")
    summary = {
        "images": str(images),
        "teacher": f"dlib shape predictor {model_path.name} (trained on iBUG 300-W, research use)",
        "detector": "dlib HOG, upsample 1, detection nearest the image centre",
        "val_fraction": val_fraction,
        "seed": seed,
        "counts": counts,
        "seconds": round(time.perf_counter() - start, 1),
    }
    (out / "labels.json").write_text(json.dumps(summary, indent=2))
    return summary
