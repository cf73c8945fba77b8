"""Rebuild the small real-data slices under tests/data from ../shared/data (run from the repo root).

    python tests/data/make_slices.py [--data-root ../shared/data]

Deterministic: it picks identities and frames by sorted order, never at random. Files are copied
byte for byte; the CSVs keep the rows of the copied images unchanged.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = {
    "300w": ["afw/261068_1", "helen/1691766_1"],
    "mmpose": ["cofw/001766.jpg", "cofw/001805.jpg", "aflw/image04476.jpg"],
}
MMPOSE_EXTRA = ["LICENSE", "cofw/test_cofw.json", "aflw/test_aflw.json", "wflw/test_wflw.json"]
MMPOSE_EXTRA += ["300w/test_300w.json", "wflw/36_Football_americanfootball_ball_36_415.jpg"]
# 300W slice: subset -> how many faces; the first ones in sorted order whose image is small.
SLICE_300W = {"helen/testset": 8, "helen/trainset": 12, "afw": 12}
SLICE_300W_MAX_BYTES = 36_000


def pick_rows(csv_path: Path, identities: int, per_identity: list[int]) -> tuple[list, list]:
    """Every k-th identity (sorted), then frames spread evenly through that identity."""
    with csv_path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    by_identity = defaultdict(list)
    for row in rows[1:]:
        by_identity[row[0].split("/")[1]].append(row)
    names = sorted(by_identity)
    step = len(names) // identities
    chosen = []
    for name, count in zip(names[::step][:identities], per_identity, strict=True):
        frames = by_identity[name]
        chosen += [frames[i * (len(frames) - 1) // max(count - 1, 1)] for i in range(count)]
    return rows[0], chosen


def copy_ytf68(data_root: Path) -> None:
    target = HERE / "ytf68_slice"
    plan = {"train.csv": (8, [3] * 8), "test.csv": (5, [4, 3, 3, 3, 3])}
    for csv_name, (identities, per_identity) in plan.items():
        header, rows = pick_rows(data_root / "ytf68" / csv_name, identities, per_identity)
        for row in rows:
            (target / row[0]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(data_root / "ytf68" / row[0], target / row[0])
        with (target / csv_name).open("w", newline="") as handle:
            csv.writer(handle, lineterminator="\n").writerows([header, *rows])


def copy_unlabeled(data_root: Path) -> None:
    for source in ("lfw", "ytf"):
        folders = sorted((data_root / "unlabeled" / source).iterdir())
        for folder in folders[:: len(folders) // 4][:4]:
            image = sorted(folder.glob("*.jpg"))[0]
            target = HERE / "unlabeled_slice" / source / folder.name / image.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image, target)


def copy_fixtures(data_root: Path) -> None:
    source = data_root / "fixtures"
    files = [f"300w/{stem}{ext}" for stem in FIXTURES["300w"] for ext in (".jpg", ".pts")]
    files += [f"mmpose/{name}" for name in FIXTURES["mmpose"] + MMPOSE_EXTRA]
    for name in files:
        (HERE / "fixtures" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, HERE / "fixtures" / name)


def copy_300w(data_root: Path) -> None:
    for subset, count in SLICE_300W.items():
        images = sorted((data_root / "300w" / subset).glob("*.jpg"))
        small = [i for i in images if i.stat().st_size < SLICE_300W_MAX_BYTES][:count]
        target = HERE / "300w_slice" / subset
        target.mkdir(parents=True, exist_ok=True)
        for image in small:
            shutil.copyfile(image, target / image.name)
            shutil.copyfile(image.with_suffix(".pts"), target / image.with_suffix(".pts").name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=HERE.parents[2] / "shared" / "data")
    args = parser.parse_args()
    copy_ytf68(args.data_root)
    copy_unlabeled(args.data_root)
    copy_fixtures(args.data_root)
    copy_300w(args.data_root)
