"""The offline dlib HOG detector and the detector-box crop rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from laplace_landmarks.data.crops import Crop
from laplace_landmarks.detection import (
    DETECTOR_CROP_SCALE,
    DETECTOR_CROP_SHIFT,
    Detection,
    DlibHogDetector,
    crop_from_detection,
)

TESTS = Path(__file__).parent
SHARED = TESTS.parents[1] / "shared" / "data"


def real_face_image() -> Path:
    """A real YouTube Faces / LFW frame: the in-repo slice if present, else the shared data."""
    for root in (TESTS / "data" / "ytf68_slice", TESTS / "data" / "unlabeled_slice", SHARED):
        candidates = sorted(root.rglob("*.jpg")) if root.is_dir() else []
        if candidates:
            return candidates[0]
    pytest.skip("no real face image available (tests/data or ../shared/data)")


@pytest.fixture(scope="module")
def detector() -> DlibHogDetector:
    return DlibHogDetector(upsample=1)


def test_finds_one_face_on_a_real_image(detector):
    from PIL import Image

    image = np.asarray(Image.open(real_face_image()).convert("RGB"))
    detections = detector(image)
    assert len(detections) >= 1
    assert all(isinstance(d, Detection) for d in detections)
    assert [d.score for d in detections] == sorted((d.score for d in detections), reverse=True)
    x0, y0, x1, y1 = detections[0].box
    height, width = image.shape[:2]
    assert 0 <= x1 - x0 <= width + 1 and 0 <= y1 - y0 <= height + 1
    # a face of a portrait photo covers a good part of it
    assert (x1 - x0) * (y1 - y0) > 0.05 * width * height


def test_blank_image_has_no_face(detector):
    assert detector(np.zeros((120, 160, 3), np.uint8)) == []
    assert detector(np.full((64, 64, 3), 200, np.uint8)) == []


@pytest.mark.parametrize(
    "bad", [np.zeros((50, 50), np.uint8), np.zeros((50, 50, 3), np.float32), "image.jpg"]
)
def test_bad_input_raises_value_error(detector, bad):
    with pytest.raises(ValueError, match="image"):
        detector(bad)


def test_crop_from_detection_applies_the_calibration():
    box = (100.0, 50.0, 200.0, 150.0)
    crop = crop_from_detection(box, size=80)
    assert isinstance(crop, Crop) and crop.size == 80
    x0, y0, x1, y1 = crop.box
    assert x1 - x0 == pytest.approx(100 * DETECTOR_CROP_SCALE)
    assert (x0 + x1) / 2 == pytest.approx(150 + 100 * DETECTOR_CROP_SHIFT[0])
    assert (y0 + y1) / 2 == pytest.approx(100 + 100 * DETECTOR_CROP_SHIFT[1])
    # calibrated constants are plausible: the 5-point crop is larger than dlib's tight box
    assert 1.0 < DETECTOR_CROP_SCALE < 3.0 and max(map(abs, DETECTOR_CROP_SHIFT)) < 0.3


def test_detection_covers_the_labelled_face(detector, test_data):
    from laplace_landmarks.data.datasets import load_dataset
    from laplace_landmarks.data.images import load_image

    root = test_data / "ytf68_slice"
    if not (root / "test.csv").is_file():
        pytest.skip("tests/data/ytf68_slice not available")
    hits = 0
    samples = load_dataset("ytf68", "test", root=root).samples[:6]
    for sample in samples:
        detections = detector(load_image(sample.image_path))
        nose = sample.points[30]
        hits += any(
            d.box[0] <= nose[0] <= d.box[2] and d.box[1] <= nose[1] <= d.box[3] for d in detections
        )
    assert hits >= len(samples) - 1  # 98% of ytf68 test faces are found (docs/results.md)
