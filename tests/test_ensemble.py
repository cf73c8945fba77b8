"""Ensembles (models/ensemble.py, ``laplace-landmarks ensemble``): one weights file whose point is
the mean of its members' calibrated points, loaded and run by every path like any generator."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import YTF68_SLICE

from laplace_landmarks.checkpoints import load_generator
from laplace_landmarks.cli import main
from laplace_landmarks.decoding import predict_crops
from laplace_landmarks.export import sample_crops
from laplace_landmarks.inference import Landmarker
from laplace_landmarks.models import create_model
from laplace_landmarks.models.ensemble import EnsembleGenerator
from laplace_landmarks.weights import pretrained_path


def _member(seed: int, offset: float):
    torch.manual_seed(seed)
    model = create_model("rcn-lite", width=1 / 16).eval()
    with torch.no_grad():
        model.point_offset.fill_(offset)
    return model


def test_points_are_the_mean_of_the_members_calibrated_points():
    crops = sample_crops(80, YTF68_SLICE)[:6]
    members = [_member(0, 0.5), _member(1, -0.25), _member(2, 0.1)]
    ensemble = EnsembleGenerator(members).eval()
    points, scale = predict_crops(ensemble, crops)
    each = [predict_crops(m, crops) for m in members]
    expected = torch.stack([p for p, _ in each]).mean(0)
    torch.testing.assert_close(points, expected, atol=1e-4, rtol=0)
    assert torch.allclose(ensemble.point_offset, torch.full((68, 2), 0.35 / 3))
    # identical members: the ensemble is that member, scale included
    twin = EnsembleGenerator([members[0], members[0]]).eval()
    alone = predict_crops(members[0], crops)
    for got, want in zip(predict_crops(twin, crops), alone, strict=True):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


class _Peak(torch.nn.Module):
    """A stand-in generator whose every heatmap is one sharp peak at heatmap column ``x``."""

    def __init__(self, x: int) -> None:
        super().__init__()
        self.config, self.x = create_model("rcn-lite", width=1 / 16).config, x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = torch.full((images.shape[0], 68, 40, 40), -30.0)
        logits[..., 20, self.x] = 0.0
        return logits


def test_disagreeing_members_widen_the_scale():
    crops = torch.zeros(1, 3, 80, 80, dtype=torch.uint8)
    left, right = _Peak(10), _Peak(20)
    points, scale = predict_crops(EnsembleGenerator([left, right]), crops)
    alone = predict_crops(left, crops)[1]
    # heatmap columns 10 and 20 are crop x 20.5 and 40.5 (stride 2): the mean, 30.5
    torch.testing.assert_close(points[..., 0], torch.full((1, 68), 30.5), atol=1e-3, rtol=0)
    assert torch.all(alone[..., 0] < 0.1)  # each member alone is certain
    # the mixture's mean absolute deviation in x: half-way between them, 10 crop px
    torch.testing.assert_close(scale[..., 0], torch.full((1, 68), 10.0), atol=1e-2, rtol=0)


def test_member_mismatch_is_refused():
    with pytest.raises(ValueError, match="at least 2 members"):
        EnsembleGenerator([_member(0, 0)])
    with pytest.raises(ValueError, match="output_stride"):
        EnsembleGenerator([_member(0, 0), create_model("rcn", width=1 / 16)])


def test_cli_joins_shipped_models_into_a_file_every_path_loads(tmp_path, capsys):
    out = tmp_path / "ens.safetensors"
    assert main(["ensemble", "rcn-lite-ytf68", "rcn-lite-medium", "--out", str(out)]) == 0
    assert "2 members" in capsys.readouterr().out
    model, config, metadata = load_generator(out)
    assert isinstance(model, EnsembleGenerator) and len(model.members) == 2
    assert [c["model"]["width"] for c in json.loads(metadata["ensemble"])] == [0.125, 0.25]
    # the user path: its points are the mean of the two shipped models' on the same crops
    crops = sample_crops(80, YTF68_SLICE)[:4]
    landmarker = Landmarker.from_checkpoint(out, threads=1)
    points, scale = landmarker.predict_batch(crops)
    fast, medium = (
        Landmarker.pretrained(n, threads=1) for n in ("rcn-lite-ytf68", "rcn-lite-medium")
    )
    np.testing.assert_allclose(
        points, (fast.predict_batch(crops)[0] + medium.predict_batch(crops)[0]) / 2, atol=1e-3
    )
    image = next((YTF68_SLICE / "images").rglob("*.jpg"))
    faces = Landmarker.from_checkpoint(out, threads=1, flip_test=True).predict(image)
    assert faces and np.isfinite(faces[0].points).all() and (faces[0].scale > 0).all()


def test_members_trained_on_other_crops_are_refused(tmp_path, capsys):
    # rcn-lite learned the detector's crops (one pass); rcn-lite-medium the 5-point crops
    code = main(
        ["ensemble", "rcn-lite", "rcn-lite-medium", "--out", str(tmp_path / "e.safetensors")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "trained on different crops" in err and "Traceback" not in err


def test_calibrate_and_onnx_export_keep_the_ensemble(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("LAPLACE_LANDMARKS_CACHE", str(tmp_path / "cache"))
    from laplace_landmarks.export import export_onnx, verify_onnx

    out = tmp_path / "ens.safetensors"
    members = [str(pretrained_path("rcn-lite-ytf68")), "rcn-lite-medium"]
    assert main(["ensemble", *members, "--out", str(out)]) == 0
    calibrated = tmp_path / "ens-cal.safetensors"
    args = ["calibrate", "--checkpoint", str(out), "--out", str(calibrated), "--data-root",
            str(YTF68_SLICE)]  # fmt: skip
    assert main(args) == 0
    model, _, metadata = load_generator(calibrated)
    assert isinstance(model, EnsembleGenerator) and "ensemble" in metadata
    onnx = export_onnx(model, tmp_path / "ens.onnx")
    diff = verify_onnx(onnx, model, sample_crops(80, YTF68_SLICE)[:8])
    assert diff["max_abs_points"] < 1e-2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rcn-lite", "--out", "x.safetensors"], "at least 2 members"),
        (["rcn-lite", "rcn-lite", "--out", "x.pt"], "must end in .safetensors"),
        (["rcn-lite", "rcn-fast", "--out", "x.safetensors"], "output_stride"),
        (["rcn-lite", "nope.safetensors", "--out", "x.safetensors"], "does not exist"),
    ],
)
def test_bad_input_is_a_clean_error(tmp_path, capsys, args, message):
    args = [str(tmp_path / a) if a.startswith(("x.", "nope")) else a for a in args]
    assert main(["ensemble", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not list(tmp_path.glob("x.*"))
