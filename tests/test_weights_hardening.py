"""Weights files are untrusted input (checkpoints.load_generator, config.RunConfig.from_dict).

Every damaged, foreign or hostile file (truncated, wrong or missing tensors, a wrong landmark
count, ill-typed or out-of-range config values, non-JSON metadata, NaN/inf or overflowing
weights, a broken ensemble entry, a ``.pt`` without a generator) is one LandmarksError naming
the file, from the API and from the CLI (exit 2, one line), never a traceback; a file that loads
predicts finite points. The last tests fuzz real weights files with hypothesis: truncations, byte
mutations, tensor mutations (shape, dtype, values) and config mutations.
"""

from __future__ import annotations

import json
import math
import types
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import YTF68_SLICE
from fuzzing import tried
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import laplace_landmarks
from laplace_landmarks.checkpoints import (
    MAX_ABS_WEIGHT,
    MAX_ENSEMBLE_MEMBERS,
    load_generator,
    save_ensemble,
    save_weights,
)
from laplace_landmarks.cli import main
from laplace_landmarks.config import RunConfig
from laplace_landmarks.decoding import predict_crops
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.export import sample_crops
from laplace_landmarks.inference import Landmarker
from laplace_landmarks.models import create_model
from laplace_landmarks.models.ensemble import EnsembleGenerator
from laplace_landmarks.weights import list_pretrained, pretrained_path

pytestmark = pytest.mark.usefixtures("one_thread")

SAMPLE = Path(laplace_landmarks.__file__).parent / "samples" / "ytf68_Emmy_Rossum_20a.jpg"
TINY = {"model": {"name": "rcn-lite", "width": 1 / 16}}
FUZZ = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def tiny_file(path: Path, seed: int = 0, **model: object) -> Path:
    """Save a width-1/16 rcn-lite (extra ``model`` fields allowed) as a weights file."""
    config = RunConfig.from_dict({"model": {**TINY["model"], **model}})
    torch.manual_seed(seed)
    m = config.model
    net = create_model(m.name, width=m.width, depth=m.depth, num_landmarks=m.num_landmarks)
    save_weights(net, config, path)
    return path


def read_parts(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata())
    return load_file(str(path)), metadata


