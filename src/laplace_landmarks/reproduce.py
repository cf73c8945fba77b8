"""The paper's comparison grid on ytf68: train every config, score it on TEST, write the page.

Each run trains with the `Trainer` into ``OUT/<run-name>/`` with resume semantics (finished runs
are skipped, partial ones continue from ``last.pt``), so the grid can be continued across
sessions. The best epoch is chosen on the validation split (``trainval-train`` / ``val``, split
by identity); only that ``best.pt`` is scored on the ytf68 TEST split (5-point crops, image
pixels), so no hyperparameter is chosen on test. `write_results` renders the page.

Full grid (``width`` 1/4, ``seeds`` seeds, 200 epochs unless ``--epochs``):
- Table 2 analogue: softargmax / LaplaceKL / GaussianKL, each with N in {0 (no D), 1000, 2500, all}
  unlabelled faces. N at or above the pool's size is "all" (run once, labelled as such).
- Table 3 analogue: widths 1/16 ... 1 for softargmax, LaplaceKL, LaplaceKL + D(all).
- Fig. 4 analogue: LaplaceKL's target scale b_t in {0.5, 1, 2, 4} px.
The quick grid (``--quick``) is one seed, width 1/8, 3 epochs and 256 training faces, with a
discriminator of base width 16 fed 16 unlabelled faces per step (recipes: 64 and 32): a smoke
run of the whole pipeline, not a result.

Unlabelled pool: ``<data root>/unlabeled/ytf`` (1,081 clean frames of ytf68 training identities;
about 1,050 have a dlib detection). ``unlabeled/lfw`` is avoided: its images carry a drawn green
box and landmark dots, a trivial cue for the discriminator.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import time
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch

from laplace_landmarks.atomic import atomic_write_text
from laplace_landmarks.commands.train import OVERRIDES
from laplace_landmarks.config import RunConfig, resolve_config
from laplace_landmarks.errors import LandmarksError

FULL_WIDTHS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
TARGET_SCALES = (0.5, 1.0, 2.0, 4.0)
LOSSES = ("softargmax", "laplacekl", "gaussiankl")
FULL_N = (0, 1000, 2500, None)  # 0 = no discriminator, None = every unlabelled face
IGNORED_FIELDS = {("train", "epochs"), ("train", "threads"), ("data", "cache_dir")}


@dataclass(frozen=True)
class GridOptions:
    """What to run. ``None`` fields take the full or quick defaults (see `resolve_options`)."""

    quick: bool = False
    out: Path | None = None
    results: Path = Path("docs/results.md")
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
    command: str = "laplace-landmarks reproduce"


def resolve_options(opts: GridOptions) -> GridOptions:
    """Fill the quick or full defaults and check the values."""
    quick = opts.quick

    def pick(value: Any, quick_default: Any, full_default: Any) -> Any:
        return value if value is not None else (quick_default if quick else full_default)

    filled = dataclasses.replace(
        opts,
        out=Path(pick(opts.out, "runs/reproduce-quick", "runs/reproduce")),
        seeds=pick(opts.seeds, 1, 3),
        epochs=pick(opts.epochs, 3, 200),
        max_train=pick(opts.max_train, 256, None),
        bench_seconds=pick(opts.bench_seconds, 1.0, 5.0),
        d_width=pick(opts.d_width, 16, None),
        d_batch_size=pick(opts.d_batch_size, 16, None),
        unlabeled=str(opts.unlabeled or _default_unlabeled(opts.data_root)),
    )
    names = ("seeds", "epochs", "threads", "batch_size", "max_train", "d_width", "d_batch_size")
    for name in names:
        value = getattr(filled, name)
        if value is not None and value < 1:
            raise LandmarksError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
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
        """The train command's recipe and flags (names as in `commands.train.OVERRIDES`)."""
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
        d = {"adversarial.base_width": opts.d_width, "adversarial.batch_size": opts.d_batch_size}
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
    width = 1 / 8 if opts.quick else 1 / 4
    wanted_n = (0, None) if opts.quick else FULL_N
    ns = list(dict.fromkeys(None if n and n >= pool else n for n in wanted_n))
    widths = (1 / 16, 1 / 8) if opts.quick else FULL_WIDTHS
    scales = (0.5, 1.0, 2.0) if opts.quick else TARGET_SCALES
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


