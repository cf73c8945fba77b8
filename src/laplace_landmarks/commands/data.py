"""``laplace-landmarks data check``: counts, crop coverage, skipped files and a contact sheet.

A dataset is a name read from the data root, or a folder in any layout the loaders read (ytf68
CSV, 300W tree, COCO JSON, images with .pts, images alone). A folder with none of these, or a
dataset with no face that loads, is an error (exit 2). Faces the loader accepts but no crop can
use (every point in one place, coordinates far beyond any image, a face box of zero size) are
listed as problems, one line per face naming its image, and left out of the coverage; the check
still finishes. Coordinates are (x, y), 0-based, with pixel centres at integers.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from laplace_landmarks.atomic import make_folder
from laplace_landmarks.commands.arguments import add_data_root, plain
from laplace_landmarks.data.checks import check_crop_fits, face_problem, labelled_crop
from laplace_landmarks.data.crops import DEFAULT_EXTENSION, warp_crop
from laplace_landmarks.data.datasets import DATASET_NAMES, FOLDER_LAYOUTS
from laplace_landmarks.data.types import LandmarkDataset, Sample
from laplace_landmarks.errors import LandmarksError

MAX_SKIPPED_SHOWN = 20  # also the most problem faces listed


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data`` with its ``check`` subcommand."""
    parser = subparsers.add_parser("data", help="inspect datasets")
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="counts, crop coverage, skipped files, contact sheet",
        description=plain(__doc__),
    )
    check.add_argument(
        "dataset",
        metavar="PATH_OR_NAME",
        help=f"a dataset name ({', '.join(DATASET_NAMES)}) read from --data-root, or a folder "
        f"holding {FOLDER_LAYOUTS}",
    )
    check.add_argument(
        "--split",
        default=None,
        help="split to check (default: the dataset's training split, or the whole folder)",
    )
    add_data_root(check, "the named dataset")
    check.add_argument("--root", dest="data_root", help=argparse.SUPPRESS)  # deprecated name
    check.add_argument(
        "--extension",
        type=float,
        default=DEFAULT_EXTENSION,
        help=f"crop extension around the face for the coverage (default {DEFAULT_EXTENSION})",
    )
    check.add_argument("--sheet", type=Path, default=None, help="write a contact sheet PNG here")
    check.add_argument("--num", type=int, default=16, help="faces on the contact sheet")
    check.add_argument(
        "--seed", type=int, default=0, help="which faces the contact sheet shows (default 0)"
    )
    check.set_defaults(func=run_check)
    label = actions.add_parser(
        "pseudo-label",
        help="label unlabelled faces with dlib's 68-point predictor (a folder dataset)",
        description="Label every image under IMAGES with dlib's 68-point predictor (HOG box "
        "nearest the image centre) into OUT/{train,val}/... as a folder dataset with .pts "
        "files (split by sub-folder). dlib's model was trained on iBUG 300-W: research use only.",
    )
    label.add_argument("images", type=Path, help="folder of face images (searched recursively)")
    label.add_argument("--out", type=Path, required=True, help="new folder for the dataset")
    label.add_argument("--predictor", default=None, help="dlib 68-point .dat file")
    label.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of the faces written to OUT/val (default 0.1)",
    )
    label.add_argument("--seed", type=int, default=0, help="which faces go to val (default 0)")
    label.add_argument("--limit", type=int, default=None, help="label only the first N images")
    label.add_argument(
        "--only",
        type=Path,
        default=None,
        metavar="LIST",
        help="label only the images this CSV names in its first column, relative to the CSV's "
        "folder (e.g. ../shared/data/ytf68/train.csv: its training identities only)",
    )
    label.add_argument(
        "--add-as",
        default=None,
        metavar="NAME",
        help="add to the labels OUT already holds, under OUT/{train,val}/NAME/; a person already "
        "in OUT keeps that split",
    )
    label.add_argument(
        "--tta",
        action="store_true",
        help="the teacher's test-time augmentation: the median of dlib's points on the box, 6 "
        "moved or scaled boxes and all 7 in the mirror image (14 predictor calls per face)",
    )
    label.set_defaults(func=run_pseudo_label)


