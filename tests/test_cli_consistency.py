"""One command line: every option documented, one name for the data root, defaults that exist.

The help walk covers every command and nested subcommand (``data check``, ``study unlabeled``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil

import pytest

from laplace_landmarks.cli import build_parser, main
from laplace_landmarks.data.datasets import (
    DATA_ROOT_ENV,
    DATASET_NAMES,
    default_split,
    load_dataset,
)


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """(command words, parser) for the parser and every nested subcommand."""
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += commands(sub, (*path, name))
    return found


def help_problems(parser: argparse.ArgumentParser) -> list[str]:
    """Options, positionals and subcommands without help (-h and hidden aliases aside), and
    reStructuredText double backticks anywhere in the parser's help."""
    problems = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._SubParsersAction):
            problems += [f"no help: {c.dest}" for c in action._choices_actions if not c.help]
        elif not (action.help or "").strip():
            name = action.option_strings[-1] if action.option_strings else action.dest
            problems.append(f"no help: {name}")
    for text in (parser.description, parser.epilog, parser.format_help()):
        if "``" in (text or ""):
            problems.append(f"reStructuredText: {text[:80]!r}")
    return problems


def test_the_walk_reaches_nested_subcommands():
    names = {" ".join(path) for path, _ in commands(build_parser())}
    assert {"data check", "data pseudo-label", "study unlabeled", "predict", "align"} <= names


def test_the_help_check_finds_what_it_should():
    parser = argparse.ArgumentParser(description="uses ``markup``")
    parser.add_argument("--bare")
    parser.add_argument("--hidden", help=argparse.SUPPRESS)
    parser.add_argument("--fine", help="documented")
    problems = help_problems(parser)  # the description, then the whole help text
    assert problems[0] == "no help: --bare" and len(problems) == 3
    assert all(problem.startswith("reStructuredText: ") for problem in problems[1:])


@pytest.mark.parametrize(
    "path, parser", [pytest.param(*c, id=" ".join(c[0]) or "-") for c in commands(build_parser())]
)
def test_every_option_has_help_and_no_rst_markup(path, parser):
    assert not help_problems(parser), " ".join(path)


