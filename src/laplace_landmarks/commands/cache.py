"""``laplace-landmarks cache``: show or clear the cache (ONNX exports and crop caches).

The cache root is ``$LAPLACE_LANDMARKS_CACHE``, else ``$XDG_CACHE_HOME/laplace-landmarks``, else
``~/.cache/laplace-landmarks``; everything in it is rebuilt on demand.
"""

from __future__ import annotations

import argparse

from laplace_landmarks.commands.arguments import plain


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``cache`` command (``cache`` lists, ``cache clear`` deletes)."""
    parser = subparsers.add_parser(
        "cache",
        help="show or clear the cache of ONNX exports and crop caches",
        description=plain(__doc__),
    )
    parser.add_argument(
        "action", nargs="?", choices=("list", "clear"), default="list",
        help="list the cached files with their sizes (default), or delete them",
    )  # fmt: skip
    parser.add_argument(
        "--kind", choices=("all", "onnx", "crops"), default="all",
        help="only ONNX exports, or only crop caches (default: both)",
    )  # fmt: skip
    parser.set_defaults(func=run_cache)


def run_cache(args: argparse.Namespace) -> int:
    from laplace_landmarks.cache_dirs import cache_entries, cache_root, clear_cache

    kinds = ("onnx", "crops") if args.kind == "all" else (args.kind,)
    if args.action == "clear":
        freed = clear_cache(kinds)
        print(f"cleared {freed / 1e6:.1f} MB from {cache_root()}")
        return 0
    entries = [entry for entry in cache_entries() if entry.kind in kinds]
    for entry in entries:
        print(f"{entry.size / 1e6:9.1f} MB  {entry.kind:5}  {entry.path}")
    total = sum(entry.size for entry in entries)
    print(f"{total / 1e6:.1f} MB in {len(entries)} files under {cache_root()}")
    return 0