def refused(path: Path, *fragments: str) -> str:
    """Assert loading ``path`` is one LandmarksError naming it (and ``fragments``)."""
    with pytest.raises(LandmarksError) as info:
        load_generator(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def note(what: str) -> None:
    """Count an outcome in hypothesis' statistics (``--hypothesis-show-statistics``)."""
    if currently_in_test_context():
        event(what)


def outcome(path: Path, crops: torch.Tensor) -> str:
    """``"loaded"`` (then its points and scales on real crops are finite) or ``"refused"`` (one
    LandmarksError naming the file); anything else fails the test."""
    try:
        model, config, _ = load_generator(path)
    except LandmarksError as exc:
        message = str(exc)
        assert str(path) in message and "\n" not in message, message
        note(f"refused: {message.partition(str(path))[2][:24]}")
        return "refused"
    points, scale = predict_crops(model, crops, temperature=config.loss.temperature)
    assert torch.isfinite(points).all() and torch.isfinite(scale).all()
    note("loaded")
    return "loaded"


@pytest.fixture(scope="module")
def crops() -> torch.Tensor:
    return sample_crops(80, YTF68_SLICE)[:2]


@pytest.fixture(scope="module")
def base(tmp_path_factory, crops) -> types.SimpleNamespace:
    """A tiny weights file, its tensors, metadata and bytes, and a scratch folder."""
    folder = tmp_path_factory.mktemp("weights")
    path = tiny_file(folder / "tiny.safetensors")
    state, metadata = read_parts(path)
    raw = path.read_bytes()
    header_end = 8 + int.from_bytes(raw[:8], "little")
    return types.SimpleNamespace(
        path=path, state=state, metadata=metadata, raw=raw, header_end=header_end,
        folder=folder, crops=crops,
    )  # fmt: skip


def write(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=metadata)
    return path


# --- the shipped models --------------------------------------------------------------------------
def test_every_shipped_model_loads_and_predicts_finite_points(crops):
    for entry in list_pretrained():
        model, config, _ = load_generator(entry["path"])
        points, scale = predict_crops(model, crops)
        assert points.shape == (2, config.model.num_landmarks, 2), entry["name"]
        assert torch.isfinite(points).all() and torch.isfinite(scale).all(), entry["name"]


# --- one damaged file per kind -------------------------------------------------------------------
Damage = Callable[[dict, dict], None]


def field(section: str, name: str, value: object) -> Damage:
    """Set ``[section].name`` of the file's config."""

    def damage(state: dict, metadata: dict) -> None:
        config = json.loads(metadata["config"])
        config[section][name] = value
        metadata["config"] = json.dumps(config)

    return damage


def section(name: str, value: object) -> Damage:
    """Replace the whole ``[name]`` section of the file's config."""

    def damage(state: dict, metadata: dict) -> None:
        metadata["config"] = json.dumps({**json.loads(metadata["config"]), name: value})

    return damage


def tensor(name: str, make: Callable[[torch.Tensor], torch.Tensor]) -> Damage:
    def damage(state: dict, metadata: dict) -> None:
        state[name] = make(state[name])

    return damage


def meta(key: str, value: str | None) -> Damage:
    def damage(state: dict, metadata: dict) -> None:
        if value is None:
            del metadata[key]
        else:
            metadata[key] = value

    return damage


def two_configs(state: dict, metadata: dict) -> None:
    metadata["ensemble"] = json.dumps([json.loads(metadata["config"])] * 2)


DAMAGES: dict[str, tuple[Damage, str]] = {
    "wrong-shape": (tensor("head.weight", lambda t: torch.zeros(68, 5, 1, 1)), "has shape"),
    "missing-tensor": (lambda s, m: s.pop("stem.weight"), "1 missing, e.g. 'stem.weight'"),
    "unknown-tensor": (lambda s, m: s.update(extra=torch.zeros(2)), "1 unknown, e.g. 'extra'"),
    "points-differ": (field("model", "num_landmarks", 5), "has shape (68, 2), the network its"),
    "no-points": (field("model", "num_landmarks", 0), "model.num_landmarks must be >= 1"),
    "many-points": (field("model", "num_landmarks", 10**6), "model.num_landmarks must be <= 1000"),
    "width-string": (field("model", "width", "abc"), "model.width must be float, got str"),
    "size-list": (field("data", "size", [1]), "data.size must be int, got list"),
    "size-huge": (field("data", "size", 1 << 20), "data.size must be <= 512"),
    "size-odd": (field("data", "size", 81), "data.size must be divisible by 16"),
    "width-huge": (field("model", "width", 64.0), "model.width must be <= 4.0"),
    "depth-huge": (field("model", "depth", 10**4), "model.depth must be <= 8"),
    "temperature-nan": (field("loss", "temperature", math.nan), "must be a finite number"),
    "flag-as-number": (field("data", "flip", 1), "data.flip must be bool"),
    "unknown-field": (field("model", "heads", 2), "unknown field(s) ['heads'] in [model]"),
    "model-list": (section("model", [1, 2]), "[model] must be a table of fields, got list"),
    "data-int": (section("data", 3), "[data] must be a table of fields, got int"),
    "config-list": (meta("config", "[1]"), "expected a table of sections"),
    "config-not-json": (meta("config", "{width: abc"), "config metadata is not JSON"),
    "no-config": (meta("config", None), "has no config in its metadata"),
    "ensemble-not-json": (meta("ensemble", "[{"), "ensemble metadata is not JSON"),
    "ensemble-not-list": (meta("ensemble", "{}"), f"2 to {MAX_ENSEMBLE_MEMBERS} member configs"),
    "ensemble-one": (meta("ensemble", "[{}]"), "2 to"),
    "ensemble-many": (meta("ensemble", json.dumps([{}] * 99)), "2 to"),
    "ensemble-ints": (meta("ensemble", "[1, 2]"), "bad ensemble member 0"),
    "ensemble-of-one-net": (two_configs, "missing, e.g. 'members.0."),
    "nan-weights": (tensor("stem.weight", lambda t: t.fill_(math.nan)), "NaN or infinite"),
    "inf-bias": (tensor("head.bias", lambda t: t.fill_(-math.inf)), "NaN or infinite"),
    "f64-overflow": (tensor("head.bias", lambda t: t.double().fill_(1e300)), "NaN or infinite"),
    "huge-weights": (tensor("stem.weight", lambda t: t.fill_(1e6)), "holds 1e+06"),
    "int-weights": (tensor("stem.weight", lambda t: t.int()), "must be floating point"),
    "bool-weights": (
        tensor("head.bias", lambda t: t > 0),
        "must be floating point, got torch.bool",
    ),
    "far-offset": (tensor("point_offset", lambda t: t.fill_(500.0)), "more than the 80 px crop"),
    "zero-factor": (tensor("scale_factor", lambda t: t.fill_(0.0)), "one finite positive number"),
    "huge-factor": (tensor("scale_factor", lambda t: t.fill_(1e9)), "one finite positive number"),
}


def damaged(base: types.SimpleNamespace, kind: str) -> tuple[Path, str]:
    damage, message = DAMAGES[kind]
    state, metadata = {k: v.clone() for k, v in base.state.items()}, dict(base.metadata)
    damage(state, metadata)
    return write(base.folder / f"{kind}.safetensors", state, metadata), message


@pytest.mark.parametrize("kind", sorted(DAMAGES))
def test_a_damaged_file_is_one_error_naming_it(base, kind):
    path, message = damaged(base, kind)
    refused(path, message)
    with pytest.raises(LandmarksError, match="weights: "):
        Landmarker.load(path)


@pytest.mark.parametrize("cut", [0, 7, 8, 100, -1])
def test_a_truncated_file_is_one_error(base, cut):
    path = base.folder / "cut.safetensors"
    path.write_bytes(base.raw[: cut % len(base.raw)])
    refused(path, "is not a readable safetensors file")


def test_weights_that_overflow_together_are_refused(tmp_path):
    path = tiny_file(tmp_path / "big.safetensors", depth=2)
    state, metadata = read_parts(path)
    # each value is allowed (<= MAX_ABS_WEIGHT), but 14 layers of them overflow float32
    state = {k: v.fill_(MAX_ABS_WEIGHT) if k.endswith(("weight", "bias")) else v
             for k, v in state.items()}  # fmt: skip
    refused(write(tmp_path / "huge.safetensors", state, metadata), "non-finite points on a test")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_dtypes_load_as_float32(base, crops, dtype):
    state = {k: v.to(dtype) for k, v in base.state.items()}
    model, _, _ = load_generator(write(base.folder / "cast.safetensors", state, base.metadata))
    assert {p.dtype for p in model.state_dict().values()} == {torch.float32}
    reference, _, _ = load_generator(base.path)
    got, want = predict_crops(model, crops)[0], predict_crops(reference, crops)[0]
    tolerance = 1e-4 if dtype == torch.float64 else 1.0
    torch.testing.assert_close(got, want, atol=tolerance, rtol=0)


def test_files_without_the_fitted_buffers_still_load(base):
    state = {k: v for k, v in base.state.items() if k not in ("point_offset", "scale_factor")}
    model, _, _ = load_generator(write(base.folder / "old.safetensors", state, base.metadata))
    assert torch.equal(model.point_offset, torch.zeros(68, 2)) and float(model.scale_factor) == 1


# --- .pt training checkpoints --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"version": 1}, "checkpoint without a generator"),
        ({"version": 1, "model": [1, 2], "config": TINY}, "checkpoint without a generator"),
        ({"version": 1, "model": "STATE", "config": [1]}, "bad config"),
        ({"version": 1, "model": "STATE", "config": {"model": {"width": "abc"}}}, "model.width"),
        ({"version": 1, "model": {"stem.weight": 3}, "config": TINY}, "missing"),
        ({"version": 2, "model": "STATE", "config": TINY}, "not a laplace-landmarks checkpoint"),
        ([1, 2, 3], "not a laplace-landmarks checkpoint"),
    ],
)
def test_a_bad_training_checkpoint_is_one_error(base, tmp_path, payload, message):
    if isinstance(payload, dict) and payload.get("model") == "STATE":
        payload = {**payload, "model": base.state}
    path = tmp_path / "last.pt"
    torch.save(payload, path)
    refused(path, message)


