"""``bench --vs-dlib`` (laplace_landmarks.speed): ours against dlib's predictor on the same real
photos and boxes, one thread, and the size of the core install."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from laplace_landmarks import speed
from laplace_landmarks.cli import main
from laplace_landmarks.dlib_reference import find_dlib_predictor
from laplace_landmarks.errors import LandmarksError

SLICE = Path(__file__).parent / "data" / "300w_slice"


@pytest.fixture(scope="module")
def predictor():
    try:
        return find_dlib_predictor()
    except LandmarksError:
        pytest.skip("dlib's 68-point predictor is missing: pip install face-recognition-models")


def test_vs_dlib_times_both_on_the_same_faces_and_photos(predictor, capsys):
    args = ["bench", "--vs-dlib", "--models", "rcn-lite", "rcn-lite-accurate", "--faces", "6"]
    assert main([*args, "--data-root", str(SLICE), "--split", "common", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["faces"] == 6 and 1 <= result["photos_one_or_two_faces"] <= 6
    assert result["data"].startswith("300W common") and result["threads"] == 1
    assert [row["model"] for row in result["rows"]] == ["rcn-lite", "rcn-lite-accurate"]
    for row in result["rows"]:
        assert row["passes"] in ("1", "rcn-lite + 1", "rcn-lite + 1 mirrored") and row["faces"] == 6
        for key in ("face_ms", "dlib_face_ms", "photo_ms", "dlib_photo_ms"):
            assert 0 < row[key] < 10_000, key
        # a photo adds the detector to the landmarks of its faces, for both systems
        assert row["photo_ms"] > row["face_ms"] and row["dlib_photo_ms"] > row["dlib_face_ms"]
        assert row["face_ratio"] == pytest.approx(row["face_ms"] / row["dlib_face_ms"])
        assert row["frames_per_s"] == pytest.approx(1e3 / row["photo_ms"])
    assert main([*args, "--data-root", str(SLICE), "--split", "common"]) == 0
    table = capsys.readouterr().out
    assert "| rcn-lite | " in table and "core install (no extras):" in table


def test_core_install_size_counts_the_core_closure_without_torch():
    size_mb = speed.core_install_bytes() / 1e6
    # numpy + Pillow + ONNX Runtime + dlib-bin come to about 190 MB; torch alone is over 700 MB,
    # so a count that followed an extra (train, dev) would be far above this bound
    assert 100 < size_mb < 400
    assert speed.core_install_bytes("no-such-package") == 0


def test_ab_medians_alternate_and_skip_the_warmup():
    calls = []
    a, b = speed.ab_medians(
        lambda i: calls.append(("a", i)), lambda i: calls.append(("b", i)), [0, 1, 2, 3, 4]
    )
    assert calls[:4] == [("a", 0), ("b", 0), ("b", 1), ("a", 1)] and a >= 0 and b >= 0
    with pytest.raises(LandmarksError, match="nothing to time"):
        speed.ab_medians(lambda i: None, lambda i: None, [])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--faces", "0"], "--faces must be >= 1"),
        (["--dlib-predictor", "/nonexistent.dat"], "is not a file"),
        (["--models", "no-such-model"], "unknown pretrained model"),
    ],
)
def test_vs_dlib_bad_input_is_one_line(extra, message, capsys):
    code = main(["bench", "--vs-dlib", "--data-root", str(SLICE), "--split", "common", *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
