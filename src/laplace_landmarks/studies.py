"""Studies: grids of training runs that answer one question, with their summary.

:func:`unlabeled_study` asks whether the adversarial branch +D(N) (SPEC §3, the paper's Table 2)
helps when few faces are labelled: fine-tuning a shipped ytf68-trained model on 300W
trainval-train (checked on val) with N unlabelled faces, N = 0 meaning the branch is off. Every
run trains through :class:`~laplace_landmarks.training.Trainer` into ``OUT/<name>/``; finished
runs are skipped, partial ones resumed, and ``shard=(k, n)`` trains every n-th run from the k-th
(1-based) so several processes can share one grid. The summary (``OUT/summary.json``,
``OUT/summary.md``) gives per (width, N) the best validation NME as mean ± sample std over seeds
and per width a verdict (:func:`verdict`).
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from laplace_landmarks.atomic import make_folder
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.outputs import printable
from laplace_landmarks.sharding import take_shard

# width name -> the shipped ytf68-trained model the run fine-tunes (its network sets the width)
STUDY_WIDTHS = {"fast": "rcn-lite-ytf68", "default": "rcn-lite-accurate-ytf68"}
STUDY_RECIPE = "improved-lite"


@dataclass(frozen=True)
class StudyRun:
    """One run of the grid; ``num_unlabeled`` 0 = adversarial branch off, None = all faces."""

    width: str
    num_unlabeled: int | None
    seed: int

    @property
    def n_label(self) -> str:
        return "all" if self.num_unlabeled is None else str(self.num_unlabeled)

    @property
    def name(self) -> str:
        return f"{self.width}-n{self.n_label}-s{self.seed}"


def parse_n(text: str) -> int | None:
    """``"all"`` -> None, ``"1000"`` -> 1000; a negative or non-integer N is a LandmarksError."""
    if text.strip().lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise LandmarksError(f"n: expected a whole number or 'all', got {text!r}") from None
    if value < 0:
        raise LandmarksError(f"n: must be >= 0 or 'all', got {value}")
    return value


def study_runs(
    widths: list[str], ns: list[int | None], seeds: list[int], shard: tuple[int, int] = (1, 1)
) -> list[StudyRun]:
    """The grid in training order: widths in the given order (cheap first), then seeds, then N,
    so seed 0 of every N comes before seed 1; then this shard's share (every n-th from the k-th)."""
    unknown = [w for w in widths if w not in STUDY_WIDTHS]
    if unknown:
        raise LandmarksError(
            f"widths: unknown width {unknown[0]!r}; choose from {list(STUDY_WIDTHS)}"
        )
    runs = [StudyRun(w, num, s) for w in widths for s in seeds for num in ns]
    return take_shard(runs, shard)


def init_weights(width: str) -> str:
    """The shipped ytf68-trained model a width fine-tunes (its network sets the width)."""
    return STUDY_WIDTHS[width]


def run_config(run: StudyRun, epochs: int, overrides: dict | None = None):
    """The resolved RunConfig of one run: improved-lite fine-tuned from the width's shipped model
    on 300W trainval-train / val, lr 1e-3 cosine; ``overrides`` (dotted) go on top."""
    from laplace_landmarks.config import resolve_config

    settings = {
        "train.init_from": init_weights(run.width),
        "train.epochs": epochs,
        "train.lr": 1e-3,
        "train.schedule": "cosine",
        "train.seed": run.seed,
        "data.dataset": "300w",
        "data.train_split": "trainval-train",
        "data.val_split": "val",
        "adversarial.enabled": run.num_unlabeled != 0,
        "adversarial.num_unlabeled": run.num_unlabeled or None,
        **(overrides or {}),
    }
    return resolve_config(STUDY_RECIPE, settings, init_model=True)


def read_run(out_dir: Path, epochs: int) -> dict:
    """A run folder's state from its metrics.csv: epochs done, best val NME, finished."""
    path = out_dir / "metrics.csv"
    rows = list(csv.DictReader(path.open())) if path.is_file() else []
    nmes = [float(row["val_nme"]) for row in rows]
    return {
        "epochs_done": len(rows),
        "best_val_nme": min(nmes) if nmes else None,
        "finished": len(rows) >= epochs,
    }


