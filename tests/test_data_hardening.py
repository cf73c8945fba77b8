"""Hardened data, training and evaluation commands: bad annotations, paths leaving the dataset
folder, hostile XML, a diverging run, ``--resume`` with changed options, ``evaluate --plots``
without matplotlib, and a hypothesis fuzz of ``data check`` over mutated annotation folders.

Everything runs in-process through ``laplace_landmarks.cli.main`` on small copies of the real
slices in ``tests/data`` (see its README): three 300W faces (``.pts``), six ytf68 rows (CSV) and
the two COFW faces of MMPose's COCO JSON. Training runs are width 1/16, one thread, 2 batches of 8
per epoch, as in ``test_training.py``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from conftest import FIXTURES_SLICE, TEST_DATA, YTF68_SLICE
from fuzzing import tried
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_evaluate_cli import train_args  # the same tiny ytf68-slice run

from laplace_landmarks import checkpoints
from laplace_landmarks.cli import main
from laplace_landmarks.data import datasets
from laplace_landmarks.data.datasets import image_in_root, load_dataset
from laplace_landmarks.data.formats import read_dlib_xml
from laplace_landmarks.errors import FormatError, LandmarksError

pytestmark = pytest.mark.usefixtures("one_thread")

AFW = TEST_DATA / "300w_slice" / "afw"
COFW = FIXTURES_SLICE / "mmpose" / "cofw"
YTF_ROWS = 6


# --- small real datasets in tmp ----------------------------------------------------------------


def make_pts_folder(folder: Path) -> Path:
    """Three 300W faces (image + 1-based .pts) in a flat folder: the ``folder`` dataset."""
    folder.mkdir(parents=True)
    for pts in sorted(AFW.glob("*.pts"))[:3]:
        shutil.copyfile(pts, folder / pts.name)
        shutil.copyfile(pts.with_suffix(".jpg"), folder / f"{pts.stem}.jpg")
    return folder


def make_ytf68(folder: Path) -> Path:
    """The first rows of the ytf68 slice's test.csv with their images (``ytf68``, split test)."""
    lines = (YTF68_SLICE / "test.csv").read_text().splitlines()[: YTF_ROWS + 1]
    for line in lines[1:]:
        name = line.split(",")[0]
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(YTF68_SLICE / name, folder / name)
    (folder / "test.csv").write_text("\n".join(lines) + "\n")
    return folder


def make_cofw(folder: Path) -> Path:
    """MMPose's two COFW faces: COCO JSON beside the images (``cofw``, split test)."""
    shutil.copytree(COFW, folder)
    return folder


