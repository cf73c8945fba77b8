"""End to end on real data (the in-repo ytf68 slice): train -> evaluate -> predict, plus the
``evaluate`` command's numbers and errors. Width 1/16, one thread, 2 epochs: a few seconds."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import YTF68_SLICE

from laplace_landmarks.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def train_args(out: Path, cache: Path, *extra: str) -> list[str]:
    return [
        "train", "--recipe", "paper-laplacekl", "--width", "0.0625", "--epochs", "2",
        "--batch-size", "8", "--lr", "0.01", "--threads", "1", "--data-root", str(YTF68_SLICE),
        "--cache-dir", str(cache), "--out", str(out), "--no-progress", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(run folder, cache folder) of a 2-epoch run on the slice, trained once per module."""
    root = tmp_path_factory.mktemp("e2e")
    run, cache = root / "run", root / "cache"
    assert main(train_args(run, cache)) == 0
    return run, cache


def evaluate(capsys, checkpoint: Path, cache: Path, *extra: str) -> tuple[int, str, str]:
    code = main(
        ["evaluate", "--checkpoint", str(checkpoint), "--data", "ytf68", "--split", "test",
         "--data-root", str(YTF68_SLICE), "--cache-dir", str(cache), "--threads", "1", *extra]
    )  # fmt: skip
    out, err = capsys.readouterr()
    return code, out, err


