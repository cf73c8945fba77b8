"""Self crops and the model cards' rebuild commands, through the library and the CLI.

``laplace_landmarks.self_crops`` crops labelled faces the way a model's own detector path does;
``train --init-from RAW --self-crops-from NAME_OR_FILE`` fine-tunes on them (what the removed
``benchmarks/self_crop_finetune.py`` did, see commit 2658f6f); every shipped file's model card
names the CLI commands that rebuild it. All on the real ytf68 slice."""

from __future__ import annotations

import csv
import dataclasses
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import UNLABELED_SLICE, YTF68_SLICE

from laplace_landmarks.checkpoints import load_generator
from laplace_landmarks.cli import build_parser, main
from laplace_landmarks.config import RunConfig
from laplace_landmarks.data.cache import concat_crop_caches
from laplace_landmarks.data.crops import warp_crop
from laplace_landmarks.data.datasets import load_dataset
from laplace_landmarks.data.images import to_rgb_array
from laplace_landmarks.data.prepare import prepare_data
from laplace_landmarks.detection import detection_holding
from laplace_landmarks.inference import Landmarker
from laplace_landmarks.self_crops import self_crop_cache
from laplace_landmarks.training import Trainer
from laplace_landmarks.weights import list_pretrained, pretrained_path

TIMING_COLUMNS = {"seconds", "images_per_s"}


def test_self_crops_are_the_detector_path_crops_and_hold_the_ground_truth(tmp_path):
    dataset = load_dataset("ytf68", "trainval-train", root=str(YTF68_SLICE))
    cache = self_crop_cache("rcn-lite", dataset, tmp_path / "cache")
    assert 10 <= len(cache) <= len(dataset) and cache.images.shape[1:] == (3, 80, 80)
    inside = (cache.points >= 0) & (cache.points <= 79)
    assert inside.float().mean() > 0.99  # the re-crop frames the face
    # the 5-point rule puts the eye centres near the same crop pixels as for GT crops
    eyes = cache.points[:, 36:48].mean(dim=1)
    assert torch.all((eyes[:, 0] > 25) & (eyes[:, 0] < 55) & (eyes[:, 1] > 20) & (eyes[:, 1] < 45))
    truth = {str(sample.image_path): sample.points for sample in dataset.samples}
    landmarker = Landmarker.from_checkpoint(
        pretrained_path("rcn-lite"), refine=True, flip_test=False
    )
    for i in range(len(cache)):
        crop, rgb = cache.crop(i), to_rgb_array(cache.paths[i], "image")
        # round trip: the stored transform maps the crop points back onto the labels (float32
        # crop points) and warps the image into exactly the stored pixels
        back = crop.to_image(cache.points[i].numpy().astype(np.float64))
        np.testing.assert_allclose(back, truth[cache.paths[i]], atol=1e-2)
        assert np.array_equal(warp_crop(rgb, crop), cache.images[i].permute(1, 2, 0).numpy())
        if i < 3:  # the crop is the user path's: detection holding the GT centre -> re-crop
            centre = np.nanmean(truth[cache.paths[i]], axis=0)
            box = detection_holding(landmarker.detector(rgb), centre)
            face = landmarker.predict(rgb, boxes=[box])[0]
            # the crop comes from float32 points (~100 px, eps 1.2e-7 relative), which batching
            # and the CPU's kernels may round differently: agree to 1e-4 crop px, far below a pixel
            np.testing.assert_allclose(face.crop.matrix, cache.matrices[i].numpy(), atol=1e-4)
    # other weights make other crops, in another cache file (never a stale hit)
    other = self_crop_cache("rcn-lite-ytf68", dataset, tmp_path / "cache")
    assert other.file != cache.file and other.file.exists() and cache.file.exists()
    assert len(other) != len(cache) or not torch.equal(other.matrices, cache.matrices)


def _checkpoint(run: Path) -> dict:
    return torch.load(run / "last.pt", map_location="cpu", weights_only=True)


def _metrics(run: Path) -> list[dict]:
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


