"""``laplace-landmarks study unlabeled`` on the in-repo slices: a tiny grid trains, summarises,
skips finished runs, resumes partial ones, marks missing ones; the verdict on hand-made numbers;
clean errors for bad input. Fine-tunes the shipped rcn-lite, 1 epoch, 8 faces a batch."""

from __future__ import annotations

import csv
import json
import math

import pytest
from conftest import TEST_DATA, UNLABELED_SLICE

from laplace_landmarks.cli import main
from laplace_landmarks.studies import StudyRun, difference, init_weights, study_runs, verdict


def study_args(out, cache, *extra: str) -> list[str]:
    return [
        "study", "unlabeled", "--out", str(out), "--widths", "fast", "--n", "0,4",
        "--seeds", "0,1", "--epochs", "1", "--data-root", str(TEST_DATA / "300w_slice"),
        "--unlabeled", str(UNLABELED_SLICE), "--cache-dir", str(cache), "--max-train", "16",
        "--batch-size", "8", *extra,
    ]  # fmt: skip


def best_nme(run_dir) -> float:
    return min(float(row["val_nme"]) for row in csv.DictReader((run_dir / "metrics.csv").open()))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    """The 2 x 2 grid (N = 0, 4; seeds 0, 1), trained as two shards."""
    root = tmp_path_factory.mktemp("study")
    for shard in ("1/2", "2/2"):
        assert main(study_args(root / "out", root / "cache", "--shard", shard)) == 0
    return root


def test_tiny_grid_trains_and_summarises(trained):
    out = trained / "out"
    summary = json.loads((out / "summary.json").read_text())
    cells = {cell["n"]: cell for cell in summary["cells"]}
    assert set(cells) == {"0", "4"}
    for n, cell in cells.items():
        nmes = [best_nme(out / f"fast-n{n}-s{seed}") for seed in (0, 1)]
        assert cell["finished"] == 2 and cell["missing"] == []
        assert cell["mean"] == pytest.approx(sum(nmes) / 2)
        assert cell["std"] == pytest.approx(abs(nmes[0] - nmes[1]) / math.sqrt(2))
    control = [best_nme(out / f"fast-n0-s{seed}") for seed in (0, 1)]
    treated = [best_nme(out / f"fast-n4-s{seed}") for seed in (0, 1)]
    assert cells["4"]["diff_vs_n0"] == pytest.approx(sum(treated) / 2 - sum(control) / 2)
    assert summary["verdicts"]["fast"]["verdict"] == verdict(*difference(treated, control))
    config = json.loads((out / "fast-n0-s0" / "config.json").read_text())
    assert config["adversarial"]["enabled"] is False
    assert config["train"]["init_from"] == init_weights("fast")
    assert init_weights("fast") == "rcn-lite-ytf68"  # the ytf68 file, not the 300W model
    config = json.loads((out / "fast-n4-s1" / "config.json").read_text())
    assert config["adversarial"]["enabled"] and config["adversarial"]["num_unlabeled"] == 4
    train, model = config["train"], config["model"]
    assert (train["seed"], train["lr"], model["width"], model["depth"]) == (1, 1e-3, 0.125, 2)
    markdown = (out / "summary.md").read_text()
    assert "| fast | 4 | 2/2 |" in markdown and "study unlabeled" in markdown


def test_rerun_skips_finished_resumes_partial_and_marks_missing(trained, capsys):
    out, cache = trained / "out", trained / "cache"
    before = (out / "fast-n0-s0" / "last.pt").stat().st_mtime_ns
    assert main(study_args(out, cache)) == 0
    assert capsys.readouterr().err.count("finished, skipped") == 4
    assert (out / "fast-n0-s0" / "last.pt").stat().st_mtime_ns == before
    # 2 epochs: every 1-epoch run is now partial and continues from its checkpoint
    args = study_args(out, cache, "--epochs", "2", "--seeds", "0")
    assert main(args) == 0
    assert "resume: continuing after epoch 1" in capsys.readouterr().err
    assert len(list(csv.DictReader((out / "fast-n4-s0" / "metrics.csv").open()))) == 2
    # report only, 2 epochs over seeds 0, 1, 2: seed 1 is partial (1 epoch), seed 2 missing
    assert main(study_args(out, cache, "--epochs", "2", "--seeds", "0,1,2", "--report-only")) == 0
    cell = json.loads((out / "summary.json").read_text())["cells"][0]
    assert cell["finished"] == 1 and cell["missing"] == ["fast-n0-s1", "fast-n0-s2"]
    assert cell["partial"] == {"fast-n0-s1": 1}
    assert not (out / "fast-n0-s2").exists()
    assert "fast-n0-s1 (1 epochs), fast-n0-s2" in (out / "summary.md").read_text()


def test_run_order_is_cheap_width_first_seeds_interleaved_and_shards_partition():
    runs = study_runs(["fast", "default"], [0, 1000, None], [0, 1])
    assert runs[:4] == [
        StudyRun("fast", 0, 0), StudyRun("fast", 1000, 0), StudyRun("fast", None, 0),
        StudyRun("fast", 0, 1),
    ]  # fmt: skip
    assert all(run.width == "fast" for run in runs[:6])
    shards = [study_runs(["fast", "default"], [0, 1000, None], [0, 1], (k, 2)) for k in (1, 2)]
    assert sorted(shards[0] + shards[1], key=runs.index) == runs
    assert not set(shards[0]) & set(shards[1])
    assert StudyRun("fast", None, 2).name == "fast-nall-s2"


@pytest.mark.parametrize(
    ("treated", "control", "expected"),
    [
        ([3.0, 3.1, 2.9], [4.0, 4.1, 3.9], "held"),  # -1.0 against SE 0.08
        ([3.9, 4.3, 3.5], [4.0, 4.4, 3.6], "inconclusive"),  # -0.1 against SE 0.33
        ([4.2, 4.3, 4.1], [4.0, 4.1, 3.9], "not held"),  # higher error
        ([4.0, 4.1, 3.9], [4.0, 4.1, 3.9], "not held"),  # equal: not lower
        ([3.0], [4.0, 4.1], "inconclusive"),  # one seed: no standard error
    ],
)
def test_verdict_on_hand_made_numbers(treated, control, expected):
    assert verdict(*difference(treated, control)) == expected


def test_difference_and_standard_error_by_hand():
    diff, se = difference([3.0, 3.2], [4.0, 4.4])
    assert diff == pytest.approx(-1.1)
    assert se == pytest.approx(math.sqrt(0.02 / 2 + 0.08 / 2))
    assert verdict(None, None) == "inconclusive"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--n", "-1"], "n: must be >= 0"),
        (["--n", "lots"], "n: expected a whole number or 'all'"),
        (["--shard", "3/2"], "shard: K/N needs 1 <= K <= N, got 3/2"),
        (["--shard", "x"], "expected whole numbers"),
        (["--widths", "huge"], "unknown width 'huge'"),
        (["--epochs", "0"], "epochs: must be >= 1"),
    ],
)
def test_bad_input_is_a_clean_one_line_error(tmp_path, capsys, extra, message):
    assert main(["study", "unlabeled", "--out", str(tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()
