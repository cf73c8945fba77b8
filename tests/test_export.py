"""ONNX export: ONNX Runtime matches torch on real crops, dynamic batch, the ONNX backend, errors.

Crops are real faces cut with the package's crop code: the bundled samples plus the in-repo
ytf68 slice. Points are (x, y) crop pixels, 0-based, pixel centres at integers.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from laplace_landmarks.cli import main
from laplace_landmarks.data.samples import sample_crops
from laplace_landmarks.decoding import predict_crops
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.export import export_onnx, verify_onnx
from laplace_landmarks.inference import Landmarker
from laplace_landmarks.models import create_model
from laplace_landmarks.onnx_cache import cached_export
from laplace_landmarks.onnx_runtime import INSTALL_HINT, OnnxSession, require_onnx
from laplace_landmarks.run_config import RunConfig

YTF68_SLICE = Path(__file__).resolve().parent / "data" / "ytf68_slice"
SAMPLE = Path(str(resources.files("laplace_landmarks") / "samples")) / "lfw_Naomi_Watts0.jpg"
TOLERANCE_PX = 1e-4

try:
    require_onnx()
    HAVE_ONNX = True
except LandmarksError:
    HAVE_ONNX = False
needs_onnx = pytest.mark.skipif(
    not HAVE_ONNX, reason="onnx/onnxscript/onnxruntime not installed (the [onnx] extra)"
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def crops() -> torch.Tensor:
    """Real uint8 crops: samples (detector and 5-point crops) + the 40 ytf68 slice faces."""
    return sample_crops(80, YTF68_SLICE)


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("rcn", width=1 / 16).eval()


@pytest.fixture(scope="module")
def tiny_onnx(tiny, tmp_path_factory) -> Path:
    return export_onnx(tiny, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def test_sample_crops_are_real_faces(crops):
    assert crops.dtype == torch.uint8 and crops.shape[1:] == (3, 80, 80)
    assert len(crops) >= 40 + 3  # the slice's 40 faces plus at least the 3 labelled samples
    assert crops.float().std() > 30  # real photos, not blank padding


@needs_onnx
def test_tiny_model_matches_torch_on_real_crops(tiny, tiny_onnx, crops):
    result = verify_onnx(tiny_onnx, tiny, crops)
    assert result["faces"] == len(crops)
    assert result["max_abs_points"] < TOLERANCE_PX
    assert result["max_abs_scale"] < TOLERANCE_PX


@needs_onnx
def test_dynamic_batch_axis(tiny, tiny_onnx, crops):
    session = OnnxSession(tiny_onnx, threads=1)
    batch, *rest = session.session.get_inputs()[0].shape
    assert isinstance(batch, str) and rest == [3, 80, 80]  # a symbolic batch dimension
    whole, _ = session.run(crops[:7].numpy())
    for size in (1, 3, 7):
        points, scale = session.run(crops[:size].numpy())
        assert points.shape == scale.shape == (size, 68, 2)
        np.testing.assert_allclose(points, whole[:size], atol=TOLERANCE_PX)


@needs_onnx
def test_shipped_model_export_cli_reports_difference(tmp_path, capsys, crops):
    out = tmp_path / "fast.onnx"
    code = main(
        ["export", "--model", "rcn-fast", "--onnx", str(out), "--verify-root", str(YTF68_SLICE)]
    )
    text = capsys.readouterr().out
    assert code == 0 and out.is_file(), text
    assert f"on {len(crops)} real crops" in text
    reported = float(text.split("points ")[1].split(" px")[0])
    assert reported < TOLERANCE_PX
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left nothing behind

    landmarker = Landmarker.pretrained("rcn-fast", backend="onnx", onnx_path=out, threads=1)
    reference = Landmarker.pretrained("rcn-fast", threads=1)
    onnx_points, onnx_scale = landmarker.predict_batch(crops)
    torch_points, torch_scale = predict_crops(reference.model, crops)
    assert np.abs(onnx_points - torch_points.double().numpy()).max() < TOLERANCE_PX
    assert np.abs(onnx_scale - torch_scale.double().numpy()).max() < TOLERANCE_PX
    face_onnx, face_torch = landmarker.predict(SAMPLE)[0], reference.predict(SAMPLE)[0]
    # Two stages: a 1e-5 px difference in the first estimate moves the 5-point re-crop and its
    # bilinear samples, which the second pass turns into a few 1e-3 px (measured 0.004 px).
    np.testing.assert_allclose(face_onnx.points, face_torch.points, atol=1e-2)  # image pixels


@needs_onnx
def test_a_model_trained_on_larger_crops_exports_at_its_crop_size(tiny, tmp_path, monkeypatch):
    """A model trained at 112 px (``[data] size = 112``; the network's own config still says 80)
    exports at 112 px: as a file with the config in its metadata, and into the backend's cache."""
    config = RunConfig.from_dict({**RunConfig().to_dict(), "data": {"size": 112}})
    big = sample_crops(112)
    path = export_onnx(tiny, tmp_path / "big.onnx", config=config)
    session = OnnxSession(path, threads=1)
    assert session.session.get_inputs()[0].shape[1:] == [3, 112, 112]
    points, scale = session.predict(big)
    reference, reference_scale = predict_crops(tiny, big)
    assert np.abs(points - reference.numpy()).max() < TOLERANCE_PX
    assert np.abs(scale - reference_scale.numpy()).max() < TOLERANCE_PX
    alone = Landmarker(None, backend="onnx", onnx_path=path, threads=1)  # size from the metadata
    assert alone.crop_size == 112
    monkeypatch.setenv("LAPLACE_LANDMARKS_CACHE", str(tmp_path / "cache"))
    cached = Landmarker(tiny, config, backend="onnx", threads=1)
    torch_path = Landmarker(tiny, config, threads=1)
    assert cached._onnx.path != cached_export(tiny)  # not the 80 px export of the same weights
    # Two passes (box crop, then the 5-point re-crop): a 1e-5 px difference in the first estimate
    # moves the re-crop's bilinear samples by a few 1e-3 px (as for the shipped model above).
    for other in (alone, cached):
        np.testing.assert_allclose(
            other.predict(SAMPLE)[0].points, torch_path.predict(SAMPLE)[0].points, atol=1e-2
        )


@needs_onnx
def test_float_input_export(tiny, tmp_path, crops):
    tiny.train()  # export runs in eval mode and gives the mode back
    try:
        path = export_onnx(tiny, tmp_path / "float.onnx", input_dtype="float32")
        assert tiny.training
    finally:
        tiny.eval()
    session = OnnxSession(path, threads=1)
    assert session.session.get_inputs()[0].type == "tensor(float)"
    points, _ = session.predict(crops[:5])  # uint8 in, scaled to [0, 1] for the float graph
    reference, _ = predict_crops(tiny, crops[:5])
    assert np.abs(points - reference.numpy()).max() < TOLERANCE_PX


@needs_onnx
def test_backend_exports_into_cache_once(tiny, tiny_onnx, tmp_path, monkeypatch, crops):
    calls = []

    def fake_export(model, path, **kwargs):  # the real export is tested above; count calls here
        calls.append(path)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(tiny_onnx.read_bytes())
        return Path(path)

    monkeypatch.setenv("LAPLACE_LANDMARKS_CACHE", str(tmp_path))
    monkeypatch.setattr("laplace_landmarks.onnx_cache.export_onnx", fake_export)
    landmarker = Landmarker(tiny, backend="onnx", threads=1)
    again = Landmarker(tiny, backend="onnx", threads=1)
    assert len(calls) == 1 and calls[0].parent == tmp_path / "onnx"
    assert landmarker._onnx.path == again._onnx.path == cached_export(tiny) == calls[0]
    points, _ = landmarker.predict_batch(crops[:4])
    reference, _ = predict_crops(tiny, crops[:4])
    assert np.abs(points - reference.double().numpy()).max() < TOLERANCE_PX
    other = create_model("rcn", width=1 / 16).eval()  # new random weights -> a new cache key
    assert cached_export(other) != calls[0] and len(calls) == 2


def test_unknown_backend_is_rejected(tiny):
    with pytest.raises(ValueError, match="backend"):
        Landmarker(tiny, backend="tensorrt")


def test_missing_onnxruntime_gives_install_hint(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(LandmarksError, match=r"pip install laplace-landmarks\[onnx\]"):
        require_onnx()
    with pytest.raises(LandmarksError, match="onnxruntime"):
        Landmarker(tiny, backend="onnx", onnx_path=tmp_path / "x.onnx")
    assert main(["export", "--model", "rcn-fast", "--onnx", str(tmp_path / "y.onnx")]) == 2
    assert INSTALL_HINT in capsys.readouterr().err
    assert not (tmp_path / "y.onnx").exists()


def _int8_weights(path: Path) -> list[np.ndarray]:
    """The int8 initializers (the quantised conv weights) of an ONNX file."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    return [a for a in map(numpy_helper.to_array, graph.initializer) if a.dtype == np.int8]


@needs_onnx
def test_int8_files_have_7_bit_weights_so_every_x86_cpu_computes_the_same(tiny, tmp_path, crops):
    """u8 activations x s8 weights: CPUs without VNNI add pairs of products in int16, exact only
    while 255 * (|w1| + |w2|) <= 32767, i.e. |w| <= 64. Both the shipped int8 file and a fresh
    ``quantize_onnx`` keep every weight in -64..64 (symmetric 7-bit: 255 * 128 = 32640)."""
    from laplace_landmarks.export import quantize_onnx
    from laplace_landmarks.weights import list_pretrained, pretrained_path

    shipped = [m["name"] for m in list_pretrained() if m.get("onnx_int8")]
    assert shipped, "no shipped int8 file"
    for name in shipped:
        weights = _int8_weights(pretrained_path(name).with_suffix(".onnx"))
        assert len(weights) >= 5, name
        assert all(int(np.abs(w.astype(np.int32)).max()) <= 64 for w in weights), name
    fp32 = export_onnx(tiny, tmp_path / "fp32.onnx")
    out = quantize_onnx(fp32, tmp_path / "int8.onnx", crops[:16])
    weights = _int8_weights(out)
    assert weights
    assert 255 * 2 * max(int(np.abs(w.astype(np.int32)).max()) for w in weights) <= 32767
