"""The on-the-fly ONNX export cache behind ``backend="onnx"`` without an ``onnx_path``.

A model is exported once into :func:`cache_dir` as ``<hash>.onnx``, the hash covering its
weights, its config, the export settings and the torch version (:func:`model_hash`), with a
sha256 checksum beside it (``<hash>.onnx.sha256``). :func:`cached_session` rebuilds, once, a file
that fails its checksum, does not load or does not take the model's crops. Every file is written
atomically.

Needs the optional packages: ``pip install laplace-landmarks[onnx]``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from laplace_landmarks.atomic import atomic_write_text
from laplace_landmarks.cache_dirs import onnx_cache_dir
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.export import DEFAULT_OPSET, EXPORT_VERSION, export_onnx, model_crop_size
from laplace_landmarks.onnx_runtime import OnnxSession


def cache_dir() -> Path:
    """Where ONNX exports are cached (see :func:`laplace_landmarks.cache_dirs.onnx_cache_dir`)."""
    return onnx_cache_dir()


def model_hash(
    model: nn.Module,
    input_dtype: str = "uint8",
    opset: int = DEFAULT_OPSET,
    crop_size: int | None = None,
) -> str:
    """sha256 over the weights, the model config, the export settings (crop size: ``crop_size``,
    else the model's own) and the torch version."""
    digest = hashlib.sha256()
    config = getattr(model, "config", None)
    size = crop_size or model_crop_size(model)
    settings = f"{EXPORT_VERSION}|{torch.__version__}|{input_dtype}|{opset}|{size}|{config}"
    digest.update(settings.encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cached_export(
    model: nn.Module, input_dtype: str = "uint8", crop_size: int | None = None
) -> Path:
    """The ONNX file of ``model`` in :func:`cache_dir`, exported on first use (keyed by hash),
    taking ``crop_size`` crops (default: the model's own, see ``export.model_crop_size``).

    A file that does not match the sha256 checksum written beside it at export (``.sha256``;
    a truncated, corrupt or half-copied file, or one from before checksums) is exported again.
    """
    path = _cache_path(model, input_dtype, crop_size)
    if not _checksum_matches(path):
        _export_to_cache(model, path, input_dtype, crop_size)
    return path


def cached_session(
    model: nn.Module,
    threads: int | None = None,
    input_dtype: str = "uint8",
    crop_size: int | None = None,
) -> OnnxSession:
    """An :class:`OnnxSession` on ``model``'s cached export (see :func:`cached_export`).

    A cache file that is missing, fails its checksum, does not load or does not take the
    model's crops is rebuilt once, atomically; LandmarksError naming the file when even the
    rebuilt one fails.
    """
    size = crop_size or model_crop_size(model)
    path = _cache_path(model, input_dtype, size)
    if _checksum_matches(path):
        try:
            return OnnxSession(path, threads).check_interface(size)
        except LandmarksError:
            pass  # intact but unusable (e.g. written by another exporter): rebuild it
    _export_to_cache(model, path, input_dtype, size)
    try:
        return OnnxSession(path, threads).check_interface(size)
    except LandmarksError as exc:
        raise LandmarksError(
            f"{path}: rebuilt the ONNX cache file, still unusable ({exc})"
        ) from exc


def _cache_path(model: nn.Module, input_dtype: str, crop_size: int | None) -> Path:
    return cache_dir() / f"{model_hash(model, input_dtype, crop_size=crop_size)[:24]}.onnx"


def _checksum_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.sha256")


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _checksum_matches(path: Path) -> bool:
    """Whether ``path`` and its ``.sha256`` both exist and agree."""
    try:
        expected = _checksum_path(path).read_text(encoding="utf-8").strip()
        return _file_sha256(path) == expected
    except (OSError, UnicodeDecodeError):
        return False


def _export_to_cache(model: nn.Module, path: Path, input_dtype: str, crop_size: int | None) -> None:
    """Export ``model`` to ``path`` and write its checksum, each file atomically."""
    try:
        export_onnx(model, path, input_dtype=input_dtype, crop_size=crop_size)
        atomic_write_text(_checksum_path(path), _file_sha256(path) + "\n")
    except OSError as exc:
        raise LandmarksError(f"{path}: cannot write the ONNX cache file ({exc})") from exc
