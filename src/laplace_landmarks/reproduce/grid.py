"""Define, train and score the reproduction grid: options, run specs, training and TEST scoring."""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from laplace_landmarks.config import TRAIN_FLAG_OVERRIDES as OVERRIDES
from laplace_landmarks.config import RunConfig, resolve_config
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.sharding import check_shard, take_shard

FULL_WIDTHS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
TARGET_SCALES = (0.5, 1.0, 2.0, 4.0)
LOSSES = ("softargmax", "laplacekl", "gaussiankl")
FULL_N = (0, 1000, 2500, None)  # 0 = no discriminator, None = every unlabelled face
IGNORED_FIELDS = {("train", "epochs"), ("train", "threads"), ("data", "cache_dir")}


@dataclass(frozen=True)
class GridOptions:
    """What to run. ``None`` fields take the preset's defaults (see `resolve_options`).

    ``quick`` and ``small`` pick a preset (at most one; neither = the full grid). ``shard``
    ``(k, n)`` trains and scores only every n-th run starting at the k-th (1-based), so n
    processes or machines can share a grid; a later call without it writes the page.
    """

    quick: bool = False
    small: bool = False
    shard: tuple[int, int] | None = None
    report_only: bool = False  # train nothing; score the finished runs and page what exists
    out: Path | None = None
    results: Path = Path("docs/reproduction.md")
    seeds: int | None = None
    epochs: int | None = None
    threads: int | None = None
    data_root: str | None = None  # ytf68 folder or the data root holding it
    unlabeled: str | None = None  # default <data root>/unlabeled/ytf
    cache_dir: str | None = None
    batch_size: int | None = None
    max_train: int | None = None
    progress: bool = True
    bench_seconds: float | None = None
    d_width: int | None = None  # D's base width (recipes: 64; quick: 16)
    d_batch_size: int | None = None  # unlabelled faces per step (recipes: 32; quick: 16)
    d_every: int | None = None  # D step on every n-th batch (recipes: 1; small: 4)
    widths: tuple[float, ...] | None = None  # Table 3's widths (full: 1/16..1; else 1/16, 1/8)
    device: str = "cpu"  # where the runs train (cpu, cuda, auto)
    command: str = "laplace-landmarks reproduce"


def preset(opts: GridOptions) -> str:
    """``"quick"``, ``"small"`` or ``"full"``."""
    return "quick" if opts.quick else "small" if opts.small else "full"


# Defaults per preset: quick (a smoke run), small (what 2 CPU cores finish in about 2 hours:
# the quick grid's shape on every training face, 3 seeds, 5 epochs) and full (the paper's).
PRESET_DEFAULTS: dict[str, dict[str, Any]] = {
    "out": {
        "quick": "runs/reproduce-quick",
        "small": "runs/reproduce-small",
        "full": "runs/reproduce",
    },
    "seeds": {"quick": 1, "small": 3, "full": 3},
    "epochs": {"quick": 3, "small": 5, "full": 200},
    "max_train": {"quick": 256, "small": None, "full": None},
    "bench_seconds": {"quick": 1.0, "small": 2.0, "full": 5.0},
    "d_width": {"quick": 16, "small": 16, "full": None},
    "d_batch_size": {"quick": 16, "small": 16, "full": None},
    "d_every": {"quick": None, "small": 4, "full": None},
}


def resolve_options(opts: GridOptions) -> GridOptions:
    """Fill the preset's defaults and check the values."""
    if opts.quick and opts.small:
        raise LandmarksError("--quick and --small are different presets; pick one")
    kind = preset(opts)

    def pick(name: str) -> Any:
        value = getattr(opts, name)
        return value if value is not None else PRESET_DEFAULTS[name][kind]

    filled = dataclasses.replace(
        opts,
        **{name: pick(name) for name in PRESET_DEFAULTS},
        unlabeled=str(opts.unlabeled or _default_unlabeled(opts.data_root)),
    )
    filled = dataclasses.replace(filled, out=Path(filled.out))
    if filled.shard is not None:
        check_shard(filled.shard)
    names = ("seeds", "epochs", "threads", "batch_size", "max_train", "d_width", "d_batch_size")
    names += ("d_every",)
    for name in names:
        value = getattr(filled, name)
        if value is not None and value < 1:
            raise LandmarksError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if filled.widths is not None and (
        not filled.widths or any(not 0 < w <= 1 for w in filled.widths)
    ):
        raise LandmarksError(f"--widths must be in (0, 1], got {filled.widths}")
    if not filled.bench_seconds > 0:
        raise LandmarksError(f"--bench-seconds must be > 0, got {filled.bench_seconds}")
    if not Path(filled.unlabeled).is_dir():
        raise LandmarksError(f"unlabeled: folder {filled.unlabeled} not found (give --unlabeled)")
    if pool_size(filled.unlabeled) == 0:
        raise LandmarksError(f"unlabeled: no images in {filled.unlabeled}")
    return filled


