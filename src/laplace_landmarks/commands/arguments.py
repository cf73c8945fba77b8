"""Argument helpers shared by several commands: ``type=`` callables, the data-root option and
plain-text descriptions."""

from __future__ import annotations

import argparse
import re
from typing import Any

from laplace_landmarks.data.datasets import DATA_ROOT_ENV

MAX_THREADS = 1024  # --threads bound, as for the recipes' train.threads (config.py)
MAX_REFINE = 16  # --refine bound: passes beyond a few change nothing (the crop converges)
_ROLE = re.compile(r":[a-z]+:`([^`]+)`")  # a Sphinx role such as :func:`name`


def thread_count(text: str) -> int:
    """``--threads``: a whole number in 1..MAX_THREADS (torch fails on anything else, late)."""
    return _whole_number(text, 1, MAX_THREADS)


def refine_passes(text: str) -> int:
    """``--refine``: a whole number of 5-point re-crop passes in 0..MAX_REFINE."""
    return _whole_number(text, 0, MAX_REFINE)


def _whole_number(text: str, low: int, high: int) -> int:
    """``text`` as a whole number in ``low..high``; argparse's error otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {text!r}")
    return value


def first_pass_spec(text: str) -> str | bool:
    """``--first-pass``: a shipped model's name or a weights / ``.onnx`` file, or ``none``
    (False: the model's own first pass)."""
    return False if text.lower() == "none" else text


def add_first_pass(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """Add ``--first-pass`` (``Landmarker``'s ``first_pass``)."""
    parser.add_argument(
        "--first-pass",
        type=first_pass_spec,
        metavar="MODEL",
        help=f"{prefix}a model (shipped name or file) whose one pass from the box makes the "
        "first estimate, which the model re-crops from; 'none' for the model's own first pass. "
        "Default: the model's own setting (rcn-lite for rcn-lite-accurate[-112] and rcn-lite-medium; none for the others "
        "and weights files)",
    )


def add_data_root(parser: argparse.ArgumentParser, holding: str = "the dataset") -> None:
    """Add ``--data-root``, the one name of the data root option (``root=`` in Python)."""
    parser.add_argument(
        "--data-root",
        metavar="FOLDER",
        help=f"folder of {holding}, or the data root holding it (default: ${DATA_ROOT_ENV}, "
        "else ../shared/data)",
    )


def plain(doc: str) -> str:
    """A docstring as command-line text: backticks and Sphinx roles (:func:) removed."""
    return _ROLE.sub(r"\1", doc).replace("`", "")


def landmarker_from_args(args: argparse.Namespace) -> Any:
    """The Landmarker the ``predict`` options ask for (images, videos and manifests alike)."""
    from laplace_landmarks.inference import Landmarker

    return Landmarker.load(
        args.model,
        refine=0 if args.no_refine else args.refine,
        threads=args.threads,
        backend=args.backend,
        flip_test=args.flip_test,
        first_pass=args.first_pass,
        min_score=args.min_score,
    )
