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
DEEP_RUNS = {  # session 7: rcn-lite with depth, stage 1 then self-crop fine-tuning on the GPU
    # name, width, depth, seed, self crops: "ft" (8 epochs after stage 1), "start" (from
    # epoch 1) or "none", zero_init_residual, [other config changes]
    "deep": (  # the first call
        ("deep-lite-w0.5-d2-s0", 0.5, 2, 0, "ft", False),
        ("deep-lite-w0.5-d2-s1", 0.5, 2, 1, "ft", False),
        ("deep-lite-w1-d2-s0", 1.0, 2, 0, "ft", False),
        ("deep-lite-w0.5-d2-s0-start", 0.5, 2, 0, "start", False),
        ("deep-lite-w0.25-d2-s1", 0.25, 2, 1, "ft", False),
    ),
    "deep2": (  # the second call: more seeds, and zero-init where default init diverged
        ("deep-lite-w0.5-d2-s2", 0.5, 2, 2, "ft", False),
        ("deep-lite-w0.5-d2-s3", 0.5, 2, 3, "ft", False),
        ("deep-lite-w0.25-d2-s2", 0.25, 2, 2, "ft", False),
        ("deep-lite-w0.5-d2-s0-zi", 0.5, 2, 0, "ft", True),
        ("deep-lite-w0.5-d4-s0-zi", 0.5, 4, 0, "ft", True),
        ("deep-lite-w1-d2-s0-zi", 1.0, 2, 0, "ft", True),
    ),
    "deep3": (  # the last 200 s: does a lower learning rate stop the divergence? (no fine-tuning)
        ("deep-lite-w1-d2-s0-lr1e-3", 1.0, 2, 0, "none", False, {"train.lr": 1e-3}),
        ("deep-lite-w1-d2-s0-lr5e-4", 1.0, 2, 0, "none", False, {"train.lr": 5e-4}),
        ("deep-lite-w0.5-d4-s0-lr1e-3", 0.5, 4, 0, "none", False, {"train.lr": 1e-3}),
        ("deep-lite-w0.5-d4-s0-lr5e-4", 0.5, 4, 0, "none", False, {"train.lr": 5e-4}),
    ),
}
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
    elif args.only in DEEP_RUNS:  # session 7: depth 2 at widths 1/4-1, with self crops
        if not args.self_crops:
            raise SystemExit(
                "plan --only deep needs --self-crops (self_crop_finetune.py --save-crops)"
            )
        runs = []
        for name, width, depth, seed, mode, zero, *changes in DEEP_RUNS[args.only]:
            overrides = {
                "model.name": "rcn-lite",
                "model.width": width,
                "model.depth": depth,
                "model.zero_init_residual": zero,
                "train.seed": seed,
                "adversarial.unlabeled": opts.unlabeled,
                **(changes[0] if changes else {}),
            }
            config = resolve_config("improved-lite", overrides)
            run = {
                "name": name,
                "kind": "long",
                "config": config.to_dict(),
                "min_epochs": 40,
                "max_epochs": 90,
                "command": f"laplace-landmarks train --recipe improved-lite --arch rcn-lite "
                f"--width {width:g} --depth {depth} --seed {seed} --unlabeled {opts.unlabeled} "
                + ("--zero-init-residual " if zero else "")
                + "--epochs E --device cuda",
            }
            for dotted, value in (changes[0] if changes else {}).items():
                run["command"] += f" ({dotted}={value})"
            if mode == "ft":
                run["finetune"] = {"epochs": 8, "lr": 5e-4}
                run["command"] += (
                    "; then benchmarks/self_crop_finetune.py --weights RUN/best.safetensors "
                    "--epochs 8 --lr 5e-4 (self crops carried, see the plan)"
                )
            elif mode == "start":
                run["train_self_crops"] = True
                run["command"] += " (training crops: ground truth plus the carried self crops)"
            runs.append(run)
    probe = resolve_config("improved-lite", {"adversarial.unlabeled": opts.unlabeled})
    data = prepare_data(probe, default_cache_dir(), progress=False)
    caches = {
        "train": data.train.file.name,
        "val": data.val.file.name,
        "unlabeled": data.unlabeled.file.name,
    }
    if args.only in DEEP_RUNS:
        # the crop caches would not fit the 64 MiB that travels, so the GPU machine builds the
        # train and val caches from the carried ytf68 train images (same code, same crops) and the
        # self crops from their carried transforms; only the unlabelled cache travels as a cache
        carry = Path(args.out).parent
        plan_build = _carry_dataset(carry, args.self_crops)
        caches["self_crops"] = "self-crops.pt"
    else:
        plan_build = None
    plan = {"grid_out": str(opts.out), "caches": caches, "runs": runs}
    if plan_build:
        plan["build"] = plan_build
    Path(args.out).write_text(json.dumps(plan, indent=1))
    print(f"{len(runs)} runs -> {args.out}; caches: {', '.join(caches.values())}")


