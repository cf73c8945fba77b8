"""The core install (no PyTorch): shipped models and exported ``.onnx`` files on ONNX Runtime.

``pip install laplace-landmarks`` brings numpy, Pillow, ONNX Runtime, dlib-bin and defusedxml, no
torch. These tests run the user path in a subprocess where ``import torch`` fails, check it
agrees with the torch backend, and check ``predict --model file.onnx`` and its errors.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from laplace_landmarks.cli import main
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.inference import Landmarker
from laplace_landmarks.weights import list_pretrained

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "laplace_landmarks"
SAMPLE = PACKAGE / "samples" / "lfw_Naomi_Watts0.jpg"
TOLERANCE_PX = 0.01  # ONNX Runtime vs torch, whole path, image pixels (measured: <= 0.006)
MAX_ONNX_BYTES = 4_000_000  # the largest, rcn-lite-accurate (width 1/2, depth 1, float): 3.2 MB

# Imports of torch (and of the packages only `[train]` brings) fail in the child, as on a core
# install; it prints the points of both ways in (Python and the CLI) and what got imported.
NO_TORCH_CHILD = """
import contextlib, io, json, sys
for name in ("torch", "safetensors", "onnx", "onnxscript"):
    sys.modules[name] = None  # import NAME -> ModuleNotFoundError
from laplace_landmarks import Landmarker
from laplace_landmarks.cli import main

sample = sys.argv[1]
faces = Landmarker.pretrained().predict(sample)
assert main(["models"]) == 0
with contextlib.redirect_stdout(io.StringIO()) as cli:
    assert main(["predict", sample]) == 0
loaded = [m for m in ("torch", "safetensors", "onnx") if sys.modules.get(m) is not None]
points = [f.points.tolist() for f in faces]
print("RESULT " + json.dumps({"points": points, "loaded": loaded, "cli": cli.getvalue()}))
"""


def _run_without_torch() -> dict:
    result = subprocess.run(
        [sys.executable, "-c", NO_TORCH_CHILD, str(SAMPLE)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
    payload = json.loads(line[len("RESULT ") :])
    payload["cli"] = json.loads(payload["cli"])
    payload["stdout"] = result.stdout
    return payload


def test_predict_and_models_run_without_torch_and_match_the_full_install():
    """Without torch the default gives the points of the full install's default backend (its
    ONNX file; that file against the weights is the next test's)."""
    child = _run_without_torch()
    assert child["loaded"] == []
    assert "rcn-lite-accurate-112 (default)" in child["stdout"] and "params:" in child["stdout"]
    default = next(e for e in list_pretrained() if e["default"])
    backend = "onnx" if default["onnx_int8"] else "torch"
    reference = Landmarker.pretrained(backend=backend).predict(SAMPLE)
    assert len(child["points"]) == len(reference) == 1
    for points, face in zip(child["points"], reference, strict=True):
        assert np.abs(np.array(points) - face.points).max() < TOLERANCE_PX
    (image,) = child["cli"]["images"]
    cli_points = np.array(image["faces"][0]["points"])
    assert np.abs(cli_points - reference[0].points).max() < TOLERANCE_PX


def test_backend_defaults_onnx_for_shipped_models_torch_for_weights_files():
    shipped = Landmarker.pretrained("rcn-fast")
    assert shipped.backend == "onnx" and shipped._onnx.path.name == "rcn-fast.onnx"
    assert shipped.model.training is False  # the torch generator, loaded on first use
    weights = Landmarker.load(str(list_pretrained()[0]["path"]))
    assert weights.backend == "torch"
    assert Landmarker.pretrained("rcn-fast", backend="torch").backend == "torch"


