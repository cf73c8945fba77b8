"""The inference path takes untrusted input: images, face boxes, videos, the ONNX cache.

From ``Landmarker.predict``, ``Landmarker.predict_batch`` and the video functions, every bad
input ends either in a correct result (finite points, positive scales) or in one LandmarksError
whose one-line message names the input (the file, ``image``, the box and its values, ``crops``);
never another exception, a hang or a memory blow-up. The explicit tests pin each fix: huge,
tiny and non-finite boxes; the re-crop that could collapse; outputs that would claim certainty;
the video pixel limit; the ONNX cache rebuild. The hypothesis tests at the end fuzz images,
boxes and videos and count what they tried (``fuzzing.tried``).

Coordinates are (x, y) image pixels, 0-based, pixel centres at integers; boxes (x0, y0, x1, y1)
in continuous edge coordinates.
"""

from __future__ import annotations

import hashlib
import io
import math
import struct
import tempfile
import time
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from fuzzing import tried
from helpers import png_header
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

import laplace_landmarks
from laplace_landmarks import Face, Landmarker
from laplace_landmarks.data.crops import Crop, warp_crop
from laplace_landmarks.data.images import MAX_PIXELS
from laplace_landmarks.detection import Detection, crop_from_detection
from laplace_landmarks.errors import ImageError, LandmarksError
from laplace_landmarks.inference import MAX_BOX_RATIO, MIN_BOX_SIZE, _refined_crop
from laplace_landmarks.video import FrameResult, predict_video, read_frames, write_video
from laplace_landmarks.video_synth import sample_photo, synthesize_video

pytestmark = pytest.mark.usefixtures("one_thread")

SAMPLES = Path(laplace_landmarks.__file__).parent / "samples"
EMMY = SAMPLES / "ytf68_Emmy_Rossum_20a.jpg"
RGB = np.asarray(Image.open(EMMY).convert("RGB"))  # 389 x 360
HEIGHT, WIDTH = RGB.shape[:2]
FACE_BOX = (110.0, 90.0, 270.0, 250.0)
LITE = Landmarker.pretrained("rcn-lite", threads=1)  # the smallest shipped model, loaded once
FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def centre_detector(rgb: np.ndarray) -> list[Detection]:
    """A stand-in detector (dlib is slow on thousands of inputs): the middle of the image."""
    height, width = rgb.shape[:2]
    return [Detection((0.2 * width, 0.2 * height, 0.8 * width, 0.8 * height), 1.0)]


CENTRE = Landmarker(LITE.model, LITE.config, detector=centre_detector, threads=1)


def check_face(face: Face) -> None:
    """A correct result: 68 finite points and finite, positive scales."""
    assert face.points.shape == face.scale.shape == (68, 2)
    assert np.isfinite(face.points).all() and np.isfinite(face.scale).all()
    assert (face.scale > 0).all()


def refused(call, *names: str) -> str:
    """Assert ``call()`` raises one LandmarksError naming ``names``, on one line."""
    with pytest.raises(LandmarksError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for name in names:
        assert name in message, message
    return message


def ends_cleanly(call, *names: str):
    """``call()``'s result, or None when it raised a one-line LandmarksError naming ``names``.

    Any other exception propagates and fails the test. Hypothesis statistics
    (``--hypothesis-show-statistics``) count the outcomes."""
    try:
        result = call()
    except LandmarksError as exc:
        message = str(exc)
        assert "\n" not in message, message
        for name in names:
            assert name in message, message
        event(f"refused: {type(exc).__name__}")
        return None
    event(f"result: {len(result)} items")
    return result


# --- 1. huge boxes -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "box",
    [
        (-1e6, -1e6, 1e6, 1e6),
        (0.0, 0.0, 1e6, 1e6),
        (-1e9, 0.0, 50.0, 1e9),
        (-1e308, -1e308, 1e308, 1e308),  # its width overflows to inf
        (0.0, 0.0, MAX_BOX_RATIO * WIDTH + 1.0, 100.0),
    ],
)
def test_a_box_far_larger_than_the_image_is_refused_naming_it(box):
    start = time.perf_counter()
    message = refused(lambda: LITE.predict(RGB, boxes=[box]), "boxes[0]", repr(float(box[0])))
    assert "cannot frame a face" in message
    assert time.perf_counter() - start < 1.0