def train_run(spec: RunSpec, opts: GridOptions, cache_dir: Path) -> str:
    """Train (or resume, or skip) one run; returns "trained", "resumed" or "finished"."""
    from laplace_landmarks.checkpoints import load_checkpoint
    from laplace_landmarks.training import Trainer

    config, run_dir = spec.config(opts), Path(opts.out) / spec.name
    state, resume = "trained", (run_dir / "last.pt").exists()
    if resume:
        payload = load_checkpoint(run_dir / "last.pt")
        saved = RunConfig.from_dict(payload["config"])
        changed = _differences(saved, config)
        if changed or saved.train.epochs > config.train.epochs:
            changed += [f"train.epochs: {saved.train.epochs} -> {config.train.epochs}"]
            raise LandmarksError(
                f"{run_dir} holds a different run ({'; '.join(changed)}); use another --out"
            )
        if int(payload["epoch"]) >= config.train.epochs:
            return "finished"
        state = "resumed"
    Trainer(config, run_dir, resume=resume, progress=opts.progress, cache_dir=cache_dir).fit()
    return state


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
    results: dict[str, dict[str, Any]] = {}
    for index, spec in enumerate(runs, 1):
        _log(f"[{index}/{len(runs)}] {spec.name}: training")
        state = train_run(spec, opts, cache_dir)
        results[spec.name] = evaluate_run(spec, opts, cache_dir)
        nme = results[spec.name]["summary"]["nme_percent"]["inter-ocular"]
        _log(f"[{index}/{len(runs)}] {spec.name}: {state}; test NME {nme:.2f}%")
    widths = sorted({spec.width for spec in grid["table3"]})
    bench = {f"{w:g}": measure_width(w, opts.bench_seconds) for w in widths}
    return {
        "options": opts,
        "grid": grid,
        "results": results,
        "bench": bench,
        "pool": pool_size(opts.unlabeled),
    }


# ---------------------------------------------------------------- the results page
BEGIN, END = "<!-- reproduce:begin -->", "<!-- reproduce:end -->"
QUICK_BEGIN, QUICK_END = "<!-- reproduce-quick:begin -->", "<!-- reproduce-quick:end -->"
PAPER_NME = {"Softargmax": 4.25, "LaplaceKL": 4.01, "GaussianKL": 4.71, "LaplaceKL+D(all)": 3.91}


def _metrics(result: dict[str, Any]) -> dict[str, float | None]:
    s, c = result["summary"], result["summary"]["calibration"]
    return {
        "nme": s["nme_percent"]["inter-ocular"],
        "nme_ip": s["nme_percent"]["inter-pupil"],
        "auc": s["auc"],
        "fr": 100 * s["failure_rate"],
        "b": result["mean_scale_crop_px"],
        "rho": result["spearman_crop_px"],
        "cov50": 100 * c["coverage_50"],
        "cov90": 100 * c["coverage_90"],
        "n_used": result["run"]["num_unlabeled_used"],
    }


def _stat(specs: list[RunSpec], results: dict, key: str) -> tuple[float | None, float | None]:
    """Mean and sample std (None for one seed) of a metric over the specs' seeds."""
    values = [_metrics(results[s.name])[key] for s in specs]
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _pm(stat: tuple[float | None, float | None], digits: int = 2) -> str:
    mean, std = stat
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _groups(specs: list[RunSpec]) -> dict[tuple, list[RunSpec]]:
    """Specs grouped over seeds, in grid order."""
    groups: dict[tuple, list[RunSpec]] = {}
    for spec in specs:
        key = dataclasses.astuple(dataclasses.replace(spec, seed=0))
        groups.setdefault(key, []).append(spec)
    return groups


