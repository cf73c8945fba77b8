"""``laplace-landmarks ensemble``: join trained weights files into one ensemble weights file.

The ensemble averages its members' heatmap probabilities (``models/ensemble.py``): its point is
the mean of the members' calibrated points and its scale grows where they disagree. The result
is an ordinary weights file: ``predict --model FILE``, ``evaluate``, ``calibrate`` (refits the
offset of the whole), ``export`` and ``bench`` take it. Members must predict the same landmarks
at the same crop size and output stride; they may differ in width, depth or training run. A member
cannot be an ensemble file itself (give its members instead), and there are at most 16. The new
file is loaded back before it is written, so what this command writes every command can load.
"""

from __future__ import annotations

import argparse

from laplace_landmarks.commands.arguments import plain


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``ensemble`` command."""
    p = subparsers.add_parser(
        "ensemble",
        help="join trained weights files into one ensemble weights file",
        description=plain(__doc__),
    )
    p.add_argument(
        "members", nargs="+", help=".safetensors/.pt files or shipped names (2 to 16; no ensembles)"
    )
    p.add_argument("--out", required=True, help="new .safetensors weights file")
    p.set_defaults(func=run_ensemble)


def run_ensemble(args: argparse.Namespace) -> int:
    from pathlib import Path

    from laplace_landmarks.checkpoints import resolve_checkpoint, save_ensemble
    from laplace_landmarks.errors import LandmarksError
    from laplace_landmarks.models.registry import count_parameters

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise LandmarksError(f"--out {out}: must end in .safetensors")
    paths = [resolve_checkpoint(member) for member in args.members]
    if any(out.resolve() == path.resolve() for path in paths):
        raise LandmarksError(
            f"--out {out}: must differ from every member (members are never overwritten)"
        )
    ensemble = save_ensemble(paths, out)
    print(
        f"wrote {out}: {len(paths)} members, {count_parameters(ensemble):,} parameters "
        f"({', '.join(p.name for p in paths)})"
    )
    return 0