def test_a_box_just_inside_the_size_limit_predicts():
    side = 0.95 * MAX_BOX_RATIO * WIDTH
    box = (WIDTH / 2 - side / 2, HEIGHT / 2 - side / 2, WIDTH / 2 + side / 2, HEIGHT / 2 + side / 2)
    start = time.perf_counter()
    (face,) = LITE.predict(RGB, boxes=[box])
    check_face(face)
    assert time.perf_counter() - start < 1.0


def test_warp_of_a_huge_crop_needs_no_image_sized_intermediate():
    """What used to raise DecompressionBombError (a 2e6-pixel square) warps at once."""
    start = time.perf_counter()
    for crop in (crop_from_detection((-1e6, -1e6, 1e6, 1e6)), Crop.from_square((0, 0), 1e7, 80)):
        out = warp_crop(RGB, crop)
        assert out.shape == (80, 80, 3) and out.dtype == np.uint8
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize(
    ("center", "half_side"),
    [
        ((150.3, 170.6), 60.2),
        ((-30.1, 40.7), 150.3),
        ((380.4, 350.2), 700.1),
        ((200.2, -700.3), 900.3),
    ],
)
def test_warp_outside_the_image_equals_warping_the_zero_padded_image(center, half_side):
    """Cutting only the blocks on the image changes nothing: the same pixels as warping an
    image padded with zeros far enough that nothing is clipped (up to one grey level, from
    rounding the shifted coordinates; the box edges are kept off integers, where a rounding
    error would move the block grid by a pixel)."""
    pad = 2000
    padded = np.zeros((HEIGHT + 2 * pad, WIDTH + 2 * pad, 3), np.uint8)
    padded[pad:-pad, pad:-pad] = RGB
    crop = Crop.from_square(center, half_side, 80)
    shifted = Crop.from_square((center[0] + pad, center[1] + pad), half_side, 80)
    difference = warp_crop(RGB, crop).astype(int) - warp_crop(padded, shifted)
    assert np.abs(difference).max() <= 1


def test_a_crop_that_misses_the_image_is_black():
    assert not warp_crop(RGB, Crop.from_square((5000, 5000), 40.0, 80)).any()


# --- 2. degenerate boxes and collapsed outputs ------------------------------------------------
@pytest.mark.parametrize(
    "box",
    [
        (100.0, 100.0, 100.3, 100.3),  # a fraction of a pixel: used to give scale 0
        (100.0, 100.0, 101.0, 101.0),
        (100.0, 100.0, 100.0 + MIN_BOX_SIZE - 0.1, 180.0),
        (100.0, 100.0, 300.0, 100.0 + 1e-9),
    ],
)
def test_a_box_below_the_minimum_size_is_refused_saying_why(box):
    message = refused(lambda: LITE.predict(RGB, boxes=[box]), "boxes[0]", "pixels")
    assert f"at least {MIN_BOX_SIZE:g} pixels" in message


def test_a_box_of_the_minimum_size_predicts():
    (face,) = LITE.predict(RGB, boxes=[(150.0, 150.0, 150.0 + MIN_BOX_SIZE, 150.0 + MIN_BOX_SIZE)])
    check_face(face)


