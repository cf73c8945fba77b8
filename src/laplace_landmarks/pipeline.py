"""Multi-stage training: a recipe of ``[[stage]]`` tables run in order, then point calibration.

A multi-stage recipe (TOML)::

    calibrate = true               # fit the point offset of the last stage's weights at the end

    [[stage]]
    name = "ytf68"                 # the stage's folder: OUT/ytf68/
    recipe = "improved-lite"       # base recipe (name or .toml); or give sections inline
    epochs = 60                    # shorthands: epochs, lr, dataset, init_from, self_crops_from
    [stage.data]                   # inline sections (model, loss, adversarial, data, train)
    dataset = "ytf68"

    [[stage]]
    name = "300w"
    recipe = "improved-lite"
    init_from = "previous"         # start from the previous stage's chosen weights
    pick = "best"                  # which weights this stage hands on: best (default) or last

A stage's config is its base recipe, then its inline sections, then its shorthands, then the CLI
overrides (which apply to every stage). ``"previous"`` (in ``init_from`` or ``self_crops_from``)
is the previous stage's ``best.safetensors``, or its ``last.pt`` when that stage says
``pick = "last"``. Each stage trains into ``OUT/<name>/`` like ``laplace-landmarks train``;
``OUT/pipeline.json`` holds each stage's resolved config and the one-stage command that repeats it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from laplace_landmarks.atomic import atomic_write_text, make_folder
from laplace_landmarks.calibration import calibrate_weights
from laplace_landmarks.checkpoints import load_checkpoint
from laplace_landmarks.config import RunConfig, load_recipe, resolve_raw, resume_config
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.training import Trainer

SECTIONS = ("model", "loss", "adversarial", "data", "train")
SHORTHANDS = {
    "epochs": "train.epochs",
    "lr": "train.lr",
    "dataset": "data.dataset",
    "init_from": "train.init_from",
    "self_crops_from": "data.self_crops_from",
}
STAGE_KEYS = ("name", "recipe", "pick", *SECTIONS, *SHORTHANDS)
PIPELINE_KEYS = ("recipe", "description", "calibrate", "stage")
PICKS = {"best": "best.safetensors", "last": "last.pt"}
PREVIOUS = "previous"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Stage:
    """One stage: its folder name, its recipe dict (may say "previous") and which weights to pick."""

    name: str
    raw: dict[str, Any]
    pick: str = "best"


@dataclass(frozen=True)
class Pipeline:
    name: str
    stages: tuple[Stage, ...]
    calibrate: bool = False


@dataclass
class PipelineResult:
    stages: list[dict[str, Any]] = field(default_factory=list)
    weights: Path | None = None  # the last stage's chosen weights
    calibrated: Path | None = None
    stopped_early: bool = False


def is_pipeline(raw: dict[str, Any]) -> bool:
    """Whether a loaded recipe is a multi-stage one (has ``[[stage]]`` tables)."""
    return "stage" in raw


def parse_pipeline(raw: dict[str, Any]) -> Pipeline:
    """Check a multi-stage recipe and return its stages; LandmarksError names what is wrong.

    Every stage's base recipe is loaded and its config checked here, before anything trains."""
    name = str(raw.get("recipe", "pipeline"))
    unknown = sorted(set(raw) - set(PIPELINE_KEYS))
    if unknown:
        raise LandmarksError(
            f"recipe {name}: unknown top-level key(s) {unknown} in a multi-stage recipe; "
            f"allowed: {list(PIPELINE_KEYS)} (sections go inside each [[stage]])"
        )
    tables = raw["stage"]
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise LandmarksError(f"recipe {name}: 'stage' must be one or more [[stage]] tables")
    if not isinstance(raw.get("calibrate", False), bool):
        raise LandmarksError(f"recipe {name}: calibrate must be true or false")
    stages: list[Stage] = []
    for index, table in enumerate(tables):
        stages.append(_parse_stage(name, index, table, [s.name for s in stages]))
    return Pipeline(name, tuple(stages), bool(raw.get("calibrate", False)))


