"""The run config: one frozen dataclass per concern, parsed from dicts and validated.

:class:`RunConfig` holds the sections ``model``, ``loss``, ``adversarial``, ``data`` and
``train``. :meth:`RunConfig.from_dict` type-checks every field and :func:`validate` bounds it,
so a config read from an untrusted weights file is safe to build a network from. The allowed
generators (``model.name``) and the ``[model]`` fields each one takes come from the model
registry (:mod:`laplace_landmarks.models.registry`). Recipes and CLI overrides are resolved into a
RunConfig by :mod:`laplace_landmarks.config`, which re-exports everything here.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, NamedTuple, get_args, get_type_hints

from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.models.registry import GENERATOR, list_models, model_entry

LOSS_KINDS = ("softargmax", "laplacekl", "gaussiankl")
# The generators registered when this module was imported (what the CLI offers as --arch);
# validate() asks the registry each time, so a generator registered later is accepted too.
GENERATORS = tuple(list_models(GENERATOR))


@dataclass(frozen=True)
class ModelConfig:
    """The generator: ``name`` in the model registry and the options passed to its factory.

    A generator takes the fields its registry entry lists (``ModelEntry.options``); every other
    field must keep its default (see :func:`validate`)."""

    name: str = "rcn"
    width: float = 0.25
    num_landmarks: int = 68
    dropout: float = 0.2
    depth: int = 0  # extra residual 3x3 convs per coarse scale (rcn-lite, models/rcn_lite.py)
    zero_init_residual: bool = False  # depth > 0: those convs start at zero (identity)
    fine_depth: int = 0  # extra residual 3x3 convs at the heatmap resolution (rcn-lite)


@dataclass(frozen=True)
class LossConfig:
    kind: str = "laplacekl"  # softargmax | laplacekl | gaussiankl
    target_scale: float = 1.0  # b_t (Laplace) or σ_t (Gaussian), crop pixels at 80x80
    direction: str = "forward"  # forward = KL(target || prediction); reverse = KL(pred || target)
    norm: str = "l2"  # softargmax distance: l2 | l1 | sql2
    temperature: float = 1.0
    # weight of the junk term (losses.junk_loss): per batch, batch_size // 4 images without a
    # face (noise, blobs, scrambled tiles of the batch's faces) are pushed towards a flat heatmap,
    # so the predicted scale stays wide on a box that holds no face. 0 = off (the paper's loss).
    junk_weight: float = 0.0


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
    # how every training and validation face is cropped: "five-point" (the paper's rule from the
    # ground truth) or "detector" (as the one-pass Landmarker path does: the dlib HOG box holding
    # the ground-truth centre, else the detector-equivalent box of the 5-point crop)
    crop: str = "five-point"
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
    def from_dict(cls, raw: Any) -> RunConfig:
        """Build and :func:`validate` a config from a recipe / JSON dict (sections as dicts).

        Every field is type-checked (an int where a float is expected is taken as a float) and
        bounded, so a config read from an untrusted weights file is safe to build a model from.
        """
        if not isinstance(raw, dict):
            raise LandmarksError(f"config: expected a table of sections, got {_kind(raw)}")
        kwargs: dict[str, Any] = {}
        for key, value in raw.items():
            if key == "recipe":
                kwargs[key] = _typed("recipe", value, str)
                continue
            if key not in _SECTION_CLASSES:
                raise LandmarksError(f"config: unknown section {key!r:.40}")
            kwargs[key] = _section(key, value)
        config = cls(**kwargs)
        validate(config)
        return config


def _kind(value: Any) -> str:
    """A short description of a value's JSON kind for error messages, e.g. ``list [1]``."""
    return f"{type(value).__name__} {value!r:.40}"


def _typed(name: str, value: Any, hint: Any) -> Any:
    """``value`` checked against the field type ``hint`` (``float``, ``int | None``, ...).

    bool is never taken as a number; an integer is taken as a float (TOML/JSON write ``1`` for
    ``1.0``), and floats must be finite; a path (from Python callers) is taken as its string."""
    options = get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    if isinstance(value, bool):
        if bool in options:
            return value
    elif isinstance(value, numbers.Integral) and int in options:
        return int(value)
    elif isinstance(value, numbers.Real) and float in options:
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if math.isfinite(number):
            return number
        raise LandmarksError(f"config: {name} must be a finite number, got {value!r:.40}")
    elif isinstance(value, str | PurePath) and str in options:
        return str(value)
    expected = " or ".join("null" if t is type(None) else t.__name__ for t in options)
    raise LandmarksError(f"config: {name} must be {expected}, got {_kind(value)}")


def _section(key: str, value: Any) -> Any:
    """The dataclass of section ``key`` from its raw dict, every field type-checked."""
    section_cls = _SECTION_CLASSES[key]
    if not isinstance(value, dict):
        raise LandmarksError(f"config: [{key}] must be a table of fields, got {_kind(value)}")
    hints = get_type_hints(section_cls)
    unknown = set(value) - set(hints)
    if unknown:
        names = sorted(map(str, unknown))
        raise LandmarksError(f"config: unknown field(s) {names!r:.80} in [{key}]")
    return section_cls(
        **{
            name: _typed(f"{key}.{name}", field_value, hints[name])
            for name, field_value in value.items()
        }
    )


_SECTION_CLASSES = {
    "model": ModelConfig,
    "loss": LossConfig,
    "adversarial": AdversarialConfig,
    "data": DataConfig,
    "train": TrainConfig,
}


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise LandmarksError(message)


