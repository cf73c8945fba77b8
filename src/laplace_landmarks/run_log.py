"""What a training run reports as it goes: ``metrics.csv``, TensorBoard scalars, the progress bar
and one line per epoch on stderr.

Each epoch's row is a dict (``epoch``, ``lr``, the mean training losses, ``val_nme``, ...);
``metrics.csv`` is rewritten atomically after every epoch with one column per key seen so far.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

from laplace_landmarks.atomic import atomic_path
from laplace_landmarks.errors import LandmarksError


class RunLog:
    """The epoch records of one run in ``out_dir``: ``metrics.csv``, the epoch line on stderr
    and, with ``tensorboard``, scalars under ``out_dir/tensorboard`` (LandmarksError when the
    ``tensorboard`` package is missing, raised here, before any work)."""

    def __init__(self, out_dir: str | Path, tensorboard: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.writer = tensorboard_writer(self.out_dir) if tensorboard else None

    def record(self, epoch: int, row: dict[str, Any], history: list[dict[str, Any]]) -> None:
        """Write ``history`` (every epoch so far) to ``metrics.csv``, ``row`` (this epoch's) to
        TensorBoard, and print the epoch line."""
        write_metrics(self.out_dir / "metrics.csv", history)
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch":
                    self.writer.add_scalar(key, value, epoch)
        print(epoch_line(epoch, row), file=sys.stderr)


def epoch_line(epoch: int, row: dict[str, Any]) -> str:
    """``epoch 3: lr=0.001, train_loss=5.18, ...`` (floats to 4 significant digits)."""
    return f"epoch {epoch}: " + ", ".join(
        f"{key}={_format(value)}" for key, value in row.items() if key != "epoch"
    )


def write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
    """``history`` as CSV at ``path``, atomically; columns in the order they first appear."""
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar of ``total`` batches on stderr, or None when not ``enabled``."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=False, file=sys.stderr)


def tensorboard_writer(out_dir: Path) -> Any:
    """A TensorBoard ``SummaryWriter`` on ``out_dir/tensorboard``; LandmarksError naming the
    package to install when it is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise LandmarksError(
            "tensorboard: install the `tensorboard` package to use --tensorboard"
        ) from exc
    return SummaryWriter(str(out_dir / "tensorboard"))


def _format(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
