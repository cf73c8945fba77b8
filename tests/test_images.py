"""Reading images: every mode to (H, W, 3) uint8 RGB, EXIF orientation, and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import png_header
from PIL import Image

from laplace_landmarks.data.images import load_image, to_rgb_array
from laplace_landmarks.errors import ImageError, LandmarksError

FACE = Path(__file__).parent / "data" / "ytf68_slice" / "images" / "Bill_Frist" / "00a.jpg"


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """A real ytf68 face as RGB (decoded by Pillow directly, the reference)."""
    with Image.open(FACE) as image:
        return np.asarray(image.convert("RGB"))


def save(array_or_image, path: Path, **kwargs) -> Path:
    image = array_or_image
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image.save(path, **kwargs)
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG with a valid header announcing width x height pixels and no pixel data at all."""
    path.write_bytes(png_header(width, height))
    return path


def test_real_jpeg_is_rgb_uint8(face):
    image = load_image(FACE)
    assert image.dtype == np.uint8 and image.shape == face.shape and image.shape[2] == 3
    assert image.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(image, face)


def test_grayscale_is_replicated(face, tmp_path):
    gray = np.asarray(Image.fromarray(face).convert("L"))
    image = load_image(save(gray, tmp_path / "gray.png"))
    assert image.shape == (*gray.shape, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], gray)


def test_rgba_is_composited_on_black(face, tmp_path):
    alpha = np.full(face.shape[:2], 255, np.uint8)
    alpha[:, :10] = 0  # fully transparent strip
    alpha[:, 10:20] = 128  # half transparent strip
    image = load_image(save(np.dstack([face, alpha]), tmp_path / "rgba.png"))
    np.testing.assert_array_equal(image[:, 20:], face[:, 20:])
    assert (image[:, :10] == 0).all()
    expected = (face[:, 10:20].astype(int) * 128 + 127) // 255
    np.testing.assert_array_equal(image[:, 10:20], expected)


def test_palette_matches_pillow_conversion(face, tmp_path):
    path = save(
        Image.fromarray(face).convert("P", palette=Image.Palette.ADAPTIVE), tmp_path / "p.png"
    )
    with Image.open(path) as reference:
        assert reference.mode == "P"
        expected = np.asarray(reference.convert("RGB"))
    np.testing.assert_array_equal(load_image(path), expected)
    assert np.abs(load_image(path).astype(int) - face).mean() < 12  # still the same face


def test_palette_transparency_becomes_black(face, tmp_path):
    palette_image = Image.fromarray(face).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    index = np.asarray(palette_image)[0, 0]
    path = save(palette_image, tmp_path / "pt.png", transparency=int(index))
    image = load_image(path)
    transparent = np.asarray(palette_image) == index
    assert transparent.any() and (image[transparent] == 0).all()


def test_sixteen_bit_png_scales_to_eight_bit(face, tmp_path):
    gray16 = np.asarray(Image.fromarray(face).convert("L")).astype(np.uint16) * 257
    gray16[0, :3] = (0, 65535, 128 * 257 + 100)  # extremes and a value that must round
    path = save(Image.fromarray(gray16), tmp_path / "g16.png")
    with Image.open(path) as reopened:
        assert reopened.mode.startswith("I")  # really stored as 16-bit
    image = load_image(path)
    np.testing.assert_array_equal(image[0, :3, 0], (0, 255, 128))
    np.testing.assert_array_equal(image[1:, :, 1], np.rint(gray16[1:] / 257.0))