def _carry_dataset(carry: Path, self_crops: str, source: Path | None = None) -> dict:
    """Copy ytf68's train.csv and its images (from ``source``, default the data root's ytf68)
    to ``carry/ytf68`` and write the self crops' transforms (no pixels) to
    ``carry/self-crops.npz``."""
    import shutil

    import numpy as np
    import torch

    from laplace_landmarks.data.cache import CropCache
    from laplace_landmarks.data.datasets import _resolve_root

    source = Path(source or _resolve_root("ytf68", None)).resolve()
    target = carry / "ytf68"
    (target / "images").mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / "train.csv", target / "train.csv")
    with (source / "train.csv").open() as handle:
        images = [row["image"] for row in csv.DictReader(handle)]
    for name in images:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, target / name)
    crops = CropCache.load(self_crops)
    np.savez(
        carry / "self-crops.npz",
        paths=np.array([str(Path(p).resolve().relative_to(source)) for p in crops.paths]),
        points=crops.points.numpy(),
        visibility=crops.visibility.numpy(),
        matrices=crops.matrices.numpy(),
        identities=np.array(crops.identities),
        size=np.array(crops.images.shape[-1]),
    )
    # check here that the transforms give back the carried crops' pixels
    check = _self_crop_cache(carry / "self-crops.npz", source, limit=8)
    if not torch.equal(check.images, crops.images[:8]):
        raise SystemExit("self crops: re-warping from the transforms does not give the same pixels")
    print(f"carry: {len(images)} images -> {target}; {len(crops)} self-crop transforms")
    return {"dataset": "ytf68", "self_crops": "self-crops.npz"}


def _self_crop_cache(npz: Path, root: Path, limit: int | None = None):
    import numpy as np
    import torch

    from laplace_landmarks.data.cache import CropCache
    from laplace_landmarks.data.crops import Crop, warp_crop
    from laplace_landmarks.data.images import to_rgb_array

    saved = np.load(npz)
    count = len(saved["paths"]) if limit is None else limit
    size = int(saved["size"])
    images = []
    for path, matrix in zip(saved["paths"][:count], saved["matrices"][:count], strict=True):
        rgb = to_rgb_array(str(root / str(path)), "image")
        crop = Crop(np.asarray(matrix), size)
        images.append(
            torch.from_numpy(np.ascontiguousarray(warp_crop(rgb, crop).transpose(2, 0, 1)))
        )
    return CropCache(
        torch.stack(images),
        torch.from_numpy(saved["points"][:count]),
        torch.from_numpy(saved["visibility"][:count]),
        torch.from_numpy(saved["matrices"][:count]),
        [str(i) for i in saved["identities"][:count]],
        [str(root / str(p)) for p in saved["paths"][:count]],
    )


def _build_caches(plan: dict, caches: Path) -> None:
    """On the GPU machine: the train/val caches from the carried images, saved under the plan's
    names (the names hash local paths), and the self crops from their transforms."""
    from laplace_landmarks.config import RunConfig
    from laplace_landmarks.training import prepare_data

    names, build = plan["caches"], plan["build"]
    started = time.time()
    raw = json.loads(json.dumps(plan["runs"][0]["config"]))
    raw["data"]["root"] = str(caches / build["dataset"])
    raw["adversarial"]["enabled"] = False
    data = prepare_data(RunConfig.from_dict(raw), caches / "built", progress=False)
    data.train.save(caches / names["train"])
    data.val.save(caches / names["val"])
    selfcrops = _self_crop_cache(caches / build["self_crops"], caches / build["dataset"])
    selfcrops.save(caches / names["self_crops"])
    print(
        f"built {len(data.train)} train, {len(data.val)} val, {len(selfcrops)} self crops "
        f"in {time.time() - started:.0f} s",
        flush=True,
    )


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
    if "build" in plan:
        _build_caches(plan, caches)
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
    for name in [r["name"] for r in runs] + [r["name"] + "-ft" for r in runs if "finetune" in r]:
        metrics = out / name / "metrics.csv"
        if metrics.exists():
            with metrics.open() as handle:
                nmes = [float(row["val_nme"]) for row in csv.DictReader(handle)]
            summary[name] = {"epochs": len(nmes), "best_val_nme": min(nmes), "last": nmes[-1]}
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

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from self_crop_finetune import concat  # noqa: E402 (a sibling script, not a package)

    torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True
    plan = json.loads(Path(args.plan).read_text())
    names = plan["caches"]
    caches = Path(args.caches)
    unlabeled = _load_cache(caches, names["unlabeled"])
    data = TrainData(_load_cache(caches, names["train"]), _load_cache(caches, names["val"]), None)
    selfcrops = _load_cache(caches, names["self_crops"]) if "self_crops" in names else None
    out = Path(args.out)
    for index in map(int, args.runs.split(",")):
        run = plan["runs"][index]
        config = RunConfig.from_dict(run["config"])
        run_data = dataclasses.replace(
            data, unlabeled=unlabeled if config.adversarial.enabled else None
        )
        finetune = run.get("finetune")
        if run.get("train_self_crops") or finetune:
            if selfcrops is None:
                raise SystemExit(f"{run['name']}: the plan names no self_crops cache")
            with_self = dataclasses.replace(run_data, train=concat(data.train, selfcrops))
            if run.get("train_self_crops"):
                run_data = with_self
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
            if finetune:  # keep time for it: its epochs see the self crops too
                grow = len(with_self.train) / len(run_data.train)
                left -= 1.1 * finetune["epochs"] * per_epoch * grow
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
        if finetune and not trainer.stopped_early:
            _finetune(run, config, with_self, out, args)


