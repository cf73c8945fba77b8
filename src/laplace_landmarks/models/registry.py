"""The model registry, timm style: ``create_model("rcn", width=1/8)``, ``list_models()``.

The registry is the one place a model is described: its name, its kind (a heatmap
``"generator"`` or the ``"discriminator"``), the factory that builds it (keyword arguments: the
fields of that model's frozen config dataclass) and, for a generator, the fields of a run
config's ``[model]`` section it takes (``ModelEntry.options``). The run config takes its allowed
``model.name`` values and its per-generator checks from here, and
``checkpoints.build_generator`` the factory and its options, so adding a generator is its model
file plus one :func:`register_model` call (the built-in ones are at the end of this module).

The registry imports no model code (and so no torch) until a model is built: a factory may be
given as ``"module:function"``, imported on first use. Importing the config and the CLI stays
quick.

Example:
    >>> list_models("generator")
    ['rcn', 'rcn-lite']
    >>> model_entry("rcn-lite").options
    ('width', 'num_landmarks', 'dropout', 'depth', 'zero_init_residual', 'fine_depth')
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from torch import nn

ModelFactory = Callable[..., "nn.Module"]
ConfigT = TypeVar("ConfigT")

GENERATOR = "generator"
DISCRIMINATOR = "discriminator"
KINDS = (GENERATOR, DISCRIMINATOR)


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One registered model.

    Attributes:
        name: the name :func:`create_model` and a run config's ``model.name`` use.
        factory: a callable returning the ``nn.Module`` from config-field keyword arguments, or
            ``"module:function"`` naming one (imported on first use).
        kind: ``"generator"`` (images -> heatmap logits, trainable as ``model.name``) or
            ``"discriminator"``.
        options: for a generator, the fields of the run config's ``[model]`` section that
            ``checkpoints.build_generator`` passes to the factory; any other ``[model]`` field
            must keep its default for this generator.
    """

    name: str
    factory: str | ModelFactory
    kind: str = GENERATOR
    options: tuple[str, ...] = ()

    def load(self) -> ModelFactory:
        """The factory callable (imported now when it was given as ``"module:function"``)."""
        if callable(self.factory):
            return self.factory
        module, _, attribute = self.factory.partition(":")
        return getattr(importlib.import_module(module), attribute)


_MODELS: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    factory: str | ModelFactory | None = None,
    *,
    kind: str = GENERATOR,
    options: tuple[str, ...] = (),
) -> Any:
    """Register ``factory`` under ``name``; without ``factory``, a decorator that registers the
    function it decorates (and returns it unchanged).

    Raises:
        ValueError: ``name`` is taken, or ``kind`` is not one of :data:`KINDS`.

    Example:
        >>> @register_model("tiny", options=("width", "num_landmarks"))  # doctest: +SKIP
        ... def tiny(**kwargs): return TinyNet(TinyConfig(**kwargs))
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")

    def add(target: str | ModelFactory) -> str | ModelFactory:
        if name in _MODELS:
            raise ValueError(f"model name {name!r} is already registered")
        _MODELS[name] = ModelEntry(name, target, kind, tuple(options))
        return target

    return add if factory is None else add(factory)


def list_models(kind: str | None = None) -> list[str]:
    """The registered model names, sorted, e.g. ``["patchgan", "rcn", "rcn-lite"]``; only those
    of ``kind`` (``"generator"`` or ``"discriminator"``) when given."""
    return sorted(name for name, entry in _MODELS.items() if kind in (None, entry.kind))


def model_entry(name: str) -> ModelEntry:
    """The :class:`ModelEntry` registered as ``name``; ValueError naming the choices otherwise."""
    if name not in _MODELS:
        raise ValueError(f"unknown model name {name!r}; choose one of {list_models()}")
    return _MODELS[name]


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name`` with config fields given as keyword arguments.

    Args:
        name: a name from :func:`list_models`.
        **kwargs: fields of that model's config dataclass (e.g. ``width=0.125`` for ``"rcn"``).

    Raises:
        ValueError: for an unknown ``name``, an unknown keyword or an invalid value.

    Example:
        >>> model = create_model("rcn", width=1 / 8, num_landmarks=68)
        >>> model.config.channels
        8
    """
    return model_entry(name).load()(**kwargs)


def config_from_kwargs(config_cls: type[ConfigT], kwargs: dict[str, Any]) -> ConfigT:
    """Build a config dataclass, turning an unknown keyword into a ValueError naming the fields."""
    fields = [field.name for field in dataclasses.fields(config_cls)]  # type: ignore[arg-type]
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown argument(s) {unknown} for {config_cls.__name__}; valid: {fields}"
        )
    return config_cls(**kwargs)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (weights and biases; BatchNorm running stats excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def storage_mb(model: nn.Module, bytes_per_parameter: int = 4) -> float:
    """Storage of the parameters in MB = parameters x bytes_per_parameter / 1e6 (float32: 4).

    This counts raw parameter bytes only: no BatchNorm buffers and no file-format overhead.
    See docs/results.md for how this compares with the paper's Table 3 storage column.
    """
    return count_parameters(model) * bytes_per_parameter / 1e6


# --- The built-in models ---------------------------------------------------------------------
_GENERATOR_OPTIONS = ("width", "num_landmarks", "dropout")
register_model("rcn", "laplace_landmarks.models.rcn:rcn", options=_GENERATOR_OPTIONS)
register_model(
    "rcn-lite",
    "laplace_landmarks.models.rcn_lite:rcn_lite",
    options=(*_GENERATOR_OPTIONS, "depth", "zero_init_residual", "fine_depth"),
)
register_model("patchgan", "laplace_landmarks.models.patchgan:patchgan", kind=DISCRIMINATOR)