def test_thirty_two_bit_integer_tiff(face, tmp_path):
    gray = np.asarray(Image.fromarray(face).convert("L")).astype(np.int32) * 257
    gray[0, 0], gray[0, 1] = -5, 70000  # out of the 16-bit range: clipped
    path = save(Image.fromarray(gray), tmp_path / "i32.tif")
    image = load_image(path)
    assert image[0, 0, 0] == 0 and image[0, 1, 0] == 255
    np.testing.assert_array_equal(image[1:, :, 2], gray[1:] // 257)


def test_cmyk_jpeg_is_converted(face, tmp_path):
    path = save(Image.fromarray(face).convert("CMYK"), tmp_path / "cmyk.jpg", quality=95)
    image = load_image(path)
    assert image.shape == face.shape
    assert np.abs(image.astype(int) - face).mean() < 8


# EXIF orientation -> the transpose that stores the displayed picture in the file's raw pixels.
RAW_FROM_DISPLAY = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", sorted(RAW_FROM_DISPLAY))
def test_exif_orientation_keeps_points_aligned(face, tmp_path, orientation):
    """The file stores rotated pixels + an orientation tag; we get what a viewer shows, so the
    face's own points (given for the upright face) still land on the same pixels."""
    raw = Image.fromarray(face).transpose(RAW_FROM_DISPLAY[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = save(raw, tmp_path / f"o{orientation}.png", exif=exif)
    image = load_image(path)
    np.testing.assert_array_equal(image, face)  # upright: (H, W) as displayed, same pixels
    x, y = 30, 12  # a point (x, y) on the upright face reads the same colour
    np.testing.assert_array_equal(image[y, x], face[y, x])


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="nope.jpg: file not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)


def test_truncated_jpeg(tmp_path):
    data = FACE.read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.jpg: cannot decode"):
        load_image(path)


def test_corrupt_png(face, tmp_path):
    data = bytearray(save(face, tmp_path / "ok.png").read_bytes())
    start = data.index(b"IDAT") + 8
    data[start : start + 200] = bytes(200)  # smash the compressed stream
    path = tmp_path / "corrupt.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="corrupt.png"):
        load_image(path)


def test_non_image_file(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture\n")
    with pytest.raises(ImageError, match="notes.jpg: not a recognised image"):
        load_image(path)


def test_huge_image_is_refused_before_decoding(tmp_path):
    # 8000 x 8000 = 64 M pixels: above our 50 M default, below Pillow's own bomb limit. The file
    # holds no pixel data, so only a header-size check can produce this message.
    path = png_header_only(tmp_path / "huge.png", 8000, 8000)
    with pytest.raises(ImageError, match=r"8000x8000 = 64000000 pixels, more than max_pixels"):
        load_image(path)


def test_decompression_bomb_is_an_image_error(tmp_path):
    path = png_header_only(tmp_path / "bomb.png", 100_000, 100_000)
    with pytest.raises(ImageError, match="bomb.png"):
        load_image(path, max_pixels=10**12)


def test_max_pixels_argument(face):
    with pytest.raises(ImageError, match="max_pixels=100"):
        load_image(FACE, max_pixels=100)
    assert load_image(FACE, max_pixels=face.shape[0] * face.shape[1]).shape == face.shape


def test_image_error_is_a_value_error():
    assert issubclass(ImageError, LandmarksError) and issubclass(ImageError, ValueError)


def test_to_rgb_array_accepts_path_pil_and_arrays(face):
    np.testing.assert_array_equal(to_rgb_array(FACE), face)
    np.testing.assert_array_equal(to_rgb_array(str(FACE)), face)
    np.testing.assert_array_equal(to_rgb_array(Image.fromarray(face)), face)
    gray = face[..., 0].copy()
    np.testing.assert_array_equal(to_rgb_array(gray), np.dstack([gray] * 3))
    strided = face[:, ::2]  # a non-contiguous view comes back contiguous, same values
    result = to_rgb_array(strided)
    assert result.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(result, strided)


def test_to_rgb_array_converts_pil_modes(face):
    np.testing.assert_array_equal(to_rgb_array(Image.fromarray(face).convert("L"))[..., 1],
                                  np.asarray(Image.fromarray(face).convert("L")))  # fmt: skip
    rgba = Image.fromarray(np.dstack([face, np.full(face.shape[:2], 255, np.uint8)]))
    np.testing.assert_array_equal(to_rgb_array(rgba), face)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((4, 4, 3), np.float32), "frame: expected dtype uint8, got float32"),
        (np.zeros((4, 4, 4), np.uint8), r"frame: expected shape \(H, W, 3\) or \(H, W\)"),
        (np.zeros((4,), np.uint8), r"frame: expected shape"),
        (np.zeros((0, 4, 3), np.uint8), "frame: image is empty"),
        ([[0, 1], [2, 3]], "frame: expected a path, a PIL image or a numpy array, got list"),
    ],
)
def test_to_rgb_array_rejects_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        to_rgb_array(bad, name="frame")
