"""Argument types shared by several commands (argparse ``type=`` callables)."""

from __future__ import annotations

import argparse

MAX_THREADS = 1024  # --threads bound, as for the recipes' train.threads (config.py)


def thread_count(text: str) -> int:
    """``--threads``: a whole number in 1..MAX_THREADS (torch fails on anything else, late)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= MAX_THREADS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_THREADS}, got {text!r}")
    return value
