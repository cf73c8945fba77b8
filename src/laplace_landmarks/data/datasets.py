"""Landmark datasets by name: 300W, AFLW, WFLW, COFW, ytf68, any folder of ``.pts``, unlabelled.

Points are (x, y) float64, 0-based, with pixel centres at integers (``.pts`` files are 1-based on
disk and shifted on read). Loading only checks that each image exists and its annotation is
valid; images are decoded later (by the crop cache). Bad samples are skipped and listed in
``dataset.skipped`` as (path, reason); a missing dataset folder raises FileNotFoundError.

Data root: ``root=`` if given (``--data-root`` on the command line), else
``$LAPLACE_LANDMARKS_DATA_ROOT``, else ``<repo>/../shared/data``. Each name has a default
sub-folder under it (``300w``, ``aflw``, ``wflw``, ``cofw``, ``ytf68``, ``unlabeled``); ``root``
and the variable may each be either the data root or the dataset folder itself.

Names and splits:
- ``300w``: folder with ``afw/``, ``helen/{trainset,testset}``, ``lfpw/{trainset,testset}``,
  ``ibug/`` and ``300W/{01_Indoor,02_Outdoor}`` (``300W_indoor``/``300W_outdoor`` accepted).
  Splits: ``train`` (afw + helen/trainset + lfpw/trainset: 3,148 when complete), ``trainval-train``
  / ``val`` (``train`` split **by photo**: every face of one photo, ``<photo>_<k>.pts``, stays on
  one side; ``val`` holds ``val_fraction`` of the photos chosen with ``seed``), ``common``
  (helen/testset + lfpw/testset: 554), ``challenge`` (ibug: 135), ``full`` (common + challenge:
  689), ``indoor``, ``outdoor``, ``private``/``300w-private`` (both). A flat ``helen/`` or
  ``lfpw/`` (images directly inside, no trainset/testset) counts as train. AFW stores one image
  per face, so multi-face photos appear as byte-identical image files; all are kept.
- ``aflw`` (19), ``wflw`` (98), ``cofw`` (29): COCO JSON as MMPose ships it; the split picks
  ``face_landmarks_<name>_<split>.json``, ``<name>_<split>.json``, ``<split>_<name>.json`` or
  ``<split>.json`` in the root or ``root/annotations``; images in ``root/images`` or the root.
- ``ytf68``: ``train`` (train.csv, 2,944), ``test`` (test.csv, 845), and ``trainval-train`` /
  ``val``: train.csv split by identity, ``val`` holding ``val_fraction`` of the identities
  chosen with ``seed``.
- ``folder``: ``root`` (recursively) holds images with a ``.pts`` of the same name beside them;
  split ``all`` or a sub-folder name. K is ``num_landmarks`` or the most common count.
- ``unlabeled``: every image under ``root`` (recursively), points None; split ``all`` or a
  sub-folder (``lfw``, ``ytf``).
``max_images`` keeps a subset chosen with ``seed``, in the original (sorted) order.
`default_split` names each dataset's split for a role (``test`` is 300W's ``common``), and
`detect_dataset` tells which of these layouts a folder holds.

Image names read from an annotation file (CSV, COCO JSON) must stay inside the dataset folder:
a name that leads out of it (``../../etc/passwd``, an absolute path elsewhere) raises FormatError
naming the annotation file and the entry (see `image_in_root`).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from laplace_landmarks.data.formats import (
    LandmarkRecord,
    read_coco_keypoints,
    read_landmarks_csv,
    read_pts,
)
from laplace_landmarks.data.types import LandmarkDataset, Sample
from laplace_landmarks.errors import FormatError

DATA_ROOT_ENV = "LAPLACE_LANDMARKS_DATA_ROOT"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
NUM_LANDMARKS = {"300w": 68, "aflw": 19, "wflw": 98, "cofw": 29, "ytf68": 68}
DATASET_NAMES = ("300w", "aflw", "wflw", "cofw", "ytf68", "folder", "unlabeled")
YTF68_SPLITS = ("train", "test", "trainval-train", "val")
COCO_NAMES = ("aflw", "wflw", "cofw")
#: The split a command uses when none is given, per dataset and role: ``train`` (the whole
#: training split: ``data check``), ``fit`` / ``val`` (fit and check: ``calibrate``), ``test``
#: (score: ``evaluate``). 300W has no ``test`` split: it is scored on ``common``.
DEFAULT_SPLITS: dict[str, dict[str, str]] = {
    "300w": {"train": "train", "fit": "trainval-train", "val": "val", "test": "common"},
    "ytf68": {"train": "train", "fit": "trainval-train", "val": "val", "test": "test"},
    **{
        name: {"train": "train", "fit": "train", "val": "val", "test": "test"}
        for name in COCO_NAMES
    },
    "folder": {"train": "all", "fit": "train", "val": "val", "test": "all"},
    "unlabeled": {"train": "all", "fit": "all", "val": "all", "test": "all"},
}
#: What `detect_dataset` recognises, for messages.
FOLDER_LAYOUTS = (
    "ytf68's train.csv / test.csv, a 300W tree (afw/, helen/, lfpw/, ibug/, 300W/), COCO JSON "
    "named for aflw, wflw or cofw (e.g. cofw_test.json), images with a .pts beside each, or "
    "images alone (unlabelled)"
)

_SUBSETS_300W = {  # subset -> candidate folders; the first that exists is used
    "afw": ("afw",),
    "helen/trainset": ("helen/trainset", "helen"),
    "lfpw/trainset": ("lfpw/trainset", "lfpw"),
    "helen/testset": ("helen/testset",),
    "lfpw/testset": ("lfpw/testset",),
    "ibug": ("ibug",),
    "indoor": ("300W/01_Indoor", "300W_indoor", "01_Indoor"),
    "outdoor": ("300W/02_Outdoor", "300W_outdoor", "02_Outdoor"),
}
_SPLITS_300W = {
    "train": ("afw", "helen/trainset", "lfpw/trainset"),
    "common": ("helen/testset", "lfpw/testset"),
    "challenge": ("ibug",),
    "full": ("helen/testset", "lfpw/testset", "ibug"),
    "indoor": ("indoor",),
    "outdoor": ("outdoor",),
    "private": ("indoor", "outdoor"),
    "300w-private": ("indoor", "outdoor"),
    "trainval-train": ("afw", "helen/trainset", "lfpw/trainset"),
    "val": ("afw", "helen/trainset", "lfpw/trainset"),
}
# What a result on a partial split may be called: a split with subsets missing is named by the
# subsets it has ("300W common, HELEN part"), never by the full benchmark's name.
_SUBSET_LABELS = {
    "afw": "AFW",
    "helen/trainset": "HELEN train",
    "lfpw/trainset": "LFPW train",
    "helen/testset": "HELEN",
    "lfpw/testset": "LFPW",
    "ibug": "iBUG",
    "indoor": "indoor",
    "outdoor": "outdoor",
}
_SPLIT_LABELS = {"common": "300W common", "challenge": "300W challenge", "full": "300W full"}
_reported_trees: set[str] = set()
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Options:
    name: str
    split: str
    seed: int
    val_fraction: float
    num_landmarks: int | None


@dataclass(frozen=True)
class DetectedDataset:
    """What `detect_dataset` found: the name `load_dataset` reads a folder as, and its splits."""

    name: str
    splits: tuple[str, ...]

    @property
    def split(self) -> str:
        """The split to read when none is given: the dataset's ``train`` default if the folder
        has it, else its first split."""
        wanted = default_split(self.name, "train")
        return wanted if wanted in self.splits else self.splits[0]


def default_split(name: str, role: str = "test") -> str:
    """The split of dataset ``name`` for ``role`` (``train``, ``fit``, ``val``, ``test``) when none
    is given; see `DEFAULT_SPLITS`. An unknown name gets the role itself."""
    if role not in ("train", "fit", "val", "test"):
        raise ValueError(f"role: expected train, fit, val or test, got {role!r}")
    return DEFAULT_SPLITS.get(name.lower(), {}).get(role, role)


def default_data_root() -> Path | None:
    """``$LAPLACE_LANDMARKS_DATA_ROOT`` if set, else ``<repo>/../shared/data`` if it exists."""
    if os.environ.get(DATA_ROOT_ENV):
        return Path(os.environ[DATA_ROOT_ENV])
    candidate = Path(__file__).resolve().parents[3].parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def detect_dataset(folder: str | Path) -> DetectedDataset | None:
    """The layout `load_dataset` reads in ``folder``, or None when it holds none of them.

    Tried in order: ytf68 (``train.csv`` / ``test.csv``), a 300W tree, COCO JSON named for
    aflw, wflw or cofw, images with a ``.pts`` beside them (``folder``), images alone
    (``unlabeled``). Only names are looked at; annotations are read (and checked) on loading.
    """
    folder = Path(folder)
    if _looks_like("ytf68", folder):
        files = {"train": "train.csv", "trainval-train": "train.csv", "val": "train.csv"}
        splits = [s for s in YTF68_SPLITS if (folder / files.get(s, "test.csv")).is_file()]
        return DetectedDataset("ytf68", tuple(splits))
    if _looks_like("300w", folder):
        present = subsets_300w(folder)
        splits = [s for s, subsets in _SPLITS_300W.items() if any(x in present for x in subsets)]
        return DetectedDataset("300w", tuple(splits)) if splits else None
    for name in COCO_NAMES:
        splits = coco_splits(folder, name)
        if splits:
            return DetectedDataset(name, splits)
    files = _visible_files(folder)
    suffixes = {p.suffix.lower() for p in files}
    if ".pts" in suffixes:
        return DetectedDataset("folder", ("all",))
    if suffixes & set(IMAGE_SUFFIXES):
        return DetectedDataset("unlabeled", ("all",))
    return None


def _visible_files(folder: Path) -> list[Path]:
    """Every file under ``folder`` (recursively) whose name does not start with a dot."""
    return [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]


def load_dataset(
    name: str,
    split: str,
    root: str | Path | None = None,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    num_landmarks: int | None = None,
    max_images: int | None = None,
) -> LandmarkDataset:
    """Load a dataset's split as a list of `Sample` (points (x, y), 0-based pixel centres).

    See the module docstring for names, splits and folder layouts. Raises ValueError for an
    unknown name or split or bad options, FileNotFoundError when the data is not there.
    """
    name = name.lower()
    if name not in DATASET_NAMES:
        raise ValueError(f"name: unknown dataset {name!r}; choose from {DATASET_NAMES}")
    if max_images is not None and max_images < 0:
        raise ValueError(f"max_images: must be >= 0, got {max_images}")
    expected = num_landmarks if num_landmarks is not None else NUM_LANDMARKS.get(name)
    options = _Options(name, split, seed, val_fraction, expected)
    loader = {"300w": _load_300w, "ytf68": _load_ytf68, "folder": _load_folder}.get(name)
    loader = loader or (_load_unlabeled if name == "unlabeled" else _load_coco)
    samples, skipped, count = loader(_resolve_root(name, root), options)
    samples = _subsample(samples, max_images, seed)
    if skipped:
        _log.warning("%s/%s: skipped %d bad samples", name, split, len(skipped))
    return LandmarkDataset(name, split, count, samples, skipped)


Loaded = tuple[list[Sample], list[tuple[str, str]], int]


def _resolve_root(name: str, root: str | Path | None) -> Path:
    """Pick the dataset folder: the given root, or its default sub-folder ``<root>/<name>``."""
    given = root is not None
    if root is None:
        if name == "folder":
            raise ValueError(
                "root: the 'folder' dataset needs root= (Python) or --data-root (command line): "
                "a folder of images with a .pts beside each"
            )
        base = default_data_root()
        if base is None:
            raise FileNotFoundError(f"no data root for {name!r}: {_ROOT_HINT}")
        inside = base / name
        root = base if _looks_like(name, base) and not inside.is_dir() else inside
    root = Path(root)
    if name != "folder" and not _looks_like(name, root) and (root / name).is_dir():
        root = root / name
    if not root.is_dir():
        hint = "" if given else f" ({_root_source()}); {_ROOT_HINT}"
        raise FileNotFoundError(f"{name}: data folder {root} not found{hint}")
    return root


_ROOT_HINT = f"give --data-root (root= in Python) or set {DATA_ROOT_ENV}"


def _root_source() -> str:
    """Where the default data root came from, for messages."""
    return f"from ${DATA_ROOT_ENV}" if os.environ.get(DATA_ROOT_ENV) else "the default data root"


def _looks_like(name: str, root: Path) -> bool:
    if name == "ytf68":
        return (root / "train.csv").is_file() or (root / "test.csv").is_file()
    if name == "300w":
        return any((root / c).is_dir() for cs in _SUBSETS_300W.values() for c in cs)
    if name == "unlabeled":
        return False
    return any(root.glob("*.json")) or any(root.glob("annotations/*.json"))


def _subsample(samples: list[Sample], max_images: int | None, seed: int) -> list[Sample]:
    if max_images is None or max_images >= len(samples):
        return samples
    keep = np.sort(np.random.default_rng(seed).choice(len(samples), max_images, replace=False))
    return [samples[i] for i in keep]


# ---------------------------------------------------------------- .pts folders (300W, folder)
def _load_300w(root: Path, options: _Options) -> Loaded:
    if options.split not in _SPLITS_300W:
        raise ValueError(f"split: unknown 300w split {options.split!r}; use {list(_SPLITS_300W)}")
    present = subsets_300w(root)
    _report_partial_tree(root, present)
    folders = [present[s] for s in _SPLITS_300W[options.split] if s in present]
    if not folders:
        wanted = [c for s in _SPLITS_300W[options.split] for c in _SUBSETS_300W[s]]
        here = [s for s, subsets in _SPLITS_300W.items() if any(x in present for x in subsets)]
        raise FileNotFoundError(
            f"300w/{options.split}: none of {wanted} found under {root}; splits here: {here}"
        )
    samples, skipped = [], []
    for folder in folders:
        identity = folder.relative_to(root).as_posix()
        found_samples, found_skipped = _scan_pts(folder, False, identity, options.num_landmarks)
        samples += found_samples
        skipped += found_skipped
    if options.split in ("trainval-train", "val"):
        photos = [photo_300w(s) for s in samples]
        held_out = held_out_identities(photos, options.seed, options.val_fraction)
        samples = [
            s
            for s, p in zip(samples, photos, strict=True)
            if (p in held_out) == (options.split == "val")
        ]
    return samples, skipped, options.num_landmarks or 68


def subsets_300w(root: Path) -> dict[str, Path]:
    """The 300W subsets present under ``root``: subset name -> its folder."""
    present = {}
    for subset, candidates in _SUBSETS_300W.items():
        found = next((root / c for c in candidates if (root / c).is_dir()), None)
        if subset.startswith(("helen", "lfpw")) and found == root / subset.split("/")[0]:
            found = None if _has_subsets(found) else found  # flat helen/lfpw counts as train
        if found is not None:
            present[subset] = found
    return present


def photo_300w(sample: Sample) -> str:
    """The photo a 300W face comes from: ``<subset>/<photo>`` of ``<photo>_<k>.pts``.

    300W files of one photo's faces are named ``<photo>_1``, ``<photo>_2``, ...; a name without
    a numeric ``_<k>`` suffix is its own photo."""
    stem = Path(sample.image_path).stem
    head, _, tail = stem.rpartition("_")
    return f"{sample.identity}/{head if head and tail.isdigit() else stem}"


def split_label_300w(split: str, root: str | Path | None = None) -> str:
    """What a result on a 300W split may honestly be called, given the subsets present.

    ``common`` with only ``helen/testset`` present is "300W common, HELEN part"; a complete
    split keeps the benchmark's name; other splits are named by their subsets."""
    subsets = _SPLITS_300W.get(split, ())
    try:
        present = subsets_300w(_resolve_root("300w", root))
    except FileNotFoundError:
        present = {}
    have = [s for s in subsets if s in present]
    base = _SPLIT_LABELS.get(split, f"300W {split}")
    if not have or len(have) == len(subsets):
        return base
    return f"{base}, {' + '.join(_SUBSET_LABELS[s] for s in have)} part"


