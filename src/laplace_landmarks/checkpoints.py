"""Checkpoints (atomic, loaded with ``weights_only=True``) and shipped-weight files (safetensors).

A training checkpoint is a dict of plain tensors and Python values: the generator's and
discriminator's state, both optimizers, the epoch, the best validation NME, the metrics history
and the resolved config. A *weights file* is a safetensors file holding only the generator's
tensors, with the resolved config as JSON in its metadata; it loads without pickle.

Loading trusts nothing in a file (:func:`load_generator`): the config must be well typed and in
range (``config.validate``) before any network is sized from it; the tensors must be exactly the
ones that config's generator holds, floating point, finite and of a sane size
(:func:`check_weights`, against the generator built on the meta device, which allocates nothing);
and the loaded generator must predict finite points on a probe crop. Anything else is one
LandmarksError naming the file. ``ensemble`` and ``calibrate`` read the file they write back the
same way before it replaces its target (``save_weights(verify=True)``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from laplace_landmarks.atomic import atomic_path
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.models.registry import GENERATOR, create_model, model_entry
from laplace_landmarks.run_config import RunConfig

CHECKPOINT_VERSION = 1
# The largest |value| a generator tensor may hold. The shipped generators stay below 2; far
# larger values come from a damaged file and overflow float32 a few layers later.
MAX_ABS_WEIGHT = 1e3
MAX_SCALE_FACTOR = 1e3  # the fitted factor on the Laplace scales (the shipped ones: about 0.5)
MAX_ENSEMBLE_MEMBERS = 16
PROBE_SIZE = 32  # side of the crops the loaded generator must predict finite points on
# Buffers fitted after training (calibration.py) and the value a file older than them loads with
# (as ``models.rcn.default_fitted_buffers`` fills them in).
FITTED_BUFFERS = {"point_offset": 0.0, "scale_factor": 1.0}


def _reason(exc: BaseException) -> str:
    """The first line of ``exc``'s message, shortened, so that an error stays one line."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a training checkpoint safely; clear errors for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise LandmarksError(f"checkpoint: {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise LandmarksError(
            f"checkpoint: {path} is not a readable checkpoint ({_reason(exc)})"
        ) from exc
    if not isinstance(payload, dict) or payload.get("version") != CHECKPOINT_VERSION:
        raise LandmarksError(f"checkpoint: {path} is not a laplace-landmarks checkpoint")
    return payload


def resolve_checkpoint(spec: str | Path) -> Path:
    """A ``.pt``/``.safetensors`` path, or the name of a shipped model (see `weights`)."""
    path = Path(spec)
    if path.is_file():
        return path
    if path.suffix in (".pt", ".safetensors") or len(path.parts) > 1:
        raise LandmarksError(f"checkpoint: {path} does not exist")
    from laplace_landmarks.weights import pretrained_path

    return pretrained_path(str(spec))


def build_generator(config: RunConfig) -> torch.nn.Module:
    """The generator ``config.model`` describes, freshly initialised: the model registry's
    factory for ``model.name``, given the ``[model]`` fields its entry takes (``options``)."""
    entry = model_entry(config.model.name)
    if entry.kind != GENERATOR:
        raise ValueError(f"model.name {entry.name!r} is a {entry.kind}, not a generator")
    options = {option: getattr(config.model, option) for option in entry.options}
    return create_model(entry.name, **options)


def expected_generator(
    config: RunConfig, members: list[RunConfig] | None = None
) -> torch.nn.Module:
    """The generator ``config`` describes (an ensemble of ``members`` when given), built on the
    meta device: its state dict has every name and shape, and no memory behind them.

    ``config`` must be validated (``RunConfig.from_dict``): its bounds keep the network small."""
    from laplace_landmarks.models.ensemble import EnsembleGenerator

    with torch.device("meta"):
        if members is None:
            return build_generator(config)
        return EnsembleGenerator([build_generator(member) for member in members])


def check_weights(
    state: Mapping[str, Any], model: torch.nn.Module, config: RunConfig, path: str | Path
) -> dict[str, torch.Tensor]:
    """``state`` checked against ``model``'s state dict: the complete float32 state to load.

    ``model`` may live on the meta device (see :func:`expected_generator`): only the names and
    shapes of its state are read. ``state`` must hold every one of them with that shape, and
    nothing else; a fitted buffer it lacks (``FITTED_BUFFERS``) is added with its default. Each
    tensor must be dense floating point (float16, bfloat16 and float64 are converted to float32)
    and finite as float32, with |values| <= ``MAX_ABS_WEIGHT``; a ``point_offset`` at most the
    crop size (``config.data.size``) and a ``scale_factor`` in (0, ``MAX_SCALE_FACTOR``].
    Raises LandmarksError naming ``path`` and the tensor."""
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    missing = [n for n in expected if n not in state and _leaf(n) not in FITTED_BUFFERS]
    unknown = sorted(str(n) for n in state if n not in expected)
    if missing or unknown:
        raise LandmarksError(
            f"weights: {path} does not hold the tensors of the network its config describes "
            f"({len(missing)} missing{_first(missing)}, {len(unknown)} unknown{_first(unknown)})"
        )
    checked = {}
    for name, shape in expected.items():
        if name not in state:
            checked[name] = torch.full(shape, FITTED_BUFFERS[_leaf(name)])
            continue
        tensor = state[name]
        if not isinstance(tensor, torch.Tensor) or tensor.layout != torch.strided:
            raise LandmarksError(f"weights: {path}: {name} is not a dense tensor")
        if not tensor.is_floating_point():
            raise LandmarksError(
                f"weights: {path}: {name} must be floating point, got {tensor.dtype}"
            )
        if tuple(tensor.shape) != shape:
            raise LandmarksError(
                f"weights: {path}: {name} has shape {tuple(tensor.shape)}, the network its "
                f"config describes needs {shape}"
            )
        # a copy: safetensors' tensors map the file, which may change once it is loaded
        value = tensor.detach().to("cpu", torch.float32, copy=True)
        problem = _value_problem(_leaf(name), value, config)
        if problem:
            raise LandmarksError(f"weights: {path}: {name} {problem}")
        checked[name] = value
    return checked