def _parse_stage(pipeline: str, index: int, table: dict, earlier: list[str]) -> Stage:
    where = f"recipe {pipeline}, stage {index + 1}"
    stage_name = table.get("name")
    if not isinstance(stage_name, str) or not _NAME.match(stage_name):
        raise LandmarksError(f"{where}: needs a name (letters, digits, . _ -), got {stage_name!r}")
    where = f"recipe {pipeline}, stage {stage_name!r}"
    if stage_name in earlier:
        raise LandmarksError(f"{where}: the name is used by an earlier stage")
    unknown = sorted(set(table) - set(STAGE_KEYS))
    if unknown:
        raise LandmarksError(f"{where}: unknown key(s) {unknown}; allowed: {list(STAGE_KEYS)}")
    pick = table.get("pick", "best")
    if pick not in PICKS:
        raise LandmarksError(f"{where}: pick must be one of {list(PICKS)}, got {pick!r}")
    if "recipe" not in table and not any(s in table for s in SECTIONS):
        raise LandmarksError(f"{where}: give a base recipe (recipe = NAME) or inline sections")
    raw = _stage_raw(where, table)
    raw["recipe"] = f"{pipeline}/{stage_name}"
    for dotted in ("train.init_from", "data.self_crops_from"):
        section, _, key = dotted.partition(".")
        if raw.get(section, {}).get(key) == PREVIOUS and index == 0:
            raise LandmarksError(f"{where}: {key} = 'previous' on the first stage (none before it)")
    checked = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for dotted in ("train.init_from", "data.self_crops_from"):
        section, _, key = dotted.partition(".")
        checked.get(section, {}).pop(key, None)  # weights may not exist yet
    try:
        RunConfig.from_dict(checked)
    except LandmarksError as exc:
        raise LandmarksError(f"{where}: {exc}") from exc
    return Stage(stage_name, raw, pick)


def _stage_raw(where: str, table: dict) -> dict[str, Any]:
    """Base recipe, then inline sections, then shorthands, as one recipe dict."""
    raw: dict[str, Any] = {}
    if "recipe" in table:
        try:
            base = load_recipe(str(table["recipe"]))
        except LandmarksError as exc:
            raise LandmarksError(f"{where}: base recipe: {exc}") from exc
        if is_pipeline(base):
            raise LandmarksError(f"{where}: base recipe {table['recipe']!r} is itself multi-stage")
        raw = {k: dict(v) for k, v in base.items() if isinstance(v, dict)}
    for section in SECTIONS:
        if section in table:
            if not isinstance(table[section], dict):
                raise LandmarksError(f"{where}: [{section}] must be a table")
            raw.setdefault(section, {}).update(table[section])
    for short, dotted in SHORTHANDS.items():
        if short in table:
            section, _, key = dotted.partition(".")
            raw.setdefault(section, {})[key] = table[short]
    return raw


def chosen_weights(run_dir: str | Path, pick: str = "best") -> Path:
    """The weights a finished run hands on: ``best.safetensors`` or ``last.pt``."""
    if pick not in PICKS:
        raise LandmarksError(f"pick: must be one of {list(PICKS)}, got {pick!r}")
    return Path(run_dir) / PICKS[pick]


def stage_config(
    stage: Stage, previous: Path | None, overrides: dict[str, Any] | None = None
) -> RunConfig:
    """The resolved config of ``stage``: "previous" becomes ``previous`` (the weights path)."""
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in stage.raw.items()}
    for section, key in (("train", "init_from"), ("data", "self_crops_from")):
        if raw.get(section, {}).get(key) == PREVIOUS:
            if previous is None:
                raise LandmarksError(f"stage {stage.name}: {key} = 'previous' with no stage before")
            raw[section][key] = str(previous)
    return resolve_raw(raw, overrides, init_model=True)


def train_command(run_dir: Path, calibrate: bool = False, pick: str = "best") -> str:
    """The one-stage command that repeats a run from its saved ``config.json``."""
    words = ["laplace-landmarks", "train", "--recipe", str(run_dir / "config.json")]
    words += ["--out", str(run_dir)]
    if calibrate:
        words += ["--calibrate"] + (["--pick", pick] if pick != "best" else [])
    return shlex.join(words)


def calibrate_run(
    weights: Path, config: RunConfig, out: Path, cache_dir: str | Path | None = None
) -> dict[str, Any]:
    """Fit the point offset of ``weights`` on the run's training split (checked on its
    validation split) with :func:`~laplace_landmarks.calibration.calibrate_weights`; writes
    ``out`` and ``out`` with ``.json``."""
    d = config.data
    result = calibrate_weights(
        weights,
        out,
        dataset=d.dataset,
        fit_split=d.train_split,
        check_split=d.val_split,
        root=d.root,
        cache_dir=cache_dir or d.cache_dir,
        threads=config.train.threads or 1,
    )
    _write_json(out.with_suffix(".json"), result)
    before, after = result["nme_before"][d.val_split], result["nme_after"][d.val_split]
    print(
        f"calibrated: {d.dataset}/{d.val_split} NME {before:.3f} -> {after:.3f} % -> {out}",
        file=sys.stderr,
    )
    return result


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


