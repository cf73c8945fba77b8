"""Datasets by name on real data slices, bad samples skipped, and the mirror permutations."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from laplace_landmarks.data import datasets as datasets_module
from laplace_landmarks.data.datasets import (
    held_out_identities,
    load_dataset,
    photo_300w,
    split_label_300w,
)
from laplace_landmarks.data.formats import read_coco_keypoints, read_pts, write_pts
from laplace_landmarks.data.markups import (
    LEFT_EYE_68,
    MIRROR_PERMUTATIONS,
    RIGHT_EYE_68,
    mirror_points,
    permutation_from_pairs,
)

DATA = Path(__file__).parent / "data"
YTF68 = DATA / "ytf68_slice"
UNLABELED = DATA / "unlabeled_slice"
FIXTURES = DATA / "fixtures"
SLICE_300W = DATA / "300w_slice"


def csv_rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))[1:]


# ---------------------------------------------------------------- ytf68
def test_ytf68_slice_train_and_test():
    train, test = load_dataset("ytf68", "train", YTF68), load_dataset("ytf68", "test", YTF68)
    assert (len(train), len(test)) == (24, 16) and train.num_landmarks == 68
    assert len({s.identity for s in train}) == 8 and len({s.identity for s in test}) == 5
    assert not {s.identity for s in train} & {s.identity for s in test}
    assert train.skipped == [] and test.skipped == []
    row = csv_rows(YTF68 / "train.csv")[0]
    sample = train[0]
    assert sample.image_path == YTF68 / row[0] and sample.identity == row[0].split("/")[1]
    np.testing.assert_array_equal(sample.points, np.array(row[1:], float).reshape(68, 2))
    assert sample.visibility.all() and sample.points.dtype == np.float64


def test_ytf68_val_is_split_by_identity_with_the_seed():
    val = load_dataset("ytf68", "val", YTF68, seed=3, val_fraction=0.25)
    rest = load_dataset("ytf68", "trainval-train", YTF68, seed=3, val_fraction=0.25)
    assert len({s.identity for s in val}) == 2  # round(0.25 * 8)
    assert len(val) + len(rest) == 24
    assert not {s.identity for s in val} & {s.identity for s in rest}
    again = load_dataset("ytf68", "val", YTF68, seed=3, val_fraction=0.25)
    assert [s.image_path for s in again] == [s.image_path for s in val]
    chosen = {frozenset(held_out_identities(list("abcdefgh"), seed, 0.25)) for seed in range(8)}
    assert len(chosen) > 1  # the seed matters


def test_ytf68_bad_rows_and_missing_images_are_skipped(tmp_path):
    shutil.copytree(YTF68, tmp_path / "ytf68")
    rows = (tmp_path / "ytf68" / "train.csv").read_text().splitlines()
    bad_number = rows[1].split(",")
    bad_number[5] = "nan"
    rows += [",".join(bad_number), rows[2].replace("images/", "images/missing_"), "x.jpg,1,2"]
    (tmp_path / "ytf68" / "train.csv").write_text("\n".join(rows) + "\n")
    dataset = load_dataset("ytf68", "train", tmp_path)  # the data root: finds ytf68/ inside
    assert len(dataset) == 24 and len(dataset.skipped) == 3
    reasons = " | ".join(reason for _, reason in dataset.skipped)
    assert "'nan' is not finite" in reasons and "image file not found" in reasons
    assert "expected an image name and 136 numbers" in reasons


def test_default_root_comes_from_the_environment(tmp_path, monkeypatch):
    (tmp_path / "ytf68").symlink_to(YTF68, target_is_directory=True)
    monkeypatch.setenv("LAPLACE_LANDMARKS_DATA_ROOT", str(tmp_path))
    assert len(load_dataset("ytf68", "test")) == 16


@pytest.mark.shared_data
def test_ytf68_full_counts(shared_data):
    train = load_dataset("ytf68", "train", shared_data)
    test = load_dataset("ytf68", "test", shared_data / "ytf68")
    assert (len(train), len(test)) == (2944, 845)
    assert len({s.identity for s in train}) == 242 and len({s.identity for s in test}) == 70
    val = load_dataset("ytf68", "val", shared_data, seed=0)
    rest = load_dataset("ytf68", "trainval-train", shared_data, seed=0)
    assert len({s.identity for s in val}) == 24 and len(val) + len(rest) == 2944
    assert not {s.identity for s in val} & {s.identity for s in rest}
    assert train.skipped == [] and test.skipped == []


# ---------------------------------------------------------------- unlabelled
def test_unlabeled_slice():
    dataset = load_dataset("unlabeled", "all", UNLABELED)
    assert len(dataset) == 8 and all(s.points is None and s.visibility is None for s in dataset)
    paths = [s.image_path for s in dataset]
    assert paths == sorted(paths)
    assert len(load_dataset("unlabeled", "lfw", UNLABELED)) == 4
    assert dataset[0].identity.startswith("lfw/")


def test_unlabeled_max_images_is_deterministic():
    first = load_dataset("unlabeled", "all", UNLABELED, max_images=3, seed=1)
    again = load_dataset("unlabeled", "all", UNLABELED, max_images=3, seed=1)
    assert [s.image_path for s in first] == [s.image_path for s in again]
    assert len(first) == 3 and [s.image_path for s in first] == sorted(s.image_path for s in first)
    picks = {
        tuple(
            s.image_path for s in load_dataset("unlabeled", "all", UNLABELED, max_images=3, seed=k)
        )
        for k in range(6)
    }
    assert len(picks) > 1


@pytest.mark.shared_data
def test_unlabeled_full_counts(shared_data):
    assert len(load_dataset("unlabeled", "all", shared_data)) == 4543
    assert len(load_dataset("unlabeled", "lfw", shared_data)) == 3462
    assert len(load_dataset("unlabeled", "ytf", shared_data / "unlabeled")) == 1081


# ---------------------------------------------------------------- 300W layouts
def standard_300w(root: Path) -> Path:
    """The official 300W layout, filled with the two real fixture faces."""
    afw, helen = FIXTURES / "300w" / "afw" / "261068_1", FIXTURES / "300w" / "helen" / "1691766_1"
    layout = {
        "afw": [afw],
        "helen/trainset": [helen],
        "lfpw/trainset": [afw, helen],
        "helen/testset": [helen],
        "lfpw/testset": [afw],
        "ibug": [afw, helen],
        "300W/01_Indoor": [helen],
        "300W/02_Outdoor": [afw],
    }
    for folder, stems in layout.items():
        (root / folder).mkdir(parents=True)
        for index, stem in enumerate(stems):
            for suffix in (".jpg", ".pts"):
                shutil.copyfile(stem.with_suffix(suffix), root / folder / f"f{index}{suffix}")
    return root


@pytest.mark.parametrize(
    ("split", "folders"),
    [
        ("train", {"afw": 1, "helen/trainset": 1, "lfpw/trainset": 2}),
        ("common", {"helen/testset": 1, "lfpw/testset": 1}),
        ("challenge", {"ibug": 2}),
        ("full", {"helen/testset": 1, "lfpw/testset": 1, "ibug": 2}),
        ("indoor", {"300W/01_Indoor": 1}),
        ("300w-private", {"300W/01_Indoor": 1, "300W/02_Outdoor": 1}),
    ],
)
def test_300w_standard_layout_splits(tmp_path, split, folders):
    dataset = load_dataset("300w", split, standard_300w(tmp_path / "300w"))
    found: dict[str, int] = {}
    for sample in dataset:
        found[sample.identity] = found.get(sample.identity, 0) + 1
    assert found == folders and dataset.skipped == [] and dataset.num_landmarks == 68


def test_300w_points_are_zero_based(tmp_path):
    dataset = load_dataset("300w", "challenge", standard_300w(tmp_path))
    sample = dataset[0]
    first_line = sample.image_path.with_suffix(".pts").read_text().splitlines()[3]
    assert tuple(sample.points[0]) == tuple(float(v) - 1 for v in first_line.split())


def test_300w_flat_fixture_layout_counts_as_train():
    dataset = load_dataset("300w", "train", FIXTURES)  # finds fixtures/300w
    assert sorted(s.identity for s in dataset) == ["afw", "helen"]
    with pytest.raises(FileNotFoundError, match="300w/common: none of"):
        load_dataset("300w", "common", FIXTURES / "300w")


def test_300w_bad_samples_are_skipped_not_fatal(tmp_path):
    root = standard_300w(tmp_path)
    ibug = root / "ibug"
    points = read_pts(ibug / "f0.pts")
    write_pts(ibug / "short.pts", points[:67])  # wrong count
    shutil.copyfile(ibug / "f0.jpg", ibug / "short.jpg")
    lines = (ibug / "f0.pts").read_text().splitlines()
    (ibug / "nan.pts").write_text("\n".join(lines[:5] + ["nan 1"] + lines[6:]))
    shutil.copyfile(ibug / "f0.jpg", ibug / "nan.jpg")
    (ibug / "garbage.pts").write_bytes(b"\x00\xff garbage")
    shutil.copyfile(ibug / "f0.jpg", ibug / "garbage.png")
    write_pts(ibug / "lonely.pts", points)  # no image
    shutil.copyfile(ibug / "f0.jpg", ibug / "unannotated.jpg")  # no .pts
    (ibug / "undecodable.jpg").write_bytes(b"not a jpeg")  # valid .pts: kept, decoded later
    write_pts(ibug / "undecodable.pts", points)
    dataset = load_dataset("300w", "challenge", root)
    assert sorted(s.image_path.name for s in dataset) == ["f0.jpg", "f1.jpg", "undecodable.jpg"]
    reasons = {Path(path).name: reason for path, reason in dataset.skipped}
    assert set(reasons) == {"short.pts", "nan.pts", "garbage.pts", "lonely.pts", "unannotated.jpg"}
    assert "has 67 points, expected 68" in reasons["short.pts"]
    assert "no image" in reasons["lonely.pts"] and "no .pts" in reasons["unannotated.jpg"]


def test_300w_validation_is_carved_from_train_by_photo():
    train = load_dataset("300w", "train", SLICE_300W)
    part = load_dataset("300w", "trainval-train", SLICE_300W, val_fraction=0.3)
    val = load_dataset("300w", "val", SLICE_300W, val_fraction=0.3)
    assert len(train) == 24 and len(part) + len(val) == len(train) and len(val) > 0
    assert sorted(map(str, (s.image_path for s in [*part, *val]))) == sorted(
        str(s.image_path) for s in train
    )
    part_photos, val_photos = {photo_300w(s) for s in part}, {photo_300w(s) for s in val}
    assert not part_photos & val_photos
    # the slice holds multi-face AFW photos (<photo>_1, _2, _3): each stays on one side
    assert len({photo_300w(s) for s in train}) < len(train)
    other = load_dataset("300w", "val", SLICE_300W, val_fraction=0.3, seed=1)
    assert {photo_300w(s) for s in other} != val_photos  # the seed chooses the photos


def test_300w_photo_names():
    sample = load_dataset("300w", "train", SLICE_300W)[0]
    assert photo_300w(sample) == f"afw/{sample.image_path.stem.rsplit('_', 1)[0]}"


def test_300w_partial_tree_is_reported_once_and_named_honestly(caplog, monkeypatch):
    monkeypatch.setattr(datasets_module, "_reported_trees", set())
    with caplog.at_level("WARNING", logger="laplace_landmarks.data.datasets"):
        load_dataset("300w", "train", SLICE_300W)
        load_dataset("300w", "common", SLICE_300W)
    reports = [r.getMessage() for r in caplog.records if "partial tree" in r.getMessage()]
    assert len(reports) == 1
    assert "present afw, helen/trainset, helen/testset" in reports[0]
    assert "missing lfpw/trainset, lfpw/testset, ibug" in reports[0]
    assert split_label_300w("common", SLICE_300W) == "300W common, HELEN part"
    assert split_label_300w("train", SLICE_300W) == "300W train, AFW + HELEN train part"


def test_300w_complete_split_keeps_its_name(tmp_path):
    root = standard_300w(tmp_path / "300w")
    assert split_label_300w("common", root) == "300W common"
    assert split_label_300w("full", root) == "300W full"


@pytest.mark.shared_data
def test_300w_shared_fixtures(shared_data):
    fixtures = shared_data / "fixtures" / "300w"
    assert len(load_dataset("300w", "train", fixtures)) == 12
    assert len(load_dataset("300w", "indoor", fixtures)) == 3
    assert len(load_dataset("300w", "outdoor", fixtures)) == 4
    assert len(load_dataset("300w", "private", fixtures)) == 7
    assert len(load_dataset("folder", "all", fixtures)) == 19


# ---------------------------------------------------------------- folder
def test_folder_is_recursive_and_infers_the_count(tmp_path):
    standard_300w(tmp_path)
    write_pts(tmp_path / "afw" / "five.pts", np.zeros((5, 2)))
    shutil.copyfile(tmp_path / "afw" / "f0.jpg", tmp_path / "afw" / "five.jpg")
    dataset = load_dataset("folder", "all", tmp_path)
    assert len(dataset) == 10 and dataset.num_landmarks == 68
    assert [Path(p).name for p, _ in dataset.skipped] == ["five.jpg"]
    assert len(load_dataset("folder", "ibug", tmp_path)) == 2
    assert len(load_dataset("folder", "all", tmp_path, num_landmarks=5)) == 1


# ---------------------------------------------------------------- MMPose COCO JSON
def test_cofw_slice():
    dataset = load_dataset("cofw", "test", FIXTURES / "mmpose")
    assert len(dataset) == 2 and dataset.num_landmarks == 29 and dataset.skipped == []
    records = read_coco_keypoints(FIXTURES / "mmpose" / "cofw" / "test_cofw.json")
    np.testing.assert_array_equal(dataset[0].points, records[0].points)
    assert dataset[0].box == records[0].box and dataset[0].visibility.all()


@pytest.mark.parametrize(("name", "kept", "skipped"), [("aflw", 1, 1), ("wflw", 1, 3)])
def test_missing_images_are_skipped(name, kept, skipped):
    dataset = load_dataset(name, "test", FIXTURES / "mmpose" / name)
    assert (len(dataset), len(dataset.skipped)) == (kept, skipped)
    assert all("image file not found" in reason for _, reason in dataset.skipped)
    raw = json.loads((FIXTURES / "mmpose" / name / f"test_{name}.json").read_text())
    assert dataset.num_landmarks == len(raw["annotations"][0]["keypoints"]) // 3


def test_mmpose_layout_with_annotations_and_images_folders(tmp_path):
    source = FIXTURES / "mmpose" / "cofw"
    (tmp_path / "annotations").mkdir()
    shutil.copytree(source, tmp_path / "images", ignore=shutil.ignore_patterns("*.json"))
    shutil.copyfile(source / "test_cofw.json", tmp_path / "annotations" / "cofw_test.json")
    assert len(load_dataset("cofw", "test", tmp_path)) == 2
    with pytest.raises(FileNotFoundError, match="no annotation file"):
        load_dataset("cofw", "train", tmp_path)


@pytest.mark.shared_data
def test_mmpose_shared_fixtures(shared_data):
    for name, count in (("aflw", 2), ("wflw", 4), ("cofw", 2)):
        dataset = load_dataset(name, "test", shared_data / "fixtures" / "mmpose")
        assert len(dataset) == count and dataset.skipped == []


# ---------------------------------------------------------------- arguments
def test_bad_arguments():
    with pytest.raises(ValueError, match="name: unknown dataset 'mnist'"):
        load_dataset("mnist", "train", YTF68)
    with pytest.raises(ValueError, match="split: unknown ytf68 split 'dev'"):
        load_dataset("ytf68", "dev", YTF68)
    with pytest.raises(ValueError, match="val_fraction"):
        load_dataset("ytf68", "val", YTF68, val_fraction=1.5)
    with pytest.raises(ValueError, match="root: the 'folder' dataset needs root"):
        load_dataset("folder", "all")
    with pytest.raises(FileNotFoundError, match="data folder"):
        load_dataset("ytf68", "train", YTF68 / "nowhere")


# ---------------------------------------------------------------- mirror permutations
@pytest.mark.parametrize("count", sorted(MIRROR_PERMUTATIONS))
def test_permutations_are_involutions(count):
    permutation = MIRROR_PERMUTATIONS[count]
    assert sorted(permutation) == list(range(count))
    np.testing.assert_array_equal(permutation[permutation], np.arange(count))
    assert (permutation != np.arange(count)).any()


def test_permutation_from_pairs_rejects_repeats():
    with pytest.raises(ValueError, match="index 1 is out of range or repeated"):
        permutation_from_pairs(3, [(0, 1), (1, 2)])


def test_68_point_mirror_on_real_faces():
    dataset = load_dataset("ytf68", "train", YTF68)
    for sample in dataset:
        points, width = sample.points, 500
        mirrored = mirror_points(points, width)
        np.testing.assert_array_equal(mirrored[36], (width - 1 - points[45, 0], points[45, 1]))
        # the mirrored face keeps the mark-up's structure: subject's right eye on the image left
        assert mirrored[list(RIGHT_EYE_68), 0].mean() < mirrored[list(LEFT_EYE_68), 0].mean()
        assert mirrored[36, 0] < mirrored[39, 0] < mirrored[42, 0] < mirrored[45, 0]
        assert mirrored[0, 0] < mirrored[16, 0] and mirrored[48, 0] < mirrored[54, 0]
        assert mirrored[31, 0] < mirrored[33, 0] < mirrored[35, 0]
        np.testing.assert_array_equal(mirror_points(mirrored, width), points)


@pytest.mark.parametrize(
    ("name", "count"), [("300w", 68), ("aflw", 19), ("wflw", 98), ("cofw", 29)]
)
def test_mirror_permutations_match_real_mark_ups(name, count):
    """On the most frontal real face, the mirrored + permuted shape matches the original shape
    (without the permutation it does not), and every swapped pair straddles the face's midline
    at about the same height."""
    records = read_coco_keypoints(FIXTURES / "mmpose" / name / f"test_{name}.json", count)
    permutation = MIRROR_PERMUTATIONS[count]

    def shape_error(points: np.ndarray, order: np.ndarray) -> float:
        mirrored = (points * (-1.0, 1.0))[order]
        centred = (mirrored - mirrored.mean(0)) - (points - points.mean(0))
        return float(np.linalg.norm(centred, axis=1).mean() / np.ptp(points, axis=0).max())

    points = min(records, key=lambda r: shape_error(r.points, permutation)).points
    assert shape_error(points, permutation) < 0.1 < 0.25 < shape_error(points, np.arange(count))
    size, middle = np.ptp(points, axis=0).max(), points[:, 0].mean()
    for index in np.flatnonzero(permutation != np.arange(count)):
        mate = permutation[index]
        offsets = points[[index, mate], 0] - middle
        assert offsets.prod() < 0 or np.abs(offsets).max() < 0.05 * size, (index, mate)
        assert abs(points[index, 1] - points[mate, 1]) < 0.2 * size, (
            index,
            mate,
        )  # allows some roll
