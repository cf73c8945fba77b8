"""The trainer through its CLI on the real ytf68 slice: resume after SIGKILL, DDP against one
process, and clean errors for bad input. Width 1/16, one thread, 2 epochs of 2 batches each."""

from __future__ import annotations

import csv
import functools
import math
import multiprocessing
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import UNLABELED_SLICE, YTF68_SLICE

from laplace_landmarks.checkpoints import build_generator
from laplace_landmarks.cli import main
from laplace_landmarks.config import RunConfig
from laplace_landmarks.training import Trainer

TIMING_COLUMNS = {"seconds", "images_per_s"}
# A cheap adversarial recipe: the paper's LaplaceKL+D with a narrow D and few unlabelled faces,
# plus the junk term (faceless crops drawn each batch), so resume covers its random draws too.
ADVERSARIAL_TOML = """
[model]
width = 0.0625
[loss]
kind = "laplacekl"
junk_weight = 0.05
[adversarial]
enabled = true
base_width = 8
batch_size = 4
[train]
epochs = 2
"""
# For DDP: no dropout and no augmentation, so both runs see the same function.
NO_DROPOUT_TOML = """
[model]
width = 0.0625
dropout = 0.0
[loss]
kind = "laplacekl"
[train]
epochs = 2
lr = 1e-3
"""


def train_args(out: Path, cache: Path, recipe: str, *extra: str) -> list[str]:
    return [
        "train", "--recipe", recipe, "--width", "0.0625", "--epochs", "2", "--batch-size", "8",
        "--lr", "0.01", "--threads", "1", "--data-root", str(YTF68_SLICE), "--cache-dir",
        str(cache), "--out", str(out), "--no-progress", *extra,
    ]  # fmt: skip


def run_cli(args: list[str], env: dict[str, str] | None = None, module: list[str] | None = None):
    command = [sys.executable, "-m", *(module or []), "laplace_landmarks", *args]
    return subprocess.run(
        command, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=120
    )


def sigkill_at(step: int) -> Callable[[int], None]:
    """A ``Trainer(on_step=...)`` hook that SIGKILLs this process just before global ``step``."""

    def hook(global_step: int) -> None:
        if global_step == step:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def _train_and_die(args: list[str], step: int) -> None:
    """In a forked child: every Trainer the CLI builds gets the kill hook, then ``train`` runs."""
    Trainer.__init__ = functools.partialmethod(Trainer.__init__, on_step=sigkill_at(step))
    main(args)
    os._exit(0)  # not reached when the kill hook fires


def killed_run_exit_code(args: list[str], step: int) -> int | None:
    """Run ``train`` in a forked child (no re-import: fast) that SIGKILLs itself at ``step``."""
    child = multiprocessing.get_context("fork").Process(target=_train_and_die, args=(args, step))
    child.start()
    child.join(120)
    return child.exitcode


def load(run: Path) -> dict:
    return torch.load(run / "last.pt", map_location="cpu", weights_only=True)


def metrics_without_timing(run: Path) -> list[dict]:
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


@pytest.mark.parametrize("adversarial", [False, True], ids=["supervised", "adversarial"])
def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, adversarial):
    cache = tmp_path / "cache"
    recipe, extra = "paper-laplacekl", []
    if adversarial:
        (tmp_path / "adv.toml").write_text(ADVERSARIAL_TOML)
        recipe, extra = str(tmp_path / "adv.toml"), ["--unlabeled", str(UNLABELED_SLICE / "ytf")]
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert main(train_args(reference, cache, recipe, *extra)) == 0
    # 21 training faces, batch 8: 2 steps per epoch; step 3 is the middle of epoch 2
    assert killed_run_exit_code(train_args(killed, cache, recipe, *extra), 3) == -signal.SIGKILL
    assert load(killed)["epoch"] == 1 and len(metrics_without_timing(killed)) == 1
    assert main([*train_args(killed, cache, recipe, *extra), "--resume"]) == 0
    a, b = load(reference), load(killed)
    assert a["epoch"] == b["epoch"] == 2
    for part in ("model", "disc") if adversarial else ("model",):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key}"
    assert metrics_without_timing(reference) == metrics_without_timing(killed)


def test_resume_of_a_finished_run_extends_it(tmp_path, capsys):
    cache, run = tmp_path / "cache", tmp_path / "run"
    assert main(train_args(run, cache, "paper-softargmax", "--epochs", "1")) == 0
    assert main([*train_args(run, cache, "paper-softargmax", "--epochs", "2"), "--resume"]) == 0
    assert [int(r["epoch"]) for r in metrics_without_timing(run)] == [1, 2]
    assert "continuing after epoch 1" in capsys.readouterr().err