def check(*args: object) -> tuple[int, str, str]:
    """``data check ARGS`` in-process; (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["data", "check", *map(str, args)])
    return code, out.getvalue(), err.getvalue()


def write_pts(path: Path, lines: list[str]) -> None:
    path.write_text("version: 1\nn_points: 68\n{\n" + "\n".join(lines) + "\n}\n")


def one_error_line(err: str, command: str) -> str:
    """The error line ``cli.main`` printed; fails on a traceback or a second error."""
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith(f"laplace-landmarks {command}")]
    assert len(errors) == 1, err
    return errors[0]


# --- 1. data check reports faces no crop can use, and finishes ----------------------------------


@pytest.mark.parametrize(
    "lines, reason",
    [
        (["5 5"] * 68, "all 68 visible points are identical (4, 4)"),
        (["1e300 -1e300"] * 68, "a coordinate reaches 1e+300 px"),
        (["-1e300 1e300"] + ["100 100"] * 67, "a coordinate reaches 1e+300 px"),
        ([f"{3000 * i} {1000 * i}" for i in range(68)], None),  # a crop 600x the image
    ],
    ids=["identical", "extreme", "one-extreme", "far-too-large"],
)
def test_check_reports_bad_pts_faces_and_finishes(tmp_path, lines, reason):
    folder = make_pts_folder(tmp_path / "faces")
    bad = sorted(folder.glob("*.pts"))[0]
    write_pts(bad, lines)
    sheet = tmp_path / "sheet.png"
    code, out, err = check(folder, "--sheet", sheet)
    assert code == 0, err
    image = bad.with_suffix(".jpg")
    if reason is not None:
        assert "faces with problems: 1 (left out of the crop coverage)" in out
        assert f"problem: {image}: {reason}" in out
    assert f"not drawn: {image}: " in out and sheet.is_file()
    assert "crop coverage (extension 2.0): " in out


def test_crop_cache_skips_a_face_whose_crop_dwarfs_its_image(tmp_path):
    """Training and evaluation crop through the cache: such a face is skipped, not warped."""
    from laplace_landmarks.data.cache import build_crop_cache

    folder = make_pts_folder(tmp_path / "faces")
    bad = sorted(folder.glob("*.pts"))[0]
    write_pts(bad, [f"{3000 * i} {1000 * i}" for i in range(68)])
    cache = build_crop_cache(load_dataset("folder", "all", folder), tmp_path / "cache")
    assert len(cache) == 2
    assert [path for path, _ in cache.skipped] == [str(bad.with_suffix(".jpg"))]
    assert "is over 8x the image" in cache.skipped[0][1]


def test_check_reports_a_zero_size_box_per_face(tmp_path):
    folder = make_cofw(tmp_path / "cofw")
    data = json.loads((folder / "test_cofw.json").read_text())
    data["annotations"][1]["bbox"][2] = 0.0  # zero width: the loader accepts it (not negative)
    (folder / "test_cofw.json").write_text(json.dumps(data))
    code, out, err = check("cofw", "--split", "test", "--root", folder, "--sheet", folder / "s.png")
    assert code == 0, err
    assert f"problem: {folder / '001805.jpg'}: the face box (" in out and "zero size" in out
    assert "faces with problems: 1" in out and "crop coverage" in out


def test_check_reports_identical_points_in_a_csv(tmp_path):
    folder = make_ytf68(tmp_path / "ytf68")
    lines = (folder / "test.csv").read_text().splitlines()
    name = lines[2].split(",")[0]
    lines[2] = ",".join([name] + ["7"] * 136)
    (folder / "test.csv").write_text("\n".join(lines) + "\n")
    code, out, err = check("ytf68", "--split", "test", "--root", folder)
    assert code == 0, err
    assert f"problem: {folder / name}: all 68 visible points are identical (7, 7)" in out


def test_bad_check_options_are_clean_errors(tmp_path):
    folder = make_pts_folder(tmp_path / "faces")
    for option, value in (("--extension", "nan"), ("--num", "0"), ("--seed", "-1")):
        code, _, err = check(folder, option, value)
        assert code == 2 and option in one_error_line(err, "data")
    (tmp_path / "file").write_text("")
    code, out, err = check(folder, "--sheet", tmp_path / "file" / "sheet.png")
    assert code == 2 and "--sheet" in one_error_line(err, "data")
    assert "crop coverage" in out  # the numbers came first


# --- 2. image paths named by annotations stay inside the dataset folder ------------------------

ESCAPES = ["../../../etc/passwd", "/etc/passwd", "images/../../outside.jpg"]


@pytest.mark.parametrize("name", ESCAPES)
def test_csv_image_outside_the_root_is_refused(tmp_path, name):
    folder = make_ytf68(tmp_path / "ytf68")
    lines = (folder / "test.csv").read_text().splitlines()
    lines[3] = ",".join([name, *lines[3].split(",")[1:]])
    (folder / "test.csv").write_text("\n".join(lines) + "\n")
    code, out, err = check("ytf68", "--split", "test", "--root", folder)
    assert code == 2 and out == ""
    line = one_error_line(err, "data")
    assert f"{folder / 'test.csv'}: line 4: image {name!r} lies outside the dataset folder" in line


@pytest.mark.parametrize("name", ESCAPES)
def test_coco_image_outside_the_root_is_refused(tmp_path, name):
    folder = make_cofw(tmp_path / "cofw")
    data = json.loads((folder / "test_cofw.json").read_text())
    data["images"][0]["file_name"] = name
    (folder / "test_cofw.json").write_text(json.dumps(data))
    code, _, err = check("cofw", "--split", "test", "--root", folder)
    assert code == 2
    line = one_error_line(err, "data")
    assert f"{folder / 'test_cofw.json'}: annotation 1766: image {name!r} lies outside" in line


def test_names_inside_the_root_and_linked_image_folders_still_load(tmp_path):
    folder = make_ytf68(tmp_path / "ytf68")
    lines = (folder / "test.csv").read_text().splitlines()
    first = lines[1].split(",")
    lines[1] = ",".join([f"images/../{first[0]}", *first[1:]])  # leaves and re-enters: inside
    lines[2] = ",".join([str(folder / lines[2].split(",")[0]), *lines[2].split(",")[1:]])
    (folder / "test.csv").write_text("\n".join(lines) + "\n")
    elsewhere = tmp_path / "disk2" / "images"
    shutil.move(folder / "images", elsewhere)
    (folder / "images").symlink_to(elsewhere, target_is_directory=True)  # a link is trusted
    dataset = load_dataset("ytf68", "test", folder)
    assert len(dataset) == YTF_ROWS and not dataset.skipped


def test_every_annotation_loader_keeps_images_inside(tmp_path):
    """The dlib XML reader's records go through the same rule, naming file and box."""
    xml = (
        "<dataset><images><image file='faces/a.jpg'><box top='1' left='2' width='3' "
        "height='4'/></image><image file='../../etc/passwd'><box top='1' left='2' width='3' "
        "height='4'/></image></images></dataset>"
    )
    (tmp_path / "faces.xml").write_text(xml)
    records = read_dlib_xml(tmp_path / "faces.xml")
    where = [f"faces.xml: {r.meta['where']}" for r in records]
    assert image_in_root(tmp_path, tmp_path, records[0].image, where[0]) == tmp_path / "faces/a.jpg"
    with pytest.raises(FormatError, match=r"faces.xml: box 1: image '../../etc/passwd' lies out"):
        image_in_root(tmp_path, tmp_path, records[1].image, where[1])