def _default_unlabeled(data_root: str | None) -> Path:
    from laplace_landmarks.data.datasets import default_data_root

    base = Path(data_root) if data_root else default_data_root()
    if base is None:
        raise LandmarksError("no data root: pass --data-root or set LAPLACE_LANDMARKS_DATA_ROOT")
    for candidate in (base / "unlabeled" / "ytf", base.parent / "unlabeled" / "ytf"):
        if candidate.is_dir():
            return candidate
    raise LandmarksError(f"unlabeled: no unlabeled/ytf beside {base}; give --unlabeled")


@dataclass(frozen=True)
class RunSpec:
    """One training run of the grid. ``num_unlabeled``: 0 = no D, None = all of the pool."""

    loss: str
    width: float
    num_unlabeled: int | None
    target_scale: float
    seed: int

    @property
    def adversarial(self) -> bool:
        return self.num_unlabeled != 0

    @property
    def name(self) -> str:
        d = "d0" if not self.adversarial else f"d{self.num_unlabeled or 'all'}"
        return f"{self.loss}-w{self.width:g}-{d}-bt{self.target_scale:g}-s{self.seed}"

    @property
    def label(self) -> str:
        pretty = {"softargmax": "Softargmax", "laplacekl": "LaplaceKL", "gaussiankl": "GaussianKL"}
        if not self.adversarial:
            return pretty[self.loss]
        return f"{pretty[self.loss]}+D({self.num_unlabeled or 'all'})"

    def recipe_and_flags(self, opts: GridOptions) -> tuple[str, dict[str, Any]]:
        """The train command's recipe and flags (names as in `config.TRAIN_FLAG_OVERRIDES`)."""
        if self.adversarial:
            recipe = "paper-softargmax-adv" if self.loss == "softargmax" else "paper-laplacekl-adv"
        else:
            recipe = f"paper-{self.loss}"
        flags: dict[str, Any] = {"width": self.width, "seed": self.seed, "epochs": opts.epochs}
        if self.adversarial and self.loss == "gaussiankl":
            flags["loss"] = "gaussiankl"  # the LaplaceKL+D recipe with the Gaussian loss
        if self.loss != "softargmax":
            flags["target_scale"] = self.target_scale
        flags.update(data_root=opts.data_root, max_train=opts.max_train)
        flags.update(batch_size=opts.batch_size, threads=opts.threads)
        if self.adversarial:
            flags.update(unlabeled=opts.unlabeled, num_unlabeled=self.num_unlabeled)
        return recipe, {k: v for k, v in flags.items() if v is not None}

    def discriminator_overrides(self, opts: GridOptions) -> dict[str, int]:
        """D settings that have no train flag (set in the config; shown in the command)."""
        if not self.adversarial:
            return {}
        d = {
            "adversarial.base_width": opts.d_width,
            "adversarial.batch_size": opts.d_batch_size,
            "adversarial.every": opts.d_every,
        }
        return {k: v for k, v in d.items() if v is not None}

    def config(self, opts: GridOptions) -> RunConfig:
        recipe, flags = self.recipe_and_flags(opts)
        overrides = {OVERRIDES[k]: v for k, v in flags.items()}
        return resolve_config(recipe, {**overrides, **self.discriminator_overrides(opts)})

    def command(self, opts: GridOptions) -> str:
        recipe, flags = self.recipe_and_flags(opts)
        flags.pop("threads", None)
        parts = [f"laplace-landmarks train --recipe {recipe}"]
        parts += [
            f"--{k.replace('_', '-')} {v:g}"
            if isinstance(v, float)
            else f"--{k.replace('_', '-')} {v}"
            for k, v in flags.items()
        ]
        parts.append(f"--out {Path(opts.out) / self.name}")
        extra = self.discriminator_overrides(opts)
        if extra:  # no train flag for these: they live in the run's config.json
            parts.append("(config: " + ", ".join(f"{k}={v}" for k, v in extra.items()) + ")")
        return " ".join(parts)