def _leaf(name: str) -> str:
    """The last part of a state-dict name: ``scale_factor`` of ``members.0.scale_factor``."""
    return name.rpartition(".")[2]


def _first(names: list[str]) -> str:
    return f", e.g. {names[0]!r:.60}" if names else ""


def _value_problem(leaf: str, value: torch.Tensor, config: RunConfig) -> str | None:
    """What is wrong with the float32 values of a tensor named ``...{leaf}``, or None."""
    finite = bool(torch.isfinite(value).all())
    largest = float(value.abs().max()) if finite and value.numel() else 0.0
    if leaf == "scale_factor":
        if finite and 0 < float(value) <= MAX_SCALE_FACTOR:
            return None
        return (
            f"must be one finite positive number up to {MAX_SCALE_FACTOR:g}, got {value.tolist()}"
        )
    if not finite:
        return "holds NaN or infinite values (as float32)"
    if leaf == "point_offset" and largest > config.data.size:
        return f"shifts a point by {largest:.3g} crop px, more than the {config.data.size} px crop"
    if largest > MAX_ABS_WEIGHT:
        return (
            f"holds {largest:.3g}; a trained generator's values stay far below {MAX_ABS_WEIGHT:g}"
        )
    return None


@torch.inference_mode()
def check_predictions(model: torch.nn.Module, config: RunConfig, path: str | Path) -> None:
    """The loaded ``model`` must turn a grey and a noise crop into finite points and scales:
    values that are sane one by one can still overflow together."""
    from laplace_landmarks.decoding import predict_crops

    noise = torch.Generator().manual_seed(0)
    crops = torch.randint(
        0, 256, (2, 3, PROBE_SIZE, PROBE_SIZE), generator=noise, dtype=torch.uint8
    )
    crops[0] = 128
    points, scale = predict_crops(model, crops, temperature=config.loss.temperature)
    if not bool(torch.isfinite(points).all() and torch.isfinite(scale).all()):
        raise LandmarksError(
            f"weights: {path}: the network predicts non-finite points on a test crop "
            "(damaged weights?)"
        )


def _check_members(config: RunConfig, members: list[RunConfig], where: str) -> None:
    """Ensemble members must crop faces at the file's size, the same way (``data.crop``), and
    predict its landmark count."""
    sizes = sorted({member.data.size for member in members} | {config.data.size})
    if len(sizes) > 1:
        raise LandmarksError(f"{where}: the members crop faces at different sizes {sizes}")
    crops = sorted({member.data.crop for member in members} | {config.data.crop})
    if len(crops) > 1:
        raise LandmarksError(
            f"{where}: the members were trained on different crops {crops} (one pass from the "
            "detector's box against the 5-point re-crop); join models of one kind"
        )
    counts = sorted({m.model.num_landmarks for m in members} | {config.model.num_landmarks})
    if len(counts) > 1:
        raise LandmarksError(f"{where}: the members predict different landmark counts {counts}")


def save_ensemble(
    members: list[str | Path], path: str | Path, extra: dict[str, str] | None = None
) -> torch.nn.Module:
    """Join weights files into one ensemble weights file (see ``models/ensemble.py``).

    The file holds every member's tensors and, in its metadata, each member's config
    (``ensemble``) beside member 0's as the file's ``config``. A member that is an ensemble
    itself is refused (join its members instead). Returns the ensemble."""
    from laplace_landmarks.models.ensemble import EnsembleGenerator

    if len(members) > MAX_ENSEMBLE_MEMBERS:
        raise LandmarksError(
            f"ensemble: at most {MAX_ENSEMBLE_MEMBERS} members, got {len(members)}"
        )
    loaded = [load_generator(member) for member in members]
    for member, (_, _, metadata) in zip(members, loaded, strict=True):
        if "ensemble" in metadata:
            raise LandmarksError(
                f"ensemble: {member} is an ensemble already; give its members instead"
            )
    configs = [config for _, config, _ in loaded]
    try:
        ensemble = EnsembleGenerator([model for model, _, _ in loaded])
    except ValueError as exc:
        raise LandmarksError(f"ensemble: {exc}") from exc
    _check_members(configs[0], configs, "ensemble")
    metadata = {
        "ensemble": json.dumps([config.to_dict() for config in configs]),
        "members": json.dumps([str(Path(m).name) for m in members]),
        **(extra or {}),
    }
    save_weights(ensemble, configs[0], path, metadata, verify=True)
    return ensemble