def open_dataset(name_or_path: str, split: str | None, root: str | None) -> LandmarkDataset:
    """A named dataset, or a folder in a layout the loaders read; bad input raises
    LandmarksError."""
    from laplace_landmarks.data.datasets import default_split, detect_dataset, load_dataset

    name = name_or_path.lower()
    if name in DATASET_NAMES:
        split = split or default_split(name, "train")
    elif not Path(name_or_path).is_dir():
        raise LandmarksError(
            f"{name_or_path!r} is neither a dataset name {DATASET_NAMES} nor an existing folder"
        )
    elif root is not None:
        raise LandmarksError(
            f"--data-root {root}: only for a dataset name; {name_or_path} is a folder, give it alone"
        )
    else:
        detected = detect_dataset(name_or_path)
        if detected is None:
            raise LandmarksError(f"{name_or_path}: no dataset here; expected {FOLDER_LAYOUTS}")
        name, root, split = detected.name, name_or_path, split or detected.split
    try:
        return load_dataset(name, split, root=root)
    except LandmarksError:
        raise
    except (OSError, ValueError) as exc:
        raise LandmarksError(str(exc)) from exc


def check_options(args: argparse.Namespace) -> None:
    """Refuse option values the check cannot use, before any work."""
    if not (math.isfinite(args.extension) and args.extension > -1):
        raise LandmarksError(f"--extension must be a finite number > -1, got {args.extension}")
    if args.num < 1:
        raise LandmarksError(f"--num must be >= 1, got {args.num}")
    if args.seed < 0:
        raise LandmarksError(f"--seed must be >= 0, got {args.seed}")


def split_problems(
    samples: list[Sample], extension: float
) -> tuple[list[Sample], list[tuple[str, str]]]:
    """The faces a crop can use, and (image path, reason) for each face that has a problem."""
    usable, problems = [], []
    for sample in samples:
        reason = face_problem(sample, extension)
        if reason is None:
            usable.append(sample)
        else:
            problems.append((str(sample.image_path), reason))
    return usable, problems


def coverage(samples: list[Sample], extension: float) -> tuple[float, float]:
    """Share of visible points inside their crop, and share of faces entirely inside.

    Every sample must be usable (see `split_problems`)."""
    inside_points = total_points = whole_faces = 0
    for sample in samples:
        crop = labelled_crop(sample, extension)
        points = crop.to_crop(sample.points)
        if sample.visibility is not None:
            points = points[sample.visibility]
        inside = ((points >= -0.5) & (points <= crop.size - 0.5)).all(axis=1)
        inside_points, total_points = inside_points + inside.sum(), total_points + len(inside)
        whole_faces += bool(inside.all())
    return inside_points / max(1, total_points), whole_faces / max(1, len(samples))


def render_face(sample: Sample, extension: float, detector) -> np.ndarray | None:
    """A (160, 160, 3) picture of the crop with its points drawn; None when no face is detected.

    Raises ImageError for an unreadable image and ValueError for a face with a problem."""
    from PIL import Image, ImageDraw

    from laplace_landmarks.data.images import load_image
    from laplace_landmarks.detection import crop_from_detection

    image = load_image(sample.image_path)
    if sample.points is None:
        detections = detector(image)
        if not detections:
            return None
        crop = crop_from_detection(detections[0].box)
    else:
        problem = face_problem(sample, extension)
        if problem is not None:
            raise ValueError(problem)
        crop = labelled_crop(sample, extension)
    check_crop_fits(crop, image.shape)
    picture = Image.fromarray(warp_crop(image, crop)).resize((160, 160), Image.Resampling.NEAREST)
    if sample.points is not None:
        draw = ImageDraw.Draw(picture)
        for x, y in (crop.to_crop(sample.points) + 0.5) * 2:  # pixel centres in the 2x picture
            draw.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=(0, 255, 0))
    return np.asarray(picture)


