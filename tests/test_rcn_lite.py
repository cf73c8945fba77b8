"""rcn-lite, the output-stride-2 generator: heatmap <-> crop pixel mapping in decoding and the
losses, training it through the CLI (with D) on the real ytf68 slice, ONNX parity, and the
Landmarker on its checkpoint. Points are (x, y) crop pixels, 0-based, pixel centres at integers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import UNLABELED_SLICE, YTF68_SLICE

from laplace_landmarks.cli import main
from laplace_landmarks.config import RunConfig
from laplace_landmarks.decoding import decode_logits, output_stride, predict_crops
from laplace_landmarks.heatmaps import render_laplace, to_crop_units, to_heatmap_units
from laplace_landmarks.losses import discriminator_input, laplace_kl, supervised_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def test_heatmap_units_round_trip_and_pixel_centres():
    points = torch.tensor([[[0.5, 2.5], [13.25, 79.5]]])
    assert torch.equal(to_heatmap_units(points, 1), points)
    heat = to_heatmap_units(points, 2)
    assert torch.allclose(heat[0, 0], torch.tensor([0.0, 1.0]))  # crop 0..1 -> heatmap pixel 0
    assert torch.allclose(to_crop_units(heat, 2), points)


def test_one_hot_heatmap_at_stride_2_decodes_to_the_centre_of_its_2x2_block():
    logits = torch.full((1, 2, 40, 40), -1e4)
    logits[0, 0, 5, 3] = 0.0  # row 5, column 3 -> crop x = 2*3 + 0.5, y = 2*5 + 0.5
    logits[0, 1, 0, 39] = 0.0
    mean, scale = decode_logits(logits, stride=2)
    assert torch.allclose(mean[0], torch.tensor([[6.5, 10.5], [78.5, 0.5]]))
    offset = torch.tensor([[1.0, -1.0], [0.0, 0.0]])
    shifted, _ = decode_logits(logits, offset=offset, stride=2)
    assert torch.allclose(shifted - mean, offset[None])
    # a rendered Laplace heatmap of scale b (heatmap px) decodes to scale 2b crop px
    heat = render_laplace(torch.tensor([[[20.0, 20.0]]]), 1.5, (40, 40))
    _, b = decode_logits(heat.clamp_min(1e-30).log(), stride=2)
    assert torch.allclose(b, torch.full_like(b, 3.0), atol=0.05)


def test_losses_at_stride_2_are_in_crop_pixels():
    config = RunConfig()
    logits = torch.full((1, 1, 40, 40), -1e4)
    logits[0, 0, 10, 10] = 0.0  # crop point (20.5, 20.5)
    soft = RunConfig.from_dict({**config.to_dict(), "loss": {"kind": "softargmax"}})
    target = torch.tensor([[[23.5, 20.5]]])  # 3 crop px to the right
    loss = supervised_loss(logits, target, torch.ones(1, 1), soft.loss, stride=2)
    assert loss.item() == pytest.approx(3.0, abs=1e-3)
    # LaplaceKL on heatmap pixels equals LaplaceKL of the decoded crop-pixel distribution
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 40, 40, dtype=torch.float64)
    target = torch.rand(2, 3, 2, dtype=torch.float64) * 70 + 5
    kl = supervised_loss(logits, target, torch.ones(2, 3), config.loss, stride=2)
    mean, scale = decode_logits(logits, stride=2)
    expected = laplace_kl(mean, scale, target, config.loss.target_scale).mean()
    assert kl.item() == pytest.approx(expected.item(), rel=1e-9)


def test_discriminator_input_pools_the_image_to_the_heatmap_size():
    images, heat = torch.rand(2, 3, 80, 80), torch.rand(2, 68, 40, 40)
    stacked = discriminator_input(images, heat)
    assert stacked.shape == (2, 71, 40, 40)
    assert torch.allclose(stacked[:, :3], torch.nn.functional.avg_pool2d(images, 2))


@pytest.fixture(scope="module")
def lite_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lite")
    args = [
        "train", "--recipe", "improved-lite", "--epochs", "2", "--batch-size", "8",
        "--threads", "1", "--data-root", str(YTF68_SLICE), "--unlabeled",
        str(UNLABELED_SLICE / "ytf"), "--cache-dir", str(tmp / "cache"), "--out",
        str(tmp / "run"), "--no-progress",
    ]  # fmt: skip
    assert main(args) == 0
    return tmp / "run"


def test_train_rcn_lite_with_discriminator_on_the_slice(lite_run):
    rows = (lite_run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and "d_acc" in rows[0]
    config = RunConfig.from_dict(torch.load(lite_run / "last.pt", weights_only=True)["config"])
    assert config.model.name == "rcn-lite" and config.adversarial.enabled


def test_arch_flag_picks_the_generator(tmp_path, capsys):
    args = [
        "train", "--recipe", "paper-laplacekl", "--arch", "rcn-lite", "--width", "0.0625",
        "--epochs", "1", "--batch-size", "8", "--threads", "1", "--max-train", "16",
        "--data-root", str(YTF68_SLICE), "--cache-dir", str(tmp_path / "cache"),
        "--out", str(tmp_path / "run"), "--no-progress",
    ]  # fmt: skip
    assert main(args) == 0
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["config"]
    assert saved["model"]["name"] == "rcn-lite"
    with pytest.raises(SystemExit) as exit_info:
        main([*args[:4], "unet", *args[5:]])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_depth_adds_residual_convs_and_round_trips(tmp_path, capsys):
    """--depth 1 trains rcn-lite with extra convs at the same width; the weights file rebuilds
    the same network (config -> build_generator), exports to ONNX with the same points, and
    depth is refused for the paper's RCN."""
    from laplace_landmarks.checkpoints import load_generator
    from laplace_landmarks.models import create_model

    plain, deep = (
        create_model("rcn-lite", width=0.125),
        create_model("rcn-lite", width=0.125, depth=1),
    )
    assert deep.config.channels == plain.config.channels == 8
    extra = sum(p.numel() for p in deep.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == 2 * (32 * 32 * 9 + 32) + (16 * 16 * 9 + 16) + (8 * 8 * 9 + 8)
    assert set(plain.state_dict()) < set(deep.state_dict())  # depth 0 keeps the old keys
    args = [
        "train", "--recipe", "paper-laplacekl", "--arch", "rcn-lite", "--width", "0.125",
        "--depth", "1", "--epochs", "1", "--batch-size", "8", "--threads", "1",
        "--max-train", "16", "--data-root", str(YTF68_SLICE), "--cache-dir",
        str(tmp_path / "cache"), "--out", str(tmp_path / "run"), "--no-progress",
    ]  # fmt: skip
    assert main(args) == 0
    model, config, _ = load_generator(tmp_path / "run" / "best.safetensors")
    assert config.model.depth == 1 and len(model.extra_bottleneck) == 1
    trained = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    torch.testing.assert_close(
        model.state_dict()["extra_dec20.0.weight"], trained["extra_dec20.0.weight"]
    )
    assert main([*args[:4], "rcn", *args[5:]]) == 2
    assert "model.depth > 0 needs model.name = 'rcn-lite'" in capsys.readouterr().err


def test_zero_init_residual_starts_as_the_shallow_network(capsys):
    """zero_init_residual makes every added block the identity at initialisation: the deep
    network computes exactly what the depth-0 network with its other weights does; the option
    round-trips through the config and the CLI refuses it without --depth."""
    from laplace_landmarks.checkpoints import build_generator
    from laplace_landmarks.config import resolve_config
    from laplace_landmarks.models import create_model

    config = resolve_config(
        "improved-lite", {"model.width": 0.25, "model.depth": 2, "model.zero_init_residual": True}
    )
    deep = build_generator(config).eval()
    assert deep.config.zero_init_residual and len(deep.extra_dec20) == 2
    assert all(not p.any() for n, p in deep.named_parameters() if n.startswith("extra_"))
    shallow = create_model("rcn-lite", width=0.25, dropout=deep.config.dropout).eval()
    missing = shallow.load_state_dict(deep.state_dict(), strict=False).unexpected_keys
    assert missing and all(k.startswith("extra_") for k in missing)
    images = torch.rand(2, 3, 80, 80) * 2 - 1
    torch.testing.assert_close(deep(images), shallow(images))
    plain = build_generator(resolve_config("improved-lite", {"model.depth": 2}))
    assert all(p.abs().sum() > 0 for n, p in plain.named_parameters() if n.endswith(".weight"))
    assert (
        main(["train", "--recipe", "improved-lite", "--zero-init-residual", "--epochs", "1"]) == 2
    )
    assert "model.zero_init_residual needs model.depth or model.fine_depth > 0" in (
        capsys.readouterr().err
    )


def test_fine_depth_adds_residual_convs_at_the_heatmap_resolution(tmp_path):
    """fine_depth adds C->C convs after the last decoder conv (40 px for 80 px crops); it
    round-trips through a weights file and the ONNX export gives the same points."""
    from laplace_landmarks.checkpoints import load_generator, save_weights
    from laplace_landmarks.config import resolve_config
    from laplace_landmarks.export import export_onnx
    from laplace_landmarks.inference import Landmarker
    from laplace_landmarks.models import create_model

    plain = create_model("rcn-lite", width=0.125, depth=1)
    fine = create_model("rcn-lite", width=0.125, depth=1, fine_depth=2)
    extra = sum(p.numel() for p in fine.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == 2 * (8 * 8 * 9 + 8) and len(fine.extra_dec40) == 2
    images = torch.rand(1, 3, 80, 80) * 2 - 1
    assert fine.eval()(images).shape == (1, 68, 40, 40)
    config = resolve_config("improved-lite", {"model.depth": 1, "model.fine_depth": 2})
    path = tmp_path / "fine.safetensors"
    save_weights(fine, config, path)
    loaded, loaded_config, _ = load_generator(path)
    assert loaded_config.model.fine_depth == 2
    torch.testing.assert_close(loaded.eval()(images), fine(images))
    onnx = tmp_path / "fine.onnx"
    export_onnx(loaded, onnx, config=loaded_config)
    crops = (np.random.default_rng(0).random((2, 3, 80, 80)) * 255).astype(np.uint8)
    torch_points, _ = Landmarker(loaded, loaded_config).predict_batch(crops)
    onnx_points, _ = Landmarker.from_checkpoint(onnx).predict_batch(crops)
    np.testing.assert_allclose(onnx_points, torch_points, atol=1e-3)


def test_landmarker_and_onnx_on_a_lite_checkpoint(lite_run):
    from laplace_landmarks.data.samples import sample_crops
    from laplace_landmarks.export import export_onnx, verify_onnx
    from laplace_landmarks.inference import Landmarker
    from laplace_landmarks.onnx_runtime import require_onnx

    landmarker = Landmarker.from_checkpoint(lite_run / "best.pt", threads=1)
    assert output_stride(landmarker.model) == 2
    crops = sample_crops(80, YTF68_SLICE)
    points, scale = landmarker.predict_batch(crops[:5])
    reference, _ = predict_crops(landmarker.model, crops[:5])
    assert points.shape == scale.shape == (5, 68, 2)
    np.testing.assert_allclose(points, reference.double().numpy(), atol=1e-4)
    image = (YTF68_SLICE / "images").rglob("*.jpg").__next__()
    faces = landmarker.predict(image, boxes=[(10, 10, 120, 120)])
    assert len(faces) == 1 and np.isfinite(faces[0].points).all()
    try:
        require_onnx()
    except Exception:
        pytest.skip("onnx/onnxscript/onnxruntime not installed (the [onnx] extra)")
    path = export_onnx(landmarker.model, lite_run / "lite.onnx")
    result = verify_onnx(path, landmarker.model, crops)
    assert result["max_abs_points"] < 1e-4 and result["max_abs_scale"] < 1e-4
