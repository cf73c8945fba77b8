"""Annotation formats: exact round trips, the real fixtures, and FormatError for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fuzzing import tried
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from laplace_landmarks.data.formats import (
    LandmarkRecord,
    read_coco_keypoints,
    read_dlib_xml,
    read_landmarks_csv,
    read_pts,
    write_coco_keypoints,
    write_dlib_xml,
    write_landmarks_csv,
    write_pts,
)
from laplace_landmarks.errors import FormatError

DATA = Path(__file__).parent / "data"
AFW_PTS = DATA / "fixtures" / "300w" / "afw" / "261068_1.pts"
MMPOSE = DATA / "fixtures" / "mmpose"
YTF68_TRAIN = DATA / "ytf68_slice" / "train.csv"
COCO_COUNTS = {"300w": (68, 2), "aflw": (19, 2), "wflw": (98, 4), "cofw": (29, 2)}
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
point_arrays = st.integers(1, 12).flatmap(
    lambda k: st.lists(st.tuples(finite, finite), min_size=k, max_size=k)
)


def records_equal(a: list[LandmarkRecord], b: list[LandmarkRecord]) -> None:
    assert len(a) == len(b)
    for left, right in zip(a, b, strict=True):
        assert left.image == right.image and left.box == right.box
        np.testing.assert_array_equal(left.points, right.points)  # exact, not approximate
        np.testing.assert_array_equal(left.visibility, right.visibility)


# ---------------------------------------------------------------- iBUG .pts
def test_pts_fixture_is_shifted_to_zero_based():
    lines = AFW_PTS.read_text().splitlines()
    points = read_pts(AFW_PTS, expected_points=68)
    assert points.shape == (68, 2) and points.dtype == np.float64
    x, y = (float(v) for v in lines[3].split())
    assert tuple(points[0]) == (x - 1, y - 1)


def test_pts_fixture_round_trips_exactly(tmp_path):
    points = read_pts(AFW_PTS)
    write_pts(tmp_path / "copy.pts", points)
    np.testing.assert_array_equal(read_pts(tmp_path / "copy.pts"), points)
    text = (tmp_path / "copy.pts").read_text()
    assert text.startswith("version: 1\nn_points: 68\n{\n") and text.endswith("\n}\n")


def test_pts_writes_integers_plainly(tmp_path):
    write_pts(tmp_path / "a.pts", np.array([[0.0, 9.0], [-1.0, 0.5]]))
    assert (tmp_path / "a.pts").read_text().splitlines()[3:5] == ["1 10", "0 1.5"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(points=point_arrays)
def test_pts_round_trip_is_bit_exact(tmp_path, points):
    array = np.array(points, dtype=np.float64)
    write_pts(tmp_path / "p.pts", array)
    np.testing.assert_array_equal(read_pts(tmp_path / "p.pts"), array)


def test_pts_accepts_text_and_bytes():
    text = "version: 1\nn_points: 2\n{\n1 2\n3.5 4\n}\n"
    expected = np.array([[0.0, 1.0], [2.5, 3.0]])
    np.testing.assert_array_equal(read_pts(text), expected)
    np.testing.assert_array_equal(read_pts(text.encode()), expected)


PTS_HEAD = "version: 1\nn_points: 3\n{\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (PTS_HEAD + "1 2\n3 4\n}\n", "has 2 point lines, n_points says 3"),
        (PTS_HEAD + "1 2\n3 4\n5 6\n7 8\n}\n", "has 4 point lines, n_points says 3"),
        (PTS_HEAD + "1 2\n3 x\n5 6\n}\n", "point 1: 'x' is not a number"),
        (PTS_HEAD + "1 2\nnan 4\n5 6\n}\n", "point 1: 'nan' is not finite"),
        (PTS_HEAD + "1 2\n3 4\n5 inf\n}\n", "point 2: 'inf' is not finite"),
        (PTS_HEAD + "1 2\n3 4\n5 1e999\n}\n", "point 2: '1e999' is out of range"),
        (PTS_HEAD + "1 2 3\n3 4\n5 6\n}\n", "point 0: expected 'x y'"),
        (PTS_HEAD + "1 2\n3 4\n5 6\n", "missing closing '}'"),
        ("version: 1\n{\n1 2\n}\n", "missing the 'n_points' header"),
        ("version: 1\nn_points: -3\n{\n}\n", "bad n_points"),
        ("hello world\n", "missing the opening"),
    ],
)
def test_pts_errors_name_the_problem(tmp_path, body, message):
    path = tmp_path / "bad.pts"
    path.write_text(body)
    with pytest.raises(FormatError, match=message) as error:
        read_pts(path)
    assert str(path) in str(error.value)


def test_pts_wrong_expected_count():
    with pytest.raises(FormatError, match=r"261068_1.pts: has 68 points, expected 49"):
        read_pts(AFW_PTS, expected_points=49)


def test_pts_missing_file(tmp_path):
    with pytest.raises(FormatError, match="missing.pts: cannot read"):
        read_pts(tmp_path / "missing.pts")


def test_pts_writer_rejects_bad_points(tmp_path):
    with pytest.raises(ValueError, match="points: contains NaN or inf"):
        write_pts(tmp_path / "x.pts", np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match=r"points: expected shape \(K, 2\)"):
        write_pts(tmp_path / "x.pts", np.zeros((3, 3)))
    assert not (tmp_path / "x.pts").exists()


# ---------------------------------------------------------------- COCO keypoint JSON
@pytest.mark.parametrize("name", sorted(COCO_COUNTS))
def test_coco_fixture_values_are_kept_as_stored(name):
    path = MMPOSE / name / f"test_{name}.json"
    raw = json.loads(path.read_text())
    records = read_coco_keypoints(path)
    count, faces = COCO_COUNTS[name]
    assert len(records) == faces and all(r.points.shape == (count, 2) for r in records)
    first = raw["annotations"][0]
    np.testing.assert_array_equal(records[0].points[:, 0], first["keypoints"][0::3])
    np.testing.assert_array_equal(records[0].points[:, 1], first["keypoints"][1::3])
    x, y, w, h = first["bbox"]
    assert records[0].box == (x, y, x + w, y + h)
    names = {im["id"]: im["file_name"] for im in raw["images"]}
    assert records[0].image == names[first["image_id"]]


def test_coco_cofw_flags_keep_occluded_points_visible():
    records = read_coco_keypoints(MMPOSE / "cofw" / "test_cofw.json", expected_points=29)
    flags = np.array(records[1].meta["flags"])
    assert set(flags) == {1.0, 2.0}  # 1: labelled but occluded, 2: visible
    assert records[1].visibility.all()


@pytest.mark.parametrize("name", sorted(COCO_COUNTS))
def test_coco_round_trip(tmp_path, name):
    path = MMPOSE / name / f"test_{name}.json"
    records = read_coco_keypoints(path)
    write_coco_keypoints(tmp_path / "out.json", records)
    again = read_coco_keypoints(tmp_path / "out.json")
    records_equal(records, again)
    original, written = (
        json.loads(path.read_text()),
        json.loads((tmp_path / "out.json").read_text()),
    )
    assert written["annotations"] == original["annotations"]  # ids, flags, center, scale, ...
    assert written["images"] == original["images"]


def test_coco_invisible_points_round_trip(tmp_path):
    record = LandmarkRecord(
        "a.jpg", np.array([[1.5, 2.0], [0.0, 0.0]]), np.array([True, False]), (0.1, 0.2, 3.3, 4.4)
    )
    write_coco_keypoints(tmp_path / "v.json", [record])
    (again,) = read_coco_keypoints(tmp_path / "v.json")
    records_equal([record], [again])
    assert again.meta["flags"] == [2.0, 0.0]


def coco_text(keypoints, bbox=(0, 0, 1, 1), image_id=1) -> bytes:
    data = {
        "images": [{"id": 1, "file_name": "a.jpg"}],
        "annotations": [{"id": 7, "image_id": image_id, "keypoints": keypoints, "bbox": bbox}],
    }
    return json.dumps(data).replace("Infinity", "1e999").encode()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (coco_text([1, 2, 1, 3, 4]), "x, y, v triples"),
        (coco_text([1, "a", 1]), "annotation 7: 'a' is not a number"),
        (coco_text([1, float("nan"), 1]), "annotation 7: nan is not finite"),
        (coco_text([1, float("inf"), 1]), "annotation 7: inf is not finite"),
        (coco_text([1, 2, 1], image_id=5), "without a known 'image_id'"),
        (coco_text([1, 2, 1], bbox=[1, 2]), r"'bbox' must be \[x, y, w, h\]"),
        (coco_text([1, 2, 1], bbox=[1, 2, -3, 4]), "negative size"),
        (b"[1, 2]", "expected an object with an 'annotations' list"),
        (b'{"annotations": []}', "'images' list"),
        (b"{not json", "malformed"),
        (b"\xff\xfe\x00", "not UTF-8"),
    ],
)
def test_coco_errors(content, message):
    with pytest.raises(FormatError, match=message):
        read_coco_keypoints(content)


def test_coco_bad_annotations_can_be_skipped():
    skipped: list[tuple[str, str]] = []
    records = read_coco_keypoints(MMPOSE / "wflw" / "test_wflw.json", 68, skipped=skipped)
    assert records == [] and len(skipped) == 4
    assert "has 98 points, expected 68" in skipped[0][1]


# ---------------------------------------------------------------- dlib XML
DLIB_XML = b"""<?xml version='1.0' encoding='ISO-8859-1'?>
<?xml-stylesheet type='text/xsl' href='image_metadata_stylesheet.xsl'?>
<dataset>
<name>Training faces</name>
<comment>written by dlib's imglab</comment>
<images>
  <image file='faces/a.jpg'>
    <box top='20' left='10' width='101' height='121'>
      <part name='00' x='15' y='25'/>
      <part name='02' x='30' y='40'/>
    </box>
    <box top='5' left='6' width='7' height='8' ignore='1'/>
  </image>