def contact_sheet(
    dataset: LandmarkDataset, path: Path, num: int, extension: float, seed: int
) -> tuple[int, list[tuple[str, str]]]:
    """Write a grid of ``num`` random crops with their points drawn.

    Returns the number of tiles and (path, reason) for faces that could not be drawn (black tiles).
    """
    from PIL import Image

    from laplace_landmarks.errors import ImageError

    detector = None
    if any(sample.points is None for sample in dataset.samples):
        from laplace_landmarks.detection import DlibHogDetector

        detector = DlibHogDetector()
    order = np.random.default_rng(seed).permutation(len(dataset.samples))[:num]
    tiles, failed = [], []
    for index in order:
        sample = dataset.samples[index]
        try:
            tile = render_face(sample, extension, detector)
            if tile is None:
                failed.append((str(sample.image_path), "no face detected"))
        except (ImageError, ValueError, Image.DecompressionBombError) as exc:
            tile = None
            failed.append((str(sample.image_path), str(exc)))
        tiles.append(np.zeros((160, 160, 3), np.uint8) if tile is None else tile)
    columns = max(1, math.ceil(math.sqrt(len(tiles))))
    rows = max(1, math.ceil(len(tiles) / columns))
    sheet = np.zeros((rows * 160, columns * 160, 3), np.uint8)
    for position, tile in enumerate(tiles):
        row, column = divmod(position, columns)
        sheet[row * 160 : (row + 1) * 160, column * 160 : (column + 1) * 160] = tile
    try:
        make_folder(path.parent)
        Image.fromarray(sheet).save(path)
    except (OSError, ValueError) as exc:  # a folder in the way, no space, an unknown suffix
        raise LandmarksError(f"--sheet {path}: cannot write the contact sheet ({exc})") from exc
    return len(tiles), failed


def print_listed(kind: str, items: list[tuple[str, str]]) -> None:
    """One ``kind: path: reason`` line per item, the first `MAX_SKIPPED_SHOWN` of them."""
    for path, reason in items[:MAX_SKIPPED_SHOWN]:
        print(f"{kind}: {path}: {reason}")
    if len(items) > MAX_SKIPPED_SHOWN:
        print(f"... and {len(items) - MAX_SKIPPED_SHOWN} more {kind}")


def print_labelled(labelled: list[Sample], extension: float) -> None:
    """Points per face, the faces with problems, and the crop coverage of the others."""
    counts = sorted({s.points.shape[0] for s in labelled})
    print(f"points per face: {', '.join(map(str, counts))}")
    usable, problems = split_problems(labelled, extension)
    if problems:
        print(f"faces with problems: {len(problems)} (left out of the crop coverage)")
        print_listed("problem", problems)
    if not usable:
        print(f"crop coverage (extension {extension}): no usable face")
        return
    point_share, face_share = coverage(usable, extension)
    print(
        f"crop coverage (extension {extension}): {100 * point_share:.2f}% of points "
        f"inside the crop, {100 * face_share:.2f}% of faces entirely inside"
    )


def run_check(args: argparse.Namespace) -> int:
    check_options(args)
    dataset = open_dataset(args.dataset, args.split, args.data_root)
    labelled = [s for s in dataset.samples if s.points is not None]
    print(f"dataset: {dataset.name} split: {dataset.split}")
    print(
        f"faces: {len(dataset.samples)} ({len(labelled)} labelled), skipped: {len(dataset.skipped)}"
    )
    identities = {s.identity for s in dataset.samples}
    print(f"identities/subsets: {len(identities)}")
    if labelled:
        print_labelled(labelled, args.extension)
    print_listed("skipped", dataset.skipped)
    if not dataset.samples:
        raise LandmarksError(
            f"{args.dataset}: no face loaded from {dataset.name}/{dataset.split}"
            + (f" ({len(dataset.skipped)} files skipped, listed above)" if dataset.skipped else "")
        )
    if args.sheet is not None:
        drawn, failed = contact_sheet(dataset, args.sheet, args.num, args.extension, args.seed)
        for path, reason in failed:
            print(f"not drawn: {path}: {reason}")
        print(f"contact sheet: {drawn} faces ({len(failed)} not drawn) -> {args.sheet}")
    return 0


def run_pseudo_label(args: argparse.Namespace) -> int:
    from laplace_landmarks.pseudo_labels import pseudo_label_folder

    if not 0 < args.val_fraction < 1:
        raise LandmarksError(f"--val-fraction must be between 0 and 1, got {args.val_fraction}")
    summary = pseudo_label_folder(
        args.images,
        args.out,
        predictor=args.predictor,
        val_fraction=args.val_fraction,
        seed=args.seed,
        limit=args.limit,
        only=args.only,
        add_as=args.add_as,
        tta=args.tta,
    )
    counts = summary["added"][-1]["counts"] if args.add_as else summary["counts"]
    print(
        f"labelled {counts['train']} train + {counts['val']} val faces; {counts['no_face']} "
        f"images without a face, {counts['unreadable']} unreadable -> {args.out}"
    )
    return 0
