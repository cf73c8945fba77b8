"""The one cache root of laplace-landmarks, and what lives under it.

``$LAPLACE_LANDMARKS_CACHE``, else ``$XDG_CACHE_HOME/laplace-landmarks``, else
``~/.cache/laplace-landmarks``. Two kinds of files live there, both rebuilt on demand:

- ``onnx/<hash>.onnx``: ONNX exports of the models that ``backend="onnx"`` ran (one per weights
  file; a few hundred KB to a few MB each);
- ``<dataset>-<split>-<hash>.pt`` (and ``self-crops-...``): crop caches that training and
  evaluation build from a dataset (tens to hundreds of MB each for the full data).

``laplace-landmarks cache`` lists them with their sizes; ``laplace-landmarks cache clear`` deletes
them.

Example:
    >>> cache_root().name  # doctest: +SKIP
    'laplace-landmarks'
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ONNX_FOLDER = "onnx"


def cache_root() -> Path:
    """``$LAPLACE_LANDMARKS_CACHE``, else ``$XDG_CACHE_HOME`` or ``~/.cache`` + ``laplace-landmarks``."""
    base = os.environ.get("LAPLACE_LANDMARKS_CACHE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "laplace-landmarks"


def onnx_cache_dir() -> Path:
    """Where ONNX exports are cached: ``cache_root() / "onnx"``."""
    return cache_root() / ONNX_FOLDER


def crop_cache_dir() -> Path:
    """Where crop caches go by default: ``cache_root()`` itself."""
    return cache_root()


@dataclass(frozen=True)
class CacheEntry:
    """One cached file: its path, kind ("onnx" or "crops") and size in bytes."""

    path: Path
    kind: str
    size: int


def cache_entries(root: Path | None = None) -> list[CacheEntry]:
    """The cached files under ``root`` (default :func:`cache_root`), sorted by path.

    Only the project's own kinds are listed (``onnx/*.onnx`` and top-level ``*.pt`` crop caches,
    plus their half-written ``.tmp`` leftovers), so a cache root pointed at a shared folder by
    mistake never has foreign files listed or deleted."""
    root = cache_root() if root is None else Path(root)
    found: list[CacheEntry] = []
    for kind, folder, suffix in (("onnx", root / ONNX_FOLDER, ".onnx"), ("crops", root, ".pt")):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.is_symlink() and _ours(path.name, suffix):
                found.append(CacheEntry(path, kind, path.stat().st_size))
    return found


def _ours(name: str, suffix: str) -> bool:
    return name.endswith(suffix) or (name.startswith(".") and ".tmp" in name)


def clear_cache(kinds: tuple[str, ...] = ("onnx", "crops"), root: Path | None = None) -> int:
    """Delete the cached files of ``kinds``; returns the bytes freed. Files vanish safely: every
    cached file is rebuilt on demand (a run using one at the same moment keeps its open copy)."""
    freed = 0
    for entry in cache_entries(root):
        if entry.kind in kinds:
            entry.path.unlink(missing_ok=True)
            freed += entry.size
    return freed
