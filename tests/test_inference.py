"""Landmarker: detect -> crop -> predict -> map back, on the shipped samples and the in-repo slice.

Points are (x, y) image pixels, 0-based, pixel centres at integers. Accuracy assertions are loose
on purpose (the shipped weights may be early snapshots) and are marked ACCURACY.
"""

from __future__ import annotations

import copy
import json
import math
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import png_header
from PIL import Image

from laplace_landmarks import Face, Landmarker
from laplace_landmarks.data.crops import crop_from_five_points, five_points_from_68, warp_crop
from laplace_landmarks.data.formats import read_pts
from laplace_landmarks.data.images import load_image
from laplace_landmarks.detection import crop_from_detection
from laplace_landmarks.errors import ImageError, LandmarksError
from laplace_landmarks.weights import list_pretrained, pretrained_path

SAMPLES = Path(str(resources.files("laplace_landmarks") / "samples"))
LABELLED = sorted(SAMPLES.glob("ytf68_*.jpg"))
EMMY = SAMPLES / "ytf68_Emmy_Rossum_20a.jpg"


def gt_box(points: np.ndarray, grow: float = 0.0) -> tuple[float, float, float, float]:
    """The box around ``points``, grown by ``grow`` times its size on every side."""
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    dx, dy = grow * (x1 - x0), grow * (y1 - y0)
    return x0 - dx, y0 - dy, x1 + dx, y1 + dy


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def landmarker() -> Landmarker:
    return Landmarker.pretrained()


@pytest.fixture(scope="module")
def emmy_faces(landmarker) -> list[Face]:
    return landmarker.predict(EMMY)


def check_face(face: Face) -> None:
    assert isinstance(face, Face)
    assert face.points.shape == (68, 2) and face.points.dtype == np.float64
    assert face.scale.shape == (68, 2) and face.scale.dtype == np.float64
    assert np.isfinite(face.points).all() and np.isfinite(face.scale).all()
    assert (face.scale > 0).all()
    assert len(face.box) == 4 and all(isinstance(v, float) for v in face.box)


def test_registry_lists_the_shipped_models_with_one_default():
    models = list_pretrained()
    current = ["rcn-lite", "rcn-lite-medium", "rcn-lite-accurate", "rcn-fast"]
    ytf68 = [f"{name}-ytf68" for name in [*current, "rcn-accurate"]]
    # rcn-lite-accurate-112: rcn-lite-accurate's network fine-tuned on 112 px crops
    assert [m["name"] for m in models] == [
        *current[:3],
        "rcn-lite-accurate-112",
        "rcn-fast",
        *ytf68,
    ]
    # the fast rcn-lite is a width-1/4 network run in one pass; its ytf68 parent is width 1/8
    widths = [0.25, 0.25, 0.5, 0.5, 0.125, 0.125, 0.25, 0.5, 0.125, 0.25]
    assert [m["width"] for m in models] == widths
    archs = [m.get("arch", "rcn") for m in models]
    assert archs == ["rcn-lite"] * 4 + ["rcn"] + ["rcn-lite"] * 3 + ["rcn", "rcn"]
    assert [m["name"] for m in models if m["default"]] == ["rcn-lite-accurate-112"]
    assert pretrained_path() == pretrained_path("rcn-lite-accurate-112")
    assert Landmarker.pretrained("rcn-lite-accurate-112", threads=1).crop_size == 112
    # the 300W models carry a fitted scale factor; the ytf68 files predate it
    for name in [*current, "rcn-lite-accurate-112"]:
        model = Landmarker.pretrained(name, threads=1).model
        assert 0.3 < float(model.scale_factor) < 1.0, name
    assert all(pretrained_path(m["name"]).is_file() and m["card"] for m in models)


