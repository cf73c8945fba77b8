"""``laplace-landmarks train --recipe NAME [...]``: train a model into a run folder."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from laplace_landmarks.commands.arguments import add_data_root, thread_count
from laplace_landmarks.config import (
    GENERATORS,
    RESUME_CHANGEABLE,
    TRAIN_FLAG_OVERRIDES,
    list_recipes,
    resume_config,
)
from laplace_landmarks.errors import LandmarksError

OVERRIDES = TRAIN_FLAG_OVERRIDES  # flag name -> dotted config field


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model with a named recipe",
        description="Train a model. Writes config.json, metrics.csv, last.pt, best.pt and "
        "best.safetensors into --out; --resume continues from last.pt. A multi-stage recipe "
        "([[stage]] tables) trains each stage into OUT/<stage>/, each from the previous one's "
        "weights, writes OUT/pipeline.json and, if it says calibrate = true, "
        "OUT/calibrated.safetensors; --resume skips finished stages. Other flags apply to "
        "every stage.",
    )
    p.add_argument(
        "--recipe",
        default="paper-laplacekl",
        help=f"recipe name ({', '.join(list_recipes())}) or a .toml file",
    )
    p.add_argument(
        "--arch",
        choices=GENERATORS,
        help="generator: the paper's RCN, or rcn-lite (heatmaps at half resolution, ~5x cheaper)",
    )
    p.add_argument("--width", type=float, help="width multiplier (1, 0.5, 0.25, 0.125, 0.0625)")
    p.add_argument(
        "--depth",
        type=int,
        help="rcn-lite only: extra residual convs per coarse scale (default 0; same width)",
    )
    p.add_argument(
        "--fine-depth",
        type=int,
        help="rcn-lite only: extra residual convs at the heatmap resolution (40 px for an 80 px "
        "crop), after the last decoder conv (default 0)",
    )
    p.add_argument(
        "--zero-init-residual",
        action="store_true",
        default=None,
        help="with --depth / --fine-depth: start the residual convs at zero (each added block "
        "starts as identity); with --init-from and a larger --depth or --fine-depth than its "
        "network: grow that network",
    )
    p.add_argument(
        "--init-from",
        metavar="WEIGHTS_OR_NAME",
        help="start from these weights (a .safetensors/.pt file or a shipped model name): "
        "fine-tuning; the network shape comes from them (except a larger --depth with "
        "--zero-init-residual, which grows it), a fitted point offset is dropped",
    )
    p.add_argument(
        "--self-crops-from",
        metavar="WEIGHTS_OR_NAME",
        help="add the training faces cropped by this model's detector path (dlib box, first "
        "pass, 5-point re-crop from its own estimate; cached) to the training set",
    )
    p.add_argument(
        "--crop",
        choices=["five-point", "detector"],
        help="how training and validation faces are cropped: five-point (the paper's rule from "
        "the ground truth) or detector (as a one-pass Landmarker: the dlib box holding the "
        "face, else its 5-point-equivalent box; cached) (default: the recipe's)",
    )
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="after the last epoch, fit the point offset of the chosen weights on the training "
        "split and write OUT/calibrated.safetensors (and .json)",
    )
    p.add_argument(
        "--pick",
        choices=["best", "last"],
        default="best",
        help="weights --calibrate starts from: best.safetensors (default) or last.pt",
    )
    p.add_argument("--epochs", type=int, help="epochs to train (default: the recipe's)")
    p.add_argument("--batch-size", type=int, help="faces per training step")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument(
        "--seed", type=int, help="seed of the initial weights, the data order and the augmentation"
    )
    p.add_argument(
        "--loss",
        choices=["softargmax", "laplacekl", "gaussiankl"],
        help="softargmax: point error only; laplacekl / gaussiankl: KL to a Laplace / Gaussian "
        "target heatmap",
    )
    p.add_argument("--target-scale", type=float, help="b_t (Laplace) or σ_t (Gaussian), px")
    p.add_argument(
        "--direction",
        choices=["forward", "reverse"],
        help="forward: KL(target || prediction); reverse: KL(prediction || target)",
    )
    p.add_argument("--adversarial-weight", type=float, help="λ of the adversarial loss")
    p.add_argument("--data", help="dataset name (ytf68, 300w, aflw, wflw, cofw, folder)")
    add_data_root(p)
    p.add_argument("--train-split", help="split to train on (default: the recipe's)")
    p.add_argument("--val-split", help="split to validate on each epoch (default: the recipe's)")
    p.add_argument("--max-train", type=int, help="use only the first N training faces")
    p.add_argument("--max-val", type=int, help="use only the first N validation faces")
    p.add_argument("--unlabeled", help="folder of unlabelled faces (enables nothing by itself)")
    p.add_argument("--num-unlabeled", type=int, help="N of +D(N): how many unlabelled faces")
    p.add_argument("--threads", type=thread_count, help="torch CPU threads")
    p.add_argument("--cache-dir", help="where crop caches go (default ~/.cache/laplace-landmarks)")
    p.add_argument("--out", default="runs/latest", help="run folder")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/last.pt with the run's saved config (--recipe is not read); "
        "options marked 'resume: applied' may take new values, those marked 'resume: fixed' "
        "must match the run",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also log to TensorBoard in OUT (needs tensorboard)",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu (default), cuda, cuda:N or auto; a run resumes on any device",
    )
    p.add_argument(
        "--time-limit",
        type=float,
        metavar="MINUTES",
        help="stop after the epoch that passes this wall time (checkpoints intact; --resume "
        "continues with the same schedule)",
    )
    _note_resume_rules(p)
    p.set_defaults(func=run)


def _note_resume_rules(parser: argparse.ArgumentParser) -> None:
    """Say in each config flag's help whether ``--resume`` applies a new value or refuses it."""
    for action in parser._actions:
        if action.dest in OVERRIDES:
            rule = "applied" if OVERRIDES[action.dest] in RESUME_CHANGEABLE else "fixed"
            action.help = f"{action.help}; resume: {rule}" if action.help else f"resume: {rule}"