def run(*argv: object) -> tuple[int, str, str]:
    """``laplace-landmarks ARGV`` in-process; (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def error_line(err: str) -> str:
    """The one error line ``cli.main`` printed (no traceback, no second line)."""
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


# --- 1. one name for the data root ----------------------------------------------------------


def test_every_command_with_a_data_root_calls_it_data_root():
    for path, parser in commands(build_parser()):
        options = {
            o for a in parser._actions for o in a.option_strings if a.help != argparse.SUPPRESS
        }
        assert "--root" not in options, " ".join(path)
    words = {
        " ".join(p)
        for p, parser in commands(build_parser())
        if "--data-root" in parser._option_string_actions
    }
    assert {"data check", "evaluate", "calibrate", "train", "reproduce", "study unlabeled"} <= words


def test_data_check_takes_data_root(test_data):
    code, out, _ = run(
        "data", "check", "ytf68", "--split", "test", "--data-root", test_data / "ytf68_slice"
    )
    assert code == 0 and "faces: 16 (16 labelled)" in out


def test_data_check_keeps_root_as_a_hidden_alias(test_data, capsys):
    code, out, _ = run(
        "data", "check", "ytf68", "--split", "test", "--root", test_data / "ytf68_slice"
    )
    assert code == 0 and "faces: 16 (16 labelled)" in out
    with pytest.raises(SystemExit):
        main(["data", "check", "--help"])
    assert "--root" not in capsys.readouterr().out


@pytest.mark.parametrize("value", ["data root", "dataset folder"])
def test_data_check_honours_the_environment(test_data, tmp_path, monkeypatch, value):
    folder = tmp_path / "ytf68"
    shutil.copytree(test_data / "ytf68_slice", folder)
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path if value == "data root" else folder))
    code, out, err = run("data", "check", "ytf68", "--split", "test")
    assert code == 0 and "faces: 16 (16 labelled)" in out, err


# --- 2. errors say what to do on the command line and in Python ------------------------------


def test_a_missing_data_root_names_the_option_the_argument_and_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "nowhere"))
    code, _, err = run("data", "check", "ytf68")
    line = error_line(err)
    assert code == 2 and "--data-root" in line and "root=" in line and DATA_ROOT_ENV in line
    assert str(tmp_path / "nowhere") in line


def test_the_folder_dataset_without_a_folder_says_both(monkeypatch):
    with pytest.raises(ValueError, match="--data-root") as info:
        load_dataset("folder", "all")
    assert "root=" in str(info.value)


# --- 3. data check recognises every format load_dataset reads ---------------------------------


def test_data_check_recognises_a_ytf68_folder(test_data):
    code, out, err = run("data", "check", test_data / "ytf68_slice")
    assert code == 0, err
    assert "dataset: ytf68 split: train" in out and "faces: 24 (24 labelled), skipped: 0" in out


def test_data_check_recognises_a_300w_tree(test_data):
    code, out, err = run("data", "check", test_data / "300w_slice", "--split", "common")
    assert code == 0, err
    assert "dataset: 300w split: common" in out and "faces: 8 (8 labelled)" in out


def test_data_check_recognises_coco_json(test_data, tmp_path):
    folder = shutil.copytree(test_data / "fixtures" / "mmpose" / "cofw", tmp_path / "cofw")
    code, out, err = run("data", "check", folder)
    assert code == 0, err
    assert "dataset: cofw split: test" in out and "faces: 2 (2 labelled)" in out
    assert "points per face: 29" in out


def test_data_check_recognises_images_alone_as_unlabelled(test_data):
    code, out, err = run("data", "check", test_data / "unlabeled_slice")
    assert code == 0, err
    assert "dataset: unlabeled split: all" in out and "faces: 8 (0 labelled)" in out


@pytest.mark.parametrize("content", ["empty", "text files", "unnamed json"])
def test_data_check_refuses_a_folder_it_cannot_read(tmp_path, content):
    folder = tmp_path / "faces"
    folder.mkdir()
    if content == "text files":
        (folder / "notes.txt").write_text("hello\n")
    elif content == "unnamed json":
        (folder / "labels.json").write_text(json.dumps({"images": []}))
    code, out, err = run("data", "check", folder)
    line = error_line(err)
    assert code == 2 and out == ""
    assert str(folder) in line and "no dataset" in line


def test_data_check_fails_when_no_face_loads(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"")
    (folder / "a.pts").write_text("version: 1\nn_points: 2\n{\n1 2\n}\n")  # bad: 1 line
    code, out, err = run("data", "check", folder)
    assert code == 2 and "faces: 0" in out and "skipped: " in out
    assert "no face" in error_line(err)


def test_data_check_refuses_a_folder_and_a_data_root_together(test_data):
    slice_ = test_data / "ytf68_slice"
    code, _, err = run("data", "check", slice_, "--data-root", slice_)
    assert code == 2 and "--data-root" in error_line(err)


# --- 4. split defaults exist for each dataset --------------------------------------------------


def test_every_dataset_has_default_splits():
    for name in DATASET_NAMES:
        for role in ("train", "fit", "val", "test"):
            assert default_split(name, role)
    assert default_split("300w", "test") == "common"
    assert default_split("ytf68", "test") == "test"


def test_evaluate_defaults_to_a_split_300w_has(monkeypatch, test_data):
    import laplace_landmarks.evaluation_run as evaluation_run

    seen = {}

    def fake(config, dataset, split, root, crop, cache_dir):
        seen["split"] = split
        raise evaluation_run.LandmarksError("stop")

    monkeypatch.setattr(evaluation_run, "load_split", fake)
    code, _, _ = run(
        "evaluate",
        "--checkpoint",
        "rcn-lite",
        "--data",
        "300w",
        "--data-root",
        test_data / "300w_slice",
    )
    assert code == 2 and seen["split"] == "common"


def test_evaluate_unknown_split_lists_the_datasets_splits(test_data):
    code, _, err = run(
        "evaluate", "--checkpoint", "rcn-lite", "--data", "300w", "--split", "test",
        "--data-root", test_data / "300w_slice",
    )  # fmt: skip
    line = error_line(err)
    assert code == 2 and "'test'" in line and "common" in line and "challenge" in line


def test_unknown_coco_and_folder_splits_list_what_is_there(test_data, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"splits here: \['test'\]"):
        load_dataset("cofw", "val", test_data / "fixtures" / "mmpose" / "cofw")
    with pytest.raises(FileNotFoundError, match=r"'all' or a sub-folder: \['afw', 'helen'\]"):
        load_dataset("folder", "val", test_data / "300w_slice")


def test_calibrate_split_defaults_follow_the_dataset(monkeypatch):
    import laplace_landmarks.calibration as calibration

    seen = {}

    def fake(checkpoint, out, *, dataset, fit_split, check_split, **kwargs):
        seen.update(fit=fit_split, check=check_split)
        raise calibration.LandmarksError("stop")

    monkeypatch.setattr(calibration, "calibrate_weights", fake)
    for data, expected in (("300w", ("trainval-train", "val")), ("folder", ("train", "val"))):
        code, _, _ = run("calibrate", "--checkpoint", "x", "--out", "y.safetensors", "--data", data)
        assert code == 2 and (seen["fit"], seen["check"]) == expected


# --- 5. bench defaults to what ships ----------------------------------------------------------


def test_bench_defaults_to_the_default_shipped_models_architecture(monkeypatch):
    import laplace_landmarks.bench as bench
    from laplace_landmarks.weights import pretrained_entry

    seen = {}

    def fake(widths, backends, **kwargs):
        seen.update(kwargs)
        return [], 1.0

    monkeypatch.setattr(bench, "run_bench", fake)
    monkeypatch.setattr(bench, "format_table", lambda rows, peak: "")
    assert run("bench", "--backends", "torch")[0] == 0
    assert seen["arch"] == pretrained_entry().get("arch", "rcn") == "rcn-lite"
    assert run("bench", "--backends", "torch", "--arch", "rcn")[0] == 0
    assert seen["arch"] == "rcn"
