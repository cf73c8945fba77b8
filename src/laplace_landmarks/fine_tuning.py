"""Fine-tuning: a run that starts from another run's weights (``train.init_from``).

The starting network's architecture comes from its weights file (:func:`init_model_config`,
which :func:`laplace_landmarks.config.resolve_config` applies with ``init_model=True``) and its
weights are copied into the freshly built generator (:func:`load_init_weights`). An ensemble
cannot be fine-tuned: both refuse one.
"""

from __future__ import annotations

from typing import Any

import torch

from laplace_landmarks.checkpoints import load_generator, resolve_checkpoint
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.run_config import RunConfig


def _init_source(init_from: str) -> tuple[torch.nn.Module, RunConfig]:
    """The network and config of ``init_from`` (a weights file or a shipped name); an ensemble
    is refused."""
    model, config, metadata = load_generator(resolve_checkpoint(init_from))
    if "ensemble" in metadata:
        raise LandmarksError(f"train: --init-from {init_from}: an ensemble cannot be fine-tuned")
    return model, config


def init_model_config(config_dict: dict[str, Any], init_from: str) -> dict[str, Any]:
    """``config_dict`` with its ``model`` section taken from ``init_from``'s weights.

    Fine-tuning starts from another run's network, so its architecture comes from there;
    dropout stays the recipe's (it is a training choice, not a shape). One change is allowed: a
    larger ``depth`` or ``fine_depth`` with ``zero_init_residual`` grows the network by residual
    convs that start at zero (identity blocks), so the grown network computes what the source
    did."""
    _, init_config = _init_source(init_from)
    model = {**init_config.to_dict()["model"]}
    asked = config_dict.get("model", {})
    model["dropout"] = asked.get("dropout", model["dropout"])
    grown = {
        key: asked[key] for key in ("depth", "fine_depth") if asked.get(key, 0) > model.get(key, 0)
    }
    if asked.get("zero_init_residual") and grown:
        # growing: the extra residual convs start at zero, so the network is unchanged at first
        model.update(grown, zero_init_residual=True)
    return {**config_dict, "model": model}


def load_init_weights(model: torch.nn.Module, init_from: str) -> None:
    """Copy ``init_from``'s weights into ``model``; ``point_offset`` and ``scale_factor`` reset.

    The offset corrects one training set's bias against its labels; fine-tuning on other
    labels must fit its own (``laplace-landmarks calibrate``)."""
    source, _ = _init_source(init_from)
    state = dict(source.state_dict())
    if "point_offset" in state:
        state["point_offset"] = torch.zeros_like(state["point_offset"])
    if "scale_factor" in state:  # fitted to that network's spread, not to the fine-tuned one
        state["scale_factor"] = torch.ones_like(state["scale_factor"])
    own = model.state_dict()
    config = getattr(model, "config", None)
    if getattr(config, "zero_init_residual", False):  # grown: keep the new convs' zero init
        state.update({k: v for k, v in own.items() if k.startswith("extra_") and k not in state})
    mismatched = [k for k in own if k not in state or state[k].shape != own[k].shape]
    if mismatched or set(state) - set(own):
        raise LandmarksError(
            f"train: --init-from {init_from}: its network does not match the configured one "
            f"(first differing tensor: {(mismatched or sorted(set(state) - set(own)))[0]}); "
            "leave --arch/--width/--depth/--fine-depth unset to take them from the weights"
        )
    model.load_state_dict(state)