def test_evaluate_refuses_an_escaping_path_before_scoring(tmp_path, capsys):
    folder = make_ytf68(tmp_path / "ytf68")
    lines = (folder / "test.csv").read_text().splitlines()
    lines[1] = ",".join(["/etc/passwd", *lines[1].split(",")[1:]])
    (folder / "test.csv").write_text("\n".join(lines) + "\n")
    args = ["evaluate", "--checkpoint", "rcn-lite-ytf68", "--data-root", str(folder)]
    assert main([*args, "--cache-dir", str(tmp_path / "cache")]) == 2
    assert "lies outside the dataset folder" in one_error_line(capsys.readouterr().err, "evaluate")


# --- 3. XML goes through defusedxml -------------------------------------------------------------

LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)).replace(
        "&lol0;", "&lol;"
    )
    + "]><dataset><images><image file='&lol9;'/></images></dataset>"
)
EXTERNAL = (
    '<?xml version="1.0"?><!DOCTYPE dataset [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    "<dataset><images><image file='&xxe;'/></images></dataset>"
)
EXTERNAL_DTD = (
    '<?xml version="1.0"?><!DOCTYPE dataset SYSTEM "http://example.invalid/x.dtd"><dataset/>'
)


@pytest.mark.parametrize("text", [LAUGHS, EXTERNAL, EXTERNAL_DTD], ids=["laughs", "xxe", "dtd"])
def test_hostile_xml_is_a_format_error(tmp_path, text):
    path = tmp_path / "faces.xml"
    path.write_text(text)
    started = time.perf_counter()
    with pytest.raises(FormatError, match=r"faces.xml: refused: the XML declares a DTD"):
        read_dlib_xml(path)
    with pytest.raises(LandmarksError):
        read_dlib_xml(text.encode())
    assert time.perf_counter() - started < 1.0  # nothing was expanded


# --- 4. a diverging run stops cleanly and keeps its last good checkpoint -------------------------


@pytest.fixture(scope="module")
def crop_cache(tmp_path_factory) -> Path:
    """One crop-cache folder for the module's training runs (built by the first one)."""
    return tmp_path_factory.mktemp("crop-cache")


def nan_from_call(monkeypatch, first: int, kind: str) -> None:
    """Make the trainer's supervised loss go bad from its ``first``-th call (1-based)."""
    from laplace_landmarks import training

    real, calls = training.supervised_loss, [0]

    def loss(logits, *args, **kwargs):
        calls[0] += 1
        value = real(logits, *args, **kwargs)
        if calls[0] < first:
            return value
        if kind == "raises":  # what a collapsed heatmap gives: the loss's own input check
            raise ValueError("scale must be finite and > 0")
        if kind == "nan-grad":  # a finite loss whose gradient is NaN: d sqrt(x)/dx at 0 is inf
            return value + torch.sqrt(logits.sum() * 0.0)
        return value * float("nan")

    monkeypatch.setattr(training, "supervised_loss", loss)


