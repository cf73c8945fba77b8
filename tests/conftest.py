"""Shared test helpers: where the in-repo data slices and the full shared data live.

Tests use the small real slices under ``tests/data`` (see its README). Tests that need the full
``../shared/data`` take the ``shared_data`` fixture (which skips when it is absent) and are marked
``@pytest.mark.shared_data``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
TEST_DATA = TESTS_DIR / "data"
YTF68_SLICE = TEST_DATA / "ytf68_slice"
UNLABELED_SLICE = TEST_DATA / "unlabeled_slice"
FIXTURES_SLICE = TEST_DATA / "fixtures"
SHARED_DATA_SKIP_REASON = "needs ../shared/data (full real data); absent here"


def shared_data_root() -> Path | None:
    """``$LAPLACE_LANDMARKS_DATA_ROOT`` or ``<repo>/../shared/data``, if it holds the full data."""
    env = os.environ.get("LAPLACE_LANDMARKS_DATA_ROOT")
    root = Path(env) if env else TESTS_DIR.parents[1] / "shared" / "data"
    return root if (root / "ytf68" / "train.csv").is_file() else None


@pytest.fixture
def shared_data() -> Path:
    """The full real data root; skips the test when it is not there."""
    root = shared_data_root()
    if root is None:
        pytest.skip(SHARED_DATA_SKIP_REASON)
    return root


@pytest.fixture
def test_data() -> Path:
    """The in-repo real data slices (tests/data)."""
    return TEST_DATA


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: tiny ops run faster than with OpenMP on a shared 2-core box."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def pytest_terminal_summary(terminalreporter) -> None:
    """Print how many bad inputs the fuzz tests tried (see tests/fuzzing.py)."""
    from fuzzing import summary

    line = summary()
    if line:
        terminalreporter.write_line(line)