def save_weights(
    model: torch.nn.Module,
    config: RunConfig,
    path: str | Path,
    extra: dict[str, str] | None = None,
    *,
    verify: bool = False,
) -> None:
    """Write the generator's weights as safetensors with the config in the metadata.

    With ``verify``, the written file is loaded back (:func:`load_generator`) before it replaces
    ``path``: a file that would not load is never written (LandmarksError instead)."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {"config": json.dumps(config.to_dict()), **(extra or {})}
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata=metadata)
        if verify:
            try:
                _load_generator(temporary, shown=Path(path))
            except LandmarksError as exc:
                raise LandmarksError(f"{exc} (so it was not written)") from exc


def load_generator(path: str | Path) -> tuple[torch.nn.Module, RunConfig, dict[str, str]]:
    """Build the generator from a ``.safetensors`` weights file or a ``.pt`` checkpoint.

    Returns the model in eval mode, its config and the file's metadata. Nothing in the file is
    trusted (see the module docstring); a missing, damaged or foreign file is a LandmarksError
    naming it.
    """
    return _load_generator(Path(path), shown=Path(path))


def _load_generator(path: Path, shown: Path) -> tuple[torch.nn.Module, RunConfig, dict[str, str]]:
    """:func:`load_generator` of ``path``, naming it ``shown`` in errors."""
    if not path.is_file():
        raise LandmarksError(f"weights: {shown} does not exist")
    if path.suffix == ".safetensors":
        state, raw_config, metadata = _read_safetensors(path, shown)
    else:
        state, raw_config, metadata = _read_checkpoint(path, shown)
    config = _parse_config(raw_config, shown, "config")
    members = _ensemble_configs(metadata, config, shown)
    try:
        model = expected_generator(config, members)
    except ValueError as exc:  # members the ensemble cannot join
        raise LandmarksError(f"weights: {shown}: {_reason(exc)}") from exc
    state = check_weights(state, model, config, shown)
    # the checked tensors replace the meta ones, as contiguous copies: a .pt saved from a
    # channels_last run keeps its strides otherwise, and outputs would differ in the last bits
    state = {k: v.clone(memory_format=torch.contiguous_format) for k, v in state.items()}
    model.load_state_dict(state, assign=True)
    model.eval()
    check_predictions(model, config, shown)
    return model, config, metadata


def _read_safetensors(
    path: Path, shown: Path
) -> tuple[dict[str, torch.Tensor], Any, dict[str, str]]:
    """The tensors, the raw (parsed JSON) config and the metadata of a safetensors file."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            state = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as exc:
        raise LandmarksError(
            f"weights: {shown} is not a readable safetensors file ({_reason(exc)})"
        ) from exc
    if "config" not in metadata:
        raise LandmarksError(
            f"weights: {shown} has no config in its metadata (not a laplace-landmarks weights file)"
        )
    return state, _parse_json(metadata["config"], shown, "config"), metadata


def _read_checkpoint(path: Path, shown: Path) -> tuple[Mapping[str, Any], Any, dict[str, str]]:
    """The generator's state and the raw config of a ``.pt`` training checkpoint."""
    payload = load_checkpoint(path)
    state, raw_config = payload.get("model"), payload.get("config")
    if not isinstance(state, Mapping) or raw_config is None:
        raise LandmarksError(
            f"weights: {shown} is a checkpoint without a generator ('model' and 'config')"
        )
    return state, raw_config, {}


def _parse_json(text: str, path: Path, key: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise LandmarksError(
            f"weights: {path}: its {key} metadata is not JSON ({_reason(exc)})"
        ) from exc


def _parse_config(raw: Any, path: Path, what: str) -> RunConfig:
    """``RunConfig.from_dict(raw)`` (types and bounds checked), errors naming the file."""
    try:
        return RunConfig.from_dict(raw)
    except LandmarksError as exc:
        raise LandmarksError(f"weights: {path}: bad {what} ({_reason(exc)})") from exc


def _ensemble_configs(
    metadata: dict[str, str], config: RunConfig, path: Path
) -> list[RunConfig] | None:
    """The member configs of an ensemble file (its ``ensemble`` metadata), None for one network."""
    if "ensemble" not in metadata:
        return None
    raw = _parse_json(metadata["ensemble"], path, "ensemble")
    if not isinstance(raw, list) or not 2 <= len(raw) <= MAX_ENSEMBLE_MEMBERS:
        raise LandmarksError(
            f"weights: {path}: its ensemble metadata must list 2 to {MAX_ENSEMBLE_MEMBERS} "
            f"member configs, got {type(raw).__name__} {raw!r:.40}"
        )
    members = [_parse_config(c, path, f"ensemble member {i}") for i, c in enumerate(raw)]
    _check_members(config, members, f"weights: {path}")
    return members