def run(args: argparse.Namespace) -> int:
    from laplace_landmarks.checkpoints import load_checkpoint
    from laplace_landmarks.config import load_recipe, resolve_config
    from laplace_landmarks.pipeline import calibrate_run, chosen_weights, is_pipeline
    from laplace_landmarks.training import Trainer

    out = Path(args.out)
    overrides = {dotted: getattr(args, name) for name, dotted in OVERRIDES.items()}
    if not (args.resume and (out / "last.pt").exists()):
        raw = load_recipe(args.recipe)
        if is_pipeline(raw):
            return run_pipeline_command(args, raw, overrides)
    if args.resume and (out / "last.pt").exists():
        config, notes = resume_config(load_checkpoint(out / "last.pt")["config"], overrides)
        if int(os.environ.get("RANK", "0")) == 0:  # torchrun: say it once
            for note in notes:
                print(f"resume: {note} (from the next epoch)", file=sys.stderr)
    else:
        config = resolve_config(args.recipe, overrides, init_model=True)
    trainer = Trainer(config, out, resume=args.resume, **_trainer_options(args))
    history = trainer.fit()
    if history and trainer.rank == 0:
        best = min(row["val_nme"] for row in history)
        status = "stopped at the time limit" if trainer.stopped_early else "done"
        print(f"{status}: {len(history)} epochs, best validation NME {best:.3f}% -> {out}")
        if args.calibrate and not trainer.stopped_early:
            calibrate_run(chosen_weights(out, args.pick), config, out / "calibrated.safetensors")
    return 0


def _trainer_options(args: argparse.Namespace) -> dict:
    return {
        "progress": not args.no_progress,
        "tensorboard": args.tensorboard,
        "device": args.device,
        "time_limit": None if args.time_limit is None else args.time_limit * 60,
    }


def run_pipeline_command(args: argparse.Namespace, raw: dict, overrides: dict) -> int:
    """A multi-stage recipe: every stage into OUT/<stage>/, then calibration if asked."""
    from laplace_landmarks.pipeline import parse_pipeline, run_pipeline

    for flag in ("init_from", "self_crops_from", "calibrate"):
        if getattr(args, flag):
            raise LandmarksError(
                f"train: --{flag.replace('_', '-')} does not apply to a multi-stage recipe; "
                "set it in the recipe (init_from / self_crops_from in a [[stage]], "
                "calibrate = true at the top)"
            )
    pipeline = parse_pipeline(raw)
    options = _trainer_options(args)
    result = run_pipeline(
        pipeline,
        args.out,
        overrides,
        resume=args.resume,
        time_limit=options.pop("time_limit"),
        **options,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        status = "stopped at the time limit" if result.stopped_early else "done"
        final = result.calibrated or result.weights
        print(
            f"{status}: {len(result.stages)} of {len(pipeline.stages)} stages -> {args.out}"
            + (f"; weights {final}" if final and not result.stopped_early else "")
        )
    return 0