def _report_partial_tree(root: Path, present: dict[str, Path]) -> None:
    """Log once per root which 300W subsets are present and which are missing."""
    key = str(root.resolve())
    missing = [s for s in _SUBSETS_300W if s not in present]
    if key in _reported_trees or not missing:
        return
    _reported_trees.add(key)
    _log.warning(
        "300w at %s is a partial tree: present %s; missing %s",
        root,
        ", ".join(present) or "none",
        ", ".join(missing),
    )


def _has_subsets(folder: Path) -> bool:
    return (folder / "trainset").is_dir() or (folder / "testset").is_dir()


def _load_folder(root: Path, options: _Options) -> Loaded:
    folder = _split_folder(root, options.split)
    samples, skipped = _scan_pts(folder, True, None, options.num_landmarks)
    counts = Counter(len(s.points) for s in samples)
    expected = options.num_landmarks or (counts.most_common(1)[0][0] if counts else 0)
    kept = [s for s in samples if len(s.points) == expected]
    skipped += [
        (str(s.image_path), f"has {len(s.points)} points, expected {expected}")
        for s in samples
        if len(s.points) != expected
    ]
    return kept, skipped, expected


def _split_folder(root: Path, split: str) -> Path:
    folder = root if split in ("all", "", "train") and not (root / split).is_dir() else root / split
    if not folder.is_dir():
        subfolders = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name[0] != ".")
        raise FileNotFoundError(
            f"split {split!r}: no folder {folder}; use 'all' or a sub-folder: {subfolders}"
        )
    return folder


