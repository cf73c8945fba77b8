"""``laplace_landmarks.manifest``: reading CSV manifests and the restartable JSON Lines runner.

Real images only: the bundled samples and the tests/data slices. Expected results come from
``Landmarker.predict`` called directly on the same image and boxes.
"""

from __future__ import annotations

import fcntl
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from laplace_landmarks.data.formats import read_pts
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.inference import Landmarker
from laplace_landmarks.manifest import JobSummary, iter_records, read_manifest, run_manifest

SAMPLES = Path(str(resources.files("laplace_landmarks") / "samples"))
DATA = Path(__file__).resolve().parent / "data"
DETECT = [
    SAMPLES / "ytf68_Emmy_Rossum_20a.jpg",
    SAMPLES / "lfw_Naomi_Watts0.jpg",
    DATA / "unlabeled_slice/ytf/Keith_Olbermann/01b.jpg",
]
BOXED = SAMPLES / "ytf68_T_Boone_Pickens_10a.jpg"
OUTSIDE = DATA / "unlabeled_slice/lfw/John_Snow/John_Snow0.jpg"

pytestmark = pytest.mark.usefixtures("one_thread")


def gt_box(image: Path) -> list[float]:
    """The box around an image's ground-truth points (its .pts beside it)."""
    points = read_pts(image.with_suffix(".pts"))
    return [*points.min(axis=0), *points.max(axis=0)]


@pytest.fixture(scope="module")
def landmarker() -> Landmarker:
    return Landmarker.load(threads=1)


