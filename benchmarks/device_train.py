"""Train a set of runs on one borrowed GPU inside a fixed wall-time budget.

A GPU machine here is lent for minutes and sees only the repository, so this script works from
crop caches carried beside it instead of the dataset folders:

    # here: write the plan (every run's full config, built from the recipes and local paths)
    python benchmarks/device_train.py plan --out .devdata/plan.json

    # there: train the plan's runs in parallel worker processes until --seconds have passed
    python benchmarks/device_train.py run --plan .devdata/plan.json --caches .devdata \\
        --out $OUT/runs --seconds 450 --device cuda

Two kinds of run:

- ``grid``: a run of ``laplace-landmarks reproduce --small --widths ...`` (fixed epochs). Its
  folder is laid out as the grid expects, so ``reproduce --small --widths ... --report-only``
  here scores it on the test split. Checkpoints come back slimmed: ``best.pt`` keeps the model,
  ``last.pt`` the config and metrics (no optimiser state: these runs are finished).
- ``long``: a shipped-model candidate whose epoch count is chosen from the budget: each worker
  first times two probe epochs, then trains ``floor(time left / epoch time)`` epochs from scratch
  (clamped to the plan's min/max), with the trainer's time limit as a safety net. The run is
  therefore identical to ``laplace-landmarks train --epochs E``, with E recorded in config.json.

Caches are ``.pt`` or ``.pt.xz`` files from ``~/.cache/laplace-landmarks``; the plan names them.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import lzma
import math
import os
import subprocess
import sys
import time
from pathlib import Path

LONG_RUNS = (
    # name, recipe, arch, width, min epochs, max epochs
    ("long-lite-w1", "improved-lite", "rcn-lite", 1.0, 30, 300),
    ("long-rcn-w1", "improved", "rcn", 1.0, 30, 300),
    ("long-lite-w0.5", "improved-lite", "rcn-lite", 0.5, 30, 300),
    ("long-lite-w0.25", "improved-lite", "rcn-lite", 0.25, 40, 400),
    ("long-lite-w0.125", "improved-lite", "rcn-lite", 0.125, 60, 600),
)
GRID_WIDTHS = (1.0, 0.5, 0.25)
SWEEP = {  # chosen on val: one change at a time to long-rcn-w1's recipe
    "seed1": {"train.seed": 1},
    "lr4e-3": {"train.lr": 0.004},
    "drop0": {"model.dropout": 0.0},
    "bs16": {"train.batch_size": 16},
    "aug2x": {"data.rotation_deg": 20.0, "data.scale": 0.1, "data.shift": 0.06},
    "nod": {"adversarial.enabled": False},
}


def make_plan(args: argparse.Namespace) -> None:
    from laplace_landmarks.config import resolve_config
    from laplace_landmarks.reproduce.grid import GridOptions, build_grid, resolve_options
    from laplace_landmarks.training import default_cache_dir, prepare_data

    opts = resolve_options(GridOptions(small=True, widths=GRID_WIDTHS, progress=False))
    grid = build_grid(opts)
    order = {w: i for i, w in enumerate(GRID_WIDTHS)}  # widest first: the row only a GPU gives
    specs = sorted(grid["table3"], key=lambda spec: (order[spec.width], spec.seed))
    runs = [
        {
            "name": spec.name,
            "kind": "grid",
            "config": spec.config(opts).to_dict(),
            "command": spec.command(opts),
        }
        for spec in specs
    ]
    for name, recipe, arch, width, low, high in LONG_RUNS:
        overrides = {
            "model.name": arch,
            "model.width": width,
            "adversarial.unlabeled": opts.unlabeled,
        }
        config = resolve_config(recipe, overrides)
        runs.append(
            {
                "name": name,
                "kind": "long",
                "config": config.to_dict(),
                "min_epochs": low,
                "max_epochs": high,
                "command": f"laplace-landmarks train --recipe {recipe} --arch {arch} "
                f"--width {width:g} --unlabeled {opts.unlabeled} --epochs E --device cuda",
            }
        )
    if args.only == "long":  # the second call of 2026-11-26: the long runs again, no grid
        runs = [
            {**r, "name": r["name"].replace("long-", "long2-"), "max_epochs": 400}
            for r in runs
            if r["kind"] == "long"
        ]
    elif args.only == "sweep":  # the third call: one change at a time to long-rcn-w1
        base = next(r for r in runs if r["name"] == "long-rcn-w1")
        runs = []
        for name, changes in SWEEP.items():
            run = json.loads(json.dumps(base))
            run.update(name=f"sweep-rcn-w1-{name}", max_epochs=300)
            for dotted, value in changes.items():
                section, key = dotted.split(".")
                run["config"][section][key] = value
            run["command"] += " " + " ".join(f"({k}={v})" for k, v in changes.items())
            runs.append(run)
    probe = resolve_config("improved-lite", {"adversarial.unlabeled": opts.unlabeled})
    data = prepare_data(probe, default_cache_dir(), progress=False)
    caches = {
        "train": data.train.file.name,
        "val": data.val.file.name,
        "unlabeled": data.unlabeled.file.name,
    }
    plan = {"grid_out": str(opts.out), "caches": caches, "runs": runs}
    Path(args.out).write_text(json.dumps(plan, indent=1))
    print(f"{len(runs)} runs -> {args.out}; caches: {', '.join(caches.values())}")


def _load_cache(folder: Path, name: str):
    from laplace_landmarks.data.cache import CropCache

    plain, packed = folder / name, folder / f"{name}.xz"
    if not plain.exists():
        if not packed.exists():
            raise SystemExit(f"cache {name} (or {name}.xz) not found in {folder}")
        temporary = plain.with_suffix(".part")
        with lzma.open(packed) as source, open(temporary, "wb") as target:
            while chunk := source.read(1 << 24):
                target.write(chunk)
        temporary.rename(plain)
    return CropCache.load(plain)


def run_plan(args: argparse.Namespace) -> None:
    plan = json.loads(Path(args.plan).read_text())
    caches = Path(args.caches)
    for name in plan["caches"].values():  # unpack once, before the workers start
        _load_cache(caches, name)
    deadline = time.time() + args.seconds
    runs = plan["runs"]
    longs = [i for i, r in enumerate(runs) if r["kind"] == "long"]
    grids = [i for i, r in enumerate(runs) if r["kind"] == "grid"]
    shares = [[i] for i in longs]
    shares += [grids[k :: args.grid_workers] for k in range(args.grid_workers) if grids[k:]]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workers = []
    for number, share in enumerate(shares):
        log = open(out / f"worker{number}.log", "w")  # noqa: SIM115 (closed below)
        command = [sys.executable, __file__, "worker", "--plan", args.plan, "--caches"]
        command += [args.caches, "--out", args.out, "--deadline", str(deadline)]
        command += ["--device", args.device, "--threads", str(args.threads)]
        command += ["--runs", ",".join(map(str, share))]
        workers.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log))
    for process, log in workers:
        process.wait()
        log.close()
    summary = {}
    for run in runs:
        metrics = out / run["name"] / "metrics.csv"
        if metrics.exists():
            with metrics.open() as handle:
                nmes = [float(row["val_nme"]) for row in csv.DictReader(handle)]
            summary[run["name"]] = {"epochs": len(nmes), "best_val_nme": min(nmes)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


def _with_epochs(config, epochs: int):
    from laplace_landmarks.config import RunConfig

    raw = config.to_dict()
    raw["train"]["epochs"] = epochs
    return RunConfig.from_dict(raw)


def _slim(run_dir: Path) -> None:
    """Drop optimiser and D state from a finished grid run (best.pt keeps the model)."""
    import torch

    from laplace_landmarks.atomic import atomic_torch_save

    keep = {"version", "epoch", "best_val_nme", "config", "metrics"}
    for name, extra in (("best.pt", {"model"}), ("last.pt", set())):
        path = run_dir / name
        if path.exists():
            payload = torch.load(path, map_location="cpu", weights_only=True)
            atomic_torch_save({k: v for k, v in payload.items() if k in keep | extra}, path)


def worker(args: argparse.Namespace) -> None:
    import torch

    from laplace_landmarks.config import RunConfig
    from laplace_landmarks.training import TrainData, Trainer

    torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True
    plan = json.loads(Path(args.plan).read_text())
    names = plan["caches"]
    caches = Path(args.caches)
    unlabeled = _load_cache(caches, names["unlabeled"])
    data = TrainData(_load_cache(caches, names["train"]), _load_cache(caches, names["val"]), None)
    out = Path(args.out)
    for index in map(int, args.runs.split(",")):
        run = plan["runs"][index]
        config = RunConfig.from_dict(run["config"])
        run_data = dataclasses.replace(
            data, unlabeled=unlabeled if config.adversarial.enabled else None
        )
        left = args.deadline - time.time()
        if left < 20:
            print(f"{run['name']}: skipped, {left:.0f} s left", flush=True)
            continue
        started = time.time()
        if run["kind"] == "long":
            probe = Trainer(
                _with_epochs(config, 2),
                out / "probe" / run["name"],
                progress=False,
                device=args.device,
                data=run_data,
            )
            fit_started = time.time()  # not the trainer's set-up (CUDA start-up is seconds)
            history = probe.fit()
            overhead = (time.time() - fit_started - sum(row["seconds"] for row in history)) / 2
            per_epoch = 1.05 * (history[-1]["seconds"] + overhead)  # epoch 2: warm
            left = args.deadline - time.time()
            epochs = max(run["min_epochs"], min(run["max_epochs"], math.floor(left / per_epoch)))
            print(f"{run['name']}: {per_epoch:.2f} s/epoch -> {epochs} epochs", flush=True)
            config = _with_epochs(config, epochs)
        trainer = Trainer(
            config,
            out / run["name"],
            progress=False,
            device=args.device,
            data=run_data,
            time_limit=max(1.0, args.deadline - time.time()),
        )
        history = trainer.fit()
        (out / run["name"] / "command.txt").write_text(run["command"] + "\n")
        if run["kind"] == "grid" and not trainer.stopped_early:
            _slim(out / run["name"])
        best = min(row["val_nme"] for row in history)
        state = "stopped at the deadline" if trainer.stopped_early else "done"
        print(
            f"{run['name']}: {state}, {len(history)} epochs in {time.time() - started:.0f} s, "
            f"best val NME {best:.3f}%",
            flush=True,
        )


def pack(args: argparse.Namespace) -> None:
    """Tar the results into at most --files archives of at most --mb MB each, most useful first:
    logs and metrics, the long runs' weights, then finished grid runs widest first."""
    import tarfile

    out = Path(args.out)
    items: list[Path] = sorted(out.glob("*.log")) + sorted(out.glob("*.json"))
    runs = [d for d in sorted(out.iterdir()) if d.is_dir() and d.name != "probe"]
    longs = [d for d in runs if d.name.startswith(("long", "sweep"))]
    grids = [d for d in runs if not d.name.startswith(("long", "sweep"))]
    for run in runs:
        items += [
            run / n for n in ("config.json", "metrics.csv", "command.txt") if (run / n).exists()
        ]
    for run in longs:
        items += [run / "best.safetensors"]
        if (run / "last.pt").exists() and (run / "last.pt").stat().st_size < 3e6:
            items += [run / "last.pt"]
    width = {}
    for run in grids:
        config = json.loads((run / "config.json").read_text())
        width[run] = config["model"]["width"]
    for run in sorted(grids, key=lambda d: -width[d]):
        if (run / "command.txt").exists() and (run / "best.pt").exists():
            items += [run / "best.pt", run / "last.pt"]
    limit, bins = args.mb * 1e6, [[]]
    sizes = [0.0]
    dropped = []
    for item in items:
        size = item.stat().st_size + 2048
        if sum(sizes) + size > args.total_mb * 1e6:
            dropped.append(str(item.relative_to(out)))
            continue
        if sizes[-1] + size > limit:
            if len(bins) == args.files:
                dropped.append(str(item.relative_to(out)))
                continue
            bins.append([])
            sizes.append(0.0)
        bins[-1].append(item)
        sizes[-1] += size
    target = Path(args.to)
    target.mkdir(parents=True, exist_ok=True)
    for number, group in enumerate(bins):
        with tarfile.open(target / f"part{number}.tar", "w") as tar:
            for item in group:
                tar.add(item, arcname=str(item.relative_to(out.parent)))
    print(f"packed {sum(map(len, bins))} files into {len(bins)} tars; dropped: {dropped or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("plan", help="write the plan (run here, beside ../shared)")
    p.add_argument("--out", default=".devdata/plan.json")
    p.add_argument(
        "--only",
        choices=("long", "sweep"),
        help="long: only the long runs (named long2-*); sweep: the long-rcn-w1 variants",
    )
    p.set_defaults(func=make_plan)
    for verb, func in (("run", run_plan), ("worker", worker)):
        p = sub.add_parser(verb)
        p.add_argument("--plan", required=True)
        p.add_argument("--caches", required=True)
        p.add_argument("--out", required=True)
        p.add_argument("--device", default="cuda")
        p.add_argument("--threads", type=int, default=2)
        p.set_defaults(func=func)
        if verb == "run":
            p.add_argument("--seconds", type=float, required=True, help="training wall budget")
            p.add_argument("--grid-workers", type=int, default=3)
        else:
            p.add_argument("--deadline", type=float, required=True)
            p.add_argument("--runs", required=True)
    p = sub.add_parser("pack", help="tar the results for the trip back")
    p.add_argument("--out", required=True, help="the run verb's --out")
    p.add_argument("--to", required=True)
    p.add_argument("--files", type=int, default=7)
    p.add_argument("--mb", type=float, default=15.5)
    p.add_argument("--total-mb", type=float, default=62.0)
    p.set_defaults(func=pack)
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    args.func(args)


if __name__ == "__main__":
    main()
