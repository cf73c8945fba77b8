"""Many images at once: ``Landmarker.predict_many`` and ``batches.predict_groups`` give what
``predict`` gives image by image, in fewer network calls, and a bad image stays its own error."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from laplace_landmarks.batches import predict_groups
from laplace_landmarks.data.images import load_image
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.inference import Landmarker

SAMPLES = Path(str(resources.files("laplace_landmarks") / "samples"))
PHOTOS = sorted(SAMPLES.glob("*.jpg"))
# The same crops in a batch of N and alone: ONNX Runtime may pick other kernels per batch
# size, so sums are reordered (float32 rounding, ~1e-6 relative on pixel coordinates of a few
# hundred px), far below this.
TOLERANCE_PX = 1e-3


@pytest.fixture(scope="module")
def landmarker():
    return Landmarker.pretrained("rcn-lite")


@pytest.fixture(scope="module")
def images():
    return [load_image(path) for path in PHOTOS]


class CountingSession:
    """Wraps an ONNX session; counts the network calls and the crops in them."""

    def __init__(self, session):
        self.session, self.calls, self.crops = session, 0, 0

    def predict(self, crops, batch_size=256):
        self.calls += 1
        self.crops += len(crops)
        return self.session.predict(crops, batch_size=batch_size)

    def __getattr__(self, name):
        return getattr(self.session, name)


def test_predict_many_matches_predict_image_by_image(landmarker, images):
    alone = [landmarker.predict(image) for image in images]
    together = landmarker.predict_many(images)
    assert [len(f) for f in together] == [len(f) for f in alone] and sum(map(len, alone)) >= 4
    for faces_a, faces_b in zip(alone, together, strict=True):
        for a, b in zip(faces_a, faces_b, strict=True):
            assert a.box == b.box and a.score == b.score
            np.testing.assert_allclose(a.points, b.points, atol=TOLERANCE_PX)
            np.testing.assert_allclose(a.scale, b.scale, atol=TOLERANCE_PX)


def test_predict_many_makes_one_network_call_per_pass(landmarker, images, monkeypatch):
    counter = CountingSession(landmarker._onnx)
    monkeypatch.setattr(landmarker, "_onnx", counter)
    faces = landmarker.predict_many(images)
    passes = 1 + landmarker.refine
    assert counter.calls == passes
    assert counter.crops == passes * sum(map(len, faces))


def test_predict_many_with_boxes_and_detection_mixed(landmarker, images):
    box = list(landmarker.predict(images[0])[0].box)
    faces = landmarker.predict_many(images[:2], [[box, box], None])
    assert len(faces[0]) == 2 and faces[0][0].score is None
    np.testing.assert_allclose(faces[0][0].points, faces[0][1].points, atol=TOLERANCE_PX)
    assert [f.box for f in faces[1]] == [f.box for f in landmarker.predict(images[1])]


def test_predict_many_errors_name_the_image(landmarker, images):
    with pytest.raises(LandmarksError, match=r"boxes: 1 entries for 2 images"):
        landmarker.predict_many(images[:2], [None])
    with pytest.raises(LandmarksError, match=r"images\[1\]"):
        landmarker.predict_many([images[0], np.zeros((4, 4, 5), np.uint8)])
    assert landmarker.predict_many([]) == []


def test_predict_groups_keeps_order_and_isolates_a_bad_image(landmarker, images):
    items = list(range(len(images))) + ["missing", "bad-box", 0]

    def load(item):
        if item == "missing":
            raise OSError("missing.jpg: no such file")
        if item == "bad-box":
            return images[0], [[5.0, 5.0, 5.0, 5.0]]  # degenerate: fails the whole group
        return images[item], None

    outcomes = list(predict_groups(landmarker, items, load, group_images=3))
    assert [o.item for o in outcomes] == items
    by_item = {str(o.item): o for o in outcomes}
    assert isinstance(by_item["missing"].error, OSError) and by_item["missing"].rgb is None
    assert isinstance(by_item["bad-box"].error, LandmarksError)
    expected = [landmarker.predict(image) for image in images]
    for outcome in outcomes:
        if isinstance(outcome.item, int):
            assert outcome.error is None
            got = [f.points for f in outcome.faces]
            want = [f.points for f in expected[outcome.item]]
            assert len(got) == len(want)
            for a, b in zip(got, want, strict=True):
                np.testing.assert_allclose(a, b, atol=TOLERANCE_PX)
    with pytest.raises(ValueError, match="group sizes"):
        list(predict_groups(landmarker, items, load, group_images=0))