def _finetune(run: dict, config, data, out: Path, args: argparse.Namespace) -> None:
    """Stage 2, as ``self_crop_finetune.py``: the stage-1 best raw weights (no point offset),
    ground-truth plus self crops, cosine from the plan's lr; ``last.safetensors`` is the candidate."""
    from laplace_landmarks.checkpoints import load_generator, save_weights
    from laplace_landmarks.config import RunConfig
    from laplace_landmarks.training import Trainer

    settings = run["finetune"]
    raw = config.to_dict()
    raw["train"].update(epochs=settings["epochs"], lr=settings["lr"])
    ft_config = RunConfig.from_dict(raw)
    model, _, _ = load_generator(out / run["name"] / "best.safetensors")
    folder = out / f"{run['name']}-ft"
    started = time.time()
    trainer = Trainer(
        ft_config,
        folder,
        progress=False,
        device=args.device,
        data=data,
        time_limit=max(1.0, args.deadline - time.time()),
    )
    state = {k: v for k, v in model.state_dict().items() if k != "point_offset"}
    trainer.model.load_state_dict(state, strict=False)
    history = trainer.fit()
    save_weights(
        trainer.model.to("cpu"),
        ft_config,
        folder / "last.safetensors",
        {"epoch": str(len(history)), "val_nme": f"{history[-1]['val_nme']:.4f}"},
    )
    (folder / "command.txt").write_text(run["command"] + "\n")
    state = "stopped at the deadline" if trainer.stopped_early else "done"
    print(
        f"{folder.name}: {state}, {len(history)} epochs on {len(data.train)} crops in "
        f"{time.time() - started:.0f} s, last val NME {history[-1]['val_nme']:.3f}%",
        flush=True,
    )


def _split(path: Path, limit: float) -> list[Path]:
    """``path`` itself, or (when it is over ``limit`` bytes) chunks ``path.partN`` beside it;
    join them with ``cat path.part* > path``."""
    size = path.stat().st_size
    if size <= limit:
        return [path]
    chunks, chunk = [], int(limit)
    with path.open("rb") as source:
        for number in range(math.ceil(size / chunk)):
            part = path.with_name(f"{path.name}.part{number}")
            part.write_bytes(source.read(chunk))
            chunks.append(part)
    return chunks


def pack(args: argparse.Namespace) -> None:
    """Tar the results into at most --files archives of at most --mb MB each, most useful first:
    logs and metrics, the long runs' weights, then finished grid runs widest first."""
    import tarfile

    out = Path(args.out)
    items: list[Path] = sorted(out.glob("*.log")) + sorted(out.glob("*.json"))
    runs = [d for d in sorted(out.iterdir()) if d.is_dir() and d.name != "probe"]
    kinds = ("long", "sweep", "deep")
    longs = [d for d in runs if d.name.startswith(kinds)]
    grids = [d for d in runs if not d.name.startswith(kinds)]
    for run in runs:
        items += [
            run / n for n in ("config.json", "metrics.csv", "command.txt") if (run / n).exists()
        ]

    def weights(run: Path) -> tuple[int, Path]:
        """Most useful first: a fine-tuned candidate, a run's best, then a best that was
        fine-tuned further (its ``-ft`` folder holds the candidate)."""
        if (run / "last.safetensors").exists():
            return 0, run / "last.safetensors"
        return (2 if (run.parent / f"{run.name}-ft").exists() else 1), run / "best.safetensors"

    for _, path in sorted((weights(run) for run in longs), key=lambda pair: pair[0]):
        items += _split(path, args.mb * 1e6 - 4096) if path.exists() else []
    for run in longs:
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
        choices=("long", "sweep", *DEEP_RUNS),
        help="long: only the long runs (named long2-*); sweep: the long-rcn-w1 variants; "
        "deep, deep2, deep3: rcn-lite with depth and self crops (session 7's three calls)",
    )
    p.add_argument(
        "--self-crops",
        help="self-crop cache (self_crop_finetune.py --save-crops), copied beside the caches",
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