@pytest.mark.parametrize(
    "boxes",
    [
        [(math.inf, 10.0, 100.0, 100.0)],
        [(10.0, -math.inf, 100.0, 100.0)],
        [(10.0, 10.0, 100.0, math.nan)],
        [(50.0, 50.0, 20.0, 120.0)],  # inverted
        [(1e308, 1e308, -1e308, -1e308)],
        [(-1e308, 10.0, -1e308 + 1e292, 100.0)],  # far outside
        [("10", "20", "100", "120")],  # strings are not numbers
        [(True, False, True, True)],
        [(10, 20, 100, 10**400)],  # an int too big for a float
        "10, 20, 100, 120",
        [[10.0, 20.0], [30.0, 40.0, 50.0]],  # ragged
        [(10.0, 20.0, 100.0, 120.0, 5.0)],
        [None],
        {"x0": 10},
    ],
)
def test_malformed_and_non_finite_boxes_are_landmarks_errors(boxes):
    refused(lambda: LITE.predict(RGB, boxes=boxes), "boxes")


def test_detections_that_cannot_frame_a_face_are_skipped():
    """A detector's speck or NaN box is skipped (it is not the caller's error); its good ones
    are predicted."""
    boxes = [(200.0, 200.0, 203.0, 203.0), (math.nan, 0, 10, 10), FACE_BOX, (0, 0, 1e6, 1e6)]
    detector = lambda rgb: [Detection(box, 1.0) for box in boxes]  # noqa: E731
    faces = Landmarker(LITE.model, LITE.config, detector=detector).predict(RGB)
    assert [face.box for face in faces] == [FACE_BOX]
    check_face(faces[0])


def test_refined_crop_keeps_the_current_crop_for_a_collapsed_estimate():
    anchor = crop_from_detection(FACE_BOX)
    centre = np.array([190.0, 170.0])
    spread = np.random.default_rng(0).normal(size=(68, 2))
    for points in (
        np.broadcast_to(centre, (68, 2)).copy(),  # all equal: no crop at all
        centre + 1e-9 * spread,  # almost equal: a crop 1e10x too small
        np.full((68, 2), np.nan),
        centre + np.where(np.arange(68)[:, None] == 30, np.inf, spread),
    ):
        assert _refined_crop(points, anchor, anchor, 80) is anchor


def test_repeated_refinement_is_judged_against_the_box_and_cannot_shrink_the_face_away():
    """``refine=n`` re-crops n times. A model whose estimates each shrink the face 0.7x must not
    drag the crop down pass by pass: every re-crop is checked against the box's own crop."""
    shrinking = Landmarker(LITE.model, LITE.config, refine=8, threads=1)
    real = shrinking._predict_crops

    def shrink(crops, flip=None):
        points, scale = real(crops, flip)
        middle = points.mean(axis=1, keepdims=True)
        return middle + 0.7 * (points - middle), scale

    shrinking._predict_crops = shrink
    (face,) = shrinking.predict(RGB, boxes=[FACE_BOX])
    check_face(face)
    anchor = crop_from_detection(FACE_BOX)
    assert 0.5 <= face.crop.scale / anchor.scale <= 2.0