def _scan_pts(
    folder: Path, recursive: bool, identity: str | None, expected: int | None
) -> tuple[list[Sample], list[tuple[str, str]]]:
    """Pair every ``.pts`` in ``folder`` with the image of the same stem beside it."""
    files = [p for p in (folder.rglob("*") if recursive else folder.iterdir()) if p.is_file()]
    files = sorted(p for p in files if not p.name.startswith("."))
    images = {(p.parent, p.stem): p for p in reversed(files) if p.suffix.lower() in IMAGE_SUFFIXES}
    samples, skipped, annotated = [], [], set()
    for pts in (p for p in files if p.suffix.lower() == ".pts"):
        image = images.get((pts.parent, pts.stem))
        annotated.add((pts.parent, pts.stem))
        if image is None:
            skipped.append((str(pts), "no image with the same name beside it"))
            continue
        try:
            points = read_pts(pts, expected)
        except FormatError as error:
            skipped.append((str(pts), str(error)))
            continue
        group = identity if identity is not None else image.parent.relative_to(folder).as_posix()
        group = "" if group == "." else group
        samples.append(Sample(image, points, np.ones(len(points), dtype=bool), group))
    skipped += [
        (str(p), "no .pts annotation beside it") for k, p in images.items() if k not in annotated
    ]
    return samples, skipped


