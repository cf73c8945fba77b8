"""Build models by name, timm style: ``create_model("rcn", width=1/8)``, ``list_models()``.

A model file registers a factory with ``@register_model("name")``. A factory takes keyword
arguments (the fields of that model's frozen config dataclass) and returns an ``nn.Module``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

ModelFactory = Callable[..., nn.Module]
ConfigT = TypeVar("ConfigT")

_MODELS: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator that registers ``factory`` under ``name`` for :func:`create_model`.

    Example:
        >>> @register_model("tiny")  # doctest: +SKIP
        ... def tiny(**kwargs): return TinyNet(TinyConfig(**kwargs))
    """

    def decorator(factory: ModelFactory) -> ModelFactory:
        if name in _MODELS:
            raise ValueError(f"model name {name!r} is already registered")
        _MODELS[name] = factory
        return factory

    return decorator


def list_models() -> list[str]:
    """The registered model names, sorted, e.g. ``["patchgan", "rcn"]``."""
    return sorted(_MODELS)


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
    if name not in _MODELS:
        raise ValueError(f"unknown model name {name!r}; choose one of {list_models()}")
    return _MODELS[name](**kwargs)


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
