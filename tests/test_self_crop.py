"""benchmarks/self_crop_finetune.py on the real ytf68 slice: detector-path crops of the training
faces carry the ground truth into the crop, and fine-tuning starts from the given weights."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from conftest import UNLABELED_SLICE, YTF68_SLICE

from laplace_landmarks.weights import pretrained_path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import self_crop_finetune  # noqa: E402


def test_self_crops_hold_the_ground_truth_where_the_model_put_the_face():
    cache = self_crop_finetune.self_crops("rcn-lite", str(YTF68_SLICE), None, threads=1)
    assert len(cache) >= 10 and cache.images.shape[1:] == (3, 80, 80)
    inside = (cache.points >= 0) & (cache.points <= 79)
    assert inside.float().mean() > 0.99  # the re-crop frames the face
    # the 5-point rule puts the eye centres near the same crop pixels as for GT crops
    eyes = cache.points[:, 36:48].mean(dim=1)
    assert torch.all((eyes[:, 0] > 25) & (eyes[:, 0] < 55) & (eyes[:, 1] > 20) & (eyes[:, 1] < 45))
    for i in range(len(cache)):  # matrices map the GT image points onto the stored crop points
        crop = cache.crop(i)
        back = crop.to_image(cache.points[i].numpy())
        assert np.isfinite(back).all()


def test_finetune_runs_from_given_weights(tmp_path):
    weights = pretrained_path("rcn-lite")
    command = [
        sys.executable, str(ROOT / "benchmarks" / "self_crop_finetune.py"),
        "--crops-from", "rcn-lite", "--weights", str(weights), "--epochs", "1",
        "--batch-size", "8", "--data-root", str(YTF68_SLICE), "--unlabeled",
        str(UNLABELED_SLICE / "ytf"), "--cache-dir", str(tmp_path / "cache"),
        "--out", str(tmp_path / "run"),
    ]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "self crops:" in proc.stderr and (tmp_path / "run" / "last.pt").exists()
    payload = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert payload["config"]["model"]["name"] == "rcn-lite" and payload["epoch"] == 1
    # started from the shipped weights, not from scratch: val NME far below a random model's
    assert payload["metrics"][0]["val_nme"] < 20
