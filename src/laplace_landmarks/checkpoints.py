"""Checkpoints (atomic, loaded with ``weights_only=True``) and shipped-weight files (safetensors).

A training checkpoint is a dict of plain tensors and Python values: the generator's and
discriminator's state, both optimizers, the epoch, the best validation NME, the metrics history
and the resolved config. A *weights file* is a safetensors file holding only the generator's
tensors, with the resolved config as JSON in its metadata; it loads without pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, safe_open, save_file

from laplace_landmarks.atomic import atomic_path
from laplace_landmarks.config import RunConfig
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.models import create_model

CHECKPOINT_VERSION = 1


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a training checkpoint safely; clear errors for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise LandmarksError(f"checkpoint: {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise LandmarksError(f"checkpoint: {path} is not a readable checkpoint ({exc})") from exc
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
    m = config.model
    extra = {"depth": m.depth} if m.depth else {}
    if m.zero_init_residual:
        extra["zero_init_residual"] = True
    return create_model(
        m.name, width=m.width, num_landmarks=m.num_landmarks, dropout=m.dropout, **extra
    )


def save_ensemble(
    members: list[str | Path], path: str | Path, extra: dict[str, str] | None = None
) -> torch.nn.Module:
    """Join weights files into one ensemble weights file (see ``models/ensemble.py``).

    The file holds every member's tensors and, in its metadata, each member's config
    (``ensemble``) beside member 0's as the file's ``config``. Returns the ensemble."""
    from laplace_landmarks.models.ensemble import EnsembleGenerator

    loaded = [load_generator(member) for member in members]
    try:
        ensemble = EnsembleGenerator([model for model, _, _ in loaded])
    except ValueError as exc:
        raise LandmarksError(f"ensemble: {exc}") from exc
    sizes = {config.data.size for _, config, _ in loaded}
    if len(sizes) > 1:
        raise LandmarksError(f"ensemble: the members crop faces at different sizes {sorted(sizes)}")
    configs = [config.to_dict() for _, config, _ in loaded]
    metadata = {
        "ensemble": json.dumps(configs),
        "members": json.dumps([str(Path(m).name) for m in members]),
        **(extra or {}),
    }
    save_weights(ensemble, loaded[0][1], path, metadata)
    return ensemble


def save_weights(
    model: torch.nn.Module, config: RunConfig, path: str | Path, extra: dict[str, str] | None = None
) -> None:
    """Write the generator's weights as safetensors with the config in the metadata."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {"config": json.dumps(config.to_dict()), **(extra or {})}
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata=metadata)


def load_generator(path: str | Path) -> tuple[torch.nn.Module, RunConfig, dict[str, str]]:
    """Build the generator from a ``.safetensors`` weights file or a ``.pt`` checkpoint.

    Returns the model in eval mode, its config and the file's metadata.
    """
    path = Path(path)
    if not path.is_file():
        raise LandmarksError(f"weights: {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = dict(handle.metadata() or {})
            state = load_file(str(path))
            config = RunConfig.from_dict(json.loads(metadata["config"]))
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            raise LandmarksError(
                f"weights: {path} is not a laplace-landmarks weights file ({exc})"
            ) from exc
    else:
        payload = load_checkpoint(path)
        state, config, metadata = payload["model"], RunConfig.from_dict(payload["config"]), {}
    if "ensemble" in metadata:
        from laplace_landmarks.models.ensemble import EnsembleGenerator

        try:
            configs = [RunConfig.from_dict(c) for c in json.loads(metadata["ensemble"])]
        except (TypeError, ValueError) as exc:
            raise LandmarksError(f"weights: {path} has a broken ensemble entry ({exc})") from exc
        model = EnsembleGenerator([build_generator(c) for c in configs])
    else:
        model = build_generator(config)
    model.load_state_dict(state)
    return model.eval(), config, metadata
