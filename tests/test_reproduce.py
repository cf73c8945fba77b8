"""``reproduce``: the grid's shape, the marked results section, and the quick grid end to end on
the in-repo ytf68 slice (1 epoch, width 1/16 and 1/8, one thread)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import UNLABELED_SLICE, YTF68_SLICE

from laplace_landmarks import reproduce
from laplace_landmarks.cli import main
from laplace_landmarks.reproduce import BEGIN, END, QUICK_BEGIN, QUICK_END, GridOptions

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def quick_args(tmp: Path, *extra: str) -> list[str]:
    return [
        "reproduce", "--quick", "--out", str(tmp / "runs"), "--results", str(tmp / "results.md"),
        "--data-root", str(YTF68_SLICE), "--unlabeled", str(UNLABELED_SLICE / "ytf"),
        "--cache-dir", str(tmp / "cache"), "--epochs", "1", "--batch-size", "8",
        "--threads", "1", "--bench-seconds", "0.05", "--d-width", "8", "--d-batch-size", "4",
        "--no-progress", *extra,
    ]  # fmt: skip


def test_full_grid_shape(monkeypatch, tmp_path):
    monkeypatch.setattr(reproduce.grid, "pool_size", lambda folder: 1081)
    opts = reproduce.resolve_options(GridOptions(unlabeled=str(tmp_path)))
    assert (opts.seeds, opts.epochs, opts.max_train, opts.d_width) == (3, 200, None, None)
    grid = reproduce.build_grid(opts)
    table2 = grid["table2"]
    assert {s.width for s in table2} == {0.25}
    # N = 2500 exceeds the 1,081-image pool: it is the N = all run, trained once
    assert {s.num_unlabeled for s in table2} == {0, 1000, None}
    assert len(table2) == 3 * 3 * 3
    assert sorted({s.width for s in grid["table3"]}) == [1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0]
    assert {s.target_scale for s in grid["fig4"]} == {0.5, 1.0, 2.0, 4.0}
    names = {s.name for specs in grid.values() for s in specs}
    assert len(names) == 27 + (5 - 1) * 3 * 3 + (4 - 1) * 3  # shared runs are trained once
    spec = next(s for s in table2 if s.loss == "gaussiankl" and s.num_unlabeled is None)
    config = spec.config(opts)
    assert config.loss.kind == "gaussiankl" and config.adversarial.enabled
    assert config.adversarial.num_unlabeled is None and config.adversarial.base_width == 64
    assert config.train.epochs == 200 and config.data.train_split == "trainval-train"


def test_quick_grid_is_small_and_labelled(monkeypatch, tmp_path):
    monkeypatch.setattr(reproduce.grid, "pool_size", lambda folder: 1081)
    opts = reproduce.resolve_options(GridOptions(quick=True, unlabeled=str(tmp_path)))
    assert (opts.seeds, opts.epochs, opts.max_train, opts.d_width) == (1, 3, 256, 16)
    assert str(opts.out).endswith("reproduce-quick")
    grid = reproduce.build_grid(opts)
    assert len({s.name for specs in grid.values() for s in specs}) == 11


def test_replace_section_keeps_the_rest_of_the_page():
    page = f"# Results\n\nintro\n\n{BEGIN}\nold\n{END}\n\n## After\ntext\n"
    new = reproduce.replace_section(page, f"{BEGIN}\nnew\n{END}\n", BEGIN, END)
    assert new == f"# Results\n\nintro\n\n{BEGIN}\nnew\n{END}\n\n## After\ntext\n"
    appended = reproduce.replace_section("# Results\n", f"{BEGIN}\nx\n{END}\n", BEGIN, END)
    assert appended == f"# Results\n\n{BEGIN}\nx\n{END}\n"


def test_quick_reproduce_end_to_end_and_resumable(tmp_path, capsys):
    results = tmp_path / "results.md"
    full_section = f"{BEGIN}\nfull grid results stay\n{END}"
    results.write_text(
        f"# Results\n\nintro\n\n{QUICK_BEGIN}\nstale\n{QUICK_END}\n\n{full_section}\n"
    )
    assert main(quick_args(tmp_path)) == 0
    capsys.readouterr()
    text = results.read_text()
    assert "stale" not in text and full_section in text and text.startswith("# Results\n\nintro")
    section = text[text.index(QUICK_BEGIN) : text.index(QUICK_END)]
    assert "QUICK smoke run" in section
    for heading in ("Table 2 analogue", "Table 3 analogue", "Fig. 4 analogue", "SPEC §8"):
        assert heading in section
    claims = [line for line in section.split("SPEC §8")[1].splitlines() if line.startswith("- ")]
    assert len(claims) == 10 and all("held** " in line for line in claims)  # one per claim
    assert "laplace-landmarks train --recipe paper-laplacekl-adv" in section
    for figure in ("reproduce-quick-ced.png", "reproduce-quick-bt-sweep.png"):
        assert f"figures/{figure}" in section
        assert (tmp_path / "figures" / figure).read_bytes()[:8] == PNG_MAGIC
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 11
    for run in runs:
        evaluation = json.loads((run / "test-eval.json").read_text())
        assert evaluation["split"] == "test" and evaluation["summary"]["num_faces"] == 16
        assert evaluation["checkpoint"].endswith("best.pt")
    adversarial = json.loads(
        (tmp_path / "runs" / "laplacekl-w0.125-dall-bt1-s0" / "test-eval.json").read_text()
    )
    assert adversarial["run"]["num_unlabeled_used"] == 4
    # a second call finds every run finished and only rewrites the page
    assert main(quick_args(tmp_path)) == 0
    assert capsys.readouterr().err.count(": finished;") == 11
    # a different config in the same folder is refused, not silently mixed
    assert main(quick_args(tmp_path, "--max-train", "10")) == 2
    assert "holds a different run" in capsys.readouterr().err
    # --report-only pages what has finished and says what is missing
    import shutil

    for gone in ("gaussiankl-w0.125-d0-bt1-s0", "laplacekl-w0.125-d0-bt2-s0"):
        shutil.rmtree(tmp_path / "runs" / gone)
    assert main(quick_args(tmp_path, "--report-only")) == 0
    text = results.read_text()
    section = text[text.index(QUICK_BEGIN) : text.index(QUICK_END)]
    assert "**Partial grid:** 2 of 11 runs" in section
    assert "`gaussiankl-w0.125-d0-bt1-s0`" in section
    assert "GaussianKL is worse than LaplaceKL (paper: 4.71 vs 4.01): not measured" in section
    assert "best target scale b_t is about 1 px (paper Fig. 4): not measured" in section
    assert not (tmp_path / "runs" / "gaussiankl-w0.125-d0-bt1-s0").exists()  # nothing trained


def test_reproduce_without_unlabelled_pool_is_a_clean_error(tmp_path, capsys):
    args = quick_args(tmp_path)
    args[args.index("--unlabeled") + 1] = str(tmp_path / "missing")
    assert main(args) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value", [("--seeds", "0"), ("--epochs", "-1"), ("--d-width", "0")])
def test_reproduce_rejects_nonpositive_counts(tmp_path, capsys, flag, value):
    args = [*quick_args(tmp_path), flag, value]  # the last occurrence of a flag wins
    assert main(args) == 2
    assert "must be >= 1" in capsys.readouterr().err


def test_small_grid_is_the_quick_shape_on_all_faces_with_three_seeds(monkeypatch, tmp_path):
    monkeypatch.setattr(reproduce.grid, "pool_size", lambda folder: 1081)
    opts = reproduce.resolve_options(GridOptions(small=True, unlabeled=str(tmp_path)))
    assert (opts.seeds, opts.epochs, opts.max_train, opts.d_width, opts.d_every) == (
        3, 5, None, 16, 4,
    )  # fmt: skip
    assert str(opts.out).endswith("reproduce-small")
    grid = reproduce.build_grid(opts)
    assert len({s.name for specs in grid.values() for s in specs}) == 33
    spec = next(s for s in grid["table2"] if s.adversarial)
    config = spec.config(opts)
    assert config.adversarial.every == 4 and config.adversarial.batch_size == 16
    assert "adversarial.every=4" in spec.command(opts)
    with pytest.raises(reproduce.grid.LandmarksError, match="pick one"):
        reproduce.resolve_options(GridOptions(quick=True, small=True, unlabeled=str(tmp_path)))


def test_shards_split_the_grid_and_write_no_page(monkeypatch, tmp_path):
    monkeypatch.setattr(reproduce.grid, "pool_size", lambda folder: 1081)
    trained: list[list[str]] = []
    monkeypatch.setattr(
        reproduce.grid, "train_run", lambda spec, opts, cache: trained[-1].append(spec.name)
    )
    fake = {"summary": {"nme_percent": {"inter-ocular": 1.0}}}
    monkeypatch.setattr(reproduce.grid, "evaluate_run", lambda spec, opts, cache: fake)
    for k in (1, 2, 3):
        trained.append([])
        opts = GridOptions(quick=True, unlabeled=str(tmp_path), shard=(k, 3), cache_dir="x")
        data = reproduce.run_grid(opts)
        assert data["bench"] == {} and len(data["results"]) == len(trained[-1])
    everything = {s.name for specs in reproduce.build_grid(
        reproduce.resolve_options(GridOptions(quick=True, unlabeled=str(tmp_path)))
    ).values() for s in specs}  # fmt: skip
    assert sorted(sum(trained, [])) == sorted(everything)  # each run in exactly one shard
    assert [len(t) for t in trained] == [4, 4, 3]


@pytest.mark.parametrize("value", ["3/2", "0/2", "a/b", "2"])
def test_bad_shard_is_refused(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        main([*quick_args(tmp_path), "--shard", value])
    assert exit_info.value.code == 2
    assert "K/N" in capsys.readouterr().err
