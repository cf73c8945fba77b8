"""Point calibration: the fitted per-landmark offset is exact on a known model, is stored in the
weights, loads as zero from older files, and reaches every path (torch, ONNX)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from laplace_landmarks.calibration import fit_point_offset
from laplace_landmarks.checkpoints import load_generator, save_weights
from laplace_landmarks.config import RunConfig
from laplace_landmarks.decoding import predict_crops
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")


class OneHot(torch.nn.Module):
    """Logits that put every landmark exactly on crop pixel (x, y) = (10, 20)."""

    def __init__(self, k: int = 3, size: int = 32) -> None:
        super().__init__()
        self.k, self.size = k, size
        self.register_buffer("point_offset", torch.zeros(k, 2))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = torch.full((len(images), self.k, self.size, self.size), -1e4)
        logits[:, :, 20, 10] = 0.0
        return logits


def test_fitted_offset_is_the_mean_residual_and_makes_predictions_exact():
    model = OneHot()
    images = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    labels = torch.tensor([[12.5, 19.0], [10.0, 20.0], [7.0, 23.0]]).expand(4, 3, 2).clone()
    visible = torch.ones(4, 3, dtype=torch.bool)
    visible[:, 2] = False  # never visible -> offset 0, not NaN
    offset = fit_point_offset(model, images, labels, visible)
    assert torch.allclose(offset, torch.tensor([[2.5, -1.0], [0.0, 0.0], [0.0, 0.0]]), atol=1e-5)
    model.point_offset.copy_(offset)
    mean, _ = predict_crops(model, images)
    assert torch.allclose(mean[:, :2], labels[:, :2], atol=1e-5)
    # refitting ignores the offset already stored
    assert torch.allclose(fit_point_offset(model, images, labels, visible), offset, atol=1e-5)


def test_fit_needs_crops():
    with pytest.raises(LandmarksError, match="no training crops"):
        fit_point_offset(
            OneHot(), torch.zeros(0, 3, 32, 32), torch.zeros(0, 3, 2), torch.zeros(0, 3)
        )


def test_offset_is_saved_and_old_files_load_with_zero(tmp_path):
    config = RunConfig.from_dict({"model": {"width": 1 / 16}})
    model = create_model("rcn", width=1 / 16)
    model.point_offset.fill_(0.75)
    save_weights(model, config, tmp_path / "new.safetensors")
    loaded, _, _ = load_generator(tmp_path / "new.safetensors")
    assert torch.equal(loaded.point_offset, torch.full((68, 2), 0.75))
    # a file written before the buffer existed
    state = load_file(str(tmp_path / "new.safetensors"))
    del state["point_offset"]
    save_file(
        state, str(tmp_path / "old.safetensors"), metadata={"config": json.dumps(config.to_dict())}
    )
    old, _, _ = load_generator(tmp_path / "old.safetensors")
    assert torch.equal(old.point_offset, torch.zeros(68, 2))


def test_offset_shifts_points_not_scales():
    torch.manual_seed(0)
    model = create_model("rcn", width=1 / 16).eval()
    crops = torch.randint(0, 256, (2, 3, 80, 80), dtype=torch.uint8)
    mean0, scale0 = predict_crops(model, crops)
    model.point_offset[5] = torch.tensor([1.0, -2.0])
    mean1, scale1 = predict_crops(model, crops)
    assert torch.equal(scale0, scale1)
    assert torch.allclose(mean1 - mean0, model.point_offset.expand_as(mean0), atol=1e-6)


def test_onnx_export_carries_the_offset(tmp_path):
    from laplace_landmarks.export import export_onnx, require_onnx, verify_onnx

    try:
        require_onnx()
    except LandmarksError:
        pytest.skip("onnx/onnxscript/onnxruntime not installed (the [onnx] extra)")
    torch.manual_seed(0)
    model = create_model("rcn", width=1 / 16).eval()
    model.point_offset.normal_(0.0, 1.0)
    crops = torch.randint(0, 256, (3, 3, 80, 80), dtype=torch.uint8)
    result = verify_onnx(export_onnx(model, tmp_path / "m.onnx"), model, crops)
    assert result["max_abs_points"] < 1e-4


def test_calibrate_fits_on_the_crops_the_model_was_trained_on(tmp_path, monkeypatch, capsys):
    """rcn-lite learned the detector's crops (one pass): calibrate fits it on those by default;
    --crop five-point fits it on 5-point crops instead, which give another offset."""
    from pathlib import Path

    from laplace_landmarks.cli import main

    monkeypatch.setenv("LAPLACE_LANDMARKS_CACHE", str(tmp_path / "cache"))
    root = Path(__file__).parent / "data" / "300w_slice"
    offsets = {}
    for crop in (None, "five-point"):
        name = crop or "own"
        out, report = tmp_path / f"{name}.safetensors", tmp_path / f"{name}.json"
        args = ["calibrate", "--checkpoint", "rcn-lite", "--data", "300w", "--data-root", str(root)]
        args += ["--out", str(out), "--json", str(report)] + (["--crop", crop] if crop else [])
        assert main(args) == 0
        result = json.loads(report.read_text())
        assert result["crop"] == (crop or "detector")
        offsets[name] = torch.tensor(result["mean_offset_px"])
        _, config, metadata = load_generator(out)
        assert config.data.crop == "detector"  # the model's own crops are unchanged
        assert f"{result['crop']} crops" in metadata["point_offset"]
    assert not torch.allclose(offsets["own"], offsets["five-point"], atol=1e-4)
    capsys.readouterr()
