"""``laplace-landmarks data check``: counts, coverage, skipped files and the contact sheet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from laplace_landmarks.cli import main


def write_pts(path: Path, points: np.ndarray) -> None:
    """An iBUG .pts file (1-based on disk) for 0-based (x, y) points."""
    lines = [f"{x + 1:.3f} {y + 1:.3f}" for x, y in points]
    path.write_text("version: 1\nn_points: 68\n{\n" + "\n".join(lines) + "\n}\n")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for index in range(3):
        image = rng.integers(0, 256, (160, 140, 3), dtype=np.uint8)
        Image.fromarray(image).save(tmp_path / f"face{index}.png")
        write_pts(tmp_path / f"face{index}.pts", rng.uniform([40, 50], [100, 110], (68, 2)))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    write_pts(tmp_path / "broken.pts", rng.uniform(40, 100, (68, 2)))
    (tmp_path / "short.png").write_bytes((tmp_path / "face0.png").read_bytes())
    (tmp_path / "short.pts").write_text("version: 1\nn_points: 2\n{\n1 2\n3 4\n}\n")
    return tmp_path


def test_check_folder_prints_counts_coverage_and_writes_a_sheet(folder, tmp_path, capsys):
    sheet = tmp_path / "out" / "sheet.png"
    assert main(["data", "check", str(folder), "--sheet", str(sheet), "--num", "4"]) == 0
    out = capsys.readouterr().out
    assert "points per face: 68" in out
    assert "crop coverage (extension 2.0): 100.00% of points" in out
    assert "faces: 4 (4 labelled), skipped: 1" in out
    assert "skipped: " in out and "short.png" in out  # the bad annotation, with its reason
    assert "not drawn: " in out and "broken.png" in out  # the unreadable image
    assert "4 faces (1 not drawn)" in out
    with Image.open(sheet) as picture:
        assert picture.size == (2 * 160, 2 * 160)  # 4 faces in a 2x2 grid of 2x-zoomed crops
        assert np.asarray(picture)[..., 1].max() == 255  # green landmark dots were drawn


def test_a_bad_path_is_a_clear_error(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "nowhere")]) == 2
    assert "neither a dataset name" in capsys.readouterr().err


def coverage_from(out: str) -> float:
    return float(out.split("crop coverage (extension 2.0): ")[1].split("%")[0])


def test_check_ytf68_by_name(test_data, capsys):
    root = test_data / "ytf68_slice"
    assert main(["data", "check", "ytf68", "--split", "test", "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "faces: 16 (16 labelled), skipped: 0" in out and "points per face: 68" in out
    assert coverage_from(out) > 99.5


@pytest.mark.shared_data
def test_check_full_ytf68_test_split(shared_data, capsys):
    assert main(["data", "check", "ytf68", "--split", "test", "--data-root", str(shared_data)]) == 0
    out = capsys.readouterr().out
    assert "faces: 845 (845 labelled)" in out
    assert coverage_from(out) == pytest.approx(99.89, abs=0.01)  # docs/results.md