</images>
</dataset>
"""


def test_dlib_xml_reads_imglab_files():
    first, second = read_dlib_xml(DLIB_XML)
    assert first.image == second.image == "faces/a.jpg"
    np.testing.assert_array_equal(first.points, [[15, 25], [0, 0], [30, 40]])
    np.testing.assert_array_equal(first.visibility, [True, False, True])  # part 01 is missing
    assert first.box == (10, 20, 111, 141)
    assert second.meta["ignore"] == "1" and not second.visibility.any()


def test_dlib_xml_round_trip(tmp_path):
    records = read_dlib_xml(DLIB_XML, expected_points=4)
    records.append(
        LandmarkRecord(
            "b&<c>.jpg", np.array([[0.1, 2.5], [3, 4], [5, 6], [7, 8.25]]), np.ones(4, bool)
        )
    )
    write_dlib_xml(tmp_path / "out.xml", records)
    again = read_dlib_xml(tmp_path / "out.xml", expected_points=4)
    assert again[2].box == (0.1, 2.5, 7.0, 8.25)  # no box: the points' bounding box
    records_equal(records[:2], again[:2])
    np.testing.assert_array_equal(again[2].points, records[2].points)
    assert again[1].meta["ignore"] == "1"


def test_dlib_itself_loads_our_xml(tmp_path):
    dlib = pytest.importorskip("dlib")
    points = read_pts(AFW_PTS) + 0.4  # non-integral: dlib needs round_to_int
    record = LandmarkRecord("face.jpg", points, np.ones(68, bool), (100, 50, 300, 260))
    write_dlib_xml(tmp_path / "faces.xml", [record], name="afw", round_to_int=True)
    dataset = dlib.image_dataset_metadata.load_image_dataset_metadata(str(tmp_path / "faces.xml"))
    box = dataset.images[0].boxes[0]
    assert dataset.images[0].filename == "face.jpg" and len(box.parts) == 68
    assert (box.rect.left(), box.rect.top(), box.rect.right(), box.rect.bottom()) == (
        100,
        50,
        299,
        259,
    )
    part = box.parts["36"]
    assert (part.x, part.y) == tuple(np.rint(points[36]).astype(int))


def test_dlib_xml_from_dlib_reads_back(tmp_path):
    dlib = pytest.importorskip("dlib")
    metadata = dlib.image_dataset_metadata
    dataset, image, box = metadata.dataset(), metadata.image(), metadata.box()
    image.filename = "x.jpg"
    box.rect = dlib.rectangle(10, 20, 110, 140)
    box.parts["00"], box.parts["01"] = dlib.point(15, 25), dlib.point(30, 40)
    image.boxes.append(box)
    dataset.images.append(image)
    metadata.save_image_dataset_metadata(dataset, str(tmp_path / "dlib.xml"))
    (record,) = read_dlib_xml(tmp_path / "dlib.xml")
    np.testing.assert_array_equal(record.points, [[15, 25], [30, 40]])
    assert record.box == (10, 20, 111, 141)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"<dataset><images><image file='a'><box top='1' left='1' width='1' height='x'/>"
         b"</image></images></dataset>", "box height: 'x' is not a number"),
        (b"<dataset><images><image file='a'><box top='1' left='1' width='1' height='1'>"
         b"<part name='nose' x='1' y='1'/></box></image></images></dataset>", "bad or repeated part"),
        (b"<dataset><images><image file='a'><box top='1' left='1' width='1' height='1'>"
         b"<part name='0' x='1' y='1'/><part name='00' x='1' y='1'/></box></image></images>"
         b"</dataset>", "bad or repeated part"),
        (b"<dataset><images><image file='a'><box top='1' left='1' width='1' height='1'>"
         b"<part name='0' x='nan' y='1'/></box></image></images></dataset>", "not finite"),
        (b"<dataset><images><image><box/></image></images></dataset>", "without a 'file'"),
        (b"<dataset><images><image file='a'><box top='1'/></image></images></dataset>",
         "without a 'left' attribute"),
        (b"<other/>", "expected <dataset>"),
        (b"<dataset><unclosed>", "malformed"),
    ],
)  # fmt: skip
def test_dlib_xml_errors(content, message):
    with pytest.raises(FormatError, match=message):
        read_dlib_xml(content)


# ---------------------------------------------------------------- CSV (ytf68)
def test_csv_slice_round_trips_byte_for_byte(tmp_path):
    records = read_landmarks_csv(YTF68_TRAIN, expected_points=68)
    assert len(records) == 24 and records[0].image.startswith("images/")
    assert all(r.visibility.all() and r.box is None for r in records)
    write_landmarks_csv(tmp_path / "train.csv", records)
    assert (tmp_path / "train.csv").read_bytes() == YTF68_TRAIN.read_bytes()


def test_csv_float_round_trip(tmp_path):
    record = LandmarkRecord(
        "a,b.jpg", np.array([[0.1, 1e-7], [123456.789, -2.0]]), np.ones(2, bool)
    )
    write_landmarks_csv(tmp_path / "f.csv", [record])
    records_equal([record], read_landmarks_csv(tmp_path / "f.csv"))


def test_csv_writer_refuses_invisible_points(tmp_path):
    record = LandmarkRecord("a.jpg", np.zeros((2, 2)), np.array([True, False]))
    with pytest.raises(ValueError, match="cannot store invisible points"):
        write_landmarks_csv(tmp_path / "f.csv", [record])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"name,x0,y0\na.jpg,1,2\n", "header must be"),
        (b"image,x0,y0\na.jpg,1\n", ":2: expected an image name and 2 numbers"),
        (b"image,x0,y0\na.jpg,1,nan\n", ":2: column 2: 'nan' is not finite"),
        (b"image,x0,y0\na.jpg,1,two\n", "'two' is not a number"),
        (b"image,x0,y0\n,1,2\n", "expected an image name"),
        (b"image,x0,y0\na\x00.jpg,1,2\n", "contains a NUL"),
    ],
)
def test_csv_errors(content, message):
    with pytest.raises(FormatError, match=message):
        read_landmarks_csv(content)


def test_csv_bad_rows_can_be_skipped():
    skipped: list[tuple[str, str]] = []
    content = b"image,x0,y0\na.jpg,1,2\nb.jpg,inf,2\nc.jpg,3,4\n"
    records = read_landmarks_csv(content, skipped=skipped)
    assert [r.image for r in records] == ["a.jpg", "c.jpg"]
    assert skipped == [("<bytes>:3", "<bytes>:3: column 1: 'inf' is not finite")]


def test_csv_expected_count():
    with pytest.raises(FormatError, match="has 68 points, expected 98"):
        read_landmarks_csv(YTF68_TRAIN, expected_points=98)


# ---------------------------------------------------------------- every parser, random input
PARSERS = [read_pts, read_coco_keypoints, read_dlib_xml, read_landmarks_csv]
SEEDS = [
    AFW_PTS.read_bytes(),
    (MMPOSE / "cofw" / "test_cofw.json").read_bytes(),
    DLIB_XML,
    b"image,x0,y0,x1,y1\na.jpg,1,2,3,4\n",
]


def accepts_only_format_errors(parser, content) -> None:
    tried("annotations")
    try:
        parser(content)
    except FormatError:
        pass


@pytest.mark.parametrize("parser", PARSERS)
@settings(max_examples=150, deadline=None)
@given(content=st.binary(max_size=400))
def test_parsers_turn_random_bytes_into_format_errors(parser, content):
    accepts_only_format_errors(parser, content)


@pytest.mark.parametrize("parser", PARSERS)
@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=300))
def test_parsers_turn_random_text_into_format_errors(parser, text):
    accepts_only_format_errors(parser, text + "\n")  # a str with a newline is content


@pytest.mark.parametrize("parser", PARSERS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_parsers_survive_mutated_valid_files(parser, data):
    """Small edits to real files reach deep into each parser; still only FormatError."""
    content = bytearray(data.draw(st.sampled_from(SEEDS)))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(content)))
        action = data.draw(st.sampled_from(["delete", "insert", "replace", "truncate"]))
        chunk = data.draw(st.sampled_from([b"", b"\n", b"-", b"nan", b"1e999", b"{", b"<", b"\"", b",",
                                           b"\x00", b"\xff", b"}", b"]", b"1" * 30, b"name='99999'"]))  # fmt: skip
        if action == "delete":
            del content[position : position + len(chunk) + 1]
        elif action == "insert":
            content[position:position] = chunk
        elif action == "replace":
            content[position : position + len(chunk)] = chunk
        else:
            del content[position:]
    accepts_only_format_errors(parser, bytes(content))
