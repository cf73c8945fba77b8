"""``laplace_landmarks.ray_job`` and ``ray-predict`` on a real local Ray runtime (2 CPUs).

One module-scoped Ray runtime; two jobs on a dozen real images (bundled samples and the
unlabelled slice), with 1 worker writing Parquet and with 2 workers writing JSON through the
command. Every image has exactly one row, and the points equal ``Landmarker.predict``'s (same
torch backend) within 1e-3 px. Skips when Ray Data is not installed (the ``[ray]`` extra).
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from laplace_landmarks.commands import ray_predict
from laplace_landmarks.data.formats import read_pts
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.inference import Landmarker
from laplace_landmarks.ray_job import read_shards, require_ray, run_ray_job

SAMPLES = Path(str(resources.files("laplace_landmarks") / "samples"))
UNLABELED = Path(__file__).resolve().parent / "data" / "unlabeled_slice"
IMAGES = sorted(SAMPLES.glob("*.jpg")) + sorted(UNLABELED.rglob("*.jpg"))
BOXED = SAMPLES / "ytf68_T_Boone_Pickens_10a.jpg"
RAY_SKIP_REASON = 'needs Ray Data, the [ray] extra: pip install "laplace-landmarks[ray]"'

# Ray Data's own DataContext warns about its deprecated settings; nothing of ours.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")


def box_of(image: Path) -> list[float] | None:
    """The ground-truth box of ``BOXED`` (given in the manifest); None (detector) for others."""
    if image != BOXED:
        return None
    points = read_pts(image.with_suffix(".pts"))
    return [*points.min(axis=0), *points.max(axis=0)]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 real images (one with a box) and a missing file."""
    assert len(IMAGES) == 12
    lines = ["path,x0,y0,x1,y1"]
    for image in IMAGES:
        box = box_of(image)
        lines.append(",".join([str(image), *(map(str, box) if box else ["", "", "", ""])]))
    lines.append("missing.jpg,,,,")
    path = tmp_path_factory.mktemp("ray") / "manifest.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    """Points of every face, per image path, from ``Landmarker.predict`` in this process."""
    landmarker = Landmarker.load(threads=1)
    points = {}
    for image in IMAGES:
        box = box_of(image)
        faces = landmarker.predict(str(image), boxes=None if box is None else [box])
        points[str(image)] = np.array([face.points for face in faces])
    return points


@pytest.fixture(scope="module")
def ray_runtime():
    """A real local Ray runtime with 2 CPUs for the module; the jobs join it."""
    ray = pytest.importorskip("ray", reason=RAY_SKIP_REASON)
    pytest.importorskip("ray.data", reason=RAY_SKIP_REASON)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


def check_shards(out: Path, fmt: str, expected: dict[str, np.ndarray]) -> None:
    """One row per manifest image; points within 1e-3 px of predict's; the missing file's error."""
    rows = {row["path"]: row for row in read_shards(out, fmt).to_pylist()}
    assert sorted(rows) == sorted([*expected, "missing.jpg"])
    assert "file not found" in rows["missing.jpg"]["error"] and rows["missing.jpg"]["faces"] is None
    for path, points in expected.items():
        row = rows[path]
        assert row["error"] is None and row["width"] > 0 and row["height"] > 0
        got = np.array([face["points"] for face in row["faces"]])
        assert got.shape == points.shape
        np.testing.assert_allclose(got, points, atol=1e-3, rtol=0)
    assert rows[str(BOXED)]["faces"][0]["score"] is None


def test_one_worker_parquet(ray_runtime, manifest, expected, tmp_path) -> None:
    summary = run_ray_job(manifest, tmp_path / "out", workers=1, batch_size=4)
    check_shards(tmp_path / "out", "parquet", expected)
    faces = sum(len(points) for points in expected.values())
    assert (summary.images, summary.faces, summary.errors) == (13, faces, 1)
    assert summary.seconds > 0


def test_two_workers_json_command(ray_runtime, manifest, expected, tmp_path, capsys) -> None:
    args = ["ray-predict", str(manifest), "--out", str(tmp_path / "out"), "--workers", "2"]
    assert run_command([*args, "--format", "json", "--batch-size", "2"]) == 0
    assert "13 images" in capsys.readouterr().out
    check_shards(tmp_path / "out", "json", expected)


def run_command(argv: list[str]) -> int:
    """Parse ``argv`` with the ``ray-predict`` parser alone and run it."""
    parser = argparse.ArgumentParser(prog="laplace-landmarks")
    ray_predict.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_missing_ray_is_one_line_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails like a missing package
    with pytest.raises(LandmarksError, match=r'pip install "laplace-landmarks\[ray\]"'):
        require_ray()


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"workers": 0}, "workers must be >= 1"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"fmt": "csv"}, "format must be one of parquet, json"),
    ],
)
def test_bad_arguments(manifest, tmp_path, options, fragment) -> None:
    with pytest.raises(LandmarksError, match=fragment):
        run_ray_job(manifest, tmp_path / "out", **options)


def test_non_empty_out_is_refused(manifest, tmp_path) -> None:
    pytest.importorskip("ray.data", reason=RAY_SKIP_REASON)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.parquet").write_bytes(b"")
    with pytest.raises(LandmarksError, match="not an empty folder"):
        run_ray_job(manifest, tmp_path / "out")
