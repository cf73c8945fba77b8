"""Scale calibration: the fitted ``scale_factor`` makes the 90 % Laplace interval cover 90 %,
recovers a known factor, loads as 1 from older files, and multiplies the scale in every path
(torch, ONNX, ensemble, ``Landmarker``, the ``calibrate`` CLI). Points and scales are in crop
pixels, (x, y), 0-based, pixel centres at integers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import YTF68_SLICE
from safetensors.torch import load_file, save_file

from laplace_landmarks.calibration import fit_scale_factor, scale_factor_for_coverage
from laplace_landmarks.checkpoints import load_generator, save_weights
from laplace_landmarks.cli import main
from laplace_landmarks.config import RunConfig
from laplace_landmarks.decoding import decode_logits, predict_crops
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.export import sample_crops
from laplace_landmarks.inference import Landmarker
from laplace_landmarks.models import create_model, normalize_input
from laplace_landmarks.models.ensemble import EnsembleGenerator
from laplace_landmarks.weights import pretrained_path

pytestmark = pytest.mark.usefixtures("one_thread")
LN10 = math.log(10.0)
# float32: c * b is one rounding of a value the other path computes the same way, so a few ulp.
FLOAT32_RTOL = 4 * torch.finfo(torch.float32).eps


def quantile_standard_error(factor: float, count: int) -> float:
    """Standard error of the fitted factor when |error| / b ~ Exponential(mean ``factor``).

    The fit is the 0.9 quantile of r = |error| / (b ln 10), exponential with mean c / ln 10, so
    its quantile q = c has density f(q) = (ln 10 / c) * 0.1; the sample quantile's standard error
    is sqrt(0.9 * 0.1 / n) / f(q) = 3 c / (ln 10 * sqrt(n)).
    """
    return 3.0 * factor / (LN10 * math.sqrt(count))


def laplace_errors(scale: torch.Tensor, factor: float, seed: int) -> torch.Tensor:
    """Errors drawn from Laplace(0, factor * scale), element-wise."""
    generator = torch.Generator().manual_seed(seed)
    uniform = torch.rand(scale.shape, generator=generator, dtype=torch.float64) - 0.5
    return -factor * scale * torch.sign(uniform) * torch.log1p(-2 * uniform.abs())


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("rcn-lite", width=1 / 16).eval()


@pytest.fixture(scope="module")
def crops() -> torch.Tensor:
    return sample_crops(80, YTF68_SLICE)


def test_golden_value_is_the_empirical_quantile():
    """Ratios |error| / (b ln 10) of 1..10: the 0.9 quantile (9th of 10) is exactly 9."""
    scale = torch.full((1, 5, 2), 0.5)
    error = (torch.arange(1.0, 11.0) * 0.5 * LN10).reshape(1, 5, 2)
    error[0, 1] *= -1  # the sign of the error does not matter
    assert scale_factor_for_coverage(error, scale, torch.ones(1, 5)) == pytest.approx(9.0)
    visible = torch.ones(1, 5)
    visible[0, 4] = 0  # drops ratios 9 and 10: 8 ratios left, the 8th (ceil 7.2) is 8
    assert scale_factor_for_coverage(error, scale, visible) == pytest.approx(8.0)


@pytest.mark.parametrize("factor", [0.6, 1.0, 1.8])
def test_fit_recovers_a_known_factor_within_the_quantile_standard_error(factor):
    generator = torch.Generator().manual_seed(1)
    scale = 0.3 + 2.7 * torch.rand(400, 17, 2, generator=generator, dtype=torch.float64)
    error = laplace_errors(scale, factor, seed=2)
    visible = torch.rand(400, 17, generator=generator) > 0.1
    count = 2 * int(visible.sum())
    fitted = scale_factor_for_coverage(error, scale, visible)
    # 4 standard errors: a false failure about once in 16,000 seeds
    assert abs(fitted - factor) < 4 * quantile_standard_error(factor, count)
    # and the fitted interval covers 90 % of the points it was fitted on, to one point (the one
    # on the boundary may fall either side of c * b * ln 10 by rounding)
    inside = (error.abs() <= fitted * scale * LN10)[visible]
    assert abs(float(inside.double().mean()) - 0.9) <= 1.0 / count + 1e-12


def test_fit_on_a_model_ignores_its_factor_and_reports_coverage(tiny, crops):
    model = tiny
    mean, scale = predict_crops(model, crops)
    labels = mean + laplace_errors(scale.double(), 1.5, seed=3).float()
    visible = torch.ones(labels.shape[:2], dtype=torch.bool)
    with torch.no_grad():
        model.scale_factor.fill_(7.0)  # a factor already stored is not part of the fit
    try:
        fit = fit_scale_factor(model, crops, labels, visible)
        assert float(model.scale_factor) == 7.0  # the model is left as it was
    finally:
        with torch.no_grad():
            model.scale_factor.fill_(1.0)
    assert abs(fit.factor - 1.5) < 4 * quantile_standard_error(1.5, labels[..., 0].numel() * 2)
    assert abs(fit.mle_factor - 1.5) < 0.1  # Laplace errors: the MLE agrees
    assert fit.coverage_before < 0.85 and 0.9 <= fit.coverage_after < 0.91
    assert fit.faces == len(crops)


def test_factor_multiplies_the_scale_exactly_and_leaves_the_points(tiny, crops):
    model = tiny
    mean1, scale1 = predict_crops(model, crops[:8])
    with torch.no_grad():
        model.scale_factor.fill_(1.37)
    try:
        mean2, scale2 = predict_crops(model, crops[:8])
    finally:
        with torch.no_grad():
            model.scale_factor.fill_(1.0)
    assert torch.equal(mean1, mean2)
    torch.testing.assert_close(scale2, scale1 * 1.37, rtol=FLOAT32_RTOL, atol=0.0)


def test_factor_one_is_exactly_the_old_decoding(tiny, crops):
    logits = tiny(normalize_input(crops[:4])).float()
    _, old_scale = decode_logits(logits, offset=tiny.point_offset, stride=2)
    _, new_scale = predict_crops(tiny, crops[:4])
    assert torch.equal(old_scale, new_scale)


def test_factor_is_saved_and_files_without_it_load_with_one(tmp_path):
    config = RunConfig.from_dict({"model": {"name": "rcn-lite", "width": 1 / 16}})
    model = create_model("rcn-lite", width=1 / 16)
    model.scale_factor.fill_(1.25)
    save_weights(model, config, tmp_path / "new.safetensors")
    assert float(load_generator(tmp_path / "new.safetensors")[0].scale_factor) == 1.25
    state = load_file(str(tmp_path / "new.safetensors"))
    del state["scale_factor"]
    metadata = {"config": json.dumps(config.to_dict())}
    save_file(state, str(tmp_path / "old.safetensors"), metadata=metadata)
    assert float(load_generator(tmp_path / "old.safetensors")[0].scale_factor) == 1.0
    # the shipped ytf68 files predate the buffer: they load with 1
    for name in ("rcn-lite-ytf68", "rcn-accurate-ytf68"):
        assert float(load_generator(pretrained_path(name))[0].scale_factor) == 1.0


def test_ensemble_has_its_own_factor(crops):
    torch.manual_seed(0)
    members = [create_model("rcn-lite", width=1 / 16).eval() for _ in range(2)]
    with torch.no_grad():
        members[0].scale_factor.fill_(3.0)  # fitted to a member's spread, not the mixture's
    ensemble = EnsembleGenerator(members).eval()
    assert float(ensemble.scale_factor) == 1.0
    _, scale1 = predict_crops(ensemble, crops[:4])
    with torch.no_grad():
        ensemble.scale_factor.fill_(0.8)
    _, scale2 = predict_crops(ensemble, crops[:4])
    torch.testing.assert_close(scale2, scale1 * 0.8, rtol=FLOAT32_RTOL, atol=0.0)


def test_landmarker_with_flip_test_applies_the_factor(tiny, crops):
    landmarker = Landmarker(tiny, RunConfig(), flip_test=True, threads=1)
    _, scale1 = landmarker.predict_batch(crops[:4])
    with torch.no_grad():
        tiny.scale_factor.fill_(2.0)
    try:
        _, scale2 = landmarker.predict_batch(crops[:4])
    finally:
        with torch.no_grad():
            tiny.scale_factor.fill_(1.0)
    np.testing.assert_allclose(scale2, 2.0 * scale1, rtol=FLOAT32_RTOL)


def test_onnx_export_carries_the_factor(tiny, crops, tmp_path):
    from laplace_landmarks.export import OnnxSession, export_onnx, require_onnx

    try:
        require_onnx()
    except LandmarksError:
        pytest.skip("onnx/onnxscript/onnxruntime not installed (the [onnx] extra)")
    _, raw_scale = predict_crops(tiny, crops)
    with torch.no_grad():
        tiny.scale_factor.fill_(1.37)
    try:
        path = export_onnx(tiny, tmp_path / "m.onnx")
    finally:
        with torch.no_grad():
            tiny.scale_factor.fill_(1.0)
    _, onnx_scale = OnnxSession(path, threads=1).predict(crops.numpy())
    # ONNX Runtime agrees with torch to 1e-4 crop px at factor 1 (test_export.py); times 1.37
    np.testing.assert_allclose(onnx_scale, raw_scale.numpy() * 1.37, rtol=0.0, atol=1.37e-4)


@pytest.mark.parametrize(
    ("error_shape", "scale_value", "visible_value", "level", "message"),
    [
        ((2, 3, 2), 1.0, 0.0, 0.9, "no visible landmark"),
        ((2, 3, 2), -1.0, 1.0, 0.9, "scales finite and positive"),
        ((2, 3, 2), float("nan"), 1.0, 0.9, "scales finite and positive"),
        ((2, 3), 1.0, 1.0, 0.9, "must both be (N, K, 2)"),
        ((2, 3, 2), 1.0, 1.0, 1.0, "level must be in (0, 1)"),
    ],
)
def test_bad_fit_input_is_a_clean_error(error_shape, scale_value, visible_value, level, message):
    error = torch.zeros(error_shape)
    scale = torch.full(error_shape, scale_value)
    with pytest.raises(LandmarksError, match=message.replace("(", r"\(").replace(")", r"\)")):
        scale_factor_for_coverage(error, scale, torch.full((2, 3), visible_value), level)


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan")])
def test_a_file_with_a_bad_factor_is_a_clean_one_line_error(tmp_path, capsys, value):
    config = RunConfig.from_dict({"model": {"name": "rcn-lite", "width": 1 / 16}})
    model = create_model("rcn-lite", width=1 / 16)
    model.scale_factor.fill_(value)
    save_weights(model, config, tmp_path / "bad.safetensors")
    args = ["calibrate", "--checkpoint", str(tmp_path / "bad.safetensors"), "--out",
            str(tmp_path / "out.safetensors"), "--data-root", str(YTF68_SLICE)]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "scale_factor must be one finite positive number" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_calibrate_cli_fits_on_val_and_no_scale_keeps_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LAPLACE_LANDMARKS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "cal.safetensors"
    args = ["calibrate", "--checkpoint", "rcn-lite", "--out", str(out), "--data-root",
            str(YTF68_SLICE), "--json", str(tmp_path / "cal.json")]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "90 % interval coverage on val:" in printed
    result = json.loads((tmp_path / "cal.json").read_text())
    # the honesty check on junk: rcn-lite keeps a wide scale on noise (measured min 0.12)
    junk = result["faceless_relative_scale"]
    assert junk["images"] == 12 and junk["min"] <= junk["median"]
    assert junk["min"] > junk["align_threshold"] and "all flagged by align" in printed
    fit = result["scale_fit"]
    assert fit["coverage_after"] >= 0.9
    assert result["scale_factor"] == pytest.approx(fit["factor"], rel=1e-6)  # float32 buffer
    model, _, metadata = load_generator(out)
    assert float(model.scale_factor) == pytest.approx(fit["factor"], rel=1e-6)
    assert float(metadata["scale_factor"]) == pytest.approx(fit["factor"], rel=1e-5)
    assert "val" in metadata["scale_factor_fit"]
    # --no-scale refits the offset but keeps the factor already in the file
    again = tmp_path / "again.safetensors"
    assert main(["calibrate", "--checkpoint", str(out), "--out", str(again), "--data-root",
                 str(YTF68_SLICE), "--no-scale"]) == 0  # fmt: skip
    assert "kept, --no-scale" in capsys.readouterr().out
    assert float(load_generator(again)[0].scale_factor) == float(model.scale_factor)
