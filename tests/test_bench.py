"""``bench``: one repeat at width 1/16 gives a complete table (no timing assertions here)."""

from __future__ import annotations

import json

import pytest
import torch

from laplace_landmarks import bench
from laplace_landmarks.cli import main
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.export import require_onnx

try:
    require_onnx()
    BACKENDS = list(bench.BACKENDS)
except LandmarksError:  # without the [onnx] extra the torch backends still run
    BACKENDS = ["torch", "torch-batched"]


@pytest.fixture(scope="module")
def result() -> tuple[list[bench.BenchRow], float]:
    previous = torch.get_num_threads()
    outcome = bench.run_bench(widths=[1 / 16], backends=BACKENDS, repeats=1, batch_size=4)
    assert torch.get_num_threads() == previous  # restored after the one-thread runs
    return outcome


def test_one_row_per_backend_with_model_facts(result):
    rows, peak = result
    assert [row.backend for row in rows] == BACKENDS
    assert peak > 0.1  # GFLOP/s of a 512^3 matmul on any CPU
    for row in rows:
        assert row.params == 4132  # 228·C² + 104·C + 68 at C = 4 (see docs/results.md)
        assert row.storage_mb == pytest.approx(4132 * 4 / 1e6)
        assert row.mflop_per_face == pytest.approx(19.1, abs=0.05)
        assert row.weights == "random"  # no shipped model has width 1/16
        assert row.faces_per_s > 0 and row.frames_per_s > 0
    batches = {row.backend: row.batch for row in rows}
    assert batches["torch-batched"] == 4 and batches.get("onnx-batched", 4) == 4


def test_table_has_every_column(result):
    rows, peak = result
    lines = bench.format_table(rows, peak).splitlines()
    header = [cell.strip() for cell in lines[2].strip("|").split("|")]
    assert header == list(bench.COLUMNS)
    body = [line for line in lines[4:] if line.startswith("|")]
    assert len(body) == len(BACKENDS)
    for line in body:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert len(cells) == len(bench.COLUMNS) and all(cells)
        assert cells[:2] == ["rcn", "1/16"] and cells[5] == "4,132"
    assert "peak" in lines[0] and "GFLOP/s" in lines[0]


def test_json_rows_carry_peak_share(result):
    rows, peak = result
    document = bench.rows_to_json(rows, peak)
    json.dumps(document)  # JSON-ready
    for entry in document["rows"]:
        assert entry["peak_share"] == pytest.approx(entry["gflops"] / peak)


def test_shipped_width_uses_shipped_weights():
    _, _, label = bench.model_for_width(1 / 8)
    assert label == "rcn-fast"


def test_cli_rejects_bad_arguments(capsys):
    assert main(["bench", "--backends", "torch,tpu"]) == 2
    assert "tpu" in capsys.readouterr().err
    assert main(["bench", "--widths", "one-eighth"]) == 2
    assert "--widths" in capsys.readouterr().err


def test_cli_prints_table(capsys):
    argv = ["bench", "--arch", "rcn", "--widths", "1/16", "--backends", "torch", "--repeats", "1"]
    code = main(argv)
    out = capsys.readouterr().out
    assert code == 0
    assert "| rcn | 1/16 | torch | random | 1 | 4,132 |" in out


def test_cli_benches_rcn_lite(capsys):
    code = main(["bench", "--arch", "rcn-lite", "--widths", "1/16", "--backends", "torch",
                 "--repeats", "1", "--json"])  # fmt: skip
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert code == 0 and [(r["arch"], r["batch"]) for r in rows] == [("rcn-lite", 1)]
    assert rows[0]["mflop_per_face"] < 19.1 / 4  # the RCN at 1/16 needs 19.1