def boxes_of_boxed() -> list[list[float]]:
    """Two boxes for ``BOXED``: around its ground-truth points, and 5 px inside that."""
    box = gt_box(BOXED)
    return [box, [box[0] + 5, box[1] + 5, box[2] - 5, box[3] - 5]]


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    """Three detector rows, one image with two boxes (rows 4 and 6), a missing file, a box
    outside its image."""
    first, second = boxes_of_boxed()
    rows = [[str(path), "", "", "", ""] for path in DETECT]
    rows += [[str(BOXED), *map(str, first)], ["gone.jpg", "", "", "", ""]]
    rows += [[str(BOXED), *map(str, second)], [str(OUTSIDE), "5000", "5000", "5100", "5100"]]
    path = tmp_path / "manifest.csv"
    path.write_text("path,x0,y0,x1,y1\n" + "".join(",".join(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def expected(landmarker: Landmarker) -> dict[str, list[dict]]:
    """``Face.to_dict`` lists from ``Landmarker.predict`` for the images that succeed."""
    result = {str(p): [f.to_dict() for f in landmarker.predict(str(p))] for p in DETECT}
    faces = landmarker.predict(str(BOXED), boxes=boxes_of_boxed())
    result[str(BOXED)] = [f.to_dict() for f in faces]
    return result


def check_records(records: list[dict], expected: dict[str, list[dict]]) -> None:
    """One record per manifest image, in order; faces equal predict's; the two errors."""
    paths = [r["path"] for r in records]
    assert paths == [*map(str, DETECT), str(BOXED), "gone.jpg", str(OUTSIDE)]
    by_path = {r["path"]: r for r in records}
    for path, faces in expected.items():
        assert by_path[path]["faces"] == faces
        assert by_path[path]["width"] > 0 and by_path[path]["height"] > 0
    boxed = by_path[str(BOXED)]["faces"]
    assert len(boxed) == 2 and boxed[0]["score"] is None
    assert "file not found" in by_path["gone.jpg"]["error"]
    assert "outside" in records[-1]["error"] and set(records[-1]) == {"path", "error"}


# --- reading -------------------------------------------------------------------------------------
def test_read_manifest_groups_boxes_and_resolves_paths(tmp_path: Path) -> None:
    folder = tmp_path / "job"
    folder.mkdir()
    text = (
        "\ufeffPath , note, X0,y0,x1,y1\n"  # BOM, any case, spaces, an extra column
        "a.jpg,first,1,2,30,40\n"
        "\n"
        "sub/b.png,,,,,\n"
        "a.jpg,again, 5, 6 ,50,60.5\n"
        f"{tmp_path / 'c.jpg'},,,,,\n"
    )
    (folder / "m.csv").write_text(text, encoding="utf-8")
    items = read_manifest(folder / "m.csv")
    assert [item.path for item in items] == ["a.jpg", "sub/b.png", str(tmp_path / "c.jpg")]
    assert [item.line for item in items] == [2, 4, 6]
    assert items[0].boxes == ((1, 2, 30, 40), (5, 6, 50, 60.5))
    assert items[1].boxes is None and items[2].boxes is None
    assert items[0].file == folder.absolute() / "a.jpg"
    assert items[1].file == folder.absolute() / "sub/b.png"
    assert items[2].file == tmp_path / "c.jpg"


def test_paths_only_manifest(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text('path\n"a, b.jpg"\nc.jpg\n')
    items = read_manifest(tmp_path / "m.csv")
    assert [(i.path, i.boxes) for i in items] == [("a, b.jpg", None), ("c.jpg", None)]


@pytest.mark.parametrize(
    ("rows", "line", "fragment"),
    [
        ("a.jpg,1,2,3\n", 2, "4 fields but the header has 5 (no y1)"),
        ("a.jpg,1,2,3,4,5\n", 2, "6 fields but the header has 5"),
        ("a.jpg,1,2,3,4\nb.jpg,1,two,3,4\n", 3, "y0 is 'two', not a number"),
        ("a.jpg,nan,2,3,4\n", 2, "x0 is 'nan', not a finite number"),
        ("a.jpg,1,2,inf,4\n", 2, "x1 is 'inf', not a finite number"),
        ("a.jpg,10,2,3,4\n", 2, "needs x1 > x0 and y1 > y0"),
        ("a.jpg,1,2,3,2\n", 2, "needs x1 > x0 and y1 > y0"),
        ("a.jpg,1,2,,4\n", 2, "x1 is empty"),
        (",1,2,3,4\n", 2, "empty path"),
        ("a.jpg,,,,\nb.jpg,,,,\na.jpg,,,,\n", 4, "already listed on line 2"),
        ("a.jpg,1,2,3,4\na.jpg,,,,\n", 3, "already listed on line 2"),
        ('"a.jpg,1,2,3,4\n', 2, "not valid CSV (unexpected end of data)"),
        ('"a"b.jpg,1,2,3,4\n', 2, "not valid CSV"),
    ],
)
def test_bad_row_names_file_and_line(tmp_path: Path, rows: str, line: int, fragment: str) -> None:
    path = tmp_path / "m.csv"
    path.write_text("path,x0,y0,x1,y1\n" + rows)
    with pytest.raises(LandmarksError) as info:
        read_manifest(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: ") and fragment in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "cannot read"),
        (b"", "empty file"),
        (b"path,x0,y0,x1,y1\n\n", "no image rows"),
        (b'{"images": ["a.jpg"]}\n', "no 'path' column"),
        (b"file,x0\na.jpg,1\n", "no 'path' column (found 'file', 'x0')"),
        (b"path,x0,y0\na.jpg,1,2\n", "box column x0 but not x1, y1"),
        (b"path,path\na.jpg,b.jpg\n", "repeats column 'path'"),
        (b"path\na.jpg\n\xff\xfe\x00b.jpg\n", "3: not UTF-8"),
    ],
)
def test_malformed_file_is_one_line(tmp_path: Path, content: bytes | None, fragment: str) -> None:
    path = tmp_path / "m.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(LandmarksError) as info:
        read_manifest(path)
    message = str(info.value)
    assert str(path) in message and fragment in message and "\n" not in message


def test_image_file_as_manifest(tmp_path: Path) -> None:
    with pytest.raises(LandmarksError, match=r"^\S+\.jpg:1: not UTF-8 text"):
        read_manifest(DETECT[0])


# --- running -------------------------------------------------------------------------------------
def test_run_manifest_matches_predict(landmarker, manifest, expected, tmp_path) -> None:
    out = tmp_path / "out" / "landmarks.jsonl"
    summary = run_manifest(landmarker, manifest, out, flush_every=2)
    records = list(iter_records(out))
    check_records(records, expected)
    faces = sum(len(f) for f in expected.values())
    assert (summary.images, summary.faces, summary.errors, summary.skipped) == (6, faces, 2, 0)
    points = np.array(records[0]["faces"][0]["points"])
    assert points.shape == (68, 2) and np.isfinite(points).all()


def test_killed_run_restarts_to_one_record_per_image(landmarker, manifest, expected, tmp_path):
    out = tmp_path / "landmarks.jsonl"
    first = run_manifest(landmarker, manifest, out, flush_every=1, max_images=2)
    assert first.images == 2 and len(list(iter_records(out))) == 2
    second = run_manifest(landmarker, manifest, out, flush_every=4)
    assert (second.images, second.skipped) == (4, 2)
    check_records(list(iter_records(out)), expected)
    third = run_manifest(landmarker, manifest, out)
    assert (third.images, third.skipped) == (0, 6)
    check_records(list(iter_records(out)), expected)


def test_cut_off_last_line_is_truncated(landmarker, manifest, expected, tmp_path) -> None:
    full = tmp_path / "full.jsonl"
    run_manifest(landmarker, manifest, full)
    lines = full.read_bytes().splitlines(keepends=True)
    out = tmp_path / "killed.jsonl"
    out.write_bytes(b"".join(lines[:3]) + lines[3][: len(lines[3]) // 2])  # killed mid-write
    summary = run_manifest(landmarker, manifest, out)
    assert (summary.images, summary.skipped) == (3, 3)
    assert out.read_bytes() == full.read_bytes()
    check_records([json.loads(line) for line in out.read_bytes().splitlines()], expected)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (
            b'{"path": "gone.jpg", "error": "x"}\n{"path": "gone\n{"path": "a"}\n',
            ":2: not a record",
        ),
        (b'{"path": "other.jpg", "faces": []}\n', ":1: records 'other.jpg', which the manifest"),
    ],
)
def test_foreign_output_is_refused(landmarker, manifest, tmp_path, content, fragment) -> None:
    out = tmp_path / "landmarks.jsonl"
    out.write_bytes(content)
    with pytest.raises(LandmarksError, match=fragment):
        run_manifest(landmarker, manifest, out)
    assert out.read_bytes() == content


def test_second_writer_is_refused(landmarker, manifest, tmp_path) -> None:
    out = tmp_path / "landmarks.jsonl"
    with open(out, "ab") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(LandmarksError, match="another run is writing to it"):
            run_manifest(landmarker, manifest, out)


def test_bad_manifest_fails_before_output(landmarker, tmp_path) -> None:
    (tmp_path / "m.csv").write_text("path,x0,y0,x1,y1\na.jpg,1,2,3\n")
    with pytest.raises(LandmarksError, match=r"m\.csv:2: "):
        run_manifest(landmarker, tmp_path / "m.csv", tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


def test_summary_text() -> None:
    text = str(JobSummary(images=10, faces=12, errors=1, seconds=2.0, skipped=5))
    assert text == "10 images, 12 faces, 1 errors in 2.0 s (5.0 images/s); 5 already recorded"