# ---------------------------------------------------------------- COCO JSON (AFLW, WFLW, COFW)
def _load_coco(root: Path, options: _Options) -> Loaded:
    json_path = _find_coco_json(root, options.name, options.split)
    skipped: list[tuple[str, str]] = []
    records = read_coco_keypoints(json_path, options.num_landmarks, skipped=skipped)
    image_dir = root / "images" if (root / "images").is_dir() else root
    samples = [
        _record_sample(root, image_dir, json_path, r, json_path.stem, skipped) for r in records
    ]
    return [s for s in samples if s is not None], skipped, options.num_landmarks or 0


def _find_coco_json(root: Path, name: str, split: str) -> Path:
    names = [f"face_landmarks_{name}_{split}.json", f"{name}_{split}.json"]
    names += [f"{split}_{name}.json", f"{split}.json", split]
    for folder in (root, root / "annotations"):
        for candidate in names:
            if (folder / candidate).is_file() and candidate.endswith(".json"):
                return folder / candidate
    raise FileNotFoundError(
        f"{name}/{split}: no annotation file {names[:4]} in {root}; "
        f"splits here: {list(coco_splits(root, name))}, files: {_coco_files(root)}"
    )


def coco_splits(root: str | Path, name: str) -> tuple[str, ...]:
    """The splits of COCO dataset ``name`` whose JSON file, named for it, is in ``root`` or
    ``root/annotations`` (``face_landmarks_<name>_<split>``, ``<name>_<split>``,
    ``<split>_<name>``)."""
    splits = set()
    for file_name in _coco_files(Path(root)):
        stem = Path(file_name).stem
        for prefix, suffix in ((f"face_landmarks_{name}_", ""), (f"{name}_", ""), ("", f"_{name}")):
            if (
                stem.startswith(prefix)
                and stem.endswith(suffix)
                and len(stem) > len(prefix + suffix)
            ):
                splits.add(stem[len(prefix) : len(stem) - len(suffix)])
                break
    return tuple(sorted(splits))