def test_train_self_crops_from_fine_tunes_exactly_as_the_removed_script_did(tmp_path, capsys):
    """``train --recipe improved-lite --init-from RAW --self-crops-from M --epochs E --lr L`` (the
    ytf68 cards' stage 2) trains the same weights as ``self_crop_finetune.py --weights RAW
    --crops-from M --epochs E --lr L`` did: RAW's own config with new epochs / lr, the
    ground-truth crops then M's self crops, RAW's weights without their point offset."""
    weights = pretrained_path("rcn-lite-ytf68")
    cache_dir, unlabeled = tmp_path / "cache", str(UNLABELED_SLICE / "ytf")
    cli = tmp_path / "cli"
    args = [
        "train", "--recipe", "improved-lite", "--init-from", str(weights),
        "--self-crops-from", "rcn-lite-ytf68", "--epochs", "1", "--lr", "5e-4",
        "--batch-size", "8", "--threads", "1", "--unlabeled", unlabeled,
        "--data-root", str(YTF68_SLICE), "--cache-dir", str(cache_dir), "--out", str(cli),
        "--no-progress",
    ]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err[-3000:]
    err = capsys.readouterr().err
    made = re.search(
        r"self crops ytf68/trainval-train by rcn-lite-ytf68: (\d+) of (\d+) faces", err
    )
    assert made, err[-2000:]
    # the network comes from the weights (width 1/8, depth 2), not from the recipe's defaults
    model, config, _ = load_generator(weights)
    saved = RunConfig.from_dict(_checkpoint(cli)["config"])
    assert saved.model == dataclasses.replace(config.model, dropout=saved.model.dropout)
    assert saved.model.depth == 2

    # the removed script's procedure, by hand
    raw = config.to_dict()
    raw["train"].update(epochs=1, lr=5e-4, threads=1, batch_size=8)
    raw["data"]["root"] = str(YTF68_SLICE)
    raw["adversarial"]["unlabeled"] = unlabeled
    config = RunConfig.from_dict(raw)
    data = prepare_data(config, cache_dir, progress=False)
    train = load_dataset("ytf68", "trainval-train", root=str(YTF68_SLICE))
    extra = self_crop_cache("rcn-lite-ytf68", train, cache_dir)
    assert len(extra) == int(made.group(1)) and int(made.group(2)) == len(train)
    data = dataclasses.replace(data, train=concat_crop_caches(data.train, extra))
    assert len(data.train) == len(train) + int(made.group(1))  # every GT crop, every self crop
    trainer = Trainer(config, tmp_path / "script", progress=False, data=data)
    state = {k: v for k, v in model.state_dict().items() if k != "point_offset"}
    trainer.model.load_state_dict(state, strict=False)
    trainer.fit()

    a, b = _checkpoint(cli), _checkpoint(tmp_path / "script")
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert _metrics(cli) == _metrics(tmp_path / "script")
    # and it moved: one epoch at lr 5e-4 changed the shipped weights
    assert any(not torch.equal(a["model"][key], state[key]) for key in state)


def _commands(card: Path) -> list[list[str]]:
    """The shell commands of a card's fenced code blocks (continuations joined, comments gone)."""
    blocks = re.findall(r"^\s*```[^\n]*\n(.*?)^\s*```", card.read_text(), re.M | re.S)
    assert blocks, f"{card.name}: no command block"
    text = "\n".join(blocks).replace("\\\n", " ")
    return [words for line in text.splitlines() if (words := shlex.split(line, comments=True))]


@pytest.mark.parametrize("name", [entry["name"] for entry in list_pretrained()])
def test_every_model_card_rebuilds_its_file_with_the_cli(name):
    """Every shipped file's card gives a command sequence that ends in that file: each command
    parses with today's CLI, and each weights file a command reads is a shipped name or
    something an earlier command wrote. Its calibration fits the scale factor exactly when the
    shipped file has one."""
    target = f"{name}.safetensors"
    shipped = {entry["name"] for entry in list_pretrained()}
    parser, written, calibrations = build_parser(), set(), []

    def made_here(path: str) -> bool:
        return any(path == out or path.startswith(out.rstrip("/") + "/") for out in written)

    for words in _commands(pretrained_path(name).with_suffix(".md")):
        if words[0] == "cp":  # cp RUN/calibrated.safetensors NAME.safetensors
            assert len(words) == 3 and made_here(words[1]), words
            written.add(words[2])
            continue
        assert words[0] == "laplace-landmarks", f"{name}: not a CLI command: {shlex.join(words)}"
        args = parser.parse_args(words[1:])
        for flag in ("init_from", "self_crops_from", "checkpoint"):
            source = getattr(args, flag, None)
            assert source is None or source in shipped or made_here(source), (name, words)
        if getattr(args, "out", None):
            written.add(str(args.out))
        if args.command == "calibrate":
            calibrations.append(args)
    assert target in written, f"{name}: no command writes {target}"
    model, _, _ = load_generator(pretrained_path(name))
    fitted = float(model.scale_factor) != 1.0
    for args in calibrations:
        if args.out == target:
            assert args.no_scale is not fitted, f"{name}: --no-scale disagrees with the file"
