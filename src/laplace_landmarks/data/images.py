"""Reading images as HxWx3 uint8 RGB arrays, robustly.

Landmark coordinates refer to the returned array: (x, y), 0-based, pixel centres at integers,
x along the width (columns) and y along the height (rows). `load_image` applies the EXIF
orientation first, so the array is what an image viewer shows and points stay aligned with it.

Mode conversions:
- L, 1, P, CMYK, YCbCr, LAB, HSV: Pillow's own conversion to RGB.
- Alpha (RGBA, LA, PA, P with transparency): composited on black, so fully transparent pixels
  become (0, 0, 0) whatever colour they hide.
- 16-bit (I;16, I;16B, I;16L) and 32-bit integer (I): treated as 16-bit, values clipped to
  [0, 65535] and scaled to 8 bit with ``round(v / 257)`` (so 65535 -> 255 exactly).
- Float (F): clipped to [0, 1] and scaled by 255 when its maximum is <= 1, else clipped to [0, 255].
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from laplace_landmarks.errors import ImageError

#: The most pixels an image (or a video frame, see ``video.read_frames``) may have; checked
#: from the file's header before any pixel is decoded.
MAX_PIXELS = 50_000_000
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def load_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 RGB array, EXIF orientation applied.

    Points on the result are (x, y), 0-based, pixel centres at integers. The header's size is
    checked against ``max_pixels`` before any pixel is decoded, so a huge image is refused
    without using memory (Pillow's own decompression-bomb limit also applies).

    Raises:
        ImageError: the file is missing, not an image, truncated, corrupt or too large. The
            message names the path and the reason.
    """
    path = Path(path)
    if not path.is_file():
        reason = "is a directory" if path.is_dir() else "file not found"
        raise ImageError(f"{path}: {reason}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                check_pixels(image.size, max_pixels, path)
                image.load()
                image = ImageOps.exif_transpose(image)
                return _pil_to_rgb(image)
    except ImageError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageError(f"{path}: image too large ({error})") from error
    except UnidentifiedImageError as error:
        raise ImageError(f"{path}: not a recognised image file") from error
    except Exception as error:  # Pillow's decoders raise OSError, SyntaxError, ValueError, ...
        raise ImageError(
            f"{path}: cannot decode image ({type(error).__name__}: {error})"
        ) from error


def check_pixels(size: tuple[int, int], max_pixels: int, name: object, what: str = "image") -> None:
    """Raise ImageError naming ``name`` when a ``(width, height)`` is empty or holds more than
    ``max_pixels`` pixels (meant for a header's size, before anything is decoded); ``what``
    says what has that size ("image", "video frame")."""
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: {what} has an empty size {width}x{height}")
    if width * height > max_pixels:
        raise ImageError(
            f"{name}: {what} is {width}x{height} = {width * height} pixels, "
            f"more than max_pixels={max_pixels}; refusing to decode it"
        )


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    """Convert a loaded PIL image of any mode to a contiguous (H, W, 3) uint8 RGB array."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        gray = np.rint(np.clip(values, 0, 65535) / 257.0).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if mode == "F":
        with np.errstate(invalid="ignore"):  # a signalling NaN warns when cast; it stays NaN
            values = np.asarray(image, dtype=np.float64)
        values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
        gray = np.rint(np.clip(values * scale, 0, 255)).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint16)
        rgb = (rgba[..., :3] * rgba[..., 3:4] + 127) // 255  # composite on black, rounded
        return np.ascontiguousarray(rgb.astype(np.uint8))
    if mode != "RGB":
        image = image.convert("RGB")
    return np.array(image, dtype=np.uint8, order="C")


def to_rgb_array(image: str | Path | Image.Image | np.ndarray, name: str = "image") -> np.ndarray:
    """Turn a path, a PIL image or a uint8 array into an (H, W, 3) uint8 RGB array.

    - A path is read with `load_image` (EXIF orientation applied).
    - A PIL image is used as it is (no EXIF rotation): its pixel grid is the coordinate frame.
    - An array must be uint8 and (H, W) grayscale or (H, W, 3) RGB. It is never modified; a
      contiguous (H, W, 3) array comes back as is (no copy), anything else as a new array
      (grayscale replicated to three channels).

    Points on the result are (x, y), 0-based, pixel centres at integers.

    Raises:
        ImageError (a ValueError): naming the path or ``name``, for a path that cannot be read, a
            wrong type, dtype or shape, an empty image, or a PIL image that cannot be converted
            or holds more than ``MAX_PIXELS`` pixels (checked before it is loaded).
    """
    if isinstance(image, str | Path):
        return load_image(image)
    if isinstance(image, Image.Image):
        return _pil_image_to_rgb(image, name)
    if not isinstance(image, np.ndarray):
        raise ImageError(
            f"{name}: expected a path, a PIL image or a numpy array, got {type(image).__name__}"
        )
    return _validate_array(image, name)


def _pil_image_to_rgb(image: Image.Image, name: str) -> np.ndarray:
    """A PIL image (loaded or still lazy) as RGB; ImageError naming ``name`` when it cannot be."""
    check_pixels(image.size, MAX_PIXELS, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
            return _pil_to_rgb(image)
    except Exception as error:  # Pillow's decoders raise OSError, SyntaxError, ValueError, ...
        raise ImageError(
            f"{name}: cannot convert the PIL image to RGB ({type(error).__name__}: {error})"
        ) from error


def _validate_array(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype != np.uint8:
        raise ImageError(f"{name}: expected dtype uint8, got {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    elif array.ndim != 3 or array.shape[2] != 3:
        raise ImageError(f"{name}: expected shape (H, W, 3) or (H, W), got {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageError(f"{name}: image is empty, shape {array.shape}")
    return np.ascontiguousarray(array)