def pool_size(folder: str | Path) -> int:
    """Number of image files in the unlabelled folder (before face detection)."""
    from laplace_landmarks.data.datasets import IMAGE_SUFFIXES

    return sum(1 for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def build_grid(opts: GridOptions) -> dict[str, list[RunSpec]]:
    """The runs of each table, keyed ``table2``, ``table3``, ``fig4`` (runs may be shared)."""
    seeds = range(opts.seeds)
    pool = pool_size(opts.unlabeled)
    full = preset(opts) == "full"
    width = 1 / 4 if full else 1 / 8
    wanted_n = FULL_N if full else (0, None)
    ns = list(dict.fromkeys(None if n and n >= pool else n for n in wanted_n))
    widths = opts.widths or (FULL_WIDTHS if full else (1 / 16, 1 / 8))
    scales = TARGET_SCALES if full else (0.5, 1.0, 2.0)
    table3 = [("softargmax", 0), ("laplacekl", 0), ("laplacekl", None)]
    return {
        "table2": [RunSpec(lo, width, n, 1.0, s) for lo in LOSSES for n in ns for s in seeds],
        "table3": [RunSpec(lo, w, n, 1.0, s) for w in widths for lo, n in table3 for s in seeds],
        "fig4": [RunSpec("laplacekl", width, 0, b, s) for b in scales for s in seeds],
    }


def _differences(saved: RunConfig, wanted: RunConfig) -> list[str]:
    a, b = saved.to_dict(), wanted.to_dict()
    return [
        f"{section}.{key}: {a[section][key]!r} -> {value!r}"
        for section, fields in b.items()
        if isinstance(fields, dict)
        for key, value in fields.items()
        if (section, key) not in IGNORED_FIELDS and a[section].get(key) != value
    ]


def _saved_epochs(spec: RunSpec, opts: GridOptions) -> int | None:
    """Epochs done in the run's ``last.pt`` (None when there is none); a folder holding a
    different run (another config, or more epochs than asked) is an error."""
    from laplace_landmarks.checkpoints import load_checkpoint

    config, run_dir = spec.config(opts), Path(opts.out) / spec.name
    if not (run_dir / "last.pt").exists():
        return None
    payload = load_checkpoint(run_dir / "last.pt")
    saved = RunConfig.from_dict(payload["config"])
    changed = _differences(saved, config)
    if changed or saved.train.epochs > config.train.epochs:
        changed += [f"train.epochs: {saved.train.epochs} -> {config.train.epochs}"]
        raise LandmarksError(
            f"{run_dir} holds a different run ({'; '.join(changed)}); use another --out"
        )
    return int(payload["epoch"])


def run_finished(spec: RunSpec, opts: GridOptions) -> bool:
    """Whether the run's folder holds all its epochs and a best checkpoint (see `_saved_epochs`)."""
    done = _saved_epochs(spec, opts)
    best = Path(opts.out) / spec.name / "best.pt"
    return done is not None and done >= opts.epochs and best.exists()


def train_run(spec: RunSpec, opts: GridOptions, cache_dir: Path) -> str:
    """Train (or resume, or skip) one run; returns "trained", "resumed" or "finished"."""
    from laplace_landmarks.training import Trainer

    done = _saved_epochs(spec, opts)
    if done is not None and done >= opts.epochs:
        return "finished"
    run_dir = Path(opts.out) / spec.name
    config, resume = spec.config(opts), done is not None
    Trainer(
        config,
        run_dir,
        resume=resume,
        progress=opts.progress,
        cache_dir=cache_dir,
        device=opts.device,
    ).fit()
    return "trained" if done is None else "resumed"


def unlabeled_used(spec: RunSpec, opts: GridOptions, cache_dir: Path) -> int:
    """How many unlabelled faces the run really used (detected faces of its N-image subset)."""
    from laplace_landmarks.data.cache import build_crop_cache
    from laplace_landmarks.data.datasets import load_dataset

    if not spec.adversarial:
        return 0
    config = spec.config(opts)
    a = config.adversarial
    dataset = load_dataset(
        "unlabeled", "all", root=a.unlabeled, seed=config.train.seed, max_images=a.num_unlabeled
    )
    return len(build_crop_cache(dataset, cache_dir, size=config.data.size, progress=False))


def evaluate_run(spec: RunSpec, opts: GridOptions, cache_dir: Path) -> dict[str, Any]:
    """Score ``best.pt`` on ytf68 TEST (cached in ``test-eval.json`` while best.pt is unchanged)."""
    from laplace_landmarks.checkpoints import load_checkpoint
    from laplace_landmarks.evaluation_run import evaluate_checkpoint, write_json_atomic

    run_dir = Path(opts.out) / spec.name
    best, cached = run_dir / "best.pt", run_dir / "test-eval.json"
    if cached.exists() and cached.stat().st_mtime_ns >= best.stat().st_mtime_ns:
        result = json.loads(cached.read_text())
        if result.get("run", {}).get("epochs") == opts.epochs:
            return result
    result = evaluate_checkpoint(
        best, "ytf68", "test", root=opts.data_root, cache_dir=cache_dir, threads=opts.threads
    )
    payload = load_checkpoint(best)
    history = load_checkpoint(run_dir / "last.pt")["metrics"]
    result["run"] = {
        "name": spec.name,
        "best_epoch": int(payload["epoch"]),
        "best_val_nme": float(payload["best_val_nme"]),
        "epochs": opts.epochs,
        "epochs_run": len(history),
        "num_unlabeled_used": unlabeled_used(spec, opts, cache_dir),
        "command": spec.command(opts),
    }
    write_json_atomic(result, cached)
    return result


def measure_width(width: float, seconds: float) -> dict[str, float]:
    """Parameters, fp32 storage (MB) and single-thread batch-1 speed (faces/s) of one width."""
    from laplace_landmarks.models import count_parameters, create_model, storage_mb

    model = create_model("rcn", width=width).eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    image, times = torch.zeros(1, 3, 80, 80), []
    try:
        with torch.inference_mode():
            model(image)
            while len(times) < 3 or sum(times) < seconds:
                start = time.perf_counter()
                model(image)
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return {
        "params": count_parameters(model),
        "storage_mb": storage_mb(model),
        "fps": 1.0 / statistics.median(times),
    }


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_grid(opts: GridOptions) -> dict[str, Any]:
    """Train and score every run, measure each width; returns everything the page needs."""
    from laplace_landmarks.training import default_cache_dir

    opts = resolve_options(opts)
    cache_dir = Path(opts.cache_dir) if opts.cache_dir else default_cache_dir()
    grid = build_grid(opts)
    runs = list({spec.name: spec for specs in grid.values() for spec in specs}.values())
    runs = take_shard(runs, opts.shard)
    results: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    for index, spec in enumerate(runs, 1):
        if opts.report_only:
            if not run_finished(spec, opts):
                missing.append(spec.name)
                _log(f"[{index}/{len(runs)}] {spec.name}: not finished; left out")
                continue
            state = "finished"
        else:
            _log(f"[{index}/{len(runs)}] {spec.name}: training")
            state = train_run(spec, opts, cache_dir)
        results[spec.name] = evaluate_run(spec, opts, cache_dir)
        nme = results[spec.name]["summary"]["nme_percent"]["inter-ocular"]
        _log(f"[{index}/{len(runs)}] {spec.name}: {state}; test NME {nme:.2f}%")
    if opts.shard is not None:  # a share of the grid: no bench, no page
        return {"options": opts, "grid": grid, "results": results, "bench": {}, "pool": 0}
    widths = sorted({spec.width for spec in grid["table3"]})
    bench = {f"{w:g}": measure_width(w, opts.bench_seconds) for w in widths}
    if not results:
        raise LandmarksError(f"no finished runs under {opts.out}; nothing to report")
    return {
        "options": opts,
        "grid": grid,
        "results": results,
        "bench": bench,
        "pool": pool_size(opts.unlabeled),
        "missing": missing,
    }
