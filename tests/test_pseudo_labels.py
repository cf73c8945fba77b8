"""dlib pseudo-labels of unlabelled faces, as a folder dataset the trainer reads."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from conftest import TEST_DATA, UNLABELED_SLICE
from PIL import Image

from laplace_landmarks.cli import main
from laplace_landmarks.data.datasets import load_dataset
from laplace_landmarks.dlib_reference import find_dlib_predictor
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.pseudo_labels import central_detection, pseudo_label_folder


def _predictor_or_skip():
    try:
        return find_dlib_predictor()
    except LandmarksError:
        pytest.skip("dlib's 68-point predictor is missing: pip install face-recognition-models")


def test_pseudo_labels_are_a_folder_dataset_split_by_person(tmp_path):
    _predictor_or_skip()
    out = tmp_path / "labels"
    assert main(["data", "pseudo-label", str(UNLABELED_SLICE), "--out", str(out)]) == 0
    summary = json.loads((out / "labels.json").read_text())
    counts = summary["counts"]
    assert counts["train"] + counts["val"] + counts["no_face"] == 8 and counts["val"] >= 1
    assert "iBUG 300-W" in summary["teacher"]
    train, val = load_dataset("folder", "train", out), load_dataset("folder", "val", out)
    assert (len(train), len(val)) == (counts["train"], counts["val"])
    assert not {s.identity for s in train} & {s.identity for s in val}
    for sample in [*train, *val]:
        width, height = Image.open(sample.image_path).size
        assert sample.points.shape == (68, 2)
        # a face of the roughly centred LFW/YTF crops: inside the image, eyes above the mouth
        assert (sample.points >= -1).all() and (sample.points[:, 0] <= width).all()
        assert sample.points[36:48, 1].mean() < sample.points[48:68, 1].mean()
        interocular = np.linalg.norm(sample.points[36] - sample.points[45])
        assert 0.15 * width < interocular < 0.8 * width


def test_bad_input_is_a_clean_error(tmp_path, capsys):
    _predictor_or_skip()
    assert main(["data", "pseudo-label", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["data", "pseudo-label", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "no images" in capsys.readouterr().err
    one = tmp_path / "one" / "person"
    one.mkdir(parents=True)
    shutil.copy(next(UNLABELED_SLICE.rglob("*.jpg")), one)
    (one / "broken.jpg").write_bytes(b"not a jpeg")
    summary = pseudo_label_folder(one.parent, tmp_path / "done", progress=False)
    assert summary["counts"]["unreadable"] == 1
    with pytest.raises(LandmarksError, match="already holds labels"):
        pseudo_label_folder(one.parent, tmp_path / "done", progress=False)
    err_args = ["data", "pseudo-label", str(one.parent), "--out", str(tmp_path / "x")]
    assert main([*err_args, "--val-fraction", "1.5"]) == 2
    assert "--val-fraction" in capsys.readouterr().err


def test_central_detection_takes_the_face_nearest_the_centre():
    class D:
        def __init__(self, box):
            self.box = box

    faces = [D((0, 0, 10, 10)), D((40, 40, 60, 60)), D((80, 80, 100, 100))]
    assert central_detection(faces, 100, 100) is faces[1]
    assert central_detection([], 100, 100) is None


def test_a_listed_second_folder_is_added_keeping_each_person_on_one_side(tmp_path, capsys):
    """--only labels the listed images only; --add-as adds them to an existing dataset, where a
    person already labelled keeps their split (here: the YTF frames of LFW's people)."""
    _predictor_or_skip()
    out = tmp_path / "labels"
    listing = tmp_path / "lfw.csv"  # paths relative to the list's folder, with a header
    lfw = sorted((UNLABELED_SLICE / "lfw").rglob("*.jpg"))
    listing.write_text(
        "image,x0\n" + "".join(f"{os.path.relpath(p, tmp_path)},1\n" for p in lfw[:3])
    )
    args = ["data", "pseudo-label", str(UNLABELED_SLICE / "lfw"), "--out", str(out)]
    assert main([*args, "--only", str(listing), "--val-fraction", "0.34"]) == 0
    first = json.loads((out / "labels.json").read_text())
    assert sum(first["counts"].values()) == 3 and first["only"] == str(listing)
    # the second folder: the same people under other folders (renamed copies of the YTF frames)
    second = tmp_path / "second"
    for frame, person in zip(sorted((UNLABELED_SLICE / "ytf").rglob("*.jpg")), lfw, strict=False):
        (second / person.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(frame, second / person.parent.name / frame.name)
    assert main(["data", "pseudo-label", str(second), "--out", str(out), "--add-as", "more"]) == 0
    assert "labelled" in capsys.readouterr().out
    summary = json.loads((out / "labels.json").read_text())
    added = summary["added"][0]
    assert added["as"] == "more" and sum(added["counts"].values()) == 4
    assert summary["counts"] == {
        k: first["counts"][k] + added["counts"][k] for k in added["counts"]
    }
    sides: dict[str, set[str]] = {}
    for split in ("train", "val"):
        for sample in load_dataset("folder", split, out):
            sides.setdefault(sample.identity.rsplit("/", 1)[-1], set()).add(split)
    assert all(len(s) == 1 for s in sides.values()) and len(sides) == 4
    assert (out / "train" / "more").is_dir() or (out / "val" / "more").is_dir()
    # bad input: one clean line each, nothing written
    for extra, message in [
        (["--add-as", "more"], "already holds a part"),
        (["--add-as", "a/b"], "plain folder name"),
        ([], "already holds labels"),
    ]:
        assert main(["data", "pseudo-label", str(second), "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    elsewhere = ["data", "pseudo-label", str(second), "--out", str(tmp_path / "new")]
    assert main([*elsewhere, "--add-as", "x"]) == 2
    assert "holds no labels" in capsys.readouterr().err
    assert main([*elsewhere, "--only", str(tmp_path / "none.csv")]) == 2
    assert "image list" in capsys.readouterr().err
    listing.write_text("image\nnot/there.jpg\n")
    assert main([*elsewhere, "--only", str(listing)]) == 2
    assert "names none of the images" in capsys.readouterr().err


def _mirror_back(points: np.ndarray, width: int) -> np.ndarray:
    from laplace_landmarks.data.markups import MIRROR_PERMUTATIONS

    back = points[np.asarray(MIRROR_PERMUTATIONS[68])]
    back[:, 0] = width - 1 - back[:, 0]
    return back


def test_the_tta_teacher_is_dlib_made_steadier_and_mirror_symmetric():
    """``--tta``: the median of 14 dlib runs stays on dlib's answer (well within a pupil's width)
    and, its box set being left-right symmetric, gives the mirror of its answer on the mirror
    image (up to dlib's whole-pixel box rounding)."""
    from laplace_landmarks.data.images import load_image
    from laplace_landmarks.detection import fallback_box
    from laplace_landmarks.dlib_reference import TTA_BOXES, load_dlib_predictor, teacher_points

    predictor = load_dlib_predictor(_predictor_or_skip())
    assert TTA_BOXES[0] == (0.0, 0.0, 1.0) and len(set(TTA_BOXES)) == len(TTA_BOXES)
    faces = load_dataset("300w", "train", TEST_DATA / "300w_slice").samples[:4]
    for sample in faces:
        rgb = np.asarray(load_image(sample.image_path))
        box = fallback_box(sample.points)
        plain = teacher_points(predictor, rgb, box)
        steady = teacher_points(predictor, rgb, box, tta=True)
        interocular = np.linalg.norm(sample.points[36] - sample.points[45])
        assert steady.shape == (68, 2) and np.isfinite(steady).all()
        assert np.linalg.norm(steady - plain, axis=1).mean() < 0.08 * interocular
        width = rgb.shape[1]
        mirrored_box = (width - box[2], box[1], width - box[0], box[3])
        mirrored = teacher_points(predictor, np.ascontiguousarray(rgb[:, ::-1]), mirrored_box, True)
        gap = np.linalg.norm(_mirror_back(mirrored, width) - steady, axis=1).mean()
        assert gap < 0.02 * interocular, (sample.image_path, gap / interocular)


def test_tta_labels_say_so(tmp_path):
    _predictor_or_skip()
    out = tmp_path / "labels"
    args = ["data", "pseudo-label", str(UNLABELED_SLICE), "--out", str(out), "--limit", "2"]
    assert main([*args, "--tta"]) == 0
    summary = json.loads((out / "labels.json").read_text())
    assert summary["tta"] is True
    assert len(list(out.rglob("*.pts"))) == summary["counts"]["train"] + summary["counts"]["val"]
