"""Configuration: one frozen dataclass per concern, named TOML recipes, and CLI overrides.

A recipe file (``recipes/<name>.toml``) sets defaults; ``--set section.field=value`` style
overrides (and the named CLI flags) replace them; the resolved :class:`RunConfig` is saved with
every checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from laplace_landmarks.errors import LandmarksError

LOSS_KINDS = ("softargmax", "laplacekl", "gaussiankl")
GENERATORS = ("rcn", "rcn-lite")  # model.name: the paper's RCN, or its output-stride-2 variant


# The `train` command's flags -> the dotted config fields they override (the reproduction grid
# and the CLI share it).
TRAIN_FLAG_OVERRIDES = {
    "arch": "model.name",
    "width": "model.width",
    "depth": "model.depth",
    "zero_init_residual": "model.zero_init_residual",
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
}


@dataclass(frozen=True)
class ModelConfig:
    name: str = "rcn"
    width: float = 0.25
    num_landmarks: int = 68
    dropout: float = 0.2
    depth: int = 0  # rcn-lite only: extra residual 3x3 convs per coarse scale (models/rcn_lite.py)
    zero_init_residual: bool = False  # rcn-lite, depth > 0: those convs start at zero (identity)


@dataclass(frozen=True)
class LossConfig:
    kind: str = "laplacekl"  # softargmax | laplacekl | gaussiankl
    target_scale: float = 1.0  # b_t (Laplace) or σ_t (Gaussian), crop pixels at 80x80
    direction: str = "forward"  # forward = KL(target || prediction); reverse = KL(pred || target)
    norm: str = "l2"  # softargmax distance: l2 | l1 | sql2
    temperature: float = 1.0


@dataclass(frozen=True)
class AdversarialConfig:
    enabled: bool = False
    weight: float = 0.01  # λ on the generator's adversarial loss (lost from the paper)
    noise_std: float = 0.1  # D's input noise, training only
    base_width: int = 64  # D's first conv channels
    lr: float = 1e-3
    heatmap: str = "laplace"  # how ω(y) renders real heatmaps: laplace | gaussian
    unlabeled: str | None = None  # folder of unlabelled faces; None = the shared LFW + YTF set
    num_unlabeled: int | None = None  # N of "+D(N)"; None = all
    batch_size: int = 32
    every: int = 1  # run the D step and G's adversarial term on every n-th batch


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "ytf68"
    root: str | None = None
    train_split: str = "trainval-train"
    val_split: str = "val"
    split_seed: int = 0
    val_fraction: float = 0.1
    size: int = 80
    extension: float = 2.0
    cache_dir: str | None = None  # default: <out>/../.cache or $LAPLACE_LANDMARKS_CACHE
    max_train: int | None = None  # use only the first N training faces (tests, quick runs)
    max_val: int | None = None
    flip: bool = False
    rotation_deg: float = 0.0
    scale: float = 0.0
    shift: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    # weights file or shipped name whose detector path re-crops the training faces; those
    # "self crops" are added to the training set (self_crops.py)
    self_crops_from: str | None = None


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 200
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-5
    schedule: str = "constant"  # constant | cosine
    seed: int = 0
    threads: int | None = None  # torch threads; None = leave torch's default
    channels_last: bool = True  # NHWC convs: 2-11 % faster here (train_throughput.py)
    init_from: str | None = None  # weights file or shipped name to start from (fine-tuning)


@dataclass(frozen=True)
class RunConfig:
    recipe: str = "custom"
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        sections = {f.name: f.type for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in sections:
                raise LandmarksError(f"config: unknown section {key!r}")
            if key == "recipe":
                kwargs[key] = str(value)
                continue
            section_cls = _SECTION_CLASSES[key]
            known = {f.name for f in dataclasses.fields(section_cls)}
            unknown = set(value) - known
            if unknown:
                raise LandmarksError(f"config: unknown field(s) {sorted(unknown)} in [{key}]")
            kwargs[key] = section_cls(**value)
        config = cls(**kwargs)
        validate(config)
        return config


_SECTION_CLASSES = {
    "model": ModelConfig,
    "loss": LossConfig,
    "adversarial": AdversarialConfig,
    "data": DataConfig,
    "train": TrainConfig,
}


def list_recipes() -> list[str]:
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
        from laplace_landmarks.training import init_model_config

        raw = init_model_config(raw, init_from)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, name = dotted.partition(".")
        raw.setdefault(section, {})[name] = value
    return RunConfig.from_dict(raw)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise LandmarksError(message)


def validate(config: RunConfig) -> None:
    """Raise LandmarksError naming the field for any value out of range."""
    _require(config.loss.kind in LOSS_KINDS, f"loss.kind must be one of {LOSS_KINDS}")
    _require(config.loss.direction in ("forward", "reverse"), "loss.direction: forward|reverse")
    _require(config.loss.target_scale > 0, "loss.target_scale must be > 0")
    _require(config.model.name in GENERATORS, f"model.name must be one of {GENERATORS}")
    _require(config.model.width > 0, "model.width must be > 0")
    _require(config.model.depth >= 0, "model.depth must be >= 0")
    _require(
        config.model.depth == 0 or config.model.name == "rcn-lite",
        "model.depth > 0 needs model.name = 'rcn-lite'",
    )
    _require(
        not config.model.zero_init_residual or config.model.depth > 0,
        "model.zero_init_residual needs model.depth > 0 (it initialises the residual convs)",
    )
    _require(config.train.epochs >= 1, "train.epochs must be >= 1")
    _require(config.train.batch_size >= 1, "train.batch_size must be >= 1")
    _require(config.train.lr > 0, "train.lr must be > 0")
    _require(config.train.schedule in ("constant", "cosine"), "train.schedule: constant|cosine")
    _require(config.adversarial.weight >= 0, "adversarial.weight must be >= 0")
    _require(
        config.adversarial.num_unlabeled is None or config.adversarial.num_unlabeled >= 1,
        "adversarial.num_unlabeled must be >= 1",
    )
    _require(config.adversarial.every >= 1, "adversarial.every must be >= 1")
    _require(config.data.size % 16 == 0, "data.size must be divisible by 16")