def test_train_writes_the_run_folder(trained):
    run, _ = trained
    for name in ("config.json", "metrics.csv", "last.pt", "best.pt", "best.safetensors"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for column in ("train_loss", "val_nme", "val_mean_scale", "images_per_s", "lr", "seconds"):
        assert all(np.isfinite(float(r[column])) for r in rows), column
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["width"] == 0.0625 and config["train"]["epochs"] == 2
    assert config["data"]["root"] == str(YTF68_SLICE)


def test_evaluate_prints_table_and_writes_json_and_plots(trained, tmp_path, capsys):
    run, cache = trained
    report, plots = tmp_path / "eval.json", tmp_path / "plots"
    code, out, err = evaluate(
        capsys, run / "best.pt", cache, "--json", str(report), "--plots", str(plots)
    )
    assert code == 0, err
    assert "NME % (inter-ocular)" in out and "NME % (inter-pupil)" in out
    assert "AUC@0.08" in out and "FR@0.08" in out and "mean predicted b" in out
    assert "skipped faces: 0" in out
    result = json.loads(report.read_text())
    summary = result["summary"]
    assert summary["num_faces"] == 16 and result["num_skipped"] == 0
    assert 0 < summary["nme_percent"]["inter-ocular"] < summary["nme_percent"]["inter-pupil"]
    assert 0 <= summary["auc"] <= 1 and 0 <= summary["failure_rate"] <= 1
    calib = summary["calibration"]
    assert 0 <= calib["coverage_50"] <= calib["coverage_90"] <= 1
    assert len(calib["spearman_per_landmark"]) == 68
    assert len(result["per_face_nme"]) == 16
    # crops are similarity transforms: b in image px = b in crop px / crop scale, per face
    assert result["mean_scale_crop_px"] > 0 and result["mean_scale_image_px"] > 0
    for name in ("ced.png", "calibration.png"):
        assert (plots / name).read_bytes()[:8] == PNG_MAGIC


def test_evaluate_maps_back_to_image_pixels(trained, capsys, tmp_path):
    """NME in image pixels (after to_image) equals NME in crop pixels: the map is a similarity,
    and the image-pixel ground truth must match the CSV's points."""
    from laplace_landmarks.checkpoints import load_generator
    from laplace_landmarks.data.cache import build_crop_cache
    from laplace_landmarks.data.datasets import load_dataset
    from laplace_landmarks.decoding import predict_crops
    from laplace_landmarks.evaluation import nme_per_face

    run, cache_dir = trained
    code, _, err = evaluate(
        capsys, run / "best.safetensors", cache_dir, "--json", str(tmp_path / "e.json")
    )
    assert code == 0, err
    result = json.loads((tmp_path / "e.json").read_text())
    model, _, _ = load_generator(run / "best.safetensors")
    data = load_dataset("ytf68", "test", root=YTF68_SLICE)
    cache = build_crop_cache(data, cache_dir, progress=False)
    mean, _ = predict_crops(model, cache.images)
    crop_nme = nme_per_face(mean.numpy(), cache.points.numpy())
    np.testing.assert_allclose(result["per_face_nme"], crop_nme, rtol=1e-5)
    gt_image = np.stack(
        [cache.crop(i).to_image(cache.points[i].double().numpy()) for i in range(16)]
    )
    np.testing.assert_allclose(gt_image, np.stack([s.points for s in data.samples]), atol=1e-3)


def test_checkpoint_and_weights_file_score_the_same(trained, capsys, tmp_path):
    run, cache = trained
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert evaluate(capsys, run / "best.pt", cache, "--json", str(a))[0] == 0
    assert evaluate(capsys, run / "best.safetensors", cache, "--json", str(b))[0] == 0
    nme_a = json.loads(a.read_text())["summary"]["nme_percent"]
    nme_b = json.loads(b.read_text())["summary"]["nme_percent"]
    assert nme_a == pytest.approx(nme_b, rel=1e-9)


def test_detector_protocol_reports_skipped_faces_as_failures(trained, capsys):
    run, cache = trained
    code, out, err = evaluate(capsys, run / "best.pt", cache, "--crop", "detector")
    assert code == 0, err
    assert "detector crops" in out and "counting skipped faces as failures" in out


@pytest.mark.skipif(
    importlib.util.find_spec("laplace_landmarks.inference") is None,
    reason="laplace_landmarks.inference not built yet",
)
def test_trained_checkpoint_predicts_through_landmarker(trained):
    from laplace_landmarks.data.datasets import load_dataset
    from laplace_landmarks.inference import Landmarker

    run, _ = trained
    sample = load_dataset("ytf68", "test", root=YTF68_SLICE).samples[0]
    x0, y0 = sample.points.min(axis=0)
    x1, y1 = sample.points.max(axis=0)
    landmarker = Landmarker.from_checkpoint(run / "best.safetensors", threads=1)
    faces = landmarker.predict(sample.image_path, boxes=[(x0, y0, x1, y1)])
    assert len(faces) == 1
    points, scale = np.asarray(faces[0].points), np.asarray(faces[0].scale)
    assert points.shape == (68, 2) and scale.shape == (68, 2)
    assert np.isfinite(points).all() and (scale > 0).all()
    # a 2-epoch model is poor, but its points land on the face's crop, in image pixels
    x0c, y0c, x1c, y1c = faces[0].crop.box
    assert ((points >= (x0c, y0c)) & (points <= (x1c, y1c))).all()


def test_evaluate_missing_checkpoint_is_a_clean_error(tmp_path, capsys):
    code, out, err = evaluate(capsys, tmp_path / "nope.pt", tmp_path)
    assert code == 2
    assert "does not exist" in err and "Traceback" not in err + out


def test_evaluate_unknown_model_name_lists_the_choices(tmp_path, capsys):
    code = main(["evaluate", "--checkpoint", "no-such-model", "--cache-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "unknown pretrained model" in err and "Traceback" not in err


def test_evaluate_foreign_file_is_a_clean_error(tmp_path, capsys):
    bogus = tmp_path / "bogus.pt"
    torch.save({"hello": 1}, bogus)
    code, _, err = evaluate(capsys, bogus, tmp_path)
    assert code == 2 and "not a laplace-landmarks checkpoint" in err


def test_evaluate_missing_data_root_is_a_clean_error(trained, tmp_path, capsys):
    run, _ = trained
    code = main(
        ["evaluate", "--checkpoint", str(run / "best.pt"), "--data-root", str(tmp_path / "x"),
         "--cache-dir", str(tmp_path)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "not found" in err and "Traceback" not in err


def test_calibrate_fits_on_train_and_evaluate_agrees(trained, tmp_path, capsys):
    run, cache = trained
    out = tmp_path / "calibrated.safetensors"
    args = ["calibrate", "--checkpoint", str(run / "best.pt"), "--out", str(out),
            "--data-root", str(YTF68_SLICE), "--json", str(tmp_path / "cal.json")]  # fmt: skip
    assert main(args) == 0
    assert "wrote" in capsys.readouterr().out
    result = json.loads((tmp_path / "cal.json").read_text())
    fit, check = result["fit_split"], result["check_split"]
    assert (fit, check) == ("trainval-train", "val")
    # the mean residual is removed where it was fitted
    assert result["nme_after"][fit] < result["nme_before"][fit]
    assert result["offset_length_mean_px"] > 0
    code = main(
        ["evaluate", "--checkpoint", str(out), "--data", "ytf68", "--split", "val",
         "--data-root", str(YTF68_SLICE), "--cache-dir", str(cache), "--threads", "1",
         "--json", str(tmp_path / "val.json")]
    )  # fmt: skip
    assert code == 0
    val = json.loads((tmp_path / "val.json").read_text())["summary"]
    # evaluate scores in image pixels, calibrate in crop pixels: equal for similarity crops
    assert val["nme_percent"]["inter-ocular"] == pytest.approx(result["nme_after"][check], abs=1e-3)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fit-split", "test"], "test split is for scoring only"),
        (["--out-suffix", ".pt"], "must end in .safetensors"),
    ],
)
def test_calibrate_bad_input_is_a_clean_error(trained, tmp_path, capsys, extra, message):
    run, _ = trained
    out = tmp_path / ("w.pt" if "--out-suffix" in extra else "w.safetensors")
    extra = [] if "--out-suffix" in extra else extra
    args = ["calibrate", "--checkpoint", str(run / "best.pt"), "--out", str(out),
            "--data-root", str(YTF68_SLICE), *extra]  # fmt: skip
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
