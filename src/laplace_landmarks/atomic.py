"""Atomic file writes: write a temporary file beside the target, then rename it over the target.

A reader (or a crash) never sees a half-written file, and an existing file is replaced only by a
complete one.

The temporary file lives in a private folder (``tempfile.mkdtemp``: unpredictable name, created
exclusively, mode 0700) next to the target, so no other user can plant a symlink or a file at
its name, even for writers that open the path themselves (``torch.save``, safetensors'
``save_file``, PyAV). The finished file gets the normal mode for the user's umask
(``0o666 & ~umask``), whatever mode the writer gave it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from laplace_landmarks.errors import LandmarksError

_PREFIX_CHARS = 32  # of the target's name in the private folder's name (stays under NAME_MAX)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path (same folder level, same name) that becomes ``path`` on success.

    The yielded file already exists (empty, created exclusively); the caller may write to it or
    replace it. Nothing is left behind when the block raises.

    Example:
        >>> with atomic_path("out/result.json") as tmp:  # doctest: +SKIP
        ...     tmp.write_text("{}")
    """
    target = Path(path)
    if target.is_dir():
        raise LandmarksError(f"{target}: is a folder; give a file name to write")
    make_folder(target.parent)
    private = Path(
        tempfile.mkdtemp(
            dir=target.parent, prefix=f".{target.name[:_PREFIX_CHARS]}.", suffix=".tmp"
        )
    )
    temporary = private / target.name
    try:
        mode = _create_empty(temporary)
        yield temporary
        with contextlib.suppress(OSError):  # e.g. a file system without permissions
            os.chmod(temporary, mode)
        os.replace(temporary, target)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def make_folder(path: str | os.PathLike[str]) -> Path:
    """``mkdir -p path``; a file in the way is a one-line LandmarksError naming the path."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise LandmarksError(
            f"{folder}: cannot create this folder (a file is in the way)"
        ) from None
    return folder


def _create_empty(path: Path) -> int:
    """Create ``path`` exclusively with the umask's default mode; return that mode."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        return stat.S_IMODE(os.fstat(descriptor).st_mode)
    finally:
        os.close(descriptor)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8, newlines as given) atomically; returns the path."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
    return Path(path)


def atomic_torch_save(payload: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` atomically; returns the path."""
    import torch

    with atomic_path(path) as temporary:
        torch.save(payload, temporary)
    return Path(path)
