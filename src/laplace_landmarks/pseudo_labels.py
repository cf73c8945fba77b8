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
the teacher and the counts. A second folder can be added to the same dataset (``add_as``, e.g.
ytf68's training frames, restricted to its training identities with ``only``).

``tta``: the teacher's test-time augmentation. dlib's cascade starts from its box, and its
error depends on where exactly that box lies and on which side of the face is which; its points
on the box, on 6 boxes moved by 4 % of their width or scaled by 6 %, and on each of the 7 boxes
in the mirrored image (points mirrored back, left and right swapped) are combined by their
per-coordinate median. On 300W val this takes dlib from 3.17 to 2.91 % NME (14 predictor calls
per face instead of 1; ``docs/results.md``).

Licence: dlib's model was trained on iBUG 300-W (research use only); weights trained on these
labels inherit that restriction.
"""

from __future__ import annotations

import csv
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


def read_image_list(path: str | Path) -> set[Path]:
    """The images a list file names: the first column of each CSV row (a header row whose first
    field is ``image`` is skipped), each path relative to the list file's folder, resolved."""
    path = Path(path)
    try:
        rows = list(csv.reader(path.read_text().splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LandmarksError(f"pseudo-label: image list {path}: {exc}") from exc
    names = [row[0].strip() for row in rows if row and row[0].strip()]
    if names and names[0] == "image":
        names = names[1:]
    if not names:
        raise LandmarksError(f"pseudo-label: image list {path} names no image")
    return {(path.parent / name).resolve() for name in names}


def _person(identity: str) -> str:
    """A sub-folder's person: its last component (LFW, YTF and ytf68 name folders by person)."""
    return identity.rsplit("/", 1)[-1]


def _splits_of_people(out: Path) -> dict[str, str]:
    """person -> split, for the faces already labelled in ``out``."""
    return {
        _person(sample.identity): split
        for split in ("train", "val")
        if (out / split).is_dir()
        for sample in load_dataset("folder", split, out).samples
    }


def pseudo_label_folder(
    images: str | Path,
    out: str | Path,
    *,
    predictor: str | Path | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    limit: int | None = None,
    only: str | Path | None = None,
    add_as: str | None = None,
    tta: bool = False,
    progress: bool = True,
) -> dict:
    """Label every image under ``images`` with dlib into the folder dataset ``out``.

    ``only``: a list file (e.g. ytf68's ``train.csv``) naming the images to label; the others are
    left out. ``add_as``: add to the dataset ``out`` already holds, under ``OUT/<split>/<add_as>/``;
    a person already in ``out`` (same sub-folder name) keeps that split, the others are drawn as
    usual, so train and val still share no person. ``tta``: the teacher's test-time
    augmentation (:func:`~laplace_landmarks.dlib_reference.teacher_points`).

    Returns the summary written to ``out/labels.json``. Raises LandmarksError for a missing
    input folder, an output folder that already holds labels (without ``add_as``) or holds none
    (with it), a list that names none of the images, or no labelled face at all.
    """
    from laplace_landmarks.detection import DlibHogDetector
    from laplace_landmarks.dlib_reference import (
        find_dlib_predictor,
        load_dlib_predictor,
        teacher_points,
    )

    images, out = Path(images), Path(out)
    if not images.is_dir():
        raise LandmarksError(f"pseudo-label: image folder {images} not found")
    labelled = (out / "labels.json").exists()
    if labelled and add_as is None:
        raise LandmarksError(
            f"pseudo-label: {out} already holds labels; choose another --out (or --add-as NAME)"
        )
    if add_as is not None:
        if not labelled:
            raise LandmarksError(f"pseudo-label: --add-as: {out} holds no labels to add to")
        if not add_as or add_as in (".", "..") or "/" in add_as or "\\" in add_as:
            raise LandmarksError(
                f"pseudo-label: --add-as must be a plain folder name, got {add_as!r}"
            )
        if (out / "train" / add_as).exists() or (out / "val" / add_as).exists():
            raise LandmarksError(f"pseudo-label: {out} already holds a part named {add_as!r}")
    if limit is not None and limit < 1:
        raise LandmarksError(f"pseudo-label: --limit must be >= 1, got {limit}")
    faces = load_dataset("unlabeled", "all", root=images).samples  # sorted, recursive
    if only is not None:
        wanted = read_image_list(only)
        faces = [face for face in faces if Path(face.image_path).resolve() in wanted]
        if not faces:
            raise LandmarksError(f"pseudo-label: {only} names none of the images under {images}")
    faces = faces[:limit]
    files = [face.image_path for face in faces]
    if not files:
        raise LandmarksError(f"pseudo-label: no images under {images}")
    model_path = find_dlib_predictor(predictor)
    shape_predictor = load_dlib_predictor(model_path)
    detector = DlibHogDetector(upsample=1)
    known = _splits_of_people(out) if add_as is not None else {}
    groups = sorted({face.identity for face in faces if _person(face.identity) not in known})
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
        points = teacher_points(shape_predictor, rgb, detection.box, tta)
        relative = Path(path).relative_to(images)
        identity = faces[index].identity
        split = known.get(_person(identity)) or ("val" if identity in held_out else "train")
        target = out / split / (add_as or "") / relative
        make_folder(target.parent)
        shutil.copyfile(path, target)
        write_pts(target.with_suffix(".pts"), points)
        counts[split] += 1
        if progress and (index + 1) % 500 == 0:
            print(f"pseudo-label: {index + 1}/{len(files)} images", file=sys.stderr)
    if counts["train"] + counts["val"] == 0:
        raise LandmarksError(f"pseudo-label: no face was detected in {len(files)} images")
    part = {  # this folder's run; the whole summary when it starts the dataset
        "images": str(images),
        **({} if only is None else {"only": str(only)}),
        "tta": tta,
        "val_fraction": val_fraction,
        "seed": seed,
        "counts": counts,
        "seconds": round(time.perf_counter() - start, 1),
    }
    if add_as is not None:
        summary = json.loads((out / "labels.json").read_text())
        summary.setdefault("added", []).append({"as": add_as, **part})
        totals = summary["counts"]
        summary["counts"] = {key: totals.get(key, 0) + counts[key] for key in counts}
    else:
        summary = {
            **part,
            "teacher": f"dlib shape predictor {model_path.name} (trained on iBUG 300-W, research use)",
            "detector": "dlib HOG, upsample 1, detection nearest the image centre",
        }
    (out / "labels.json").write_text(json.dumps(summary, indent=2))
    return summary
