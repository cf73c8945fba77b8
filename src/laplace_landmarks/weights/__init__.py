"""Pretrained models shipped inside the package, listed in ``weights/index.json``.

Each entry has ``name``, ``file`` (a safetensors file beside the index), ``description``,
``width`` (the generator's width multiplier), ``default`` (exactly one entry is the default) and,
optionally, ``arch`` (the generator: ``rcn``, the default, or ``rcn-lite``) and ``flip_test``
(whether ``Landmarker.pretrained`` averages the final pass with the mirrored crop unless told
otherwise; default false). A model
card ``<name>.md`` may sit beside the weights, and the model's ONNX export (network + decoding +
fitted buffers, with its config in the ONNX metadata; ``laplace-landmarks export --model NAME
--onnx weights/NAME.onnx``) beside the weights file, with its stem: what the core install (no
torch) runs. With ``"onnx_int8": true`` that file is the weights' int8 static quantisation
(``export --quantize int8``) instead of a float export: the ONNX backend (the default) and the
PyTorch backend then differ by the quantisation's error, and the card says by how much. Nothing
is downloaded: the files ship in the wheel.

Example:
    >>> [m["name"] for m in list_pretrained()]  # doctest: +SKIP
    ['rcn-lite', 'rcn-lite-medium', 'rcn-lite-accurate', 'rcn-lite-accurate-112', 'rcn-fast', ...]
    >>> pretrained_path("rcn-fast").name  # doctest: +SKIP
    'rcn-fast.safetensors'
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from laplace_landmarks.errors import LandmarksError

_REQUIRED_KEYS = ("name", "file", "description", "width", "default")


def _folder() -> Path:
    """The installed ``weights`` folder (a real directory: the package is not zipped)."""
    return Path(str(resources.files(__name__)))


def list_pretrained() -> list[dict[str, Any]]:
    """The shipped models as dicts (a copy of the index entries), in index order.

    Each dict also gets ``path`` (a Path to the weights file, which may be absent in a broken
    install), ``onnx`` (a Path to the ONNX export beside it, or None when there is none) and
    ``card`` (a Path to ``<name>.md``, or None when there is no card).
    """
    raw = json.loads((_folder() / "index.json").read_text(encoding="utf-8"))
    entries = []
    for entry in raw["models"]:
        missing = [key for key in _REQUIRED_KEYS if key not in entry]
        if missing:
            raise LandmarksError(f"weights/index.json: entry {entry!r:.60} lacks {missing}")
        path, card = _folder() / entry["file"], _folder() / f"{entry['name']}.md"
        onnx = path.with_suffix(".onnx")
        entries.append(
            {
                **entry,
                "path": path,
                "onnx": onnx if onnx.is_file() else None,
                "onnx_int8": bool(entry.get("onnx_int8", False)),
                "card": card if card.is_file() else None,
            }
        )
    return entries


def default_name() -> str:
    """The name of the default shipped model."""
    defaults = [entry["name"] for entry in list_pretrained() if entry["default"]]
    if len(defaults) != 1:
        raise LandmarksError(f"weights/index.json must mark exactly one default, got {defaults}")
    return defaults[0]


def pretrained_entry(name: str | None = None) -> dict[str, Any]:
    """The index entry of a shipped model (as ``list_pretrained`` gives it); None = the default.

    Raises:
        LandmarksError: an unknown name (the message lists the choices) or a missing file.
    """
    entries = {entry["name"]: entry for entry in list_pretrained()}
    name = default_name() if name is None else name
    if name not in entries:
        raise LandmarksError(
            f"unknown pretrained model {name!r}; choose one of {sorted(entries)} "
            "or pass a path to a .safetensors/.pt file"
        )
    path = entries[name]["path"]
    if not path.is_file():
        raise LandmarksError(f"pretrained model {name!r}: weights file {path} is missing")
    return entries[name]


def pretrained_path(name: str | None = None) -> Path:
    """The weights file of a shipped model; None = the default model.

    Raises:
        LandmarksError: an unknown name (the message lists the choices) or a missing file.
    """
    return pretrained_entry(name)["path"]