class Range(NamedTuple):
    """Allowed values of a numeric field: ``low``..``high``, each end included unless open."""

    low: float
    high: float
    open_low: bool = False
    open_high: bool = False

    def check(self, name: str, value: float | None) -> None:
        """Raise LandmarksError naming ``name`` when ``value`` (None: unset, fine) is outside."""
        if value is None:
            return
        if value < self.low or (self.open_low and value == self.low):
            raise LandmarksError(
                f"{name} must be {'>' if self.open_low else '>='} {self.low}, got {value!r:.40}"
            )
        if value > self.high or (self.open_high and value == self.high):
            raise LandmarksError(
                f"{name} must be {'<' if self.open_high else '<='} {self.high}, got {value!r:.40}"
            )


# Bounds of the numeric fields. Most are the maths (a rate > 0, a probability < 1); the rest are
# sanity bounds far outside any real run, so a typo or an untrusted weights file cannot size a
# network (crop size, width, depth, landmark count) or a loop beyond what a machine can hold.
RANGES: dict[str, Range] = {
    "model.width": Range(1 / 64, 4.0),  # 1 to 256 channels
    "model.num_landmarks": Range(1, 1000),
    "model.dropout": Range(0.0, 1.0, open_high=True),
    "model.depth": Range(0, 8),
    "model.fine_depth": Range(0, 8),
    "loss.target_scale": Range(0.0, 100.0, open_low=True),
    "loss.temperature": Range(0.01, 100.0),
    "loss.junk_weight": Range(0.0, 10.0),
    "adversarial.weight": Range(0.0, 1e3),
    "adversarial.noise_std": Range(0.0, 10.0),
    "adversarial.base_width": Range(1, 1024),
    "adversarial.lr": Range(0.0, 1.0, open_low=True),
    "adversarial.num_unlabeled": Range(1, 10**9),
    "adversarial.batch_size": Range(1, 65536),
    "adversarial.every": Range(1, 10**6),
    "data.split_seed": Range(0, 2**63 - 1),
    "data.val_fraction": Range(0.0, 1.0, open_low=True, open_high=True),
    "data.size": Range(16, 512),
    "data.extension": Range(-1.0, 10.0, open_low=True),  # the crop's half-side: (1 + e) * radius
    "data.max_train": Range(1, 10**9),
    "data.max_val": Range(1, 10**9),
    "data.rotation_deg": Range(0.0, 180.0),
    "data.scale": Range(0.0, 1.0, open_high=True),  # scale factors 1 +- scale
    "data.shift": Range(0.0, 1.0),
    "data.brightness": Range(0.0, 1.0),
    "data.contrast": Range(0.0, 1.0),
    "train.epochs": Range(1, 10**6),
    "train.batch_size": Range(1, 65536),
    "train.lr": Range(0.0, 10.0, open_low=True),
    "train.weight_decay": Range(0.0, 1.0),
    "train.seed": Range(0, 2**63 - 1),
    "train.threads": Range(1, 1024),
}
# The fields with a fixed set of values (model.name: the registry's generators, see validate).
CHOICES: dict[str, tuple[str, ...]] = {
    "loss.kind": LOSS_KINDS,
    "loss.direction": ("forward", "reverse"),
    "loss.norm": ("l2", "l1", "sql2"),  # losses.NORMS
    "adversarial.heatmap": ("laplace", "gaussian"),
    "data.crop": ("five-point", "detector"),
    "train.schedule": ("constant", "cosine"),
}


def _value(config: RunConfig, dotted: str) -> Any:
    section, _, name = dotted.partition(".")
    return getattr(getattr(config, section), name)


def validate(config: RunConfig) -> None:
    """Raise LandmarksError naming the field for any value out of range (see ``RANGES``), a
    generator the registry does not know, or a ``[model]`` field its generator does not take."""
    generators = tuple(list_models(GENERATOR))
    name = config.model.name
    _require(name in generators, f"model.name must be one of {generators}, got {name!r:.40}")
    for dotted, choices in CHOICES.items():
        value = _value(config, dotted)
        _require(value in choices, f"{dotted} must be one of {choices}, got {value!r:.40}")
    for dotted, allowed in RANGES.items():
        allowed.check(dotted, _value(config, dotted))
    _require(
        not config.model.zero_init_residual or config.model.depth + config.model.fine_depth > 0,
        "model.zero_init_residual needs model.depth or model.fine_depth > 0 (it initialises the "
        "residual convs)",
    )
    _check_model_options(config.model, generators)
    _require(config.data.size % 16 == 0, "data.size must be divisible by 16")


def _check_model_options(model: ModelConfig, generators: tuple[str, ...]) -> None:
    """Every ``[model]`` field off its default must be one the generator takes (its registry
    entry's ``options``), e.g. ``model.depth > 0 needs model.name = 'rcn-lite'``."""
    takes = model_entry(model.name).options
    for item in dataclasses.fields(ModelConfig):
        value = getattr(model, item.name)
        if item.name == "name" or item.name in takes or value == item.default:
            continue
        takers = [g for g in generators if item.name in model_entry(g).options]
        needs = " or ".join(repr(g) for g in takers) or "a generator that takes it"
        setting = _setting(item.name, value, item.default)
        raise LandmarksError(f"{setting} needs model.name = {needs}")


def _setting(name: str, value: Any, default: Any) -> str:
    """A ``[model]`` field set off its default, for a message: ``model.depth > 0``."""
    if isinstance(value, bool):
        return f"model.{name} = {str(value).lower()}"
    if default == 0 and value > 0:
        return f"model.{name} > 0"
    return f"model.{name} = {value!r:.40}"