@pytest.mark.parametrize(
    "first, kind, where, reason",
    [
        (3, "nan", "epoch 2, step 1 of 2", "the loss became nan"),
        (4, "nan-grad", "epoch 2, step 2 of 2", "a gradient of the loss became NaN or infinite"),
        (2, "raises", "epoch 1, step 2 of 2", "the loss could not be computed (scale must be"),
    ],
    ids=["nan-loss", "nan-gradient", "loss-error"],
)
def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(
    tmp_path, crop_cache, capsys, monkeypatch, first, kind, where, reason
):
    run = tmp_path / "run"
    nan_from_call(monkeypatch, first, kind)
    assert main(train_args(run, crop_cache)) == 2
    line = one_error_line(capsys.readouterr().err, "train")
    assert f"the run diverged at {where}: {reason}" in line
    assert "Lower the learning rate (--lr 0.01 now; " in line
    if where.startswith("epoch 1"):
        assert "No checkpoint was written" in line and not (run / "last.pt").exists()
        return
    assert f"{run / 'last.pt'} (epoch 1) is kept, and {run / 'best.safetensors'}" in line
    assert "--resume --lr 0.001 continues from it" in line
    last = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 1 and len(last["metrics"]) == 1
    assert all(torch.isfinite(v).all() for v in last["model"].values())
    _, _, metadata = checkpoints.load_generator(run / "best.safetensors")
    assert metadata["epoch"] == "1"
    assert len((run / "metrics.csv").read_text().splitlines()) == 2  # header + epoch 1


def test_a_huge_learning_rate_is_a_clean_error(tmp_path, crop_cache, capsys):
    assert main(train_args(tmp_path / "run", crop_cache, "--lr", "1e6")) == 2
    assert "lr" in one_error_line(capsys.readouterr().err, "train")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_missing_tensorboard_is_a_clean_error_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    from laplace_landmarks.data import prepare

    monkeypatch.setattr(prepare, "load_dataset", lambda *a, **k: pytest.fail("data loaded"))
    assert main(train_args(tmp_path / "run", tmp_path / "cache", "--tensorboard")) == 2
    assert "install the `tensorboard` package" in one_error_line(capsys.readouterr().err, "train")


# --- 5. --resume applies what may change and refuses what may not --------------------------------


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory, crop_cache) -> Path:
    """A run folder after 1 of 2 epochs (copy it before changing it)."""
    run = tmp_path_factory.mktemp("resume") / "run"
    with contextlib.redirect_stderr(io.StringIO()):
        assert main(train_args(run, crop_cache, "--epochs", "1")) == 0
    return run


def test_resume_applies_a_new_learning_rate_and_says_so(
    tmp_path, one_epoch_run, crop_cache, capsys
):
    run = tmp_path / "run"
    shutil.copytree(one_epoch_run, run)
    assert (
        main([*train_args(run, crop_cache, "--lr", "0.001", "--batch-size", "4"), "--resume"]) == 0
    )
    err = capsys.readouterr().err
    assert "resume: --lr 0.01 -> 0.001 (from the next epoch)" in err
    assert "resume: --batch-size 8 -> 4 (from the next epoch)" in err
    last = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 2 and last["config"]["train"]["lr"] == 0.001
    assert [row["lr"] for row in last["metrics"]] == [0.01, 0.001]
    assert json.loads((run / "config.json").read_text())["train"]["batch_size"] == 4