class _ConstantLogits(torch.nn.Module):
    """A 'model' whose logits are one value everywhere (NaN: a broken model)."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.full((len(inputs), 68, 80, 80), self.value)


def test_non_finite_model_output_is_refused_naming_the_box_or_crop():
    broken = Landmarker(_ConstantLogits(math.nan), refine=False)
    refused(lambda: broken.predict(RGB, boxes=[FACE_BOX]), "box [110.0, 90.0, 270.0, 250.0]")
    crops = np.zeros((2, 3, 80, 80), np.uint8)
    refused(lambda: broken.predict_batch(crops), "crops[0]", "non-finite")


def test_a_zero_scale_is_refused_not_returned_as_certainty():
    model = _ConstantLogits(0.0)
    model.register_buffer("scale_factor", torch.tensor(0.0))  # a 'calibration' gone wrong
    certain = Landmarker(model, refine=False)
    refused(lambda: certain.predict(RGB, boxes=[FACE_BOX]), "box [110.0", "zero scale")


@pytest.mark.parametrize(
    "crops",
    [
        "crops",
        [["a"] * 3],
        [[1, 2], [3]],
        np.zeros((1, 3, 80, 80), np.float32),
        np.zeros((1, 3, 64, 64), np.uint8),
        torch.zeros(3, 80, 80, dtype=torch.uint8),
        None,
    ],
)
def test_predict_batch_refuses_bad_crops_with_landmarks_error(crops):
    refused(lambda: LITE.predict_batch(crops), "crops")


# --- images: explicit cases ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "image",
    [
        np.zeros((40, 40, 3), np.float32),
        np.full((40, 40, 3), np.nan),
        np.zeros((40, 40, 4), np.uint8),
        np.zeros((0, 40), np.uint8),
        np.zeros((2, 40, 40, 3), np.uint8),
        np.zeros((), np.uint8),
        [[0, 1], [2, 3]],
        None,
        12,
    ],
)
def test_bad_image_values_are_image_errors_naming_image(image):
    with pytest.raises(ImageError, match="image"):
        LITE.predict(image, boxes=[FACE_BOX])


def test_a_lazy_pil_image_claiming_a_huge_size_is_refused_before_loading():
    lazy = Image.open(io.BytesIO(png_header(9_000, 9_000)))  # 81 Mpx claimed, none there
    start = time.perf_counter()
    refused(lambda: LITE.predict(lazy), "image", "max_pixels")
    refused(lambda: LITE.predict(Image.new("L", (0, 5))), "image", "empty size")
    assert time.perf_counter() - start < 0.5


def test_many_boxes_are_predicted_in_batches():
    boxes = [FACE_BOX] * 5
    landmarker = Landmarker(LITE.model, LITE.config, batch_size=2, threads=1)
    faces = landmarker.predict(RGB, boxes=boxes)
    assert len(faces) == 5
    np.testing.assert_allclose(faces[4].points, faces[0].points, atol=1e-4)


# --- 3. the video pixel limit -------------------------------------------------------------------
def _synthetic_frames(size: tuple[int, int] = (96, 72), count: int = 3) -> list[np.ndarray]:
    photo, points = sample_photo()
    return synthesize_video(photo, points, count, size, noise=0, jpeg_quality=0).frames


def _jpeg(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (120, 90, 60)).save(buffer, "JPEG")
    return buffer.getvalue()


def _mjpeg_with_sizes(path: Path, sizes: list[tuple[int, int]]) -> Path:
    """An MJPEG .mkv whose header says the first size and whose frames have ``sizes``."""
    import av

    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("mjpeg", rate=25)
        stream.width, stream.height, stream.pix_fmt = *sizes[0], "yuvj420p"
        for index, size in enumerate(sizes):
            packet = av.Packet(_jpeg(size))
            packet.stream, packet.pts, packet.dts = stream, index, index
            packet.time_base = Fraction(1, 25)
            container.mux(packet)
    return path


def test_video_frames_over_the_pixel_limit_are_refused_from_the_header(tmp_path):
    path = write_video(tmp_path / "clip.mp4", _synthetic_frames(), fps=25)
    decoded = []
    with pytest.raises(LandmarksError) as info:
        decoded.extend(read_frames(path, max_pixels=96 * 72 - 1))
    message = str(info.value)
    assert str(path) in message and "96x72" in message and "refusing to decode" in message
    assert decoded == []  # refused before the first frame
    refused(lambda: predict_video(CENTRE, path, max_pixels=1000), str(path), "max_pixels=1000")
    assert len(predict_video(CENTRE, path, max_pixels=96 * 72)) == 3  # at the limit: fine
    assert MAX_PIXELS == 50_000_000  # the images' limit is the videos' default


def test_a_frame_growing_past_the_limit_mid_stream_is_refused(tmp_path):
    """A header can lie: the decoder is told the limit, so a bigger frame is never allocated."""
    path = _mjpeg_with_sizes(tmp_path / "grows.mkv", [(64, 48), (4000, 3000), (64, 48)])
    decoded = []
    with pytest.raises(LandmarksError, match="grows.mkv.*frame 1"):
        decoded.extend(frame.image.shape for frame in read_frames(path, max_pixels=1_000_000))
    assert decoded == [(48, 64, 3)]
    sizes = [frame.image.shape for frame in read_frames(path, max_pixels=12_000_000)]
    assert sizes == [(48, 64, 3), (3000, 4000, 3), (48, 64, 3)]


def test_a_frame_over_the_limit_that_the_decoder_lets_through_is_still_refused(tmp_path):
    """Between the limit and the decoder's slack, the check on each decoded frame refuses."""
    path = _mjpeg_with_sizes(tmp_path / "grows.mkv", [(64, 48), (1200, 1000), (64, 48)])
    with pytest.raises(LandmarksError, match=r"grows.mkv: video frame is 1200x1000 = 1200000"):
        list(read_frames(path, max_pixels=1_000_000))


