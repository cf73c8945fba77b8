"""dlib pseudo-labels of unlabelled faces, as a folder dataset the trainer reads."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import UNLABELED_SLICE
from PIL import Image

from laplace_landmarks.cli import main
from laplace_landmarks.data.datasets import load_dataset
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.path_evaluation import find_dlib_predictor
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
