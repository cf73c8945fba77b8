"""Configuration: named TOML recipes and CLI overrides, resolved into a :class:`RunConfig`.

A recipe file (``recipes/<name>.toml``) sets defaults; ``--set section.field=value`` style
overrides (and the named CLI flags) replace them; the resolved :class:`RunConfig` is saved with
every checkpoint. The config dataclasses and their validation live in
:mod:`laplace_landmarks.run_config` and are re-exported here.
"""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.run_config import (
    CHOICES,
    GENERATORS,
    LOSS_KINDS,
    RANGES,
    AdversarialConfig,
    DataConfig,
    LossConfig,
    ModelConfig,
    Range,
    RunConfig,
    TrainConfig,
    validate,
)

__all__ = [
    "CHOICES",
    "RESUME_CHANGEABLE",
    "resume_config",
    "GENERATORS",
    "LOSS_KINDS",
    "RANGES",
    "TRAIN_FLAG_OVERRIDES",
    "AdversarialConfig",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "Range",
    "RunConfig",
    "TrainConfig",
    "list_recipes",
    "load_recipe",
    "resolve_config",
    "resolve_raw",
    "validate",
]

# The `train` command's flags -> the dotted config fields they override (the reproduction grid
# and the CLI share it).
TRAIN_FLAG_OVERRIDES = {
    "arch": "model.name",
    "width": "model.width",
    "depth": "model.depth",
    "zero_init_residual": "model.zero_init_residual",
    "fine_depth": "model.fine_depth",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "lr": "train.lr",
    "seed": "train.seed",
    "loss": "loss.kind",
    "target_scale": "loss.target_scale",
    "direction": "loss.direction",
    "adversarial_weight": "adversarial.weight",
    "data": "data.dataset",
    "data_root": "data.root",
    "train_split": "data.train_split",
    "val_split": "data.val_split",
    "max_train": "data.max_train",
    "max_val": "data.max_val",
    "unlabeled": "adversarial.unlabeled",
    "num_unlabeled": "adversarial.num_unlabeled",
    "threads": "train.threads",
    "cache_dir": "data.cache_dir",
    "init_from": "train.init_from",
    "self_crops_from": "data.self_crops_from",
    "crop": "data.crop",
}


def list_recipes() -> list[str]:
    """The names of the recipes shipped in the package (``recipes/<name>.toml``), sorted."""
    folder = resources.files("laplace_landmarks") / "recipes"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_recipe(name_or_path: str) -> dict[str, Any]:
    """The raw dict of a named recipe, a TOML file path or a run's ``config.json``."""
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise LandmarksError(f"recipe {name_or_path}: invalid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise LandmarksError(f"recipe {name_or_path}: expected a JSON object")
        raw.setdefault("recipe", path.parent.name or path.stem)
        return raw
    if path.suffix == ".toml" and path.is_file():
        text, name = path.read_text(), path.stem
    else:
        resource = resources.files("laplace_landmarks") / "recipes" / f"{name_or_path}.toml"
        if not resource.is_file():
            raise LandmarksError(
                f"recipe: unknown recipe {name_or_path!r}; choose from {list_recipes()} "
                "or give a .toml file"
            )
        text, name = resource.read_text(), name_or_path
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LandmarksError(f"recipe {name_or_path}: invalid TOML: {exc}") from exc
    raw.setdefault("recipe", name)
    return raw


def resolve_config(
    recipe: str, overrides: dict[str, Any] | None = None, init_model: bool = False
) -> RunConfig:
    """Recipe defaults plus ``{"section.field": value}`` overrides, validated.

    With ``init_model``, a ``train.init_from`` (in the recipe or the overrides) supplies the
    ``model`` section (from its weights' config) before the overrides apply."""
    return resolve_raw(load_recipe(recipe), overrides, init_model)


def resolve_raw(
    raw: dict[str, Any], overrides: dict[str, Any] | None = None, init_model: bool = False
) -> RunConfig:
    """:func:`resolve_config` for a recipe already loaded as a dict (``raw`` is not changed)."""
    if "stage" in raw:
        raise LandmarksError(
            f"recipe {raw.get('recipe', '?')}: a multi-stage recipe ([[stage]] tables) runs "
            "as a whole pipeline, not as one stage's config"
        )
    raw = {key: dict(value) if isinstance(value, dict) else value for key, value in raw.items()}
    init_from = (overrides or {}).get("train.init_from") or raw.get("train", {}).get("init_from")
    if init_model and init_from:
        # imported here, not at the top: it loads weights with torch, which the CLI and the
        # modules that only read configs need not import
        from laplace_landmarks.fine_tuning import init_model_config

        raw = init_model_config(raw, init_from)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, name = dotted.partition(".")
        raw.setdefault(section, {})[name] = value
    return RunConfig.from_dict(raw)


#: Config fields a resumed run may change; the new value applies from the next epoch. Every other
#: field is fixed for a run: `resume_config` refuses a different value.
RESUME_CHANGEABLE = frozenset(
    {"train.epochs", "train.lr", "train.batch_size", "train.threads", "data.root", "data.cache_dir"}
)
_FLAGS = {dotted: "--" + name.replace("_", "-") for name, dotted in TRAIN_FLAG_OVERRIDES.items()}


def resume_config(saved: dict[str, Any], overrides: dict[str, Any]) -> tuple[RunConfig, list[str]]:
    """The config of a run to resume: ``saved`` (from ``last.pt``) with ``overrides`` applied.

    ``overrides`` maps dotted fields (``"train.lr"``) to new values, None for not given. A field
    in `RESUME_CHANGEABLE` takes the new value; any other field given a different value raises
    LandmarksError naming its flag, since it would change the network or what the run learns.
    Returns the config and one note per changed field (``"--lr 0.01 -> 0.001"``).
    """
    raw = {key: dict(value) if isinstance(value, dict) else value for key, value in saved.items()}
    notes = []
    for dotted, value in overrides.items():
        section, _, name = dotted.partition(".")
        old = raw.get(section, {}).get(name)
        if value is None or value == old:
            continue
        flag = _FLAGS.get(dotted, dotted)
        if dotted not in RESUME_CHANGEABLE:
            why = (
                "the saved weights fix the network"
                if section == "model"
                else "a resumed run keeps the data, loss and seed it started with"
            )
            raise LandmarksError(
                f"train: --resume: {flag} {value} differs from the run's {old} and cannot change "
                f"({why}); train into a new --out instead (--init-from OUT/last.pt starts from "
                "this run's weights when the network is the same)"
            )
        raw.setdefault(section, {})[name] = value
        notes.append(f"{flag} {old} -> {value}")
    return RunConfig.from_dict(raw), notes
