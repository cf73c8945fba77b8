"""``laplace-landmarks models``: the pretrained models shipped in the package."""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import Any

from laplace_landmarks.commands.arguments import plain
from laplace_landmarks.errors import LandmarksError

_NME_LINE = re.compile(r"\bNME\b", re.IGNORECASE)
MAX_HEADER_BYTES = 100_000_000  # safetensors' own bound on the JSON header


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` command."""
    parser = subparsers.add_parser(
        "models", help="list the shipped pretrained models", description=plain(__doc__)
    )
    parser.set_defaults(func=run_models)


def run_models(args: argparse.Namespace) -> int:
    """Print one block per shipped model: width, parameters, file size, default flag, card NME."""
    from laplace_landmarks.weights import list_pretrained

    for entry in list_pretrained():
        print(describe_model(entry))
    return 0


def describe_model(entry: dict[str, Any]) -> str:
    """A few lines about one index entry (see ``weights.list_pretrained``)."""
    path: Path = entry["path"]
    flag = " (default)" if entry["default"] else ""
    lines = [f"{entry['name']}{flag}: {entry['description']}", f"  width:  {entry['width']:g}"]
    if path.is_file():
        lines.append(f"  params: {_parameter_count(path):,}")
        lines.append(f"  size:   {path.stat().st_size / 1e6:.2f} MB ({path.name})")
        if entry.get("onnx") is not None:
            onnx_mb = entry["onnx"].stat().st_size / 1e6
            lines.append(f"  onnx:   {onnx_mb:.2f} MB ({entry['onnx'].name}, runs without torch)")
    else:
        lines.append(f"  file:   {path.name} is MISSING")
    nme = card_nme_line(entry["card"]) if entry["card"] else None
    lines.append(f"  NME:    {nme}" if nme else "  NME:    (no model card)")
    return "\n".join(lines)


def _parameter_count(path: Path) -> int:
    """Parameter count of a safetensors file (buffers such as ``point_offset`` excluded), read
    from its JSON header alone (no torch, no safetensors package: the core install lists too)."""
    try:
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if not 2 <= length <= MAX_HEADER_BYTES:
                raise ValueError(f"header length {length}")
            header = json.loads(handle.read(length))
        total = 0
        for name, info in header.items():
            if name == "__metadata__" or name.endswith(("point_offset", "scale_factor")):
                continue
            total += math.prod(int(size) for size in info["shape"])
        return total
    except Exception as exc:  # a corrupt file is reported, not a traceback
        raise LandmarksError(f"{path}: not a readable safetensors file ({exc})") from exc


def card_nme_line(card: Path) -> str | None:
    """The first line of a model card that mentions NME, stripped of Markdown markers."""
    for line in card.read_text(encoding="utf-8", errors="replace").splitlines():
        if _NME_LINE.search(line):
            return line.strip().lstrip("-*#> ").strip() or None
    return None