def run_pipeline(
    pipeline: Pipeline,
    out_dir: str | Path,
    overrides: dict[str, Any] | None = None,
    *,
    resume: bool = False,
    time_limit: float | None = None,
    **trainer_options: Any,
) -> PipelineResult:
    """Train the stages in order into ``out_dir/<stage>/``, then calibrate if the recipe says so.

    With ``resume``, a finished stage (its ``last.pt`` at the last epoch) is skipped and an
    interrupted one continues from its ``last.pt``. ``time_limit`` (s) covers all stages; past
    it, the run stops after an epoch and ``resume`` continues. ``trainer_options`` go to
    :class:`~laplace_landmarks.training.Trainer`.
    """
    out_dir, result = Path(out_dir), PipelineResult()
    deadline = None if time_limit is None else time.monotonic() + time_limit
    previous: Path | None = None
    config: RunConfig | None = None
    for stage in pipeline.stages:
        stage_dir = out_dir / stage.name
        config = _resume_config(stage_dir, overrides) if resume else None
        config = config or stage_config(stage, previous, overrides)
        result.stages.append(_stage_record(stage, stage_dir, config))
        _write_pipeline(out_dir, pipeline, result)
        left = None if deadline is None else deadline - time.monotonic()
        if not _train_stage(stage, stage_dir, config, resume, left, trainer_options):
            result.stopped_early = True
            return result
        previous = chosen_weights(stage_dir, stage.pick)
        if not previous.is_file():
            raise LandmarksError(f"stage {stage.name}: {previous} was not written")
    result.weights = previous
    if pipeline.calibrate and config is not None and _rank() == 0:
        result.calibrated = out_dir / "calibrated.safetensors"
        calibrate_run(previous, config, result.calibrated)
    _write_pipeline(out_dir, pipeline, result)
    return result


def _train_stage(
    stage: Stage,
    stage_dir: Path,
    config: RunConfig,
    resume: bool,
    time_left: float | None,
    trainer_options: dict[str, Any],
) -> bool:
    """Train (or skip, if finished and resuming) one stage; False when it stopped on time."""
    if resume and _finished(stage_dir, config):
        print(f"stage {stage.name}: finished already; skipped", file=sys.stderr)
        return True
    if time_left is not None and time_left <= 0:
        return False
    print(f"stage {stage.name}: training into {stage_dir}", file=sys.stderr)
    trainer = Trainer(config, stage_dir, resume=resume, time_limit=time_left, **trainer_options)
    trainer.fit()
    return not trainer.stopped_early


def _rank() -> int:
    """This process's rank under torchrun (0 otherwise): rank 0 writes the pipeline's files."""
    return int(os.environ.get("RANK", "0"))


def _resume_config(stage_dir: Path, overrides: dict[str, Any] | None) -> RunConfig | None:
    """The config a started stage was trained with (``last.pt``), with the new values of the
    options a resumed run may change (``config.resume_config``: --epochs, --lr, ...); a changed
    option that would alter the network or the data is a LandmarksError."""
    if not (stage_dir / "last.pt").exists():
        return None
    saved = load_checkpoint(stage_dir / "last.pt")["config"]
    config, notes = resume_config(saved, overrides or {})
    for note in notes:
        print(f"stage {stage_dir.name}: resume: {note} (from the next epoch)", file=sys.stderr)
    return config


def _finished(stage_dir: Path, config: RunConfig) -> bool:
    last = stage_dir / "last.pt"
    return last.exists() and int(load_checkpoint(last)["epoch"]) >= config.train.epochs


def _stage_record(stage: Stage, stage_dir: Path, config: RunConfig) -> dict[str, Any]:
    if _rank() == 0:
        make_folder(stage_dir)
        _write_json(stage_dir / "config.json", config.to_dict())  # the command below reads it
    return {
        "name": stage.name,
        "dir": str(stage_dir),
        "pick": stage.pick,
        "weights": str(chosen_weights(stage_dir, stage.pick)),
        "command": train_command(stage_dir),
        "config": config.to_dict(),
    }


def _write_pipeline(out_dir: Path, pipeline: Pipeline, result: PipelineResult) -> None:
    if _rank() != 0:
        return
    make_folder(out_dir)
    payload: dict[str, Any] = {
        "recipe": pipeline.name,
        "calibrate": pipeline.calibrate,
        "stages": result.stages,
    }
    if pipeline.calibrate and result.stages:
        last = pipeline.stages[-1]
        weights = chosen_weights(out_dir / last.name, last.pick)
        config = RunConfig.from_dict(result.stages[-1]["config"])
        d = config.data
        words = ["laplace-landmarks", "calibrate", "--checkpoint", str(weights)]
        words += ["--out", str(out_dir / "calibrated.safetensors"), "--data", d.dataset]
        words += ["--fit-split", d.train_split, "--check-split", d.val_split]
        words += ["--data-root", d.root] if d.root else []
        payload["calibrate_command"] = shlex.join(words)
    payload["calibrated"] = str(result.calibrated) if result.calibrated else None
    _write_json(out_dir / "pipeline.json", payload)