def test_a_checkpoint_with_a_non_tensor_is_refused_and_a_good_one_loads(base, tmp_path, crops):
    config = json.loads(base.metadata["config"])
    path = tmp_path / "best.pt"
    torch.save({"version": 1, "model": base.state, "config": config}, path)
    assert outcome(path, crops) == "loaded"
    torch.save({"version": 1, "model": {**base.state, "head.bias": "x"}, "config": config}, path)
    refused(path, "head.bias is not a dense tensor")
    path.write_bytes(b"PK\x03\x04 not a zip file")
    refused(path, "is not a readable checkpoint")


# --- ensembles -------------------------------------------------------------------------------------
def test_an_ensemble_is_refused_as_a_member_and_nothing_is_written(tmp_path, capsys):
    a, b = (tiny_file(tmp_path / f"{n}.safetensors", seed=i) for i, n in enumerate("ab"))
    joined = tmp_path / "ab.safetensors"
    assert main(["ensemble", str(a), str(b), "--out", str(joined)]) == 0
    assert isinstance(load_generator(joined)[0], EnsembleGenerator)  # what ensemble writes loads
    capsys.readouterr()
    nested = tmp_path / "nested.safetensors"
    assert main(["ensemble", str(joined), str(a), "--out", str(nested)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{joined} is an ensemble already" in err and len(err.splitlines()) == 1
    assert not nested.exists()
    with pytest.raises(ValueError, match="cannot be an ensemble itself"):
        EnsembleGenerator([load_generator(joined)[0], load_generator(a)[0]])


def test_an_ensemble_file_whose_members_crop_at_other_sizes_is_refused(tmp_path):
    a, b = (tiny_file(tmp_path / f"{n}.safetensors", seed=i) for i, n in enumerate("ab"))
    joined = tmp_path / "ab.safetensors"
    save_ensemble([a, b], joined)
    state, metadata = read_parts(joined)
    configs = json.loads(metadata["ensemble"])
    configs[1]["data"]["size"] = 96
    metadata["ensemble"] = json.dumps(configs)
    path = write(tmp_path / "sizes.safetensors", state, metadata)
    refused(path, "the members crop faces at different sizes [80, 96]")


def test_a_verified_write_never_leaves_a_file_that_does_not_load(tmp_path):
    config = RunConfig.from_dict(TINY)
    model = create_model("rcn-lite", width=1 / 16)
    target = tiny_file(tmp_path / "keep.safetensors")
    before = target.read_bytes()
    with torch.no_grad():
        model.point_offset.fill_(1e4)
    with pytest.raises(LandmarksError, match="so it was not written"):
        save_weights(model, config, target, verify=True)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.safetensors"]


# --- the CLI ---------------------------------------------------------------------------------------
CLI_KINDS = ["wrong-shape", "width-string", "nan-weights", "ensemble-ints", "config-not-json"]


def one_line_error(capsys, path: Path) -> str:
    """The CLI's error: its last stderr line (progress lines such as a crop-cache build may come
    first), one ``laplace-landmarks CMD: error: ...`` line naming ``path``; no traceback."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines and ": error: " in lines[-1], err
    assert not any(": error: " in line for line in lines[:-1]), err
    assert str(path) in lines[-1], err
    return lines[-1]


@pytest.mark.parametrize("kind", CLI_KINDS)
def test_predict_with_a_damaged_model_exits_2_with_one_line(base, capsys, kind):
    path, message = damaged(base, kind)
    capsys.readouterr()
    assert main(["predict", str(SAMPLE), "--model", str(path)]) == 2
    assert message in one_line_error(capsys, path)


def test_predict_with_a_truncated_model_or_bad_checkpoint_exits_2(base, tmp_path, capsys):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(base.raw[: len(base.raw) // 2])
    pt = tmp_path / "empty.pt"
    torch.save({"version": 1}, pt)
    for path in (cut, pt):
        capsys.readouterr()
        assert main(["predict", str(SAMPLE), "--model", str(path)]) == 2
        one_line_error(capsys, path)


@pytest.mark.parametrize("kind", ["wrong-shape", "size-list"])
def test_evaluate_calibrate_and_ensemble_refuse_a_damaged_file(base, tmp_path, capsys, kind):
    path, message = damaged(base, kind)
    out = str(tmp_path / "out.safetensors")
    commands = [
        ["evaluate", "--checkpoint", str(path), "--data-root", str(YTF68_SLICE)],
        ["calibrate", "--checkpoint", str(path), "--out", out, "--data-root", str(YTF68_SLICE)],
        ["ensemble", str(base.path), str(path), "--out", out],
    ]
    for args in commands:
        capsys.readouterr()
        assert main(args) == 2, args
        assert message in one_line_error(capsys, path)
    assert not Path(out).exists()


def test_ensemble_refuses_too_many_members_and_calibrate_bad_threads(tmp_path, capsys):
    out = tmp_path / "out.safetensors"
    assert main(["ensemble", *["rcn-fast"] * 17, "--out", str(out)]) == 2
    assert "at most 16 members, got 17" in capsys.readouterr().err and not out.exists()
    args = ["calibrate", "--checkpoint", "rcn-fast", "--out", str(out), "--threads", "-1"]
    with pytest.raises(SystemExit) as stop:  # argparse refuses it (commands/arguments.py)
        main(args)
    assert stop.value.code == 2
    assert "must be between 1 and 1024, got '-1'" in capsys.readouterr().err and not out.exists()


def test_calibrate_names_the_file_when_the_landmark_counts_differ(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LAPLACE_LANDMARKS_CACHE", str(tmp_path / "cache"))
    path = tiny_file(tmp_path / "five.safetensors", num_landmarks=5)
    out = tmp_path / "out.safetensors"
    args = ["calibrate", "--checkpoint", str(path), "--out", str(out), "--data-root",
            str(YTF68_SLICE)]  # fmt: skip
    assert main(args) == 2
    assert "has 68 landmarks" in one_line_error(capsys, path) and not out.exists()


# --- fuzzing -------------------------------------------------------------------------------------
# JSON values of every kind, for config fields, sections and metadata entries
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
EXTREME = st.sampled_from([0, -1, 1, 15, 17, 513, 1000, 1001, 10**6, 2**63, 1e-9, 0.5, 1e9, 1e308])
FLOATS = (torch.float16, torch.bfloat16, torch.float64)
NOT_FLOATS = (torch.int8, torch.uint8, torch.int32, torch.int64, torch.bool)


@pytest.fixture(scope="module")
def shipped() -> bytes:
    return pretrained_path("rcn-lite").read_bytes()


@settings(FUZZ, max_examples=300)
@given(data=st.data())
def test_fuzz_truncated_files_are_refused(base, shipped, data):
    raw = data.draw(st.sampled_from([base.raw, shipped]), label="file")
    cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
    path = base.folder / "fuzz-cut.safetensors"
    path.write_bytes(raw[:cut])
    tried("weights")
    assert outcome(path, base.crops) == "refused"


@settings(FUZZ, max_examples=370)
@given(data=st.data())
def test_fuzz_byte_mutations_load_finite_or_are_refused(base, data):
    # the header's 8-byte length, its JSON (tensor names, dtypes, offsets and the config), or
    # (half the time) the float bytes of the tensors
    length, header = st.integers(0, 7), st.integers(8, base.header_end - 1)
    tensors = st.integers(base.header_end, len(base.raw) - 1)
    position = st.one_of(length, header, tensors, tensors)
    edits = data.draw(st.lists(st.tuples(position, st.integers(0, 255)), min_size=1, max_size=4))
    raw = bytearray(base.raw)
    for at, value in edits:
        raw[at] = value
    path = base.folder / "fuzz-bytes.safetensors"
    path.write_bytes(bytes(raw))
    if bytes(raw) != base.raw:
        tried("weights")
    outcome(path, base.crops)


@settings(FUZZ, max_examples=370)
@given(data=st.data())
def test_fuzz_tensor_mutations_load_finite_or_are_refused(base, data):
    state = {k: v.clone() for k, v in base.state.items()}
    name = data.draw(st.sampled_from(sorted(state)), label="tensor")
    kind = data.draw(st.sampled_from(["shape", "dtype", "value", "drop", "add", "rename"]))
    expect = "refused"
    if kind == "shape":
        shape = tuple(data.draw(st.lists(st.integers(0, 5), max_size=4), label="shape"))
        if shape == tuple(state[name].shape):
            return
        state[name] = torch.rand(shape)
    elif kind == "dtype":
        dtype = data.draw(st.sampled_from(FLOATS + NOT_FLOATS), label="dtype")
        state[name] = state[name].to(dtype)
        expect = "loaded" if dtype in FLOATS else "refused"
    elif kind == "value":
        value = data.draw(st.sampled_from([math.nan, math.inf, -math.inf, 1e30, -1e4, 1e3, 0.0]))
        flat = state[name].view(-1)
        flat[data.draw(st.integers(0, flat.numel() - 1), label="at")] = value
        expect = None  # a finite value may be harmless
    elif kind == "drop":
        del state[name]
        expect = "loaded" if name in ("point_offset", "scale_factor") else "refused"
    elif kind == "add":
        state[data.draw(st.text(min_size=1, max_size=12)).replace("\x00", "_") + ".x"] = torch.ones(
            2
        )
    else:
        state[name + "_"] = state.pop(name)
    tried("weights")
    got = outcome(write(base.folder / "fuzz-tensor.safetensors", state, base.metadata), base.crops)
    assert expect in (None, got), (kind, name, got)


def _config_mutation(data, config: dict) -> dict:
    """``config`` with one field, section or the whole of it replaced, deleted or extreme."""
    config = json.loads(json.dumps(config))
    where = data.draw(st.sampled_from(["field", "section", "top"]), label="where")
    value = data.draw(st.one_of(JSON, EXTREME), label="value")
    delete = data.draw(st.booleans(), label="delete")
    if where == "top":
        return value if not delete else {}
    key = data.draw(st.sampled_from(sorted(config)), label="section")
    if where == "section" or not isinstance(config[key], dict):
        config.pop(key) if delete else config.__setitem__(key, value)
        return config
    name = data.draw(st.sampled_from(sorted(config[key])), label="field")
    config[key].pop(name) if delete else config[key].__setitem__(name, value)
    return config


@settings(FUZZ, max_examples=400)
@given(data=st.data())
def test_fuzz_config_mutations_load_finite_or_are_refused(base, data):
    metadata = dict(base.metadata)
    target = data.draw(st.sampled_from(["config", "config", "config", "text", "ensemble"]))
    if target == "config":
        mutated = _config_mutation(data, json.loads(metadata["config"]))
        metadata["config"] = json.dumps(mutated)
    elif target == "text":
        metadata["config"] = data.draw(st.text(max_size=40), label="text")
    else:
        members = data.draw(st.lists(JSON, max_size=4) | JSON, label="ensemble")
        metadata["ensemble"] = json.dumps(members)
    if metadata == base.metadata:
        return
    tried("weights")
    outcome(write(base.folder / "fuzz-config.safetensors", base.state, metadata), base.crops)


@settings(FUZZ, max_examples=110)
@given(data=st.data())
def test_fuzz_training_checkpoints_load_finite_or_are_refused(base, data):
    payload = {"version": 1, "model": base.state, "config": json.loads(base.metadata["config"])}
    key = data.draw(st.sampled_from(["version", "model", "config"]), label="key")
    if key == "config":
        payload["config"] = _config_mutation(data, payload["config"])
    elif data.draw(st.booleans(), label="delete"):
        del payload[key]
    else:
        payload[key] = data.draw(JSON, label="value")
    path = base.folder / "fuzz.pt"
    torch.save(payload, path)
    tried("weights")
    outcome(path, base.crops)
