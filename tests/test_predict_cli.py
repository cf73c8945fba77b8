"""``laplace-landmarks predict`` and ``models``: outputs, schema, bad inputs, atomic files.

The CLI runs in-process through ``laplace_landmarks.cli.main`` (fast); one test runs the real
``python -m laplace_landmarks`` entry point in a subprocess.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from helpers import png_header
from PIL import Image

from laplace_landmarks import __version__
from laplace_landmarks.cli import main
from laplace_landmarks.data.formats import read_pts

SAMPLES = Path(str(resources.files("laplace_landmarks") / "samples"))
EMMY = SAMPLES / "ytf68_Emmy_Rossum_20a.jpg"
TAKEO = SAMPLES / "ytf68_Takeo_Hiranuma_00a.jpg"


pytestmark = pytest.mark.usefixtures("one_thread")


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["predict", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


SUMMARY_KEYS = {"images", "faces", "without_face", "errors", "seconds"}
POSE_KEYS = {
    "yaw",
    "pitch",
    "roll",
    "rotation",
    "translation",
    "reprojection_error",
    "focal_length",
}


def check_schema(document: dict, pose: bool = False) -> None:
    """The documented JSON schema (docs/predict.md); ``pose``: with --pose."""
    assert set(document) == {
        "model",
        "version",
        "flip_test",
        "first_pass",
        "images",
        "errors",
        "summary",
    }
    assert document["version"] == __version__ and isinstance(document["model"], str)
    assert isinstance(document["flip_test"], bool)
    summary = document["summary"]
    assert set(summary) == SUMMARY_KEYS and summary["seconds"] > 0
    assert summary["images"] == len(document["images"])
    assert summary["errors"] == len(document["errors"])
    assert summary["faces"] == sum(len(image["faces"]) for image in document["images"])
    assert summary["without_face"] == sum(not image["faces"] for image in document["images"])
    for image in document["images"]:
        assert set(image) == {"path", "width", "height", "faces"}
        assert isinstance(image["width"], int) and isinstance(image["height"], int)
        for face in image["faces"]:
            assert set(face) == {"box", "score", "points", "scale"} | ({"pose"} if pose else set())
            if pose:
                assert set(face["pose"]) == POSE_KEYS
            assert len(face["box"]) == 4
            assert face["score"] is None or isinstance(face["score"], float)
            assert np.array(face["points"]).shape == np.array(face["scale"]).shape == (68, 2)
            assert np.isfinite(face["points"]).all() and (np.array(face["scale"]) > 0).all()
    for error in document["errors"]:
        assert set(error) == {"path", "error"} and error["error"]


def make_folder(root: Path) -> Path:
    """Two real faces (same stem, different sub-folders), a blank image and four bad files."""
    folder = root / "in"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    shutil.copy(EMMY, folder / "a" / "face.jpg")
    shutil.copy(TAKEO, folder / "b" / "face.jpg")
    Image.new("RGB", (96, 64), (128, 128, 128)).save(folder / "blank.png")
    (folder / "broken.jpg").write_bytes(EMMY.read_bytes()[:300])  # truncated JPEG
    (folder / "text.png").write_text("not an image")
    (folder / "huge.png").write_bytes(png_header(12_000, 12_000))
    (folder / "notes.txt").write_text("ignored: not an image extension")
    return folder


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(".") or ".tmp" in p.name]


def test_json_to_stdout_matches_the_schema(capsys):
    code, out, err = run(capsys, EMMY)
    assert code == 0
    document = json.loads(out)
    check_schema(document)
    assert document["model"] == "rcn-lite-accurate-112" and document["errors"] == []
    [image] = document["images"]
    assert (image["path"], image["width"], image["height"]) == (str(EMMY), 389, 360)
    assert len(image["faces"]) == 1 and isinstance(image["faces"][0]["score"], float)
    # no progress for a single image; the run ends with its summary line
    assert err.splitlines() == [err.splitlines()[-1]]
    assert err.startswith("predict: 1 image, 1 face, 0 images without a face, 0 skipped, ")


def test_flip_test_averages_with_the_mirror(capsys):
    """The default mirrors its final pass (after the fast model's first pass; the index says
    so); --no-flip-test turns it off, and the other models mirror only when asked."""
    default = json.loads(run(capsys, EMMY)[1])
    assert default["flip_test"] is True and default["first_pass"] == "rcn-lite"
    document = json.loads(run(capsys, EMMY, "--no-flip-test")[1])
    assert document["flip_test"] is False and document["first_pass"] == "rcn-lite"
    plain = document["images"][0]["faces"][0]
    fast = json.loads(run(capsys, EMMY, "--model", "rcn-lite")[1])
    assert fast["flip_test"] is False and fast["first_pass"] is None
    assert json.loads(run(capsys, EMMY, "--model", "rcn-lite", "--flip-test")[1])["flip_test"]
    flipped = default["images"][0]["faces"][0]
    shift = np.abs(np.subtract(flipped["points"], plain["points"]))
    # a different estimate of the same face: moved, but by less than a few pixels
    assert 0 < shift.mean() < 3


def test_first_pass_option(capsys, tmp_path):
    """--first-pass none makes the default model's own first pass; a file or name is loaded;
    a bad one is a one-line error naming it."""
    own = json.loads(run(capsys, EMMY, "--first-pass", "none")[1])
    assert own["first_pass"] is None
    cascade = json.loads(run(capsys, EMMY)[1])
    shift = np.abs(np.subtract(own["images"][0]["faces"][0]["points"],
                               cascade["images"][0]["faces"][0]["points"]))  # fmt: skip
    assert 0 < shift.mean() < 3  # another first estimate, the same face
    code, _, err = run(capsys, EMMY, "--first-pass", tmp_path / "missing.onnx")
    assert code != 0 and "missing.onnx" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, EMMY, "--no-refine", "--first-pass", "rcn-lite")
    assert code != 0 and "refine" in err and "Traceback" not in err


def test_pts_csv_and_draw_write_their_files(capsys, tmp_path):
    out = tmp_path / "out"
    code, _, _ = run(capsys, EMMY, TAKEO, "--format", "pts", "--draw", "--out", out)
    assert code == 0
    for stem in (EMMY.stem, TAKEO.stem):
        assert read_pts(out / f"{stem}_0.pts", expected_points=68).shape == (68, 2)
        with Image.open(out / f"{stem}_landmarks.png") as overlay:
            assert overlay.size == Image.open(SAMPLES / f"{stem}.jpg").size
    code, _, err = run(capsys, EMMY, TAKEO, "--format", "csv", "--out", out)
    assert code == 0 and err.splitlines()[-1].startswith("predict: 2 images, 2 faces, ")
    with open(out / "landmarks.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    header = rows[0]
    assert header[:4] == ["image", "face", "x0", "y0"] and header[2 + 136] == "bx0"
    assert header[-5:] == ["box_x0", "box_y0", "box_x1", "box_y1", "score"]
    assert [row[:2] for row in rows[1:]] == [[str(EMMY), "0"], [str(TAKEO), "0"]]
    points = np.array(rows[1][2:138], dtype=float).reshape(68, 2)
    np.testing.assert_allclose(points, read_pts(out / f"{EMMY.stem}_0.pts"), atol=0.01)
    assert leftovers(out) == []


def test_a_folder_with_bad_files_reports_them_and_finishes(capsys, tmp_path):
    folder = make_folder(tmp_path)
    out = tmp_path / "out"
    code, stdout, err = run(capsys, folder, "--out", out, "--draw")
    assert code == 0 and stdout == ""
    document = json.loads((out / "landmarks.json").read_text())
    check_schema(document)
    processed = {Path(i["path"]).relative_to(folder).as_posix() for i in document["images"]}
    assert processed == {"a/face.jpg", "b/face.jpg", "blank.png"}
    failed = {Path(e["path"]).name: e["error"] for e in document["errors"]}
    assert set(failed) == {"broken.jpg", "text.png", "huge.png"}
    assert "pixels" in failed["huge.png"] or "too large" in failed["huge.png"]
    for name in failed:
        assert f"skipped {folder / name}" in err
    assert f"no face found in {folder / 'blank.png'}" in err
    # sub-folders are mirrored, so the two face.jpg overlays do not collide
    assert (out / "a" / "face_landmarks.png").is_file()
    assert (out / "b" / "face_landmarks.png").is_file()
    assert not (out / "blank_landmarks.png").exists()
    assert leftovers(out) == [] and leftovers(folder) == []


def test_blank_image_alone_exits_0_with_a_message(capsys, tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("L", (80, 60)).save(blank)
    code, out, err = run(capsys, blank)
    assert code == 0
    assert json.loads(out)["images"][0]["faces"] == []
    assert f"no face found in {blank}" in err


def test_every_input_failing_exits_2(capsys, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"garbage")
    code, out, err = run(capsys, bad, tmp_path / "missing.png")
    assert code == 2
    document = json.loads(out)
    assert document["images"] == [] and len(document["errors"]) == 2
    assert "no image could be processed" in err


def test_boxes_file_by_file_name(capsys, tmp_path):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({EMMY.name: [[100, 80, 280, 260]], TAKEO.name: []}))
    code, out, _ = run(capsys, EMMY, TAKEO, "--boxes", boxes)
    assert code == 0
    emmy, takeo = json.loads(out)["images"]
    assert emmy["faces"][0]["box"] == [100, 80, 280, 260] and emmy["faces"][0]["score"] is None
    assert takeo["faces"] == []


def test_a_bad_box_fails_only_its_image(capsys, tmp_path):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({str(EMMY): [[900, 900, 1000, 1000]]}))
    code, out, _ = run(capsys, EMMY, TAKEO, "--boxes", boxes, "--no-refine")
    assert code == 0
    document = json.loads(out)
    assert [i["path"] for i in document["images"]] == [str(TAKEO)]
    assert "boxes" in document["errors"][0]["error"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "rcn-huge"], "rcn-accurate"),
        (["--boxes", "missing.json"], "--boxes"),
        (["--threads", "0"], "--threads"),
    ],
)
def test_usage_errors_exit_2_with_a_clean_message(capsys, args, message):
    code, out, err = run(capsys, EMMY, *args)
    assert code == 2 and out == ""
    assert "error:" in err and message in err and "Traceback" not in err


def test_model_given_as_a_path(capsys):
    from laplace_landmarks.weights import pretrained_path

    code, out, _ = run(capsys, EMMY, "--model", pretrained_path("rcn-fast"), "--no-refine")
    assert code == 0 and json.loads(out)["model"].endswith("rcn-fast.safetensors")


def test_interrupted_run_keeps_earlier_files(capsys, tmp_path, monkeypatch):
    from laplace_landmarks.data import formats

    out = tmp_path / "out"
    out.mkdir()
    (out / "landmarks.json").write_text("previous run\n")
    real_write, calls = formats.write_pts, []

    def write_then_interrupt(path, points):
        calls.append(1)
        if len(calls) == 2:  # Ctrl-C while the second image's files are being written
            raise KeyboardInterrupt
        return real_write(path, points)

    monkeypatch.setattr(formats, "write_pts", write_then_interrupt)
    code, _, _ = run(capsys, EMMY, TAKEO, "--format", "pts", "--out", out)
    assert code == 130
    assert read_pts(out / f"{EMMY.stem}_0.pts").shape == (68, 2)
    assert not (out / f"{TAKEO.stem}_0.pts").exists()
    assert (out / "landmarks.json").read_text() == "previous run\n"
    assert leftovers(out) == []


def test_models_lists_the_shipped_models(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "rcn-lite:" in out and "rcn-fast:" in out and "rcn-accurate-ytf68:" in out
    assert "rcn-lite-accurate-112 (default):" in out
    assert "params:" in out and "MB" in out


def test_the_real_entry_point_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "laplace_landmarks", "predict", str(TAKEO), "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    check_schema(document)
    assert len(document["images"][0]["faces"]) >= 1


def test_refine_passes_follow_the_model_unless_asked(capsys):
    from laplace_landmarks.cli import build_parser
    from laplace_landmarks.commands.arguments import landmarker_from_args

    def refine(*extra):
        args = build_parser().parse_args(["predict", str(EMMY), *extra])
        return landmarker_from_args(args).refine

    # rcn-lite learned the detector's crops: one pass; the 5-point models re-crop once
    assert refine("--model", "rcn-lite") == 0
    assert refine("--model", "rcn-lite-medium") == 1
    assert refine("--model", "rcn-lite", "--refine", "1") == 1
    assert refine("--model", "rcn-lite-medium", "--no-refine") == 0
    with pytest.raises(SystemExit) as stopped:  # argparse: one usage line, exit 2
        main(["predict", str(EMMY), "--refine", "1", "--no-refine"])
    assert stopped.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    code, out, _ = run(capsys, EMMY, "--model", "rcn-lite", "--refine", "2")
    assert code == 0 and len(json.loads(out)["images"][0]["faces"]) == 1
