"""Training on another device and against a clock: ``train --device/--time-limit``,
``Trainer(data=...)``, ``reproduce --widths/--device`` and the GPU driver
``benchmarks/device_train.py`` (run here on the CPU, on the real ytf68 slice)."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
from conftest import UNLABELED_SLICE, YTF68_SLICE
from test_training import ADVERSARIAL_TOML, load, metrics_without_timing, train_args

from laplace_landmarks.cli import main
from laplace_landmarks.commands.reproduce import _widths
from laplace_landmarks.config import resolve_config
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.reproduce.grid import GridOptions, build_grid
from laplace_landmarks.training import Trainer, _to_cpu, prepare_data, resolve_device

ROOT = Path(__file__).resolve().parents[1]


def test_time_limit_stops_after_an_epoch_and_resume_matches_an_uninterrupted_run(tmp_path, capsys):
    cache = tmp_path / "cache"
    reference, limited = tmp_path / "reference", tmp_path / "limited"
    assert main(train_args(reference, cache, "paper-laplacekl")) == 0
    assert main([*train_args(limited, cache, "paper-laplacekl"), "--time-limit", "1e-6"]) == 0
    out = capsys.readouterr()
    assert "stopped at the time limit: 1 epochs" in out.out
    assert "--resume continues" in out.err
    assert load(limited)["epoch"] == 1
    assert main([*train_args(limited, cache, "paper-laplacekl"), "--resume"]) == 0
    a, b = load(reference), load(limited)
    assert a["epoch"] == b["epoch"] == 2
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert metrics_without_timing(reference) == metrics_without_timing(limited)


@pytest.mark.parametrize(
    "change, message",
    [
        (["--device", "tpu"], "device 'tpu'"),
        (["--device", "not a device"], "unknown device"),
        (["--time-limit", "0"], "time limit must be > 0"),
    ],
    ids=["unsupported", "garbage", "time-limit"],
)
def test_bad_device_or_limit_is_a_clean_error(tmp_path, capsys, change, message):
    args = [*train_args(tmp_path / "run", tmp_path / "cache", "paper-laplacekl"), *change]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_clean_error(tmp_path, capsys):
    args = [*train_args(tmp_path / "run", tmp_path / "cache", "paper-laplacekl")]
    assert main([*args, "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert resolve_device("auto") == torch.device("cpu")


def test_to_cpu_keeps_structure():
    state = {"a": [torch.ones(2), (torch.zeros(1), 3)], "b": {"c": torch.ones(1)}, "d": "x"}
    moved = _to_cpu(state)
    assert isinstance(moved["a"][1], tuple) and moved["a"][1][1] == 3 and moved["d"] == "x"
    assert all(t.device.type == "cpu" for t in (moved["a"][0], moved["b"]["c"]))


def _slice_config(tmp_path: Path, adversarial: bool = False):
    overrides = {
        "data.root": str(YTF68_SLICE),
        "model.width": 0.0625,
        "train.epochs": 1,
        "train.batch_size": 8,
        "train.threads": 1,
    }
    if adversarial:
        (tmp_path / "adv.toml").write_text(ADVERSARIAL_TOML)
        overrides["adversarial.unlabeled"] = str(UNLABELED_SLICE / "ytf")
        return resolve_config(str(tmp_path / "adv.toml"), overrides)
    return resolve_config("paper-laplacekl", overrides)


def test_trainer_takes_prepared_data_and_needs_no_dataset_folder(tmp_path):
    config = _slice_config(tmp_path, adversarial=True)
    data = prepare_data(config, tmp_path / "cache", progress=False)
    raw = config.to_dict()
    raw["data"]["root"] = "/nonexistent/ytf68"  # never read: the crops are given
    moved = type(config).from_dict(raw)
    history = Trainer(moved, tmp_path / "run", progress=False, data=data).fit()
    assert len(history) == 1 and history[0]["val_nme"] > 0
    no_unlabeled = type(data)(data.train, data.val, None)
    with pytest.raises(LandmarksError, match="needs unlabelled faces"):
        Trainer(moved, tmp_path / "run2", progress=False, data=no_unlabeled)


def test_reproduce_widths_flag_and_grid():
    assert _widths("1/16,1/8,1") == (0.0625, 0.125, 1.0)
    assert _widths("0.25, 0.5") == (0.25, 0.5)
    for bad in ("0", "2", "a,b", "1/0"):
        with pytest.raises(Exception, match="widths"):
            _widths(bad)
    opts = GridOptions(small=True, widths=(1.0, 0.5), seeds=1, unlabeled=str(UNLABELED_SLICE))
    grid = build_grid(opts)
    assert sorted({spec.width for spec in grid["table3"]}) == [0.5, 1.0]
    assert len(grid["table3"]) == 2 * 3  # softargmax, LaplaceKL, LaplaceKL+D per width


def test_device_train_driver_runs_a_plan_and_packs_it(tmp_path):
    """The GPU driver end to end on the CPU: one grid run (fixed epochs, slimmed checkpoints)
    and one budgeted long run (probe epochs, then epochs from the time left), then the tars."""
    grid_config = _slice_config(tmp_path)
    long_config = _slice_config(tmp_path, adversarial=True)
    data = prepare_data(long_config, tmp_path / "cache", progress=False)
    caches = tmp_path / "carried"
    caches.mkdir()
    names = {}
    for key in ("train", "val", "unlabeled"):
        cache = getattr(data, key)
        cache.save(caches / cache.file.name)
        names[key] = cache.file.name
    plan = {
        "grid_out": "unused",
        "caches": names,
        "runs": [
            {"name": "grid-a", "kind": "grid", "config": grid_config.to_dict(), "command": "g"},
            {
                "name": "long-b",
                "kind": "long",
                "config": long_config.to_dict(),
                "min_epochs": 1,
                "max_epochs": 3,
                "command": "l",
            },
        ],
    }
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    script = str(ROOT / "benchmarks" / "device_train.py")
    out = tmp_path / "out" / "runs"
    run = [sys.executable, script, "run", "--plan", str(tmp_path / "plan.json")]
    run += ["--caches", str(caches), "--out", str(out), "--seconds", "60", "--device", "cpu"]
    run += ["--grid-workers", "1", "--threads", "1"]
    proc = subprocess.run(run, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["grid-a"]["epochs"] == 1 and 1 <= summary["long-b"]["epochs"] <= 3
    assert "s/epoch ->" in (out / "worker0.log").read_text()
    slim_last = torch.load(out / "grid-a" / "last.pt", weights_only=True)
    slim_best = torch.load(out / "grid-a" / "best.pt", weights_only=True)
    assert "model" not in slim_last and "optimizer" not in slim_best and "model" in slim_best
    assert (
        json.loads((out / "long-b" / "config.json").read_text())["train"]["epochs"]
        == (summary["long-b"]["epochs"])
    )
    pack = [sys.executable, script, "pack", "--out", str(out), "--to", str(tmp_path / "tars")]
    proc = subprocess.run(pack, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with tarfile.open(tmp_path / "tars" / "part0.tar") as tar:
        members = set(tar.getnames())
    assert {"runs/long-b/best.safetensors", "runs/grid-a/best.pt", "runs/summary.json"} <= members
    assert "runs/long-b/last.pt" in members  # a long run's small last.pt comes back too
    assert not any("probe" in name for name in members)


def test_device_train_rebuilds_carried_crops_fine_tunes_and_splits_big_files(tmp_path):
    """The session-7 path: the train/val caches are rebuilt on the GPU machine from carried
    images (the same pixels as here), the self crops from their carried transforms, stage 1 is
    followed by fine-tuning on both, and a weights file over the tar limit comes back in parts."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import device_train
    import self_crop_finetune

    from laplace_landmarks.data.datasets import load_dataset

    samples = load_dataset("ytf68", "trainval-train", root=str(YTF68_SLICE)).samples
    crops = self_crop_finetune.self_crops("rcn-lite", samples, threads=1)
    crops.save(tmp_path / "self.pt")
    carry = tmp_path / "carried"
    build = device_train._carry_dataset(carry, str(tmp_path / "self.pt"), source=YTF68_SLICE)
    config = _slice_config(tmp_path, adversarial=True)
    data = prepare_data(config, tmp_path / "cache", progress=False)
    data.unlabeled.save(carry / "unlabeled.pt")
    names = {"train": "t.pt", "val": "v.pt", "unlabeled": "unlabeled.pt", "self_crops": "s.pt"}
    run = {"name": "deep-b", "kind": "long", "config": config.to_dict(), "command": "d"}
    run.update(min_epochs=1, max_epochs=1, finetune={"epochs": 1, "lr": 5e-4})
    plan = {"grid_out": "unused", "caches": names, "runs": [run], "build": build}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    script = str(ROOT / "benchmarks" / "device_train.py")
    out = tmp_path / "out" / "runs"
    command = [sys.executable, script, "run", "--plan", str(tmp_path / "plan.json"), "--caches"]
    command += [
        str(carry),
        "--out",
        str(out),
        "--seconds",
        "60",
        "--device",
        "cpu",
        "--threads",
        "1",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert torch.equal(torch.load(carry / "t.pt", weights_only=True)["images"], data.train.images)
    assert torch.equal(torch.load(carry / "s.pt", weights_only=True)["images"], crops.images)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["deep-b"]["epochs"] == 1 and summary["deep-b-ft"]["epochs"] == 1
    ft = torch.load(out / "deep-b-ft" / "last.pt", weights_only=True)
    assert ft["config"]["train"]["lr"] == 5e-4
    weights = (out / "deep-b-ft" / "last.safetensors").read_bytes()
    pack = [sys.executable, script, "pack", "--out", str(out), "--to", str(tmp_path / "tars")]
    pack += ["--mb", str(len(weights) / 2.5e6), "--files", "60"]
    proc = subprocess.run(pack, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    back = tmp_path / "back"
    for tar_path in sorted((tmp_path / "tars").glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            tar.extractall(back, filter="data")
    parts = sorted((back / "runs" / "deep-b-ft").glob("last.safetensors.part*"))
    assert len(parts) >= 3
    assert b"".join(p.read_bytes() for p in parts) == weights
