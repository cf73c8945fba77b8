"""The package version, in a module of its own so that any module can read it without importing
the package's ``__init__`` (and, through it, the inference API)."""

from __future__ import annotations

__version__ = "0.1.0"