def test_ddp_two_processes_match_one_process(tmp_path):
    """torchrun (gloo, 2 ranks, 4 faces each) against one process with the same batch of 8.

    The two runs sum the same gradients in a different order, so they differ by float rounding,
    and Adam amplifies rounding wherever a gradient is near zero: an element whose gradient is
    pure rounding noise moves by up to lr per step in either run. ``head.bias`` is all such
    elements (a per-channel bias does not change a spatial softmax). So the tolerances are
    relative to how far training moved the weights, not absolute numbers from one CPU:
    - every element: |single - ddp| <= 2 x lr x steps (Adam's step is at most about lr);
    - all weights but head.bias: ||single - ddp|| <= 1 % of ||single - init||. Measured:
      2e-4 for DDP; a run that saw different batches (16 of the 21 faces) gives 0.3, and
      ranks that did not average their gradients would differ as much;
    - validation NME per epoch within 1e-4 relative (rounding moves it by about 1e-9).
    """
    cache = tmp_path / "cache"
    (tmp_path / "nodrop.toml").write_text(NO_DROPOUT_TOML)
    recipe = str(tmp_path / "nodrop.toml")
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    lr, steps = 1e-3, 4  # 21 faces, batch 8: 2 steps per epoch, 2 epochs
    args = lambda out: [*train_args(out, cache, recipe), "--lr", str(lr)]  # noqa: E731
    assert main(args(single)) == 0  # also builds the crop caches
    torchrun = ["torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    proc = run_cli(args(ddp), module=torchrun)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = load(single), load(ddp)
    assert a["epoch"] == b["epoch"] == 2 and a["model"].keys() == b["model"].keys()
    config = RunConfig.from_dict(a["config"])
    torch.manual_seed(config.train.seed)  # the Trainer's initialisation, rebuilt
    init = build_generator(config).state_dict()
    moved = differ = 0.0
    for key in a["model"]:
        x, y = a["model"][key].double(), b["model"][key].double()
        assert (x - y).abs().max() <= 2 * lr * steps, key
        if key != "head.bias":
            moved += float((x - init[key].double()).square().sum())
            differ += float((x - y).square().sum())
    assert moved > 0 and math.sqrt(differ) <= 0.01 * math.sqrt(moved), (differ, moved)
    val_a = [row["val_nme"] for row in a["metrics"]]
    val_b = [row["val_nme"] for row in b["metrics"]]
    assert val_a == pytest.approx(val_b, rel=1e-4)


@pytest.mark.parametrize(
    "change, message",
    [
        (["--recipe", "no-such-recipe"], "unknown recipe"),
        (["--epochs", "0"], "train.epochs must be >= 1"),
        (["--data-root", "/nonexistent/ytf68"], "not found"),
        (["--batch-size", "64"], "fewer than one batch"),
        (["--recipe", "paper-laplacekl-adv", "--unlabeled", "/nonexistent/faces"], "not found"),
    ],
    ids=["recipe", "epochs", "data-root", "batch", "unlabeled"],
)
def test_bad_input_is_a_clean_error(tmp_path, capsys, change, message):
    args = [*train_args(tmp_path / "run", tmp_path / "cache", "paper-laplacekl"), *change]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_init_from_a_shipped_model_fine_tunes_its_network(tmp_path):
    """--init-from takes the network (shape and weights) from the named weights; the fitted
    point offset and scale factor are reset, since they fit another training set."""
    from laplace_landmarks.checkpoints import load_generator
    from laplace_landmarks.weights import pretrained_path

    run = tmp_path / "run"
    args = train_args(run, tmp_path / "cache", "improved-lite", "--init-from", "rcn-lite-ytf68")
    args = [a for a in args if a not in ("--width", "0.0625")]
    args += ["--epochs", "1", "--lr", "1e-12"]
    args += ["--unlabeled", str(UNLABELED_SLICE / "ytf"), "--num-unlabeled", "8"]
    assert main(args) == 0
    shipped, shipped_config, _ = load_generator(pretrained_path("rcn-lite-ytf68"))
    trained = load(run)
    config = RunConfig.from_dict(trained["config"])
    assert config.model.width == shipped_config.model.width == 0.125
    assert config.model.depth == shipped_config.model.depth == 2
    assert config.train.init_from == "rcn-lite-ytf68"
    for key, value in shipped.state_dict().items():
        if key == "point_offset":
            assert (
                torch.count_nonzero(value) > 0 and torch.count_nonzero(trained["model"][key]) == 0
            )
        elif key == "scale_factor":
            assert float(trained["model"][key]) == 1.0
        elif value.is_floating_point():  # lr 1e-12: one epoch moves no weight measurably
            torch.testing.assert_close(trained["model"][key], value, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "grow, new_key", [(["--depth", "3"], ".2."), (["--fine-depth", "1"], "extra_dec40.0.")]
)
def test_init_from_with_a_larger_depth_grows_the_network_by_identity_blocks(
    tmp_path, grow, new_key
):
    """--depth or --fine-depth above the source's with --zero-init-residual: the source's
    weights load, the new residual convs start at zero, so the grown network computes what the
    source did."""
    from laplace_landmarks.checkpoints import load_generator
    from laplace_landmarks.weights import pretrained_path

    run = tmp_path / "run"
    args = train_args(run, tmp_path / "cache", "paper-laplacekl", "--init-from", "rcn-lite-ytf68")
    args = [a for a in args if a not in ("--width", "0.0625")]
    args += [*grow, "--zero-init-residual", "--epochs", "1", "--lr", "1e-12"]
    assert main(args) == 0
    grown, config, _ = load_generator(run / "best.safetensors")
    shipped, shipped_config, _ = load_generator(pretrained_path("rcn-lite-ytf68"))
    grown_to = (config.model.depth, config.model.fine_depth)
    assert grown_to == ((3, 0) if grow[0] == "--depth" else (2, 1))
    assert (shipped_config.model.depth, shipped_config.model.fine_depth) == (2, 0)
    new = [k for k in grown.state_dict() if k not in shipped.state_dict()]
    assert len(new) == (8 if grow[0] == "--depth" else 2)  # weight and bias per new conv
    assert all(k.startswith("extra_") and new_key in k for k in new)
    images = torch.rand(2, 3, 80, 80) * 2 - 1
    with torch.no_grad():
        # lr 1e-12 for one epoch: the weights (old and new) move by far less than 1e-6
        torch.testing.assert_close(grown.eval()(images), shipped.eval()(images), rtol=0, atol=1e-4)
    # without --zero-init-residual the depth must match the weights (a clean error, below)
    bad = [a for a in args if a != "--zero-init-residual"]
    bad[bad.index("--out") + 1] = str(tmp_path / "bad")
    assert main(bad) == 2


@pytest.mark.parametrize(
    "change, message",
    [
        (["--init-from", "rcn-lite", "--width", "0.5"], "does not match the configured one"),
        (["--init-from", "ENSEMBLE"], "an ensemble cannot be fine-tuned"),
        (["--init-from", "no-such-model"], "unknown pretrained model"),
        (["--init-from", "/nonexistent/w.safetensors"], "does not exist"),
    ],
    ids=["shape", "ensemble", "name", "file"],
)
def test_init_from_bad_input_is_a_clean_error(tmp_path, capsys, change, message):
    if "ENSEMBLE" in change:
        from laplace_landmarks.checkpoints import save_ensemble
        from laplace_landmarks.weights import pretrained_path

        members = [pretrained_path(n) for n in ("rcn-lite-ytf68", "rcn-lite-medium-ytf68")]
        save_ensemble(members, tmp_path / "ens.safetensors")
        change = [str(tmp_path / "ens.safetensors") if c == "ENSEMBLE" else c for c in change]
    args = [*train_args(tmp_path / "run", tmp_path / "cache", "paper-laplacekl"), *change]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_data_crop_config_reaches_both_crop_caches(tmp_path, monkeypatch):
    """``train --crop detector`` -> ``data.crop``: training and validation faces both cut by the
    detector rule with the five-point-equivalent fallback (see tests/test_cache.py)."""
    from laplace_landmarks.config import TRAIN_FLAG_OVERRIDES, resolve_config
    from laplace_landmarks.data import prepare
    from laplace_landmarks.errors import LandmarksError

    assert TRAIN_FLAG_OVERRIDES["crop"] == "data.crop"
    assert resolve_config("improved-lite").data.crop == "five-point"
    with pytest.raises(LandmarksError, match="data.crop must be one of"):
        resolve_config("improved-lite", {"data.crop": "box"})
    config = resolve_config(
        "improved-lite",
        {"data.crop": "detector", "data.root": str(YTF68_SLICE), "adversarial.enabled": False},
    )
    calls = []
    monkeypatch.setattr(prepare, "build_crop_cache", lambda *a, **kw: calls.append(kw))
    prepare.prepare_data(config, tmp_path, progress=False)
    assert [(kw["rule"], kw["fallback"]) for kw in calls] == [("detector", True)] * 2