def _seeds_epochs(specs: list[RunSpec], opts: GridOptions) -> str:
    return f"{','.join(str(s.seed) for s in specs)} | {opts.epochs}"


def _n_label(spec: RunSpec, pool: int, used: float | None) -> str:
    if not spec.adversarial:
        return "0 (no D)"
    asked = "all" if spec.num_unlabeled is None else f"{spec.num_unlabeled:,}"
    return f"{asked} of {pool:,} images -> {used:,.0f} faces"


def _table2(data: dict[str, Any]) -> list[str]:
    opts, results = data["options"], data["results"]
    lines = [
        "| model | N (asked -> used) | NME % io | NME % ip | AUC@0.08 | FR@0.08 % | mean b (crop px) "
        "| Spearman | cover 50/90 % | seeds | epochs | command (first seed) |",
        "|" + "---|" * 12,
    ]
    for specs in _groups(data["grid"]["table2"]).values():
        spec, stat = specs[0], (lambda key, s=specs: _stat(s, results, key))
        cover = f"{_pm(stat('cov50'), 1)} / {_pm(stat('cov90'), 1)}"
        row = [
            spec.label,
            _n_label(spec, data["pool"], stat("n_used")[0]),
            _pm(stat("nme")),
            _pm(stat("nme_ip")),
            _pm(stat("auc"), 4),
            _pm(stat("fr"), 1),
            _pm(stat("b")),
            _pm(stat("rho"), 3),
            cover,
            _seeds_epochs(specs, opts),
            f"`{spec.command(opts)}`",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _table3(data: dict[str, Any]) -> list[str]:
    opts, results, bench = data["options"], data["results"], data["bench"]
    groups = _groups(data["grid"]["table3"])
    labels = list(dict.fromkeys(specs[0].label for specs in groups.values()))
    lines = [
        "| width | params | storage MB (fp32) | faces/s (1 thread, batch 1) | "
        + " | ".join(f"{label} NME %" for label in labels)
        + " | seeds | epochs |",
        "|" + "---|" * (6 + len(labels)),
    ]
    for width in sorted({spec.width for spec in data["grid"]["table3"]}):
        cells = {specs[0].label: specs for specs in groups.values() if specs[0].width == width}
        b = bench[f"{width:g}"]
        row = [
            f"1/{round(1 / width)}" if width < 1 else "1",
            f"{b['params']:,}",
            f"{b['storage_mb']:.3f}",
            f"{b['fps']:.1f}",
        ]
        row += [_pm(_stat(cells[label], results, "nme")) for label in labels]
        row.append(_seeds_epochs(next(iter(cells.values())), opts))
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines += [f"- `{specs[0].command(opts)}`" for specs in groups.values()]
    return lines


def _fig4(data: dict[str, Any]) -> list[str]:
    opts, results = data["options"], data["results"]
    lines = [
        "| b_t (px) | NME % io | mean b (crop px) | cover 50/90 % | seeds | epochs | command |",
        "|" + "---|" * 7,
    ]
    for specs in _groups(data["grid"]["fig4"]).values():
        stat = lambda key, s=specs: _stat(s, results, key)  # noqa: E731
        cover = f"{_pm(stat('cov50'), 1)} / {_pm(stat('cov90'), 1)}"
        row = [
            f"{specs[0].target_scale:g}",
            _pm(stat("nme")),
            _pm(stat("b")),
            cover,
            _seeds_epochs(specs, opts),
            f"`{specs[0].command(opts)}`",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _pick(data: dict[str, Any], table: str, loss: str, n: int | None, **match: float) -> list:
    width = match.get("width", data["grid"]["table2"][0].width)
    return [
        s
        for s in data["grid"][table]
        if (s.loss, s.num_unlabeled, s.width, s.target_scale)
        == (loss, n, width, match.get("bt", 1.0))
    ]


def _verdict(better: list, worse: list, results: dict, key: str = "nme") -> tuple[str, str]:
    """("held"/"not held" with a noise note, "a vs b") for mean(better) < mean(worse)."""
    (m1, s1), (m2, s2) = _stat(better, results, key), _stat(worse, results, key)
    if m1 is None or m2 is None:
        return "not measured", "–"
    word = "**held**" if m1 < m2 else "**not held**"
    noise = max(s1 or 0.0, s2 or 0.0)
    if abs(m1 - m2) <= noise:
        word += " (difference within one seed std)"
    elif s1 is None and s2 is None:
        word += " (one seed: no noise estimate)"
    return word, f"{_pm((m1, s1))} vs {_pm((m2, s2))}"


def _claims(data: dict[str, Any]) -> list[str]:
    r = data["results"]
    s0, l0, g0 = (_pick(data, "table2", loss, 0) for loss in LOSSES)
    sa, la = _pick(data, "table2", "softargmax", None), _pick(data, "table2", "laplacekl", None)
    lines = []

    def add(claim: str, verdict: tuple[str, str], what: str) -> None:
        lines.append(f"- {claim}: {verdict[0]} on our data; {what} {verdict[1]}.")

    add(
        "LaplaceKL beats softargmax (paper, 300W full: 4.01 vs 4.25)",
        _verdict(l0, s0, r),
        "test NME % LaplaceKL vs softargmax",
    )
    add(
        "GaussianKL is worse than LaplaceKL (paper: 4.71 vs 4.01)",
        _verdict(l0, g0, r),
        "test NME % LaplaceKL vs GaussianKL",
    )
    add(
        "Unlabelled faces help LaplaceKL (paper: 4.01 -> 3.91 with 70K)",
        _verdict(la, l0, r),
        "test NME % LaplaceKL+D(all) vs LaplaceKL",
    )
    ns = list(dict.fromkeys(s.num_unlabeled for s in data["grid"]["table2"]))
    curve = [_stat(_pick(data, "table2", "laplacekl", n), r, "nme")[0] for n in ns]
    falls = all(a is not None and b is not None and b <= a for a, b in pairwise(curve))
    shown = ", ".join(
        f"N={'all' if n is None else n}: {_pm((m, None))}" for n, m in zip(ns, curve, strict=True)
    )
    lines.append(
        f"- Error falls as N grows (paper: 4.01 -> 3.99 -> 3.96 -> 3.94 -> 3.91): "
        f"{'**held**' if falls else '**not held**'} on our data; LaplaceKL test NME % {shown}."
    )
    gain_l = [a - b for a, b in zip(_values(l0, r), _values(la, r), strict=True)]
    gain_s = [a - b for a, b in zip(_values(s0, r), _values(sa, r), strict=True)]
    if gain_l and gain_s:
        held = statistics.fmean(gain_l) > statistics.fmean(gain_s)
        lines.append(
            f"- LaplaceKL gains more from unlabelled faces than softargmax: "
            f"{'**held**' if held else '**not held**'} on our data; NME gain from +D(all) "
            f"{statistics.fmean(gain_l):.2f} (LaplaceKL) vs {statistics.fmean(gain_s):.2f} "
            f"(softargmax) points."
        )
    add(
        "Confidence: LaplaceKL+D heatmaps spread less than softargmax+D (paper: 1.02 vs 2.59 px)",
        _verdict(la, sa, r, "b"),
        "mean predicted b (80x80 crop px) LaplaceKL+D vs softargmax+D",
    )
    lines += _width_claims(data)
    scales = sorted({s.target_scale for s in data["grid"]["fig4"]})
    means = [_stat(_pick(data, "fig4", "laplacekl", 0, bt=b), r, "nme")[0] for b in scales]
    best = scales[min(range(len(scales)), key=lambda i: means[i])]
    lines.append(
        f"- The best target scale b_t is about 1 px (paper Fig. 4): "
        f"{'**held**' if best == 1.0 else '**not held**'} on our data; best b_t = {best:g} px "
        f"(NME % " + ", ".join(f"{b:g}: {m:.2f}" for b, m in zip(scales, means, strict=True)) + ")."
    )
    return lines


def _values(specs: list[RunSpec], results: dict) -> list[float]:
    return [_metrics(results[s.name])["nme"] for s in specs]


def _width_claims(data: dict[str, Any]) -> list[str]:
    r, widths = data["results"], sorted({s.width for s in data["grid"]["table3"]})

    def nme(loss: str, n: int | None, w: float) -> float | None:
        return _stat(_pick(data, "table3", loss, n, width=w), r, "nme")[0]

    lk = [nme("laplacekl", 0, w) for w in widths]
    sm = [nme("softargmax", 0, w) for w in widths]
    ld = [nme("laplacekl", None, w) for w in widths]
    beat = [a < b for a, b in zip(lk, sm, strict=True)]
    beat_d = [a < b for a, b in zip(ld, lk, strict=True)]
    mono = all(b <= a for a, b in pairwise(lk))
    names = ", ".join(f"{w:g}" for w in widths)
    return [
        f"- LaplaceKL beats softargmax at every width (paper Table 3): "
        f"{'**held**' if all(beat) else '**not held**'} on our data; held at "
        f"{sum(beat)} of {len(widths)} widths ({names}).",
        f"- LaplaceKL+D beats LaplaceKL at every width (paper Table 3): "
        f"{'**held**' if all(beat_d) else '**not held**'} on our data; held at "
        f"{sum(beat_d)} of {len(widths)} widths.",
        f"- Wider is better (paper Table 3: 7.38 -> 4.01 from 1/16 to 1): "
        f"{'**held**' if mono else '**not held**'} on our data; LaplaceKL NME % "
        + ", ".join(f"{w:g}: {v:.2f}" for w, v in zip(widths, lk, strict=True))
        + ".",
    ]


def _figures(data: dict[str, Any], folder: Path, prefix: str) -> dict[str, Path]:
    from laplace_landmarks.plots import _figure, _save_figure, plot_ced

    r, errors = data["results"], {}
    for specs in _groups(data["grid"]["table2"]).values():
        if specs[0].num_unlabeled in (0, None):
            per_face = [e for e in r[specs[0].name]["per_face_nme"] if e == e]
            errors[f"{specs[0].label} (seed {specs[0].seed})"] = per_face
    ced = plot_ced(errors, folder / f"{prefix}-ced.png")
    fig = _figure()
    ax = fig.add_subplot()
    groups = list(_groups(data["grid"]["fig4"]).values())
    stats = [_stat(specs, r, "nme") for specs in groups]
    xs = [specs[0].target_scale for specs in groups]
    ax.errorbar(xs, [m for m, _ in stats], yerr=[s or 0.0 for _, s in stats], fmt="o-")
    ax.set(
        xscale="log",
        xlabel="target scale b_t (px, 80x80 crop)",
        ylabel="test NME % (io)",
        title="LaplaceKL: b_t sweep",
    )
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.tick_params(axis="x", which="minor", labelbottom=False)
    ax.grid(alpha=0.3)
    return {"ced": ced, "bt": _save_figure(fig, folder / f"{prefix}-bt-sweep.png")}


def _header(data: dict[str, Any]) -> list[str]:
    """The section's bullet list: command, data, protocol, pool, machine."""
    import os
    import platform

    opts = data["options"]
    first = next(iter(data["results"].values()))
    collapsed = [n for n in FULL_N if n and n >= data["pool"]]
    same = (
        f" N = {', '.join(f'{n:,}' for n in collapsed)} asks for at least the whole pool, so "
        "it is the N = all run."
        if collapsed and not opts.quick
        else ""
    )
    d = "" if opts.d_width is None else f"; discriminator base width {opts.d_width}"
    d += "" if opts.d_batch_size is None else f", {opts.d_batch_size} unlabelled faces per step"
    return [
        f"- **Command:** `{opts.command}` (written {time.strftime('%Y-%m-%d %H:%M')}).",
        f"- **Seeds:** {opts.seeds}; **epochs:** {opts.epochs}; **training faces:** "
        + (f"the first {opts.max_train}" if opts.max_train else "all")
        + f" of ytf68 `trainval-train`; batch size {opts.batch_size or 'recipe (32)'}{d}; "
        "paper recipes otherwise (Adam 1e-3, no augmentation, no LR drop).",
        "- **Protocol:** ytf68 `train.csv` split by identity into `trainval-train` / `val`; the "
        "best epoch is picked on `val`, and only that checkpoint is scored on the ytf68 **test** "
        f"split ({first['summary']['num_faces']} faces, ground-truth 5-point crops, NME in image "
        "pixels; io = inter-ocular, points 36 and 45; ip = inter-pupil). No hyperparameter is "
        "chosen on test. The ytf68 points were most likely produced by an automatic detector "
        "and rounded to whole pixels.",
        f"- **Unlabelled pool:** `{opts.unlabeled}` ({data['pool']:,} images; N counts the "
        "images asked for, 'used' the faces dlib detects in them). Not `unlabeled/lfw`: its "
        f"images carry a drawn green box and landmark dots, a trivial cue for D.{same}",
        f"- **Machine:** {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}; "
        f"training threads {opts.threads or 'default'}; faces/s single-thread batch 1 over "
        f"{opts.bench_seconds:g} s per width (noisy on a shared machine).",
        "- Cells are mean ± sample std over seeds. Run folders (with `config.json`, "
        f"`metrics.csv`, `test-eval.json`) are under `{opts.out}`.",
    ]


def render_section(data: dict[str, Any], results_path: Path) -> str:
    """The markdown section (with its markers) for the grid's results."""
    opts = data["options"]
    prefix = "reproduce-quick" if opts.quick else "reproduce"
    figures = _figures(data, results_path.parent / "figures", prefix)
    link = {k: v.relative_to(results_path.parent).as_posix() for k, v in figures.items()}
    width = f"1/{round(1 / data['grid']['table2'][0].width)}"
    kind = "QUICK smoke run: tiny grid, few epochs, NOT a result" if opts.quick else "full grid"
    begin, end = (QUICK_BEGIN, QUICK_END) if opts.quick else (BEGIN, END)
    lines = [begin, f"## Reproduction grid on ytf68 ({kind})", "", *_header(data), ""]
    lines += [f"### Table 2 analogue: loss x unlabelled faces (width {width})", ""]
    lines += _table2(data) + ["", f"![CED]({link['ced']})", ""]
    lines += ["### Table 3 analogue: width", ""] + _table3(data) + [""]
    lines += [f"### Fig. 4 analogue: target scale b_t (LaplaceKL, width {width})", ""]
    lines += _fig4(data) + ["", f"![b_t sweep]({link['bt']})", ""]
    lines += ["### The paper's claims (SPEC §8) on our data", ""]
    if opts.quick:
        lines += ["Quick run: these verdicts only show the pipeline works; they mean nothing.", ""]
    return "\n".join(lines + _claims(data) + ["", end]) + "\n"


def replace_section(text: str, section: str, begin: str, end: str) -> str:
    """Replace the text between ``begin`` and ``end`` (inclusive), or append the section."""
    start, stop = text.find(begin), text.find(end)
    if start >= 0 and stop > start:
        return text[:start] + section.rstrip("\n") + text[stop + len(end) :]
    return text.rstrip("\n") + ("\n\n" if text.strip() else "") + section


def write_results(data: dict[str, Any]) -> Path:
    """Write (or replace) the grid's marked section in the results markdown, atomically."""

    opts = data["options"]
    path = Path(opts.results)
    begin, end = (QUICK_BEGIN, QUICK_END) if opts.quick else (BEGIN, END)
    old = path.read_text() if path.exists() else "# Results\n"
    text = replace_section(old, render_section(data, path), begin, end)
    atomic_write_text(path, text)
    return path
