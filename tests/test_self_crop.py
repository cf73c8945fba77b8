"""benchmarks/self_crop_finetune.py on the real ytf68 slice: detector-path crops of the training
faces carry the ground truth into the crop, and fine-tuning starts from the given weights."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from conftest import UNLABELED_SLICE, YTF68_SLICE

from laplace_landmarks.data.datasets import load_dataset
from laplace_landmarks.inference import Landmarker
from laplace_landmarks.weights import pretrained_path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import self_crop_finetune  # noqa: E402


def test_self_crops_hold_the_ground_truth_where_the_model_put_the_face():
    samples = load_dataset("ytf68", "trainval-train", root=str(YTF68_SLICE)).samples
    cache = self_crop_finetune.self_crops("rcn-lite", samples, threads=1)
    assert len(cache) >= 10 and cache.images.shape[1:] == (3, 80, 80)
    inside = (cache.points >= 0) & (cache.points <= 79)
    assert inside.float().mean() > 0.99  # the re-crop frames the face
    # the 5-point rule puts the eye centres near the same crop pixels as for GT crops
    eyes = cache.points[:, 36:48].mean(dim=1)
    assert torch.all((eyes[:, 0] > 25) & (eyes[:, 0] < 55) & (eyes[:, 1] > 20) & (eyes[:, 1] < 45))
    truth = {str(sample.image_path): sample.points for sample in samples}
    for i in range(len(cache)):  # matrices map the stored crop points back onto the GT points
        back = cache.crop(i).to_image(cache.points[i].numpy().astype(np.float64))
        np.testing.assert_allclose(back, truth[cache.paths[i]], atol=1e-2)  # float32 crop points


def test_pseudo_labels_come_from_the_teacher_and_skip_held_out_people(tmp_path):
    out = tmp_path / "pseudo.npz"
    command = [
        sys.executable, str(ROOT / "benchmarks" / "pseudo_label.py"), "--teacher", "rcn-lite",
        "--images", str(UNLABELED_SLICE / "ytf"), "--data-root", str(YTF68_SLICE),
        "--exclude-splits", "test", "--keep-fraction", "0.75", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    labels = np.load(out)
    test_people = {s.identity for s in load_dataset("ytf68", "test", root=str(YTF68_SLICE)).samples}
    assert 1 <= len(labels["paths"]) <= 6 and not set(labels["identities"]) & test_people
    assert labels["points"].shape[1:] == (68, 2) and np.isfinite(labels["points"]).all()
    # the teacher's points are its user path on that image (same crops, same network)
    teacher = Landmarker.pretrained("rcn-lite")
    face = teacher.predict(str(labels["paths"][0]), boxes=[labels["boxes"][0]])[0]
    np.testing.assert_allclose(face.points, labels["points"][0], atol=1e-3)
    bad = subprocess.run(
        [*command[:-2], "--keep-fraction", "0", "--out", str(out)], capture_output=True, text=True
    )
    assert bad.returncode != 0 and "--keep-fraction" in bad.stderr


def test_finetune_runs_from_given_weights_with_pseudo_labels(tmp_path):
    weights = pretrained_path("rcn-lite-ytf68")
    pseudo = tmp_path / "pseudo.npz"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "pseudo_label.py"), "--teacher", "rcn-lite",
         "--images", str(UNLABELED_SLICE / "ytf"), "--data-root", str(YTF68_SLICE),
         "--limit", "3", "--out", str(pseudo)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    command = [
        sys.executable, str(ROOT / "benchmarks" / "self_crop_finetune.py"),
        "--crops-from", "rcn-lite", "--weights", str(weights), "--epochs", "1",
        "--batch-size", "8", "--data-root", str(YTF68_SLICE), "--unlabeled",
        str(UNLABELED_SLICE / "ytf"), "--cache-dir", str(tmp_path / "cache"),
        "--pseudo", str(pseudo), "--out", str(tmp_path / "run"),
    ]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "self crops:" in proc.stderr and (tmp_path / "run" / "last.pt").exists()
    assert (
        "crop cache pseudo/pseudo: 3 crops" in proc.stderr and "pseudo self crops:" in proc.stderr
    )
    broken = subprocess.run(
        [*command[:-4], "--pseudo", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "r2")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert broken.returncode != 0 and "is not a pseudo_label.py file" in broken.stderr
    payload = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert payload["config"]["model"]["name"] == "rcn-lite" and payload["epoch"] == 1
    # started from the shipped weights, not from scratch: val NME far below a random model's
    assert payload["metrics"][0]["val_nme"] < 20


def test_finetune_reuses_saved_self_crops_and_sets_config_values(tmp_path):
    """--save-crops with --epochs 0 only writes the self crops; --self-crops-file trains on
    exactly those, --set changes one config value, and a bad --set is a clear error."""
    weights = pretrained_path("rcn-lite-ytf68")
    base = [
        sys.executable, str(ROOT / "benchmarks" / "self_crop_finetune.py"),
        "--crops-from", "rcn-lite", "--weights", str(weights), "--batch-size", "8",
        "--data-root", str(YTF68_SLICE), "--unlabeled", str(UNLABELED_SLICE / "ytf"),
        "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    saved = tmp_path / "self.pt"
    proc = subprocess.run(
        [*base, "--epochs", "0", "--save-crops", str(saved), "--out", str(tmp_path / "none")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert saved.exists() and not (tmp_path / "none" / "last.pt").exists()
    proc = subprocess.run(
        [*base, "--epochs", "1", "--self-crops-file", str(saved), "--set", "data.shift=0.06",
         "--set", "data.rotation_deg=20", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "self crops:" not in proc.stderr  # not made again
    payload = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert payload["config"]["data"]["shift"] == 0.06
    assert payload["config"]["data"]["rotation_deg"] == 20
    own = torch.load(saved, weights_only=True)["images"]
    ground_truth = len(load_dataset("ytf68", "trainval-train", root=str(YTF68_SLICE)))
    trained_on = re.search(r"done: 1 epochs on (\d+) crops", proc.stdout)
    assert trained_on and int(trained_on.group(1)) == len(own) + ground_truth, proc.stdout
    bad = subprocess.run(
        [*base, "--epochs", "1", "--set", "data.nonsense=1", "--out", str(tmp_path / "bad")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode != 0 and "expected SECTION.FIELD=VALUE" in bad.stderr
