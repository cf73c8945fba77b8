"""Where ``predict`` writes, shared by the image and the video commands."""

from __future__ import annotations

from pathlib import Path

from laplace_landmarks.errors import LandmarksError

DEFAULT_OUT = Path("landmarks_out")  # overlays and files go here when --out is not given


def check_out_folder(out: Path) -> None:
    """Refuse an ``--out`` that exists and is not a folder (one-line LandmarksError)."""
    if out.exists() and not out.is_dir():
        raise LandmarksError(f"--out: {out} exists and is not a folder")