# --- 4. the ONNX cache --------------------------------------------------------------------------
try:
    from laplace_landmarks.onnx_runtime import require_onnx

    require_onnx()
    HAVE_ONNX = True
except LandmarksError:
    HAVE_ONNX = False
needs_onnx = pytest.mark.skipif(not HAVE_ONNX, reason="needs the [onnx] extra")


def _mean_model_onnx(size: int = 80) -> bytes:
    """A small valid ONNX model with the landmark graph's interface: uint8 crops (N, 3, size,
    size) -> points (N, 68, 2), each the crop's mean value, and scale (N, 68, 2), all 1. (A
    real export takes seconds; test_export.py covers it.)"""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Cast", ["crops"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["x"], ["mean"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["mean", "column"], ["m"]),
        helper.make_node("Expand", ["m", "shape"], ["points"]),
        helper.make_node("Mul", ["points", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "one"], ["scale"]),
    ]
    constants = [
        helper.make_tensor("column", TensorProto.INT64, [3], [-1, 1, 1]),
        helper.make_tensor("shape", TensorProto.INT64, [3], [1, 68, 2]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
    ]
    graph = helper.make_graph(
        nodes,
        "mean",
        [helper.make_tensor_value_info("crops", TensorProto.UINT8, ["N", 3, size, size])],
        [
            helper.make_tensor_value_info("points", TensorProto.FLOAT, ["N", 68, 2]),
            helper.make_tensor_value_info("scale", TensorProto.FLOAT, ["N", 68, 2]),
        ],
        constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty ONNX cache whose exports write :func:`_mean_model_onnx`; returns (the cache file
    for LITE, those bytes, the list of exports made)."""
    from laplace_landmarks import onnx_cache

    exports: list[Path] = []
    onnx_bytes = _mean_model_onnx()

    def fake_export(model, path, **kwargs):
        exports.append(Path(path))
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(onnx_bytes)
        return Path(path)

    monkeypatch.setenv("LAPLACE_LANDMARKS_CACHE", str(tmp_path))
    monkeypatch.setattr(onnx_cache, "export_onnx", fake_export)
    path = onnx_cache.cache_dir() / f"{onnx_cache.model_hash(LITE.model)[:24]}.onnx"
    return path, onnx_bytes, exports


def _runs_the_mean_model(landmarker: Landmarker) -> None:
    crops = np.stack([np.zeros((3, 80, 80), np.uint8), np.full((3, 80, 80), 200, np.uint8)])
    points, scale = landmarker.predict_batch(crops)
    np.testing.assert_allclose(points[:, :, 0], [[0.0] * 68, [200.0] * 68])
    assert (scale == 1).all()


@needs_onnx
@pytest.mark.parametrize(
    "damage",
    [
        "truncated",
        "garbage",
        "empty",
        "flipped bit",
        "checksum of the damage",
        "no checksum",
        "another crop size",
    ],
)
def test_a_damaged_onnx_cache_file_is_rebuilt_once(cache, damage):
    path, onnx_bytes, exports = cache
    Landmarker(LITE.model, LITE.config, backend="onnx", threads=1)  # fills the cache
    checksum = path.with_name(path.name + ".sha256")
    assert exports == [path] and checksum.is_file()
    if damage == "truncated":
        path.write_bytes(onnx_bytes[: len(onnx_bytes) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00not an onnx model" * 100)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "flipped bit":  # in the graph's last constant: it would still load
        data = bytearray(onnx_bytes)
        data[onnx_bytes.rindex(b"one") + 5] ^= 0x40
        path.write_bytes(bytes(data))
    elif damage == "checksum of the damage":  # consistent with its checksum, yet unloadable
        path.write_bytes(b"junk")
        checksum.write_text(hashlib.sha256(b"junk").hexdigest())
    elif damage == "another crop size":  # intact and loadable, but for 64-pixel crops
        other = _mean_model_onnx(64)
        path.write_bytes(other)
        checksum.write_text(hashlib.sha256(other).hexdigest())
    else:
        checksum.unlink()
    landmarker = Landmarker(LITE.model, LITE.config, backend="onnx", threads=1)
    assert exports == [path, path]  # rebuilt exactly once
    assert path.read_bytes() == onnx_bytes
    _runs_the_mean_model(landmarker)
    Landmarker(LITE.model, LITE.config, backend="onnx", threads=1)
    assert len(exports) == 2  # an intact cache is used as it is


@needs_onnx
def test_an_onnx_cache_that_stays_broken_is_one_landmarks_error(cache, monkeypatch):
    from laplace_landmarks import onnx_cache

    path, _, exports = cache

    def broken_export(model, target, **kwargs):
        exports.append(Path(target))
        Path(target).write_bytes(b"still not onnx")
        return Path(target)

    monkeypatch.setattr(onnx_cache, "export_onnx", broken_export)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"corrupt")
    message = refused(
        lambda: Landmarker(LITE.model, LITE.config, backend="onnx"), str(path), "rebuilt"
    )
    assert "ONNX Runtime cannot load" in message
    assert exports == [path]  # one rebuild, no loop


@needs_onnx
def test_a_corrupt_onnx_path_given_by_the_caller_is_a_landmarks_error(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    refused(lambda: Landmarker(LITE.model, backend="onnx", onnx_path=bad), str(bad))
    missing = tmp_path / "missing.onnx"
    refused(lambda: Landmarker(LITE.model, backend="onnx", onnx_path=missing), str(missing))
    other = tmp_path / "crops64.onnx"
    other.write_bytes(_mean_model_onnx(64))
    message = refused(lambda: Landmarker(LITE.model, backend="onnx", onnx_path=other), str(other))
    assert "not a landmark model for 80-pixel crops" in message


# --- 5. fuzzing ---------------------------------------------------------------------------------
def _encode(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


SMALL = Image.fromarray(RGB).resize((48, 44))
PALETTE = SMALL.convert("P")
IMAGE_SEEDS = [
    EMMY.read_bytes(),  # a real JPEG from the package
    (SAMPLES / "lfw_Naomi_Watts0.jpg").read_bytes(),
    _encode(SMALL, "JPEG", quality=80),
    _encode(SMALL, "JPEG", progressive=True),
    _encode(SMALL, "PNG"),
    _encode(SMALL.convert("RGBA"), "PNG"),
    _encode(PALETTE, "PNG", transparency=3),
    _encode(SMALL.convert("L"), "PNG"),
    _encode(SMALL.convert("I;16"), "PNG"),
    _encode(SMALL.convert("1"), "PNG"),
    _encode(PALETTE, "GIF"),
    _encode(SMALL, "BMP"),
    _encode(SMALL.convert("CMYK"), "TIFF"),
    _encode(SMALL.convert("F"), "TIFF"),
    _encode(SMALL, "WEBP"),
]


@st.composite
def mutated(draw, seeds: list[bytes], header: int = 64) -> bytes:
    """A seed file with one to three edits: truncation, overwritten bytes (often in the
    header), inserted or deleted runs."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "overwrite", "header", "insert", "delete"]))
        end = max(len(data) - 1, 0)
        at = draw(st.integers(0, min(end, header) if kind == "header" else end))
        if kind == "truncate":
            del data[at:]
        elif kind in ("overwrite", "header"):
            patch = draw(st.binary(min_size=1, max_size=8))
            data[at : at + len(patch)] = patch
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:
            del data[at : at + draw(st.integers(1, 256))]
    return bytes(data)


def _png_with_header(width: int, height: int, depth: int, color: int, payload: bytes) -> bytes:
    """A PNG with a valid-CRC IHDR of any fields and ``payload`` compressed as its IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(payload))
        + chunk(b"IEND", b"")
    )


side = st.one_of(st.integers(0, 64), st.integers(0, 2**31 - 1))
png_headers = st.one_of(
    st.builds(png_header, side, side),
    st.builds(
        _png_with_header,
        st.integers(0, 96),
        st.integers(0, 96),
        st.sampled_from([1, 2, 4, 8, 16, 3, 0]),
        st.sampled_from([0, 2, 3, 4, 6, 1, 7]),
        st.binary(max_size=2048),
    ),
)
_SCRATCH_DIR = tempfile.TemporaryDirectory(prefix="inference-fuzz-")  # removed at exit
_SCRATCH = Path(_SCRATCH_DIR.name)


def _check_image_result(faces) -> None:
    if faces is not None:
        assert isinstance(faces, list)
        for face in faces:
            check_face(face)


@pytest.mark.filterwarnings("ignore::UserWarning:PIL")  # Pillow's notes on corrupt files
@settings(FUZZ, max_examples=450)
@given(data=st.one_of(mutated(IMAGE_SEEDS), png_headers, st.binary(max_size=512)))
def test_fuzz_image_files(data):
    path = _SCRATCH / "image.bin"
    path.write_bytes(data)
    tried("images")
    _check_image_result(ends_cleanly(lambda: CENTRE.predict(path), str(path)))


MODES = ["1", "L", "LA", "La", "P", "PA", "I", "I;16", "I;16B", "F", "CMYK", "RGBA", "RGBa"]
MODES += ["RGB", "RGBX", "YCbCr", "LAB", "HSV"]


@st.composite
def odd_images(draw) -> Image.Image:
    """A PIL image of any mode and a small (maybe empty) size, with random pixel bytes (so F
    holds NaN and inf, I any 32-bit value); P sometimes with a transparent index."""
    mode = draw(st.sampled_from(MODES))
    size = (draw(st.integers(0, 40)), draw(st.integers(0, 40)))
    length = len(Image.new(mode, size).tobytes())
    raw = draw(st.binary(min_size=length, max_size=length)) if length else b""
    image = Image.frombytes(mode, size, raw) if length else Image.new(mode, size)
    if mode == "P" and draw(st.booleans()):
        image.info["transparency"] = draw(st.integers(0, 255))
    return image


@pytest.mark.filterwarnings("ignore::UserWarning:PIL")
@settings(FUZZ, max_examples=200)
@given(image=odd_images(), format=st.sampled_from(["PNG", "TIFF", "WEBP", "JPEG", "BMP", "GIF"]))
def test_fuzz_odd_modes_as_pil_images_and_files(image, format):
    tried("images")
    _check_image_result(ends_cleanly(lambda: CENTRE.predict(image), "image"))
    path = _SCRATCH / f"odd.{format.lower()}"
    try:
        image.save(path, format)
    except Exception:  # Pillow's writers: this format cannot hold this mode or size
        return
    tried("images")
    _check_image_result(ends_cleanly(lambda: CENTRE.predict(path), str(path)))


DTYPES = [np.uint8, np.int8, np.uint16, np.int32, np.int64, np.float16, np.float32, np.float64]
DTYPES += [np.bool_, np.complex64]
array_images = st.one_of(
    hnp.arrays(
        st.sampled_from(DTYPES),
        hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=16),
    ),
    hnp.arrays(np.uint8, st.sampled_from([(24, 20, 3), (20, 24), (1, 1, 3), (30, 1), (24, 20, 4)])),
    hnp.arrays(np.uint8, (40, 30, 3)).map(lambda a: a[::-1, ::2]),  # non-contiguous
    st.lists(st.lists(st.integers(0, 255), max_size=5), max_size=5),
    st.none(),
    st.integers(),
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=20),  # as a path
)


@settings(FUZZ, max_examples=250)
@given(image=array_images)
def test_fuzz_arrays_and_odd_values_as_images(image):
    tried("images")
    name = image if isinstance(image, str) else "image"
    _check_image_result(ends_cleanly(lambda: CENTRE.predict(image), name))


number = st.one_of(
    st.floats(),  # NaN, inf, subnormals, +-1.8e308
    st.floats(-600, 600),
    st.sampled_from([0.0, -0.5, 1e308, -1e308, 5e-324, 1e-9, math.nan, math.inf, -math.inf]),
    st.integers(-(10**6), 10**6),
)
plausible_box = st.builds(  # overlapping the image, sides from the minimum to 900 pixels
    lambda x, y, w, h: (x, y, x + w, y + h),
    st.floats(-100, 380),
    st.floats(-100, 350),
    st.floats(MIN_BOX_SIZE, 900),
    st.floats(MIN_BOX_SIZE, 900),
)
not_a_box = st.one_of(st.text(max_size=12), st.binary(max_size=8), st.integers())
box = st.one_of(
    plausible_box,
    st.tuples(number, number, number, number),
    st.lists(number, max_size=6),  # wrong lengths
    st.lists(
        st.one_of(st.text(max_size=4), number, st.none(), st.booleans()), min_size=4, max_size=4
    ),
    not_a_box,
    st.none(),
)


@settings(FUZZ, max_examples=1050)
@given(
    boxes=st.one_of(
        st.lists(plausible_box, min_size=1, max_size=3),  # most of these predict
        st.lists(box, max_size=3),
        plausible_box,  # one box, not in a list
        not_a_box,  # (boxes=None runs the detector)
    )
)
def test_fuzz_boxes(boxes):
    tried("boxes")
    faces = ends_cleanly(lambda: LITE.predict(RGB, boxes=boxes), "boxes")
    if faces is not None:
        assert len(faces) == len(boxes)
        for face, given_box in zip(faces, boxes, strict=True):
            check_face(face)
            assert face.box == tuple(float(v) for v in given_box)


def _video_seeds() -> dict[str, bytes]:
    """Small real containers of one synthetic face clip (3 frames, 96x72): H.264 in .mp4,
    MPEG-4 in .avi and .mkv, MJPEG in .mkv."""
    frames = _synthetic_frames()
    folder = Path(tempfile.mkdtemp(prefix="video-seeds-", dir=_SCRATCH))
    seeds = {}
    for name, codec in (("clip.mp4", "libx264"), ("clip.avi", "mpeg4"), ("clip.mkv", "mpeg4")):
        seeds[name] = write_video(folder / name, frames, fps=25, codec=codec).read_bytes()
    seeds["clip_mjpeg.mkv"] = _mjpeg_with_sizes(folder / "m.mkv", [(96, 72)] * 3).read_bytes()
    return seeds


VIDEO_SEEDS = _video_seeds()


def _check_video_result(results) -> None:
    if results is not None:
        assert [r.index for r in results] == list(range(len(results)))
        for result in results:
            assert isinstance(result, FrameResult)
            for face in result.faces:
                assert np.isfinite(face.points).all() and (face.scale > 0).all()


@settings(FUZZ, max_examples=320)
@given(
    name=st.sampled_from(sorted(VIDEO_SEEDS)),
    edit=st.data(),
    smooth=st.sampled_from(["causal", "none"]),
)
def test_fuzz_video_files(name, edit, smooth):
    seeds = [VIDEO_SEEDS[name]]
    data = edit.draw(st.one_of(mutated(seeds, header=256), mutated(seeds, header=4096)))
    path = _SCRATCH / name
    path.write_bytes(data)
    tried("video")
    results = ends_cleanly(lambda: predict_video(CENTRE, path, smooth=smooth), str(path))
    _check_video_result(results)