@pytest.mark.parametrize("entry", list_pretrained(), ids=lambda e: e["name"])
def test_every_shipped_model_ships_an_onnx_file_that_reproduces_its_weights(entry):
    """The ONNX file alone (its graph holds the fitted point offset and scale factor, its
    metadata the config) gives the weights' points and scales, mirrored pass included."""
    onnx_file = entry["onnx"]
    assert onnx_file is not None and onnx_file.stat().st_size < MAX_ONNX_BYTES
    alone = Landmarker.from_checkpoint(onnx_file, flip_test=True, threads=1)
    torch_lm = Landmarker.from_checkpoint(entry["path"], flip_test=True, threads=1)
    assert alone.backend == "onnx" and torch_lm.backend == "torch"
    assert alone.config == torch_lm.config
    from laplace_landmarks.data.samples import sample_crops

    crops = sample_crops(alone.crop_size).numpy()
    for flip in (False, True):
        alone.flip_test = torch_lm.flip_test = flip
        points, scale = alone.predict_batch(crops)
        expected_points, expected_scale = torch_lm.predict_batch(crops)
        if not entry["onnx_int8"]:
            assert np.abs(points - expected_points).max() < 1e-3  # crop pixels
            assert np.abs(scale - expected_scale).max() < 1e-3
            continue
        # An int8 file rounds every weight to 1/128 (7-bit) and every activation to 1/255 of its
        # range: its points move by a fraction of a crop pixel (measured on these 7 crops: mean
        # 0.08-0.11, max 0.98 px; on 47 crops mean 0.10-0.13, max 1.4 px, i.e. about 3 % NME at
        # 112 px), below the model's own error (about 2 crop px). The bounds leave room for
        # other CPUs' float rounding around the integer kernels.
        difference = np.abs(points - expected_points)
        assert difference.mean() < 0.25 and difference.max() < 3.0
        relative = np.abs(scale - expected_scale) / expected_scale
        assert relative.mean() < 0.08


def test_package_data_ships_the_onnx_files():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "weights/*.onnx" in config["tool"]["setuptools"]["package-data"]["laplace_landmarks"]
    assert not any("torch" in d for d in config["project"]["dependencies"])
    extras = config["project"]["optional-dependencies"]
    assert set(extras["train"]) <= set(extras["dev"])


def _predict_json(capsys, *args: str) -> dict:
    assert main(["predict", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_predict_runs_an_exported_onnx_file(tmp_path, capsys):
    from laplace_landmarks.export import export_onnx

    exported = tmp_path / "my-model.onnx"
    exported.write_bytes(Landmarker.pretrained("rcn-fast")._onnx.path.read_bytes())
    bare = export_onnx(Landmarker.pretrained("rcn-fast").model, tmp_path / "bare.onnx")  # no config
    expected = Landmarker.pretrained("rcn-fast", backend="torch", flip_test=False).predict(SAMPLE)
    for path in (exported, bare):
        payload = _predict_json(capsys, str(SAMPLE), "--model", str(path))
        assert payload["model"] == str(path)
        points = np.array(payload["images"][0]["faces"][0]["points"])
        assert np.abs(points - expected[0].points).max() < TOLERANCE_PX


def _foreign_onnx() -> bytes:
    """A valid ONNX graph that is no landmark model: crops in, one tensor out."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    crops = helper.make_tensor_value_info("crops", TensorProto.UINT8, ["N", 3, 80, 80])
    out = helper.make_tensor_value_info("out", TensorProto.UINT8, ["N", 3, 80, 80])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["crops"], ["out"])], "g", [crops], [out]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.mark.parametrize("kind", ["garbage", "foreign", "empty"])
def test_a_bad_onnx_file_is_one_line_naming_it(tmp_path, capsys, kind):
    bad = tmp_path / f"{kind}.onnx"
    content = {"garbage": b"\x00\xffnot an onnx file" * 50, "empty": b""}
    bad.write_bytes(content[kind] if kind in content else _foreign_onnx())
    with pytest.raises(LandmarksError, match=str(bad)):
        Landmarker.load(str(bad))
    assert main(["predict", str(SAMPLE), "--model", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err and "Traceback" not in err


def test_a_missing_onnx_file_and_torch_backend_on_one_are_refused(tmp_path, capsys):
    assert main(["predict", str(SAMPLE), "--model", str(tmp_path / "none.onnx")]) == 2
    assert "none.onnx" in capsys.readouterr().err
    shipped = Landmarker.pretrained("rcn-fast")._onnx.path
    with pytest.raises(LandmarksError, match="backend 'onnx' only"):
        Landmarker.load(str(shipped), backend="torch")


def test_onnx_runs_one_thread_unless_asked():
    """One ONNX Runtime thread by default (a pool collapses when another process is busy)."""
    from laplace_landmarks import Landmarker

    def intra_op(landmarker) -> int:
        return landmarker._onnx.session.get_session_options().intra_op_num_threads

    assert intra_op(Landmarker.pretrained("rcn-lite")) == 1
    assert intra_op(Landmarker.pretrained("rcn-lite", threads=2)) == 2
