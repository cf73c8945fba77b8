"""``laplace-landmarks study unlabeled``: does +D(N) help with few labelled faces?

Fine-tunes the shipped ytf68-trained models (fast = rcn-lite, default = rcn-lite-accurate) with
the improved-lite recipe on 300W trainval-train / val, with N unlabelled faces (N = 0: the
adversarial branch off), over seeds; writes OUT/<run>/ per run and OUT/summary.{json,md}. Finished
runs are skipped and partial ones resumed, so rerunning the command continues the grid;
--shard K/N lets N processes share it. See laplace_landmarks.studies.
"""

from __future__ import annotations

import argparse
import shlex

from laplace_landmarks.commands.arguments import add_data_root, plain, thread_count


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``study`` command (one study so far: ``unlabeled``)."""
    p = subparsers.add_parser("study", help="run a grid of training runs and summarise it")
    studies = p.add_subparsers(dest="study", metavar="STUDY", required=True)
    u = studies.add_parser(
        "unlabeled", help="+D(N) on 300W with few labels", description=plain(__doc__)
    )
    u.add_argument("--out", required=True, help="study folder (one sub-folder per run)")
    u.add_argument("--widths", default="fast,default", help="comma list of: fast, default")
    u.add_argument("--n", default="0,1000,2000,all", help="comma list of N (0 = D off, all)")
    u.add_argument("--seeds", default="0,1,2", help="comma list of seeds")
    u.add_argument("--epochs", type=int, default=40, help="epochs per run (default 40)")
    u.add_argument("--shard", default="1/1", metavar="K/N", help="train every N-th run from K-th")
    u.add_argument("--report-only", action="store_true", help="only write the summary")
    u.add_argument("--threads", type=thread_count, default=1, help="torch CPU threads (default 1)")
    add_data_root(u, "300w")
    u.add_argument("--unlabeled", help="folder of unlabelled faces (default: the shared pool)")
    u.add_argument("--cache-dir", help="crop caches (default $LAPLACE_LANDMARKS_CACHE)")
    u.add_argument("--max-train", type=int, help="only the first N training faces (tests)")
    u.add_argument("--max-val", type=int, help="only the first N validation faces (tests)")
    u.add_argument("--batch-size", type=int, help="override the recipe's batch size (tests)")
    u.set_defaults(func=run_unlabeled)


def parse_args(args: argparse.Namespace) -> dict:
    """The study's options from the parsed flags; bad values are a LandmarksError."""
    from laplace_landmarks.errors import LandmarksError
    from laplace_landmarks.sharding import parse_shard
    from laplace_landmarks.studies import parse_n

    def items(text: str, flag: str) -> list[str]:
        values = [v.strip() for v in text.split(",") if v.strip()]
        if not values:
            raise LandmarksError(f"{flag}: give at least one value")
        return values

    try:
        seeds = [int(s) for s in items(args.seeds, "--seeds")]
    except ValueError:
        raise LandmarksError(
            f"--seeds: expected whole numbers such as 0,1,2, got {args.seeds!r}"
        ) from None
    shard = parse_shard(args.shard)
    if args.epochs < 1:
        raise LandmarksError(f"--epochs: must be >= 1, got {args.epochs}")
    overrides = {
        "train.threads": args.threads,
        "data.root": args.data_root,
        "adversarial.unlabeled": args.unlabeled,
        "data.cache_dir": args.cache_dir,
        "data.max_train": args.max_train,
        "data.max_val": args.max_val,
        "train.batch_size": args.batch_size,
    }
    return {
        "widths": items(args.widths, "--widths"),
        "ns": [parse_n(v) for v in items(args.n, "--n")],
        "seeds": seeds,
        "epochs": args.epochs,
        "shard": shard,
        "overrides": {key: value for key, value in overrides.items() if value is not None},
    }


def study_command(args: argparse.Namespace) -> str:
    """The command line that reproduces this study (every flag that was given a value)."""
    words = ["laplace-landmarks", "study", "unlabeled"]
    for flag in ("out", "widths", "n", "seeds", "epochs", "shard", "threads", "data_root",
                 "unlabeled", "cache_dir", "max_train", "max_val", "batch_size"):  # fmt: skip
        value = getattr(args, flag)
        if value is not None:
            words += [f"--{flag.replace('_', '-')}", str(value)]
    return shlex.join(words)


def run_unlabeled(args: argparse.Namespace) -> int:
    from laplace_landmarks.outputs import printable
    from laplace_landmarks.studies import study_runs, unlabeled_study

    options = parse_args(args)
    study_runs(options["widths"], options["ns"], options["seeds"], options["shard"])  # validate
    command = study_command(args)
    summary = unlabeled_study(args.out, report_only=args.report_only, command=command, **options)
    for width, v in summary["verdicts"].items():
        print(f"{width}: {v['verdict']} (best N = {v['best_n']})")
    print(f"summary -> {printable(args.out)}/summary.md")
    return 0
