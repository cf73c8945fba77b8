"""The whole training pipeline through ``train``: multi-stage recipes (pipeline.json, resume,
calibration), self crops and ``--calibrate``, on the real in-repo slices at width 1/16."""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import shlex
import signal
from pathlib import Path

import pytest
import torch
from conftest import TEST_DATA, UNLABELED_SLICE, YTF68_SLICE

from laplace_landmarks.checkpoints import load_generator
from laplace_landmarks.cli import main
from laplace_landmarks.config import resolve_config
from laplace_landmarks.data.prepare import prepare_data
from laplace_landmarks.training import Trainer

QUIET = ["--batch-size", "8", "--threads", "1", "--no-progress"]
TINY = ["--width", "0.0625", *QUIET]
# Two ytf68 stages, the second from the first's last weights: the resume test's pipeline.
TWO_STAGES = """
[[stage]]
name = "a"
recipe = "paper-laplacekl"
epochs = 1
[[stage]]
name = "b"
recipe = "paper-laplacekl"
init_from = "previous"
epochs = 2
lr = 0.005
[stage.data]
max_train = 16
"""


@pytest.fixture
def data_root(tmp_path, monkeypatch) -> Path:
    """A data root whose ytf68, 300w and unlabeled folders are the in-repo slices."""
    root = tmp_path / "data"
    root.mkdir()
    for name, source in (
        ("ytf68", YTF68_SLICE),
        ("300w", TEST_DATA / "300w_slice"),
        ("unlabeled", UNLABELED_SLICE),
    ):
        (root / name).symlink_to(source)
    monkeypatch.setenv("LAPLACE_LANDMARKS_DATA_ROOT", str(root))
    return root


def _epochs(run: Path) -> int:
    return int(torch.load(run / "last.pt", weights_only=True)["epoch"])


def test_shipped_300w_recipe_runs_both_stages_and_calibrates(tmp_path, data_root, capsys):
    out, cache = tmp_path / "run", tmp_path / "cache"
    args = ["train", "--recipe", "300w-finetune", "--out", str(out), "--epochs", "1"]
    args += [*TINY, "--max-train", "16", "--max-val", "4", "--cache-dir", str(cache)]
    assert main(args) == 0, capsys.readouterr().err[-2000:]
    record = json.loads((out / "pipeline.json").read_text())
    first, second = record["stages"]
    assert [first["name"], second["name"]] == ["ytf68", "300w"]
    assert first["config"]["data"]["dataset"] == "ytf68"
    assert second["config"]["data"]["dataset"] == "300w"
    assert second["config"]["data"]["train_split"] == "trainval-train"
    assert second["config"]["train"]["init_from"] == str(out / "ytf68" / "best.safetensors")
    assert second["config"]["model"]["width"] == 0.0625 and second["config"]["train"]["lr"] == 5e-4
    assert _epochs(out / "ytf68") == _epochs(out / "300w") == 1
    # calibrated on 300W trainval-train from stage 2's best weights; the offset is fitted
    model, config, _ = load_generator(out / "calibrated.safetensors")
    assert config.data.dataset == "300w" and model.point_offset.abs().sum() > 0
    fit = json.loads((out / "calibrated.json").read_text())
    assert fit["checkpoint"] == str(out / "300w" / "best.safetensors")
    assert record["calibrated"] == str(out / "calibrated.safetensors")
    # each stage's command repeats it: the same resolved config from its config.json
    words = shlex.split(second["command"])
    assert words[:2] == ["laplace-landmarks", "train"]
    recipe = words[words.index("--recipe") + 1]
    again = resolve_config(recipe, init_model=True)
    assert again.to_dict() == second["config"]


def test_multi_stage_resume_skips_finished_stages_and_continues_a_killed_one(
    tmp_path, data_root, capsys
):
    recipe, out = tmp_path / "two.toml", tmp_path / "run"
    recipe.write_text(TWO_STAGES)
    args = ["train", "--recipe", str(recipe), "--out", str(out), *TINY]
    args += ["--cache-dir", str(tmp_path / "cache"), "--max-val", "4"]
    # stage a: 1 epoch of 2 steps; stage b: 2 epochs of 2 steps, killed at its step 3
    child = multiprocessing.get_context("fork").Process(target=_train_and_die, args=(args, 3))
    child.start()
    child.join(120)
    assert child.exitcode == -signal.SIGKILL
    assert _epochs(out / "a") == 1 and _epochs(out / "b") == 1
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "stage a: finished already; skipped" in err and "continuing after epoch 1" in err
    assert _epochs(out / "b") == 2
    record = json.loads((out / "pipeline.json").read_text())
    assert record["stages"][1]["config"]["train"]["init_from"] == str(
        out / "a" / "best.safetensors"
    )
    assert record["calibrated"] is None and not (out / "calibrated.safetensors").exists()