@pytest.mark.parametrize(
    "change, message",
    [
        (
            ["--width", "0.125"],
            "--width 0.125 differs from the run's 0.0625 and cannot change "
            "(the saved weights fix the network)",
        ),
        (["--arch", "rcn-lite"], "--arch rcn-lite differs from the run's rcn"),
        (
            ["--seed", "7"],
            "--seed 7 differs from the run's 0 and cannot change (a resumed run "
            "keeps the data, loss and seed it started with)",
        ),
        (["--loss", "softargmax"], "--loss softargmax differs from the run's laplacekl"),
        (["--max-train", "16"], "--max-train 16 differs from the run's None"),
    ],
    ids=["width", "arch", "seed", "loss", "data"],
)
def test_resume_refuses_options_that_cannot_change(
    one_epoch_run, crop_cache, capsys, change, message
):
    before = (one_epoch_run / "last.pt").read_bytes()
    assert main([*train_args(one_epoch_run, crop_cache, *change), "--resume"]) == 2
    line = one_error_line(capsys.readouterr().err, "train")
    assert f"train: --resume: {message}" in line and "new --out" in line
    assert (one_epoch_run / "last.pt").read_bytes() == before


def test_train_help_says_which_options_resume_applies(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--width WIDTH width multiplier (1, 0.5, 0.25, 0.125, 0.0625); resume: fixed" in text
    assert "--lr LR learning rate; resume: applied" in text
    assert "--seed SEED seed of the initial weights" in text
    assert "augmentation; resume: fixed" in text


# --- 6. evaluate checks --plots and --json before scoring ---------------------------------------


def evaluate_args(tmp_path: Path, *extra: object) -> list[str]:
    return [
        "evaluate", "--checkpoint", "rcn-lite-ytf68", "--data-root", str(YTF68_SLICE),
        "--cache-dir", str(tmp_path / "cache"), "--threads", "1", *map(str, extra),
    ]  # fmt: skip


def no_scoring(monkeypatch) -> None:
    """Fail the test if the model is loaded (the checks must come before any work)."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the output checks")

    monkeypatch.setattr(checkpoints, "load_generator", refuse)
    monkeypatch.setattr(datasets, "load_dataset", refuse)


def test_plots_without_matplotlib_fail_first_and_fast(tmp_path, capsys, monkeypatch):
    no_scoring(monkeypatch)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # an import now fails, like no install
    started = time.perf_counter()
    assert main(evaluate_args(tmp_path, "--plots", tmp_path / "plots")) == 2
    assert time.perf_counter() - started < 2.0
    out, err = capsys.readouterr()
    line = one_error_line(err, "evaluate")
    assert f"--plots {tmp_path / 'plots'}: drawing plots needs matplotlib" in line
    assert "pip install 'laplace-landmarks[plots]'" in line and out == ""


@pytest.mark.parametrize("option", ["--plots", "--json"])
def test_unwritable_outputs_fail_first(tmp_path, capsys, monkeypatch, option):
    no_scoring(monkeypatch)
    (tmp_path / "file").write_text("")
    target = tmp_path / "file" / ("plots" if option == "--plots" else "result.json")
    assert main(evaluate_args(tmp_path, option, target)) == 2
    assert f"{option} {target if option == '--plots' else target.parent}: cannot write" in (
        one_error_line(capsys.readouterr().err, "evaluate")
    )


def test_a_plot_failing_after_scoring_keeps_the_numbers(tmp_path, capsys, monkeypatch):
    from laplace_landmarks import evaluation_run

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(evaluation_run, "write_plots", broken)
    result = tmp_path / "result.json"
    args = evaluate_args(tmp_path, "--plots", tmp_path / "plots", "--json", result)
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert "NME" in out and f"wrote {result}" in out
    assert json.loads(result.read_text())["summary"]["nme_percent"]["inter-ocular"] > 0
    line = one_error_line(err, "evaluate")
    assert "No space left on device (the numbers above are complete)" in line


# --- 7. fuzz: data check over mutated annotation folders ----------------------------------------

ODD_NUMBERS = [
    "nan", "-inf", "inf", "1e300", "-1e300", "1e309", "0", "-0", "", " ", "abc", "1e-320",
    "99999999999", "0x10", "1_0", "\u0661\u0662", "+", "--1", "3.5.1", "1e", "\u0661e3", "NaN",
]  # fmt: skip
ODD_NAMES = [
    "../../../etc/passwd", "/etc/passwd", "images/../../x.jpg", "", " ", "a\x00b.jpg",
    "x" * 5000, "caf\u00e9.jpg", "C:\\\\x.jpg", "images/", ".", "..", "~/x.jpg",
]  # fmt: skip
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")
IMAGE_NAME = re.compile(r"[^,\"'\s>]+\.jpg")
MUTATIONS = (
    "number", "run", "run", "same", "drop-line", "copy-line", "name", "encoding", "truncate",
    "flip", "count",
)  # fmt: skip
WRONG_VALUES = ["5", "0", "-5", "1e300", "-1e300", "1e7", "-123456.789", "1e-300"]
ENCODINGS = ("utf-16", "utf-32", "latin-1", "cp1252", "utf-8-sig")


def mutate(text: bytes, kind: str, rng: random.Random) -> bytes:
    """One mutation of an annotation file's bytes."""
    if kind in ("truncate", "flip"):
        position = rng.randrange(max(1, len(text)))
        if kind == "truncate":
            return text[:position]
        return text[:position] + bytes([rng.randrange(256)]) + text[position + 1 :]
    decoded = text.decode("utf-8", "surrogateescape")
    if kind == "encoding":
        body = decoded.replace("jpg", "jpg\u00e9", rng.randrange(2))
        return body.encode(rng.choice(ENCODINGS), "replace")
    lines = decoded.splitlines(keepends=True) or [""]
    if kind in ("drop-line", "copy-line"):
        index = rng.randrange(len(lines))
        lines[index : index + 1] = [] if kind == "drop-line" else [lines[index]] * 2
        decoded = "".join(lines)
    elif kind == "number":
        matches = list(NUMBER.finditer(decoded))
        if matches:
            match = rng.choice(matches)
            decoded = decoded[: match.start()] + rng.choice(ODD_NUMBERS) + decoded[match.end() :]
    elif kind == "run":  # a stretch of numbers (often points, a box) all set to one value
        matches = list(NUMBER.finditer(decoded))
        if matches:
            start = rng.randrange(len(matches))
            stretch = matches[start : start + rng.randrange(1, 200)]
            value = rng.choice(WRONG_VALUES)
            for match in reversed(stretch):
                decoded = decoded[: match.start()] + value + decoded[match.end() :]
    elif kind == "same":
        decoded = NUMBER.sub(rng.choice(WRONG_VALUES), decoded)
    elif kind == "name":
        decoded = IMAGE_NAME.sub(lambda m: rng.choice(ODD_NAMES + [m.group(0)]), decoded)
    elif kind == "count":
        decoded = re.sub(
            r"n_points: \d+", f"n_points: {rng.choice([0, 1, 5, 67, 69, 10**9])}", decoded
        )
        decoded = re.sub(r'"keypoints": \[', '"keypoints": [1, ', decoded, count=1)
    return decoded.encode("utf-8", "surrogateescape")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, Path]:
    """One untouched copy per dataset kind; each fuzz example works on a hard-linked copy."""
    base = tmp_path_factory.mktemp("pristine")
    return {
        "pts": make_pts_folder(base / "pts"),
        "csv": make_ytf68(base / "csv"),
        "coco": make_cofw(base / "coco"),
    }