@pytest.mark.parametrize("sample", LABELLED[:2], ids=lambda p: p.stem)
def test_shipped_rcn_lite_is_the_stride_2_generator_and_lands_on_the_face(sample):
    from laplace_landmarks.models import RCNLite

    lite = Landmarker.pretrained("rcn-lite", threads=1)
    assert isinstance(lite.model, RCNLite) and lite.model.config.output_stride == 2
    truth = read_pts(sample.with_suffix(".pts"), expected_points=68)
    faces = lite.predict(sample, boxes=[gt_box(truth, grow=0.1)])
    check_face(faces[0])
    iod = np.linalg.norm(truth[36] - truth[45])
    nme = np.linalg.norm(faces[0].points - truth, axis=1).mean() / iod
    assert nme < 0.15  # a trained model on a labelled photo; random weights land far off


def test_unknown_pretrained_name_lists_the_choices():
    with pytest.raises(LandmarksError, match="rcn-accurate.*rcn-fast.*rcn-lite"):
        pretrained_path("rcn-huge")


@pytest.mark.parametrize("sample", LABELLED, ids=lambda p: p.stem)
def test_samples_give_one_face_near_the_ground_truth(landmarker, sample):
    faces = landmarker.predict(sample)
    assert len(faces) >= 1
    for face in faces:
        check_face(face)
        assert isinstance(face.score, float)
    truth = read_pts(sample.with_suffix(".pts"), expected_points=68)
    # ACCURACY (loose, holds for any decent model): the best face's mean point lies inside the
    # ground-truth box grown by 20 %, and its points spread over a face-sized region.
    x0, y0, x1, y1 = gt_box(truth, grow=0.2)
    mx, my = faces[0].points.mean(axis=0)
    assert x0 <= mx <= x1 and y0 <= my <= y1
    spread = faces[0].points.max(axis=0) - faces[0].points.min(axis=0)
    gt_spread = truth.max(axis=0) - truth.min(axis=0)
    assert np.all(spread > 0.5 * gt_spread) and np.all(spread < 1.5 * gt_spread)


def test_the_in_repo_slice_images_all_give_finite_faces(landmarker):
    images = sorted((Path(__file__).parent / "data" / "ytf68_slice" / "images").rglob("*.jpg"))
    for path in images[:4]:
        for face in landmarker.predict(path):
            check_face(face)


def test_detector_box_given_as_a_box_reproduces_the_detector_result(landmarker, emmy_faces):
    face = emmy_faces[0]
    given = landmarker.predict(EMMY, boxes=[face.box])
    assert len(given) == 1 and given[0].score is None and given[0].box == face.box
    np.testing.assert_allclose(given[0].points, face.points, atol=1e-9)
    np.testing.assert_allclose(given[0].scale, face.scale, atol=1e-9)


def test_a_different_box_still_lands_on_the_face(landmarker, emmy_faces):
    # A tight box around the ground truth is not what dlib gives; refine makes it work anyway.
    truth = read_pts(EMMY.with_suffix(".pts"))
    face = landmarker.predict(EMMY, boxes=[gt_box(truth)])[0]
    check_face(face)
    size = float(np.ptp(truth, axis=0).mean())
    # ACCURACY (loose): same face as from the detector box, mean point within 10 % of face size
    gap = np.linalg.norm(face.points.mean(axis=0) - emmy_faces[0].points.mean(axis=0))
    assert gap < 0.1 * size


def test_refine_recrops_by_the_five_point_rule(landmarker, emmy_faces):
    """The model's own first pass (no first-pass model) from the box, then the 5-point crop."""
    box = emmy_faces[0].box
    single = Landmarker.pretrained(refine=False, flip_test=False)  # the same backend (onnx)
    first = single.predict(EMMY, boxes=[box])[0]
    box_crop = crop_from_detection(box, size=single.crop_size)
    np.testing.assert_allclose(first.crop.matrix, box_crop.matrix)
    final = Landmarker.pretrained(first_pass=False).predict(EMMY, boxes=[box])[0]
    expected = crop_from_five_points(five_points_from_68(first.points), size=single.crop_size)
    np.testing.assert_allclose(final.crop.matrix, expected.matrix, atol=1e-9)
    assert not np.allclose(final.crop.matrix, box_crop.matrix)
    assert not np.allclose(first.points, final.points)


