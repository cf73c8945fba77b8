"""The Landmarker-path protocol (``evaluate --protocol landmarker``) on the in-repo 300W slice."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TEST_DATA

from laplace_landmarks.cli import main
from laplace_landmarks.data.crops import crop_from_five_points, five_points_from_68
from laplace_landmarks.data.datasets import load_dataset
from laplace_landmarks.data.images import load_image
from laplace_landmarks.detection import (
    Detection,
    DlibHogDetector,
    crop_from_detection,
    fallback_box,
)
from laplace_landmarks.detection import detection_holding as matching_detection
from laplace_landmarks.dlib_reference import find_dlib_predictor
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.inference import Landmarker
from laplace_landmarks.path_evaluation import run_landmarker_protocol

SLICE_300W = TEST_DATA / "300w_slice"  # helen/testset: 8 faces, so 300w/common loads
MODEL = "rcn-lite"  # the fastest shipped model


def _dlib_predictor_or_skip():
    try:
        return find_dlib_predictor()
    except LandmarksError:
        pytest.skip("dlib's 68-point predictor is missing: pip install face-recognition-models")


@pytest.fixture(scope="module")
def result(one_thread):
    return run_landmarker_protocol(MODEL, "300w", "common", SLICE_300W, threads=1)


def test_protocol_on_slice_gives_finite_numbers(result):
    ours = result["ours"]
    assert result["faces"] == ours["faces"] == 8
    assert 0 <= result["no_detection"] <= 8
    for key in ("nme_percent_mean", "nme_percent_median", "auc", "fr_percent", "coverage_90"):
        assert np.isfinite(ours[key]), key
    assert 1.0 < ours["nme_percent_mean"] < 15.0  # a working model on near-frontal HELEN faces
    assert 0.0 < ours["coverage_90"] <= 1.0 and len(ours["coverage_90_per_axis"]) == 2
    assert result["dlib"] is None
    assert result["label"] == "300W common, HELEN part"


def test_nme_equals_independent_landmarker_predict(result):
    """Face 0 again by hand: HOG detection holding the GT centre -> Landmarker.predict -> NME."""
    sample = load_dataset("300w", "common", root=SLICE_300W).samples[0]
    rgb = load_image(sample.image_path)
    gt = sample.points
    cx, cy = gt.mean(axis=0)
    boxes = [d.box for d in DlibHogDetector(upsample=1)(rgb)]
    boxes = [b for b in boxes if b[0] <= cx <= b[2] and b[1] <= cy <= b[3]]
    assert len(boxes) == 1  # this face has one detection, so no tie-break is involved
    points = Landmarker.pretrained(MODEL, threads=1).predict(rgb, boxes=boxes)[0].points
    expected = np.linalg.norm(points - gt, axis=1).mean() / np.linalg.norm(gt[36] - gt[45])
    assert result["per_face"][0]["detected"]
    assert result["per_face"][0]["nme_ours"] == pytest.approx(expected, rel=1e-9)


def test_fallback_box_gives_exactly_the_five_point_crop():
    gt = load_dataset("300w", "common", root=SLICE_300W).samples[0].points
    expected = crop_from_five_points(five_points_from_68(gt))
    np.testing.assert_allclose(crop_from_detection(fallback_box(gt)).matrix, expected.matrix)


def test_matching_detection_takes_the_nearest_centred_holder():
    far = Detection((0.0, 0.0, 100.0, 100.0), 2.0)  # holds (60, 60), centre 14 px away
    near = Detection((20.0, 20.0, 100.0, 100.0), 1.0)  # holds it, centre on it
    outside = Detection((200.0, 200.0, 260.0, 260.0), 3.0)
    assert matching_detection([far, near, outside], (60.0, 60.0)) == near.box
    assert matching_detection([outside], (60.0, 60.0)) is None


def test_dlib_row_on_the_same_boxes(one_thread):
    _dlib_predictor_or_skip()
    both = run_landmarker_protocol(MODEL, "300w", "common", SLICE_300W, limit=4, dlib=True)
    assert both["dlib"]["faces"] == both["ours"]["faces"] == 4
    assert both["dlib"]["nme_percent_mean"] < 10.0  # dlib was trained on 300-W: a few %
    assert "coverage_90" not in both["dlib"]
    assert all(f["nme_dlib"] is not None for f in both["per_face"])
    assert both["dlib_tta"] is None


def test_dlib_tta_row_is_the_pseudo_label_teacher(one_thread, capsys):
    _dlib_predictor_or_skip()
    args = ["evaluate", "--checkpoint", MODEL, "--data", "300w", "--split", "common"]
    args += ["--data-root", str(SLICE_300W), "--protocol", "landmarker", "--limit", "3"]
    assert main([*args, "--dlib-tta", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "| dlib, median of 7 boxes and their mirrors (pseudo-label --tta) | 3 |" in printed
    assert "| dlib shape predictor" in printed  # --dlib-tta brings the plain row too


def test_cli_json_holds_the_label_and_settings(tmp_path, capsys, one_thread):
    out = tmp_path / "path.json"
    args = ["evaluate", "--checkpoint", MODEL, "--data", "300w", "--split", "common"]
    args += ["--data-root", str(SLICE_300W), "--protocol", "landmarker", "--limit", "2"]
    args += ["--no-flip-test", "--threads", "1", "--json", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "300W common, HELEN part" in printed and "| rcn-lite | 2 |" in printed
    document = json.loads(out.read_text())
    assert document["label"] == "300W common, HELEN part"
    assert document["settings"]["flip_test"] is False and document["settings"]["limit"] == 2
    assert document["machine"]["cpu"] and document["ours"]["faces"] == 2


def test_cli_refine_0_is_one_pass_from_the_detector_box(tmp_path, capsys, one_thread):
    out = tmp_path / "one-pass.json"
    args = ["evaluate", "--checkpoint", MODEL, "--data", "300w", "--split", "common"]
    args += ["--data-root", str(SLICE_300W), "--protocol", "landmarker", "--limit", "2"]
    args += ["--refine", "0", "--threads", "1", "--json", str(out)]
    assert main(args) == 0
    assert "(refine 0," in capsys.readouterr().out
    document = json.loads(out.read_text())
    assert document["settings"]["refine"] == 0
    sample = load_dataset("300w", "common", root=SLICE_300W).samples[0]  # by hand: one pass
    box = tuple(document["per_face"][0]["box"])
    one_pass = Landmarker.load(MODEL, refine=0, threads=1)
    points = one_pass.predict(load_image(sample.image_path), boxes=[box])[0].points
    gt = sample.points
    expected = np.linalg.norm(points - gt, axis=1).mean() / np.linalg.norm(gt[36] - gt[45])
    assert document["ours"]["nme_per_face"][0] == pytest.approx(expected, abs=1e-6)


def test_other_boxes_frame_the_face_as_documented(tmp_path, capsys, one_thread):
    """--boxes points / loose / jitter: the boxes are what BOX_SOURCES says, the same face's
    numbers are finite, and the settings and the report name the box source."""
    from laplace_landmarks.path_evaluation import PathFace, other_box

    gt = load_dataset("300w", "common", root=SLICE_300W).samples[0].points
    face = PathFace(SLICE_300W, gt, np.ones(68, bool), (10.0, 20.0, 110.0, 120.0), True)
    (x0, y0), (x1, y1) = gt.min(axis=0), gt.max(axis=0)
    assert other_box(face, "detector", 0) == face.box
    np.testing.assert_allclose(other_box(face, "points", 0), (x0, y0, x1, y1))
    w, h = x1 - x0, y1 - y0
    loose = (x0 - 0.25 * w, y0 - 0.35 * h, x1 + 0.25 * w, y1 + 0.15 * h)
    np.testing.assert_allclose(other_box(face, "loose", 0), loose)
    jitters = np.array([other_box(face, "jitter", i) for i in range(200)])
    sides = jitters[:, 2] - jitters[:, 0]
    assert 85 <= sides.min() and sides.max() <= 115  # the side scaled by U(0.85, 1.15)
    centres = (jitters[:, :2] + jitters[:, 2:]) / 2 - 60  # N(0, 8 px) around (60, 70)
    centres[:, 1] -= 10
    assert np.all(np.abs(centres.mean(axis=0)) < 2) and np.all(np.abs(centres.std(axis=0) - 8) < 2)
    assert other_box(face, "jitter", 3) == other_box(face, "jitter", 3)  # seeded by the index
    out = tmp_path / "loose.json"
    args = ["evaluate", "--checkpoint", MODEL, "--data", "300w", "--split", "common"]
    args += ["--data-root", str(SLICE_300W), "--protocol", "landmarker", "--limit", "2"]
    assert main([*args, "--boxes", "loose", "--threads", "1", "--json", str(out)]) == 0
    assert "boxes: loose" in capsys.readouterr().out
    document = json.loads(out.read_text())
    assert document["settings"]["boxes"] == "loose"
    samples = load_dataset("300w", "common", root=SLICE_300W).samples[:2]
    for entry, sample in zip(document["per_face"], samples, strict=True):
        labelled = PathFace(SLICE_300W, sample.points, np.ones(68, bool), face.box, True)  # 2 dp
        np.testing.assert_allclose(entry["box"], other_box(labelled, "loose", 0), atol=0.006)
    assert all(np.isfinite(document["ours"]["nme_per_face"]))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--boxes", "loose", "--protocol", "crop"], "--boxes needs --protocol landmarker"),
        (["--split", "nope"], "unknown 300w split"),
        (["--data-root", "/nonexistent/300w"], "not found"),
        (["--limit", "0"], "limit: must be >= 1"),
        (["--dlib-predictor", "/nonexistent.dat"], "is not a file"),
    ],
)
def test_bad_input_is_one_line_exit_2(extra, message, capsys):
    args = ["evaluate", "--checkpoint", MODEL, "--data", "300w", "--split", "common"]
    args += ["--data-root", str(SLICE_300W), "--protocol", "landmarker"]
    assert main(args + extra) == 2  # the later --split / --data-root wins
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("laplace-landmarks evaluate: error:") and message in err[-1]
    assert not any("Traceback" in line for line in err)


def test_path_flags_need_the_landmarker_protocol(capsys):
    args = ["evaluate", "--checkpoint", MODEL, "--data", "300w", "--dlib"]
    assert main(args) == 2
    assert "--dlib needs --protocol landmarker" in capsys.readouterr().err


@pytest.mark.shared_data
def test_the_fast_models_headline_number_reproduces(shared_data, tmp_path, capsys, one_thread):
    """rcn-lite's card: 4.17 % on the 167 faces of 300W common (HELEN part), user path, one run.
    About 8 s (one HOG pass over 167 photos); needs ../shared/data. Float rounding moves a face's NME by far less than 1e-4
    points on any x86 CPU, so the card's rounded number must come back."""
    out = tmp_path / "headline.json"
    args = ["evaluate", "--checkpoint", "rcn-lite", "--data", "300w", "--split", "common"]
    args += ["--data-root", str(shared_data), "--protocol", "landmarker", "--threads", "1"]
    assert main([*args, "--json", str(out)]) == 0
    ours = json.loads(out.read_text())["ours"]
    assert ours["faces"] == 167
    # the card rounds to 2 decimals (±0.005); CPU rounding adds far less than 1e-4
    assert abs(ours["nme_percent_mean"] - 4.17) <= 0.005 + 1e-4