def _coco_files(root: Path) -> list[str]:
    """Names of the JSON files in ``root`` and ``root/annotations``."""
    return sorted(p.name for p in [*root.glob("*.json"), *root.glob("annotations/*.json")])


def image_in_root(root: Path, image_dir: Path, name: str, where: str) -> Path:
    """``image_dir / name`` for an image named by an annotation entry, kept inside ``root``.

    The check is on the path as written (``..`` and absolute names), not on where symbolic links
    lead, so a dataset whose ``images`` folder is a link to another disk still loads. Raises
    FormatError naming ``where`` (the annotation file and entry) for a name outside ``root``.
    """
    folder = Path(os.path.abspath(root))
    target = Path(os.path.normpath(os.path.join(os.path.abspath(image_dir), name)))
    if target != folder and folder not in target.parents:
        raise FormatError(
            f"{where}: image {name[:200]!r} lies outside the dataset folder {root}; refused"
        )
    return image_dir / name


def _record_sample(
    root: Path,
    image_dir: Path,
    annotation: Path,
    record: LandmarkRecord,
    identity: str,
    skipped: list[tuple[str, str]],
) -> Sample | None:
    where = f"{annotation}: {record.meta.get('where', 'entry')}"
    image = image_in_root(root, image_dir, record.image, where)
    problem = _missing_image(image)
    if problem:
        skipped.append((str(image), problem))
        return None
    return Sample(image, record.points, record.visibility, identity, record.box)