def _train_and_die(args: list[str], step: int) -> None:
    """In a forked child: SIGKILL each stage's Trainer just before its global ``step``."""

    def hook(global_step: int) -> None:
        if global_step == step:
            os.kill(os.getpid(), signal.SIGKILL)

    Trainer.__init__ = functools.partialmethod(Trainer.__init__, on_step=hook)
    main(args)
    os._exit(0)  # not reached when the kill hook fires


@pytest.mark.parametrize(
    "stages, message",
    [
        (
            '[[stage]]\nname = "a"\nrecipe = "paper-laplacekl"\nepoch = 3\n',
            "unknown key(s) ['epoch']",
        ),
        (
            '[[stage]]\nname = "a"\nrecipe = "paper-laplacekl"\ninit_from = "previous"\n',
            "init_from = 'previous' on the first stage",
        ),
        ('[[stage]]\nname = "a"\nrecipe = "no-such-recipe"\n', "base recipe: recipe: unknown"),
        ('[[stage]]\nname = "a"\nepochs = 2\n', "give a base recipe"),
        ('[[stage]]\nrecipe = "paper-laplacekl"\n', "needs a name"),
        ('[[stage]]\nname = "a"\nrecipe = "paper-laplacekl"\npick = "worst"\n', "pick must be"),
        ('[[stage]]\nname = "a"\n[stage.data]\nnonsense = 1\n', "unknown field(s) ['nonsense']"),
        ('epochs = 3\n[[stage]]\nname = "a"\nrecipe = "paper-laplacekl"\n', "top-level key(s)"),
    ],
    ids=["key", "previous", "base", "empty", "name", "pick", "field", "top"],
)
def test_bad_stage_tables_are_one_line_errors(tmp_path, capsys, stages, message):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(stages)
    assert main(["train", "--recipe", str(recipe), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_self_crops_are_cached_and_added_to_the_training_set(tmp_path, capsys):
    overrides = {
        "data.root": str(YTF68_SLICE),
        "data.max_train": 8,
        "data.max_val": 4,
        "data.self_crops_from": "rcn-lite",
        "model.width": 0.0625,
    }
    config = resolve_config("paper-laplacekl", overrides)
    data = prepare_data(config, tmp_path / "cache", progress=False)
    made = len(data.train) - 8
    assert 4 <= made <= 8  # the faces dlib finds around their labels
    assert data.train.images.shape[1:] == (3, 80, 80)
    assert torch.equal(data.train.points[:8], prepare_data(
        resolve_config("paper-laplacekl", {**overrides, "data.self_crops_from": None}),
        tmp_path / "cache",
        progress=False,
    ).train.points)  # fmt: skip
    inside = (data.train.points[8:] >= 0) & (data.train.points[8:] <= 79)
    assert inside.float().mean() > 0.99  # the self crop frames the labelled face
    capsys.readouterr()
    again = prepare_data(config, tmp_path / "cache", progress=False)
    err = capsys.readouterr().err
    assert "self crops ytf68/trainval-train by rcn-lite: " in err and "(cache hit" in err
    assert torch.equal(again.train.images, data.train.images)


def test_train_with_self_crops_and_calibrate(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--recipe", "paper-laplacekl", "--out", str(out), "--epochs", "1", *QUIET]
    args += ["--data-root", str(YTF68_SLICE), "--cache-dir", str(tmp_path / "cache")]
    args += ["--init-from", "rcn-lite", "--self-crops-from", "rcn-lite", "--calibrate"]
    args += ["--max-train", "8", "--max-val", "4", "--pick", "last"]
    assert main(args) == 0, capsys.readouterr().err[-2000:]
    err = capsys.readouterr().err
    assert "self crops ytf68/trainval-train by rcn-lite:" in err and "calibrated:" in err
    saved = json.loads((out / "config.json").read_text())
    assert saved["data"]["self_crops_from"] == "rcn-lite"
    fit = json.loads((out / "calibrated.json").read_text())
    assert fit["checkpoint"] == str(out / "last.pt") and fit["fit_split"] == "trainval-train"
    model, config, _ = load_generator(out / "calibrated.safetensors")
    assert config.model.name == "rcn-lite" and model.point_offset.abs().sum() > 0


def test_multi_stage_recipe_refuses_single_run_flags(tmp_path, capsys):
    recipe = tmp_path / "two.toml"
    recipe.write_text(TWO_STAGES)
    args = ["train", "--recipe", str(recipe), "--out", str(tmp_path / "run"), "--calibrate"]
    assert main(args) == 2
    assert "does not apply to a multi-stage recipe" in capsys.readouterr().err


def test_multi_stage_resume_applies_a_new_lr_and_refuses_a_new_width(tmp_path, data_root, capsys):
    """--resume follows the one-stage rules (config.resume_config) in every stage."""
    recipe, out = tmp_path / "two.toml", tmp_path / "run"
    recipe.write_text(TWO_STAGES)
    args = ["train", "--recipe", str(recipe), "--out", str(out), *TINY]
    args += ["--cache-dir", str(tmp_path / "cache"), "--max-val", "4"]
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "--resume", "--lr", "0.001"]) == 0
    err = capsys.readouterr().err
    assert "stage b: resume: --lr 0.005 -> 0.001" in err
    wider = [a if a != "0.0625" else "0.125" for a in args]
    assert main([*wider, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "--width 0.125 differs from the run's 0.0625 and cannot change" in err


def _run_dlib_label_recipe(recipe: str, tmp_path, capsys, monkeypatch) -> list[dict]:
    """Pseudo-label the unlabelled slice with dlib into runs/pseudo-dlib (where the shipped
    dlib-label recipes read it, relative to the current folder), then run ``recipe`` tiny into
    ``run/``; its stages from pipeline.json. Skips without dlib's 68-point model."""
    from laplace_landmarks.dlib_reference import find_dlib_predictor
    from laplace_landmarks.errors import LandmarksError

    try:
        find_dlib_predictor()
    except LandmarksError:
        pytest.skip("dlib's 68-point predictor is missing: pip install face-recognition-models")
    monkeypatch.chdir(tmp_path)
    assert main(["data", "pseudo-label", str(UNLABELED_SLICE), "--out", "runs/pseudo-dlib"]) == 0
    args = ["train", "--recipe", recipe, "--out", "run", "--epochs", "1"]
    args += [*QUIET, "--batch-size", "4", "--max-train", "8", "--max-val", "4"]
    args += ["--num-unlabeled", "8", "--cache-dir", "cache"]
    assert main(args) == 0, capsys.readouterr().err[-2000:]
    return json.loads(Path("run/pipeline.json").read_text())["stages"]


def test_shipped_default_recipe_grows_the_network_and_adds_the_junk_term(
    tmp_path, data_root, capsys, monkeypatch
):
    """``300w-dlib-accurate`` (how the 80 px model is made), tiny: dlib's labels on the
    unlabelled slice, the same labels with the network grown to depth 1, more epochs on them,
    then 300W with the junk term, then calibration."""
    stages = _run_dlib_label_recipe("300w-dlib-accurate", tmp_path, capsys, monkeypatch)
    names = ["dlib-labels", "dlib-labels-deeper", "dlib-labels-longer", "300w"]
    assert [s["name"] for s in stages] == names
    depths = [s["config"]["model"]["depth"] for s in stages]
    assert depths == [0, 1, 1, 1] and stages[1]["config"]["model"]["zero_init_residual"]
    assert [s["config"]["loss"]["junk_weight"] for s in stages] == [0.0, 0.0, 0.0, 0.01]
    assert [s["config"]["data"]["dataset"] for s in stages] == ["folder"] * 3 + ["300w"]
    assert [s["config"]["train"]["init_from"] for s in stages[2:]] == [
        str(Path("run/dlib-labels-deeper/best.safetensors")),
        str(Path("run/dlib-labels-longer/best.safetensors")),
    ]
    model, config, _ = load_generator(Path("run/calibrated.safetensors"))
    assert config.model.depth == 1 and config.model.width == 0.5
    assert any(k.startswith("extra_enc10.0") for k in model.state_dict())
    # the junk term's running value is logged in the 300W stage only
    assert "train_junk" in Path("run/300w/metrics.csv").read_text().splitlines()[0]
    assert "train_junk" not in Path("run/dlib-labels/metrics.csv").read_text().splitlines()[0]


def test_112_px_recipe_moves_the_default_network_to_larger_crops(
    tmp_path, data_root, capsys, monkeypatch
):
    """``300w-dlib-accurate-112`` (how ``rcn-lite-accurate-112`` is made), tiny: the shipped
    default network at 112 px on dlib's labels, then on 300W with the junk term, calibrated; the
    result takes 112 px crops (its config and the Landmarker)."""
    from laplace_landmarks.inference import Landmarker

    stages = _run_dlib_label_recipe("300w-dlib-accurate-112", tmp_path, capsys, monkeypatch)
    assert [s["name"] for s in stages] == ["dlib-labels", "300w"]
    assert [s["config"]["data"]["size"] for s in stages] == [112, 112]
    assert [s["config"]["loss"]["junk_weight"] for s in stages] == [0.0, 0.01]
    assert stages[0]["config"]["train"]["init_from"] == "rcn-lite-accurate"
    model, config, _ = load_generator(Path("run/calibrated.safetensors"))
    assert config.data.size == 112 and config.model.depth == 1 and config.model.width == 0.5
    landmarker = Landmarker(model, config, threads=1)
    assert landmarker.crop_size == 112
    face = landmarker.predict(
        str(TEST_DATA / "300w_slice" / "helen" / "testset" / "2968560214_1.jpg")
    )
    assert face and face[0].points.shape == (68, 2)
