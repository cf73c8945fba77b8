"""Tests for the model registry, the RCN generator and the PatchGAN discriminator."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch

from laplace_landmarks.models import (
    RCN,
    PatchGAN,
    RCNConfig,
    count_parameters,
    create_model,
    list_models,
    model_entry,
    normalize_input,
    register_model,
    storage_mb,
)

WIDTHS = [1.0, 1 / 2, 1 / 4, 1 / 8, 1 / 16]

# (name, kwargs, input shape, expected output shape) for every registered model.
CASES = (
    [("rcn", {"width": w, "num_landmarks": 68}, (2, 3, 32, 32), (2, 68, 32, 32)) for w in WIDTHS]
    + [
        ("rcn-lite", {"width": w, "num_landmarks": 68}, (2, 3, 32, 32), (2, 68, 16, 16))
        for w in (1 / 4, 1 / 8)
    ]
    + [("patchgan", {"in_channels": 3 + 5, "base_width": 8}, (2, 8, 32, 32), (2, 1, 3, 3))]
)


pytestmark = pytest.mark.usefixtures("one_thread")


def _case_id(case: tuple) -> str:
    return f"{case[0]}-{case[1]}"


def test_every_registered_model_has_a_case() -> None:
    assert list_models() == ["patchgan", "rcn", "rcn-lite"]
    assert {case[0] for case in CASES} == set(list_models())


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_shape_finite_and_every_parameter_gets_a_gradient(case: tuple) -> None:
    name, kwargs, in_shape, out_shape = case
    torch.manual_seed(0)
    model = create_model(name, **kwargs).train()
    out = model(torch.randn(in_shape))
    assert out.shape == out_shape
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, param_name
        assert param.grad.abs().sum() > 0, param_name


@pytest.mark.parametrize("width", WIDTHS)
def test_rcn_paper_size_80x80_eval(width: float) -> None:
    model = create_model("rcn", width=width, num_landmarks=19).eval()
    with torch.inference_mode():
        out = model(normalize_input(torch.randint(0, 256, (1, 3, 80, 80), dtype=torch.uint8)))
    assert out.shape == (1, 19, 80, 80)
    assert torch.isfinite(out).all()


def test_rcn_any_size_divisible_by_16() -> None:
    model = create_model("rcn", width=1 / 16).eval()
    assert model(torch.zeros(1, 3, 96, 48)).shape == (1, 68, 96, 48)


def test_rcn_eval_is_deterministic_and_train_uses_dropout() -> None:
    torch.manual_seed(0)
    model = create_model("rcn", width=1 / 8, dropout=0.5)
    x = torch.randn(1, 3, 32, 32)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


@pytest.mark.parametrize(
    ("width", "num_landmarks", "expected"),
    [(1.0, 68, 940_612), (1 / 8, 68, 15_492), (1.0, 19, 937_427)],
)
def test_rcn_golden_parameter_count(width: float, num_landmarks: int, expected: int) -> None:
    model = create_model("rcn", width=width, num_landmarks=num_landmarks)
    assert count_parameters(model) == expected
    assert storage_mb(model) == pytest.approx(expected * 4 / 1e6)


@pytest.mark.parametrize("width", WIDTHS)
def test_rcn_parameter_count_matches_hand_formula(width: float) -> None:
    c, k = max(1, round(64 * width)), 68
    encoder = (3 * 9 * c + c) + 3 * (9 * c * c + c)  # 3x3 convs, 3->C then C->C
    bottleneck = c * c + c  # 1x1 C->C
    decoder = 4 * (25 * 2 * c * c + c)  # 5x5 convs, 2C->C
    head = c * k + k  # 1x1 C->K
    model = create_model("rcn", width=width, num_landmarks=k)
    assert model.config.channels == c
    assert count_parameters(model) == encoder + bottleneck + decoder + head


def test_patchgan_golden_parameter_count_and_80x80_patch_grid() -> None:
    model = create_model("patchgan", in_channels=3 + 68).eval()
    # 71*16*64+64 + 64*16*128 + 2*128 + 128*16*256 + 2*256 + 256*16+1 (BN'd convs have no bias)
    assert count_parameters(model) == 732_993
    assert model(torch.zeros(1, 71, 80, 80)).shape == (1, 1, 9, 9)


def test_patchgan_noise_only_in_training() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 8, 32, 32)
    noisy = create_model("patchgan", in_channels=8, base_width=8, noise_std=0.1)
    noisy.eval()
    assert torch.equal(noisy(x), noisy(x))
    noisy.train()
    assert not torch.equal(noisy(x), noisy(x))
    quiet = create_model("patchgan", in_channels=8, base_width=8, noise_std=0.0).train()
    assert torch.equal(quiet(x), quiet(x))  # train mode without noise: BatchNorm is deterministic


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"width": 0}, "width"),
        ({"width": -0.5}, "width"),
        ({"num_landmarks": 0}, "num_landmarks"),
        ({"input_size": 81}, "input_size"),
        ({"dropout": 1.0}, "dropout"),
        ({"widht": 1.0}, "widht"),
    ],
)
def test_rcn_bad_config_raises_value_error_naming_argument(kwargs: dict, argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        create_model("rcn", **kwargs)


def test_rcn_bad_input_raises_value_error() -> None:
    model = create_model("rcn", width=1 / 16)
    with pytest.raises(ValueError, match="divisible by 16"):
        model(torch.zeros(1, 3, 81, 80))
    with pytest.raises(ValueError, match="images"):
        model(torch.zeros(1, 4, 80, 80))
    with pytest.raises(ValueError, match="floating point"):
        model(torch.zeros(1, 3, 80, 80, dtype=torch.uint8))


def test_patchgan_bad_config_and_input() -> None:
    with pytest.raises(ValueError, match="base_width"):
        create_model("patchgan", base_width=0)
    with pytest.raises(ValueError, match="noise_std"):
        create_model("patchgan", noise_std=-1.0)
    with pytest.raises(ValueError, match="inputs"):
        create_model("patchgan", in_channels=71)(torch.zeros(1, 70, 80, 80))


def test_unknown_model_name_lists_choices() -> None:
    with pytest.raises(ValueError, match=r"\['patchgan', 'rcn', 'rcn-lite'\]"):
        create_model("resnet")


def test_config_is_frozen_and_classes_exported() -> None:
    model = create_model("rcn", width=1 / 4)
    assert isinstance(model, RCN) and model.config == RCNConfig(width=1 / 4)
    assert isinstance(create_model("patchgan"), PatchGAN)
    with pytest.raises(AttributeError):
        model.config.width = 1.0  # type: ignore[misc]


def test_normalize_input_maps_uint8_and_unit_floats_to_minus_one_one() -> None:
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1)
    expected = torch.tensor([-1.0, -0.6, 1.0]).view(1, 3, 1, 1)
    assert torch.allclose(normalize_input(images), expected)
    assert torch.allclose(normalize_input(images.float() / 255), expected)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        normalize_input(torch.full((1, 3, 2, 2), 200.0))
    with pytest.raises(ValueError, match="images"):
        normalize_input(torch.zeros(3, 2, 2))


def test_rcn_lite_is_stride_2_and_five_times_cheaper_than_rcn() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    lite, rcn = create_model("rcn-lite", width=1 / 8).eval(), create_model("rcn", width=1 / 8)
    assert lite.config.output_stride == 2 and not hasattr(rcn.config, "output_stride")
    flops = []
    for model in (lite, rcn.eval()):
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            out = model(torch.zeros(1, 3, 80, 80))
        flops.append(counter.get_total_flops())
    assert out.shape == (1, 68, 80, 80)
    assert flops[0] * 5 < flops[1]  # 12.6 against 66.6 MFLOP per face
    assert lite(torch.zeros(1, 3, 80, 80)).shape == (1, 68, 40, 40)
    with pytest.raises(ValueError, match="divisible by 16"):
        lite(torch.zeros(1, 3, 72, 72))


# --- the registry is the one description of a generator ---------------------------------------
def test_registry_kinds_and_generator_options_match_the_configs() -> None:
    """Every generator's options are fields of both the run config's [model] section and its
    own config dataclass, so build_generator can pass them through."""
    from laplace_landmarks.config import ModelConfig

    assert list_models("generator") == ["rcn", "rcn-lite"]
    assert list_models("discriminator") == ["patchgan"]
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    for name in list_models("generator"):
        options = model_entry(name).options
        own_fields = {f.name for f in dataclasses.fields(create_model(name, width=1 / 16).config)}
        assert {"width", "num_landmarks", "dropout"} <= set(options)
        assert set(options) <= model_fields & own_fields, name


def test_a_generator_registered_once_is_configurable_and_buildable(monkeypatch) -> None:
    """Adding a generator is one register_model call: the config accepts its name, checks the
    [model] fields it takes, and build_generator builds it with them."""
    from laplace_landmarks.checkpoints import build_generator
    from laplace_landmarks.config import RunConfig
    from laplace_landmarks.errors import LandmarksError
    from laplace_landmarks.models import registry

    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    built = []

    @register_model("tiny", options=("width", "num_landmarks", "dropout", "depth"))
    def tiny(**kwargs):
        built.append(kwargs)
        return create_model("rcn", **{k: v for k, v in kwargs.items() if k != "depth"})

    config = RunConfig.from_dict({"model": {"name": "tiny", "width": 0.0625, "depth": 2}})
    assert isinstance(build_generator(config), RCN)
    assert built == [{"width": 0.0625, "num_landmarks": 68, "dropout": 0.2, "depth": 2}]
    with pytest.raises(LandmarksError, match="model.zero_init_residual = true needs model.name"):
        RunConfig.from_dict({"model": {"name": "tiny", "depth": 1, "zero_init_residual": True}})
    with pytest.raises(LandmarksError, match=r"model.depth > 0 needs model.name = 'rcn-lite'"):
        RunConfig.from_dict({"model": {"name": "rcn", "depth": 1}})
    with pytest.raises(LandmarksError, match=r"model.name must be one of \('rcn', 'rcn-lite'"):
        RunConfig.from_dict({"model": {"name": "patchgan"}})
    with pytest.raises(ValueError, match="already registered"):
        register_model("tiny", tiny)


def test_the_registry_and_the_config_import_without_torch() -> None:
    """The CLI reads the generator names through the config: neither may import torch."""
    code = (
        "import sys, laplace_landmarks.config, laplace_landmarks.models; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
