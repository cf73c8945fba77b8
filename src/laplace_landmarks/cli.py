"""Command-line entry point: ``laplace-landmarks <command> ...``.

Each subcommand lives in its own module under ``laplace_landmarks.commands`` and exposes
``register(subparsers)`` (adds its parser and sets ``func``). Modules are imported only when
needed, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from laplace_landmarks import __version__
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.outputs import printable

# (command name, module under laplace_landmarks.commands)
COMMANDS: list[tuple[str, str]] = [
    ("predict", "predict"),
    ("align", "align"),
    ("ray-predict", "ray_predict"),
    ("models", "models"),
    ("train", "train"),
    ("evaluate", "evaluate"),
    ("reproduce", "reproduce"),
    ("data", "data"),
    ("export", "export"),
    ("calibrate", "calibrate"),
    ("ensemble", "ensemble"),
    ("bench", "bench"),
    ("study", "study"),
    ("cache", "cache"),
]


def build_parser() -> argparse.ArgumentParser:
    """The ``laplace-landmarks`` parser with every available command."""
    parser = argparse.ArgumentParser(
        prog="laplace-landmarks",
        description="68-point facial landmarks with per-point Laplace uncertainty, fast on CPU.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for _name, module_name in COMMANDS:
        try:
            module = importlib.import_module(f"laplace_landmarks.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"laplace_landmarks.commands.{module_name}":
                raise
            continue  # command not built yet
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status (2 and a one-line message for a bad input).

    argparse's own usage errors exit with SystemExit(2), ``--help`` and ``--version`` with 0.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except LandmarksError as exc:
        message = printable(str(exc)).replace("\n", " ")  # one line, whatever the input's name
        print(f"laplace-landmarks {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
