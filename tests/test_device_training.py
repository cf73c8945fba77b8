"""Training on another device and against a clock: ``train --device/--time-limit``,
``Trainer(data=...)`` (training from crops already made, with no dataset folder) and
``reproduce --widths/--device``, on the real ytf68 slice."""

from __future__ import annotations

import pytest
import torch
from conftest import UNLABELED_SLICE, YTF68_SLICE
from test_training import ADVERSARIAL_TOML, load, metrics_without_timing, train_args

from laplace_landmarks.cli import build_parser, main
from laplace_landmarks.commands.reproduce import command_line
from laplace_landmarks.config import resolve_config
from laplace_landmarks.data.prepare import prepare_data
from laplace_landmarks.distributed import resolve_device
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.reproduce.grid import GridOptions, build_grid
from laplace_landmarks.training import Trainer, to_cpu


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
    moved = to_cpu(state)
    assert isinstance(moved["a"][1], tuple) and moved["a"][1][1] == 3 and moved["d"] == "x"
    assert all(t.device.type == "cpu" for t in (moved["a"][0], moved["b"]["c"]))


def test_trainer_takes_prepared_data_and_trains_as_the_cli_does(tmp_path, capsys):
    """A Trainer given the crops (as a machine without the dataset folder gets them) trains
    exactly the run ``train`` makes from the dataset: same weights, same metrics."""
    cache, recipe = tmp_path / "cache", tmp_path / "adv.toml"
    recipe.write_text(ADVERSARIAL_TOML)
    unlabeled = str(UNLABELED_SLICE / "ytf")
    args = train_args(tmp_path / "cli", cache, str(recipe), "--unlabeled", unlabeled)
    assert main(args) == 0, capsys.readouterr().err[-2000:]
    overrides = {
        "data.root": str(YTF68_SLICE),
        "data.cache_dir": str(cache),
        "model.width": 0.0625,
        "train.epochs": 2,
        "train.batch_size": 8,
        "train.lr": 0.01,
        "train.threads": 1,
        "adversarial.unlabeled": unlabeled,
    }
    config = resolve_config(str(recipe), overrides)
    data = prepare_data(config, cache, progress=False)
    raw = config.to_dict()
    raw["data"]["root"] = "/nonexistent/ytf68"  # never read: the crops are given
    moved = type(config).from_dict(raw)
    history = Trainer(moved, tmp_path / "given", progress=False, data=data).fit()
    assert len(history) == 2
    a, b = load(tmp_path / "cli"), load(tmp_path / "given")
    for part in ("model", "disc"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    assert metrics_without_timing(tmp_path / "cli") == metrics_without_timing(tmp_path / "given")
    no_unlabeled = type(data)(data.train, data.val, None)
    with pytest.raises(LandmarksError, match="needs unlabelled faces"):
        Trainer(moved, tmp_path / "run2", progress=False, data=no_unlabeled)


def test_reproduce_widths_and_device_flags_and_grid(capsys):
    parser = build_parser()
    args = parser.parse_args(["reproduce", "--small", "--widths", "1/16,1/8,1", "--device", "cuda"])
    assert args.widths == (0.0625, 0.125, 1.0) and args.device == "cuda"
    assert "--widths 0.0625,0.125,1 --device cuda" in command_line(args)
    assert parser.parse_args(["reproduce", "--widths", "0.25, 0.5"]).widths == (0.25, 0.5)
    assert "--device" not in command_line(parser.parse_args(["reproduce"]))  # cpu: the default
    for bad in ("0", "2", "a,b", "1/0"):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(["reproduce", "--widths", bad])
        assert exit_info.value.code == 2 and "widths" in capsys.readouterr().err
    opts = GridOptions(small=True, widths=(1.0, 0.5), seeds=1, unlabeled=str(UNLABELED_SLICE))
    grid = build_grid(opts)
    assert sorted({spec.width for spec in grid["table3"]}) == [0.5, 1.0]
    assert len(grid["table3"]) == 2 * 3  # softargmax, LaplaceKL, LaplaceKL+D per width


def test_ddp_picks_nccl_for_gpus_and_gloo_for_the_cpu(monkeypatch):
    """torchrun on GPUs: NCCL, one GPU per process (cuda:$LOCAL_RANK); gloo on the CPU. The
    NCCL run itself needs GPUs (see docs/results.md); the gloo path trains in test_training."""
    from laplace_landmarks.distributed import process_group_backend, rank_device

    assert process_group_backend(torch.device("cuda")) == "nccl"
    assert process_group_backend(torch.device("cpu")) == "gloo"
    assert process_group_backend(None) == "gloo"
    assert rank_device(torch.device("cpu"), 2) == torch.device("cpu")
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(LandmarksError, match="process 3 on this node has no GPU of its own"):
        rank_device(torch.device("cuda"), 4)
    chosen = []
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    assert rank_device(torch.device("cuda"), 4) == torch.device("cuda", 1) and chosen == [1]