def _missing_image(path: Path) -> str | None:
    """Why ``path`` is not an image file to load, or None when it is a file."""
    try:
        return None if path.is_file() else "image file not found"
    except OSError as error:  # e.g. a name too long for the file system
        return f"image file cannot be looked up ({error.strerror or error})"


# ---------------------------------------------------------------- ytf68 (CSV)
def _load_ytf68(root: Path, options: _Options) -> Loaded:
    if options.split not in YTF68_SPLITS:
        raise ValueError(f"split: unknown ytf68 split {options.split!r}; use {YTF68_SPLITS}")
    csv_path = root / ("test.csv" if options.split == "test" else "train.csv")
    if not csv_path.is_file():
        raise FileNotFoundError(f"ytf68/{options.split}: {csv_path} not found")
    skipped: list[tuple[str, str]] = []
    records = read_landmarks_csv(csv_path, options.num_landmarks, skipped=skipped)
    if options.split in ("trainval-train", "val"):
        held_out = held_out_identities(
            [_ytf_identity(r) for r in records], options.seed, options.val_fraction
        )
        records = [r for r in records if (_ytf_identity(r) in held_out) == (options.split == "val")]
    samples = [_record_sample(root, root, csv_path, r, _ytf_identity(r), skipped) for r in records]
    return [s for s in samples if s is not None], skipped, options.num_landmarks or 68


def _ytf_identity(record: LandmarkRecord) -> str:
    return Path(record.image).parent.name


def held_out_identities(identities: list[str], seed: int, fraction: float) -> set[str]:
    """Choose ``round(fraction * n)`` (at least 1) of the distinct identities with ``seed``."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val_fraction: must be between 0 and 1, got {fraction}")
    distinct = sorted(set(identities))
    count = max(1, round(fraction * len(distinct)))
    order = np.random.default_rng(seed).permutation(len(distinct))
    return {distinct[i] for i in order[:count]}


# ---------------------------------------------------------------- unlabelled images
def _load_unlabeled(root: Path, options: _Options) -> Loaded:
    folder = _split_folder(root, options.split)
    files = (p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    images = sorted(p for p in files if p.is_file() and not p.name.startswith("."))
    samples = [Sample(p, identity=p.parent.relative_to(folder).as_posix()) for p in images]
    return samples, [], options.num_landmarks or 0