def test_image_as_path_pil_array_gray_and_rgba(landmarker, emmy_faces):
    reference = emmy_faces[0]
    pil = Image.open(EMMY).convert("RGB")
    rgb = np.asarray(pil)
    for image in (pil, rgb, np.asarray(pil.convert("RGBA"))[..., :3].copy()):
        np.testing.assert_allclose(landmarker.predict(image)[0].points, reference.points)
    opaque = pil.convert("RGBA")  # alpha 255 everywhere: exactly the RGB image
    np.testing.assert_allclose(landmarker.predict(opaque)[0].points, reference.points)
    gray_pil = pil.convert("L")
    gray_faces = landmarker.predict(gray_pil)
    np.testing.assert_allclose(
        landmarker.predict(np.asarray(gray_pil))[0].points, gray_faces[0].points
    )
    check_face(gray_faces[0])
    size = float(np.ptp(reference.points, axis=0).mean())
    gap = np.linalg.norm(gray_faces[0].points - reference.points, axis=1).mean()
    assert gap < 0.1 * size  # colour vs gray: same face, close points


def test_rgba_with_transparency_is_composited(landmarker, emmy_faces, tmp_path):
    rgba = Image.open(EMMY).convert("RGBA")
    alpha = np.full(rgba.size[::-1], 255, np.uint8)
    alpha[:20] = 0  # a transparent strip at the top, far from the face
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(tmp_path / "rgba.png")
    faces = landmarker.predict(tmp_path / "rgba.png")
    check_face(faces[0])
    np.testing.assert_allclose(faces[0].points, emmy_faces[0].points, atol=1.0)


def test_blank_image_has_no_face(landmarker):
    assert landmarker.predict(np.zeros((120, 160, 3), np.uint8)) == []
    assert landmarker.predict(np.full((64, 64), 200, np.uint8), boxes=[]) == []


def test_unreadable_and_non_image_files_raise_image_error(landmarker, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    text = tmp_path / "notes.png"
    text.write_text("hello")
    for path in (bad, text, tmp_path / "missing.jpg"):
        with pytest.raises(ImageError, match=path.name):
            landmarker.predict(path)


def test_huge_image_is_refused_before_decoding(landmarker, tmp_path):
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_header(12_000, 12_000))  # 144 Mpx claimed, a few bytes on disk
    with pytest.raises(ImageError, match="huge.png.*(pixels|too large)"):
        landmarker.predict(huge)


@pytest.mark.parametrize(
    "boxes",
    [
        [[500.0, 500.0, 600.0, 600.0]],  # entirely outside the 389x360 image
        [[-300.0, 10.0, -200.0, 100.0]],
        [[50.0, 50.0, 50.0, 120.0]],  # zero width
        [[120.0, 50.0, 60.0, 120.0]],  # x1 < x0
        [[math.nan, 50.0, 100.0, 120.0]],
        [[10.0, 20.0, 30.0]],  # wrong shape
        [[[10.0, 20.0, 30.0, 40.0]]],
        "not boxes",
    ],
)
def test_bad_boxes_raise_naming_boxes(landmarker, boxes):
    with pytest.raises(LandmarksError, match="boxes"):
        landmarker.predict(EMMY, boxes=boxes)


def test_box_partly_outside_the_image_is_fine(landmarker):
    faces = landmarker.predict(EMMY, boxes=[(-60.0, -40.0, 120.0, 150.0)])
    assert len(faces) == 1
    check_face(faces[0])


def test_predict_batch_matches_predict_in_crop_pixels(landmarker, emmy_faces):
    crop = emmy_faces[0].crop
    rgb = np.asarray(Image.open(EMMY).convert("RGB"))
    crops = np.stack([warp_crop(rgb, crop)] * 3).transpose(0, 3, 1, 2)
    points, scale = landmarker.predict_batch(torch.from_numpy(np.ascontiguousarray(crops)))
    assert points.shape == scale.shape == (3, 68, 2)
    np.testing.assert_allclose(crop.to_image(points[1]), emmy_faces[0].points, atol=1e-4)
    np.testing.assert_allclose(crop.to_image_scale(scale[2]), emmy_faces[0].scale, atol=1e-4)
    np.testing.assert_allclose(landmarker.predict_batch(crops)[0], points, atol=1e-4)  # numpy