def check_argv(kind: str, folder: Path) -> list[object]:
    if kind == "pts":
        return [folder]
    name = "ytf68" if kind == "csv" else "cofw"
    return [name, "--split", "test", "--root", folder]


@settings(
    max_examples=320,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    kind=st.sampled_from(["pts", "csv", "coco"]),
    mutations=st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3),
    rng=st.randoms(use_true_random=False),
    target=st.integers(0, 2),
    sheet=st.booleans(),
)
def test_fuzz_data_check_on_mutated_annotations(pristine, kind, mutations, rng, target, sheet):
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / kind
        shutil.copytree(pristine[kind], folder, copy_function=os.link)
        files = sorted(p for p in folder.rglob("*") if p.suffix in (".pts", ".csv", ".json"))
        annotation = files[target % len(files)]
        content = annotation.read_bytes()
        for mutation in mutations:
            content = mutate(content, mutation, rng)
        annotation.unlink()  # a new file: the hard link's other name stays pristine
        annotation.write_bytes(content)
        extra = ["--sheet", Path(scratch) / "sheet.png", "--num", "4"] if sheet else []
        tried("datasets")
        code, out, err = check(*check_argv(kind, folder), *extra)
    assert code in (0, 2), (code, out, err)
    if code == 2:
        one_error_line(err, "data")
    else:
        assert "Traceback" not in err and out.startswith("dataset: ")
