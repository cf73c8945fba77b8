"""``laplace-landmarks reproduce [--quick]``: the paper's comparison grid on ytf68.

Trains every run of the grid into OUT/<run-name>/ (finished runs are skipped, partial ones
resumed, so the grid can be continued later), scores each best-validation checkpoint on the
ytf68 test split and writes a marked section of the results page (tables, CED and b_t figures,
and a held / not held line per claim of the paper). See ``laplace_landmarks.reproduce``.

The full grid is large: 81 runs of 200 epochs at 3 seeds. On a 2-core CPU it does not fit (one
adversarial step with the paper's discriminator, base width 64, takes seconds on one thread);
run it on a bigger machine, or cut it with --seeds / --epochs, which the page records.

--small is what fits 2 CPU cores in about two hours: the quick grid's shape (Table 2 at width
1/8 with N in {0, all}; widths 1/16 and 1/8; b_t in {0.5, 1, 2}) on every training face, with 3
seeds and 5 epochs, the quick discriminator, and the adversarial step on every 4th batch
(the paper's alternation runs it on every batch: about 3-5x the time of a supervised epoch
on a 2-core CPU). --shard K/N trains and scores only every N-th run from the K-th, so N
processes can share a grid; run once more without --shard to write the page.

--quick is a smoke run: 1 seed, width 1/8, 3 epochs, 256 training faces, and a discriminator of
base width 16 fed 16 unlabelled faces per step instead of the recipes' 64 and 32. About 10
minutes on 2 busy cores. It writes its own section of the page, labelled as quick.
"""

from __future__ import annotations

import argparse
import shlex
from fractions import Fraction

from laplace_landmarks.commands.arguments import add_data_root, plain, thread_count


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "reproduce",
        help="run the paper's comparison grid on ytf68 and write the results page",
        description=plain(__doc__.split("\n\n", 1)[1]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="tiny smoke grid (~10 min on 2 cores)")
    p.add_argument(
        "--small",
        action="store_true",
        help="3 seeds x 5 epochs at widths 1/16, 1/8 (~2 h on 2 cores)",
    )
    p.add_argument(
        "--shard", type=_shard, metavar="K/N", help="train only runs K, K+N, K+2N, ... (1-based)"
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: write the page from the finished runs, marking the missing ones",
    )
    p.add_argument("--out", help="runs folder (default runs/reproduce or runs/reproduce-quick)")
    p.add_argument("--results", default="docs/reproduction.md", help="markdown page to update")
    p.add_argument("--seeds", type=int, help="seeds per config (default 3; quick 1)")
    p.add_argument("--epochs", type=int, help="epochs per run (default 200; quick 3)")
    p.add_argument("--threads", type=thread_count, help="torch CPU threads for training")
    add_data_root(p, "ytf68")
    p.add_argument("--unlabeled", help="unlabelled faces (default <data root>/unlabeled/ytf)")
    p.add_argument("--cache-dir", help="where crop caches go (default ~/.cache/laplace-landmarks)")
    p.add_argument("--batch-size", type=int, help="override the recipes' batch size (32)")
    p.add_argument("--max-train", type=int, help="training faces per run (default all; quick 256)")
    p.add_argument("--bench-seconds", type=float, help="time budget per width for the fps column")
    p.add_argument("--d-width", type=int, help="discriminator base width (64; quick 16)")
    p.add_argument("--d-batch-size", type=int, help="unlabelled faces per step (32; quick 16)")
    p.add_argument(
        "--d-every", type=int, help="adversarial step on every n-th batch (recipes 1; small 4)"
    )
    p.add_argument(
        "--widths",
        type=_widths,
        help="Table 3's widths, comma-separated (full: 1/16,1/8,1/4,1/2,1; else 1/16,1/8)",
    )
    p.add_argument("--device", default="cpu", help="where runs train: cpu (default), cuda, auto")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _widths(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(Fraction(part.strip())) for part in text.split(","))
    except (ValueError, ZeroDivisionError, OverflowError):
        raise argparse.ArgumentTypeError(
            f"expected widths such as 1/16,1/8,1 or 0.25,0.5, got {text!r}"
        ) from None
    if not values or any(not 0 < w <= 1 for w in values):
        raise argparse.ArgumentTypeError(f"widths must be in (0, 1], got {text!r}")
    return values


def _shard(text: str) -> tuple[int, int]:
    from laplace_landmarks.errors import LandmarksError
    from laplace_landmarks.sharding import parse_shard

    try:
        return parse_shard(text)
    except LandmarksError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def command_line(args: argparse.Namespace) -> str:
    """The command as typed, rebuilt from the parsed flags (for the results page)."""
    parts = ["laplace-landmarks", "reproduce"]
    for name in FLAGS:
        value = getattr(args, name)
        if isinstance(value, tuple):
            value = ",".join(f"{item:g}" for item in value)
        if name == "device" and value == "cpu":
            continue  # the default
        if value is True:
            parts.append(f"--{name.replace('_', '-')}")
        elif value not in (None, False):
            parts += [f"--{name.replace('_', '-')}", str(value)]
    return shlex.join(parts)


FLAGS = (
    "quick",
    "small",
    "report_only",
    "out",
    "results",
    "seeds",
    "epochs",
    "threads",
    "data_root",
    "unlabeled",
    "cache_dir",
    "batch_size",
    "max_train",
    "bench_seconds",
    "d_width",
    "d_batch_size",
    "d_every",
    "widths",
    "device",
)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from laplace_landmarks.reproduce import GridOptions, run_grid, write_results

    options = GridOptions(
        quick=args.quick,
        small=args.small,
        shard=args.shard,
        report_only=args.report_only,
        out=Path(args.out) if args.out else None,
        results=Path(args.results),
        seeds=args.seeds,
        epochs=args.epochs,
        threads=args.threads,
        data_root=args.data_root,
        unlabeled=args.unlabeled,
        cache_dir=args.cache_dir,
        batch_size=args.batch_size,
        max_train=args.max_train,
        progress=not args.no_progress,
        bench_seconds=args.bench_seconds,
        d_width=args.d_width,
        d_batch_size=args.d_batch_size,
        d_every=args.d_every,
        widths=args.widths,
        device=args.device,
        command=command_line(args),
    )
    data = run_grid(options)
    if options.shard is not None:
        k, n = options.shard
        print(f"shard {k}/{n}: {len(data['results'])} runs done under {data['options'].out}")
        return 0
    path = write_results(data)
    print(f"wrote {path} ({len(data['results'])} runs under {data['options'].out})")
    return 0