@pytest.mark.parametrize(
    "crops",
    [np.zeros((2, 3, 80, 80), np.float32), np.zeros((2, 80, 80, 3), np.uint8), np.zeros((80, 80))],
)
def test_predict_batch_rejects_bad_crops(landmarker, crops):
    with pytest.raises(ValueError, match="crops"):
        landmarker.predict_batch(crops)


def test_flip_test_and_threads(landmarker, emmy_faces):
    previous = torch.get_num_threads()
    flipped = Landmarker(landmarker.model, landmarker.config, flip_test=True, threads=2)
    face = flipped.predict(EMMY, boxes=[emmy_faces[0].box])[0]
    check_face(face)
    assert torch.get_num_threads() == previous  # restored
    size = float(np.ptp(emmy_faces[0].points, axis=0).mean())
    assert np.linalg.norm(face.points - emmy_faces[0].points, axis=1).mean() < 0.1 * size


def test_flip_test_keeps_the_calibrated_offset(landmarker):
    """Flip averaging must keep point_offset as fitted: a shift added to the offset moves the
    flip-averaged points by exactly that shift (not by its mirror image, which cancels in x)."""
    crops = torch.from_numpy(np.ascontiguousarray(warp_crop(load_image(EMMY), crop_from_detection(
        (60.0, 60.0, 190.0, 190.0), landmarker.crop_size)).transpose(2, 0, 1)[None]))  # fmt: skip
    model = copy.deepcopy(landmarker.model)
    flipped = Landmarker(model, landmarker.config, flip_test=True)
    before, _ = flipped.predict_batch(crops)
    model.point_offset += torch.tensor([1.5, -0.5])
    after, _ = flipped.predict_batch(crops)
    np.testing.assert_allclose(after - before, np.broadcast_to([1.5, -0.5], after.shape), atol=1e-4)


def test_flip_test_mirrors_only_the_final_pass(landmarker, emmy_faces):
    """predict(flip_test=True) runs the first pass plain and mirrors only the re-crop pass: three
    network calls per face, and the same points as doing those steps by hand."""
    box = emmy_faces[0].box
    flipped = Landmarker(landmarker.model, landmarker.config, flip_test=True)
    calls = []
    forward = flipped._forward
    flipped._forward = lambda crops: calls.append(len(crops)) or forward(crops)
    face = flipped.predict(EMMY, boxes=[box])[0]
    assert calls == [1, 2]  # the plain first pass; the crop and its mirror image in one call
    plain = Landmarker(landmarker.model, landmarker.config, refine=False)
    first = plain.predict(EMMY, boxes=[box])[0]
    crop = crop_from_five_points(five_points_from_68(first.points), size=landmarker.crop_size)
    crops = torch.from_numpy(
        np.ascontiguousarray(warp_crop(load_image(EMMY), crop).transpose(2, 0, 1)[None])
    )
    points, _ = Landmarker(landmarker.model, landmarker.config, flip_test=True).predict_batch(crops)
    np.testing.assert_allclose(face.points, crop.to_image(points[0]), atol=1e-3)
    without_refine = Landmarker(landmarker.model, landmarker.config, refine=False, flip_test=True)
    calls.clear()
    without_refine._forward = lambda crops: calls.append(len(crops)) or forward(crops)
    without_refine.predict(EMMY, boxes=[box])
    assert calls == [2]  # no re-crop: the only pass is the final one, and it is mirrored


@pytest.fixture(scope="module")
def fast() -> Landmarker:
    """The shipped one-pass model (trained on the detector's crops), on PyTorch."""
    return Landmarker.pretrained("rcn-lite", backend="torch")