def train_study(
    runs: list[StudyRun],
    out: Path,
    epochs: int,
    overrides: dict | None = None,
    progress: bool = False,
) -> list[str]:
    """Train every run not yet finished (resuming partial ones); returns the names trained."""
    from laplace_landmarks.training import Trainer

    trained = []
    for index, run in enumerate(runs, 1):
        folder = out / run.name
        if read_run(folder, epochs)["finished"]:
            print(f"study: [{index}/{len(runs)}] {run.name}: finished, skipped", file=sys.stderr)
            continue
        print(f"study: [{index}/{len(runs)}] {run.name}: training", file=sys.stderr)
        trainer = Trainer(
            run_config(run, epochs, overrides), folder, resume=True, progress=progress
        )
        trainer.fit()
        trained.append(run.name)
    return trained


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None for fewer than 1 / 2 values)."""
    mean = statistics.fmean(values) if values else None
    std = statistics.stdev(values) if len(values) >= 2 else None
    return mean, std


def difference(treated: list[float], control: list[float]) -> tuple[float | None, float | None]:
    """mean(treated) - mean(control) and its standard error sqrt(s_t²/n_t + s_c²/n_c)
    (None when either side has fewer than 2 values)."""
    if not treated or not control:
        return None, None
    diff = statistics.fmean(treated) - statistics.fmean(control)
    if len(treated) < 2 or len(control) < 2:
        return diff, None
    se = math.sqrt(
        statistics.variance(treated) / len(treated) + statistics.variance(control) / len(control)
    )
    return diff, se


def verdict(diff: float | None, se: float | None) -> str:
    """Of the best +D(N) against N = 0 (diff = NME(+D(N)) - NME(N=0), lower NME is better):
    "held" if diff < -2·se, "not held" if diff >= 0, else "inconclusive" (also without data)."""
    if diff is None:
        return "inconclusive"
    if diff >= 0:
        return "not held"
    if se is not None and diff < -2 * se:
        return "held"
    return "inconclusive"


def summarize(
    out: Path,
    widths: list[str],
    ns: list[int | None],
    seeds: list[int],
    epochs: int,
    command: str = "",
    overrides: dict | None = None,
) -> dict:
    """Read every run of the full grid (all shards), write OUT/summary.json and OUT/summary.md."""
    from laplace_landmarks.machine import cpu_name

    cells, verdicts = [], {}
    for width in widths:
        control = _finished_nmes(out, width, 0, seeds, epochs)
        best = None
        for num in ns:
            runs = [StudyRun(width, num, seed) for seed in seeds]
            states = {run.name: read_run(out / run.name, epochs) for run in runs}
            nmes = [s["best_val_nme"] for s in states.values() if s["finished"]]
            mean, std = mean_std(nmes)
            diff, se = (None, None) if num == 0 else difference(nmes, control)
            cell = {
                "width": width, "init_from": STUDY_WIDTHS[width], "n": runs[0].n_label,
                "finished": len(nmes), "planned": len(runs), "mean": mean, "std": std,
                "diff_vs_n0": diff, "se_diff": se,
                "missing": [name for name, s in states.items() if not s["finished"]],
                "partial": {n: s["epochs_done"] for n, s in states.items()
                            if 0 < s["epochs_done"] < epochs},
                "runs": {name: s["best_val_nme"] for name, s in states.items() if s["finished"]},
            }  # fmt: skip
            cells.append(cell)
            if diff is not None and (best is None or cell["mean"] < best["mean"]):
                best = cell
        verdicts[width] = {
            "verdict": verdict(best and best["diff_vs_n0"], best and best["se_diff"]),
            "best_n": best and best["n"],
        }
    summary = {
        "question": "does the adversarial branch +D(N) lower the best validation NME?",
        "setting": _setting(epochs, overrides),
        "seeds": seeds,
        "cells": cells,
        "verdicts": verdicts,
        "command": command,
        "machine": cpu_name(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(printable(summary_markdown(summary)), encoding="utf-8")
    return summary


def _finished_nmes(out: Path, width: str, num: int | None, seeds: list[int], epochs: int):
    states = [read_run(out / StudyRun(width, num, seed).name, epochs) for seed in seeds]
    return [s["best_val_nme"] for s in states if s["finished"]]


def _setting(epochs: int, overrides: dict | None) -> str:
    extra = ", ".join(f"{k} = {v}" for k, v in sorted((overrides or {}).items()))
    return (
        f"fine-tuning from the shipped ytf68-trained weights (fast = rcn-lite-ytf68, width 1/8 "
        f"depth 2; default = rcn-lite-accurate-ytf68, width 1/2), recipe {STUDY_RECIPE}, {epochs} epochs, "
        "lr 1e-3 cosine, on 300W trainval-train / val (850 / 120 faces on the full data), "
        "carved by photo; N unlabelled faces (--num-unlabeled N: a subset drawn with the run's "
        "seed; N = 0: adversarial branch off; all: the whole pool, ~4,500 faces by default); "
        "metric: best validation NME (%, inter-ocular) over the epochs"
        + (f"; overrides: {extra}" if extra else "")
    )


def summary_markdown(summary: dict) -> str:
    """The summary as markdown: setting, table, verdicts, command, machine."""

    def fmt(value, spec=".3f"):
        return "–" if value is None else format(value, spec)

    lines = [
        "# +D(N) with few labelled faces: 300W fine-tuning study", "",
        f"Setting: {summary['setting']}.", "",
        "| width | N | finished | best val NME (mean ± std) | Δ vs N=0 (± SE) | missing |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for c in summary["cells"]:
        delta = "" if c["n"] == "0" else f"{fmt(c['diff_vs_n0'], '+.3f')} ± {fmt(c['se_diff'])}"
        missing = ", ".join(
            f"{name} ({c['partial'][name]} epochs)" if name in c["partial"] else name
            for name in c["missing"]
        )
        lines.append(
            f"| {c['width']} | {c['n']} | {c['finished']}/{c['planned']} | "
            f"{fmt(c['mean'])} ± {fmt(c['std'])} | {delta} | {missing} |"
        )
    lines += ["", "Verdicts (held: the best +D(N) mean is below N=0's by more than 2 SE of the "
              "difference; not held: not lower; inconclusive otherwise):", ""]  # fmt: skip
    for width, v in summary["verdicts"].items():
        lines.append(f"- {width}: **{v['verdict']}** (best N = {v['best_n']})")
    lines += ["", f"Command: `{summary['command']}`", "", f"Machine: {summary['machine']}", ""]
    return "\n".join(lines)


def unlabeled_study(
    out: str | Path,
    widths: list[str] = ("fast", "default"),
    ns: list[int | None] = (0, 1000, 2000, None),
    seeds: list[int] = (0, 1, 2),
    epochs: int = 40,
    shard: tuple[int, int] = (1, 1),
    report_only: bool = False,
    overrides: dict | None = None,
    command: str = "",
    progress: bool = False,
) -> dict:
    """Train this shard's share of the grid (unless ``report_only``), then summarise the grid.

    ``overrides`` are dotted config overrides for every run (``train.threads``, ``data.root``,
    ``adversarial.unlabeled``, ``data.max_train``, ... ); returns the summary dict."""
    out = Path(out)
    widths, ns, seeds = list(widths), list(ns), list(seeds)
    runs = study_runs(widths, ns, seeds, shard)
    make_folder(out)
    if not report_only:
        train_study(runs, out, epochs, overrides, progress)
    return summarize(out, widths, ns, seeds, epochs, command, overrides)


__all__ = [
    "STUDY_WIDTHS",
    "StudyRun",
    "difference",
    "parse_n",
    "study_runs",
    "summarize",
    "unlabeled_study",
    "verdict",
]