def test_first_pass_makes_the_first_estimate(landmarker, fast, emmy_faces):
    """With ``first_pass`` the cheap model's one pass from the box gives the estimate that the
    model re-crops from: one call each, and the same points as those steps by hand."""
    box = emmy_faces[0].box
    cascade = Landmarker(landmarker.model, landmarker.config, first_pass=fast)
    calls = []
    for name, lm in (("first", fast), ("final", cascade)):
        forward = lm._forward
        lm._forward = lambda crops, f=forward, n=name: calls.append((n, crops.shape)) or f(crops)
    try:
        face = cascade.predict(EMMY, boxes=[box])[0]
    finally:
        del fast._forward, cascade._forward
    size = landmarker.crop_size  # the default model's (112); rcn-lite's first pass takes 80 px
    assert calls == [("first", (1, 3, 80, 80)), ("final", (1, 3, size, size))]
    first = fast.predict(EMMY, boxes=[box])[0]
    crop = crop_from_five_points(five_points_from_68(first.points), size=size)
    crops = np.ascontiguousarray(warp_crop(load_image(EMMY), crop).transpose(2, 0, 1)[None])
    points, scale = cascade.predict_batch(crops)
    np.testing.assert_allclose(face.points, crop.to_image(points[0]), atol=1e-3)
    np.testing.assert_allclose(face.scale, crop.to_image_scale(scale[0]), rtol=1e-4)
    # the same face as the model's own first pass finds, within a few pixels
    size = float(np.ptp(emmy_faces[0].points, axis=0).mean())
    assert np.linalg.norm(face.points - emmy_faces[0].points, axis=1).mean() < 0.05 * size


def test_first_pass_is_checked(landmarker, fast):
    model, config = landmarker.model, landmarker.config
    with pytest.raises(ValueError, match="needs refine >= 1"):
        Landmarker(model, config, refine=0, first_pass=fast)
    refining = Landmarker(model, config, refine=1)
    with pytest.raises(ValueError, match="must make one pass from the box"):
        Landmarker(model, config, first_pass=refining)
    with pytest.raises(ValueError, match="must be a Landmarker"):
        Landmarker(model, config, first_pass="rcn-lite")


def test_shipped_default_takes_its_first_pass_from_the_index():
    """The index names the default's first pass (rcn-lite); ``first_pass=False`` or one pass
    from the box (``refine=0``) goes without it; a file has none unless asked."""
    entry = next(e for e in list_pretrained() if e["default"])
    default = Landmarker.pretrained()
    assert default.first_pass is not None and default.first_pass.name == entry["first_pass"]
    assert default.first_pass.refine == 0 and not default.first_pass.flip_test
    assert default.passes == f"{entry['first_pass']} + 1 mirrored"
    own = Landmarker.pretrained(first_pass=False)
    assert own.first_pass is None and own.passes == "2, the last mirrored"
    assert Landmarker.pretrained(first_pass=False, flip_test=False).passes == "2"
    assert Landmarker.pretrained("rcn-lite").passes == "1"
    assert Landmarker.pretrained("rcn-lite", flip_test=True).passes == "1 mirrored"
    assert Landmarker.pretrained(refine=0).first_pass is None
    assert Landmarker.load(str(pretrained_path(entry["name"]))).first_pass is None
    asked = Landmarker.load(str(pretrained_path(entry["name"])), first_pass="rcn-lite")
    assert asked.first_pass.name == "rcn-lite"
    with pytest.raises(LandmarksError, match="no-such-model"):
        Landmarker.pretrained(first_pass="no-such-model")


def test_face_to_dict_is_json(emmy_faces):
    data = json.loads(json.dumps(emmy_faces[0].to_dict()))
    assert set(data) == {"box", "score", "points", "scale"}
    assert np.array(data["points"]).shape == np.array(data["scale"]).shape == (68, 2)
    np.testing.assert_allclose(data["points"], emmy_faces[0].points, atol=1e-3)
    assert "(68, 2)" in repr(emmy_faces[0])
