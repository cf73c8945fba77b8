"""Video: PyAV round trip, the Laplace Kalman filter, the face tracker, the synthetic video and
the ``predict VIDEO`` command. Points are (x, y), 0-based, pixel centres at integers."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from laplace_landmarks.cli import main
from laplace_landmarks.data.crops import crop_from_five_points, five_points_from_68
from laplace_landmarks.detection import Detection, crop_from_detection
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.inference import Face
from laplace_landmarks.smoothing import LaplaceKalman
from laplace_landmarks.video import FaceTracker, predict_video, read_frames, write_video
from laplace_landmarks.video_synth import inter_ocular, sample_photo, synthesize_video

av = pytest.importorskip("av")


def _moving_square(count: int = 12, size: tuple[int, int] = (64, 48)) -> list[np.ndarray]:
    frames = []
    for t in range(count):
        frame = np.zeros((size[1], size[0], 3), dtype=np.uint8)
        frame[..., 2] = np.linspace(0, 200, size[0], dtype=np.uint8)[None, :]
        frame[10:26, 4 + 3 * t : 20 + 3 * t] = (250, 250, 60)
        frames.append(frame)
    return frames


def test_write_read_round_trip(tmp_path):
    frames = _moving_square()
    path = write_video(tmp_path / "clip.mp4", frames, fps=10.0)
    back = list(read_frames(path))
    assert [f.index for f in back] == list(range(len(frames)))
    np.testing.assert_allclose([f.time for f in back], np.arange(len(frames)) / 10.0, atol=1e-6)
    for original, decoded in zip(frames, back, strict=True):
        assert decoded.image.shape == original.shape and decoded.image.dtype == np.uint8
        error = np.abs(decoded.image.astype(float) - original).mean()
        assert error < 6.0  # lossy H.264, but the same picture
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind


def test_write_video_pads_odd_sizes_and_rejects_bad_frames(tmp_path):
    frames = [np.full((31, 45, 3), 90, dtype=np.uint8)] * 3
    back = list(read_frames(write_video(tmp_path / "odd.mkv", frames, fps=25)))
    assert len(back) == 3 and back[0].image.shape == (32, 46, 3)
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "bad.mp4", [np.zeros((8, 8, 3), dtype=np.float32)], fps=25)
    assert not (tmp_path / "bad.mp4").exists()


@pytest.mark.parametrize("content", [b"", b"not a video at all" * 50, b"\x00\x00\x00\x18ftypmp42"])
def test_corrupt_video_is_a_clean_error(tmp_path, content):
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with pytest.raises(LandmarksError, match="broken.mp4"):
        list(read_frames(path))


def test_truncated_video_is_a_clean_error(tmp_path):
    good = write_video(tmp_path / "good.mp4", _moving_square(), fps=10)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(LandmarksError, match="cut.mp4"):
        list(read_frames(cut))


# --- the Kalman filter (pure numpy) -------------------------------------------------------------


@pytest.mark.parametrize("motion", ["velocity", "position"])
def test_kalman_reduces_error_variance_on_constant_truth(motion):
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 100, size=(68, 2))
    b = rng.uniform(0.5, 3.0, size=(68, 2))  # per-point, per-axis Laplace scales
    measurements = truth + rng.laplace(0.0, b, size=(200, 68, 2))
    kf = LaplaceKalman(measurements[0], b, face_size=100.0, process_noise=1e-4, motion=motion)
    smoothed = np.stack([kf.update(m, b) for m in measurements[1:]])
    raw_var = np.var(measurements[51:] - truth)
    smooth_var = np.var(smoothed[50:] - truth)
    assert raw_var == pytest.approx(2 * np.mean(b**2), rel=0.1)  # Laplace variance 2 b^2
    assert smooth_var < 0.1 * raw_var


def test_kalman_gain_follows_the_laplace_scale():
    """One position-model step, by hand: prior variance P = 2 b0^2 + (q s)^2, gain
    P / (P + 2 b^2); a confident measurement moves the estimate, an uncertain one hardly."""
    points, scale = np.zeros((2, 2)), np.ones((2, 2))
    kf = LaplaceKalman(points, scale, face_size=10.0, process_noise=0.1, motion="position")
    new_scale = np.array([[0.5, 0.5], [20.0, 20.0]])
    out = kf.update(np.full((2, 2), 4.0), new_scale)
    prior = 2.0 + 1.0
    expected = 4.0 * prior / (prior + 2 * new_scale**2)
    np.testing.assert_allclose(out, expected)
    assert out[0, 0] > 3.0 and out[1, 0] < 0.05
    np.testing.assert_allclose(kf.scale**2 * 2, prior - prior**2 / (prior + 2 * new_scale**2))


def test_kalman_skips_nan_and_checks_shapes():
    kf = LaplaceKalman(np.zeros((3, 2)), np.ones((3, 2)), face_size=10.0)
    out = kf.update(np.array([[1.0, 1.0], [np.nan, 2.0], [1.0, 1.0]]), np.ones((3, 2)))
    assert np.isfinite(out).all() and out[1, 0] == 0.0 and out[1, 1] > 0
    with pytest.raises(ValueError, match="scale"):
        kf.update(np.zeros((3, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="motion"):
        LaplaceKalman(np.zeros((3, 2)), np.ones((3, 2)), 10.0, motion="jerk")


# --- the tracker, with a model-free landmarker that follows a bright disc -----------------------


def _template() -> np.ndarray:
    """A real 68-point shape, moved so that its 5-point box is centred at 0 with side 1."""
    _, points = sample_photo()
    five = five_points_from_68(points)
    low, high = five.min(axis=0), five.max(axis=0)
    return (points - (low + high) / 2) / (high - low).max()


class DiscLandmarker:
    """Stands in for a Landmarker: 'sees' the centroid of bright pixels. On a crop without any,
    it says so with a huge Laplace scale, as a real network should on a frame without a face."""

    crop_size = 80
    template = _template()

    def detector(self, rgb):
        ys, xs = np.nonzero(rgb[..., 0] > 128)
        if xs.size == 0:
            return []
        x, y = xs.mean(), ys.mean()
        return [Detection((x - 25, y - 25, x + 25, y + 25), 1.5)]

    def predict_batch(self, crops):
        points, scale = [], []
        for crop in np.asarray(crops):
            ys, xs = np.nonzero(crop[0] > 128)
            found = xs.size > 0
            centre = (xs.mean(), ys.mean()) if found else (39.5, 39.5)
            points.append(np.asarray(centre) + self.template * self.crop_size / 3)
            scale.append(np.full((68, 2), 1.0 if found else float(self.crop_size)))
        return np.stack(points), np.stack(scale)

    def predict(self, rgb, boxes):
        from laplace_landmarks.data.crops import warp_crop

        faces = []
        for box in boxes:
            crop = crop_from_detection(box)
            p, s = self.predict_batch(warp_crop(rgb, crop).transpose(2, 0, 1)[None])
            faces.append(Face(crop.to_image(p[0]), crop.to_image_scale(s[0]), box, None, crop))
        return faces


def _disc_video(blank: range, count: int = 30) -> list[np.ndarray]:
    frames = []
    yy, xx = np.mgrid[0:240, 0:320]
    for t in range(count):
        frame = np.zeros((240, 320, 3), dtype=np.uint8)
        cx, cy = (100 + 2.5 * t, 120 + 10 * np.sin(t / 5)) if t < blank.start else (220, 80)
        if t not in blank:
            frame[(xx - cx) ** 2 + (yy - cy) ** 2 <= 15**2] = 255
        frames.append(frame)
    return frames


@pytest.mark.parametrize("smooth", [False, True])
def test_tracker_reuses_previous_points_and_redetects_after_a_cut(smooth):
    landmarker = DiscLandmarker()
    tracker = FaceTracker(landmarker, smooth=smooth)
    results = predict_video(landmarker, _disc_video(blank=range(15, 18)), tracker=tracker)
    assert len(results) == 30
    # smooth part: one detector call, then tracked; each crop comes from the previous points
    assert [r.detector_ran for r in results[:15]] == [True] + [False] * 14
    for previous, current in zip(results[:14], results[1:15], strict=True):
        face = current.faces[0]
        assert not face.detected and face.track_id == 0
        if not smooth:
            expected = crop_from_five_points(five_points_from_68(previous.faces[0].points), 80)
            np.testing.assert_allclose(face.crop.matrix, expected.matrix)
    # the cut: lost on frame 15, nothing on the blank frames, re-detected on frame 18
    assert [len(r.faces) for r in results[15:18]] == [0, 0, 0]
    assert tracker.detector_calls == 5  # frames 0, 15, 16, 17, 18
    refound = results[18].faces[0]
    assert refound.detected and refound.track_id == 1 and refound.score == 1.5
    np.testing.assert_array_equal(refound.points, refound.raw_points)  # filter reset
    assert not any(r.detector_ran for r in results[19:])
    five = five_points_from_68(results[-1].faces[0].points)
    np.testing.assert_allclose((five.min(axis=0) + five.max(axis=0)) / 2, (220, 80), atol=0.5)


# --- the synthetic video -------------------------------------------------------------------------


def test_synthetic_video_truth_follows_the_pixels():
    photo, points = sample_photo()
    dot = np.zeros_like(photo)
    x, y = np.round(points[30]).astype(int)
    dot[y - 2 : y + 3, x - 2 : x + 3] = 255
    video = synthesize_video(dot, points, num_frames=4, size=(320, 240), noise=0, jpeg_quality=0)
    for frame, matrix in zip(video.frames, video.matrices, strict=True):
        weight = frame[..., 0].astype(float)
        ys, xs = np.nonzero(weight)
        centroid = np.array([xs @ weight[ys, xs], ys @ weight[ys, xs]]) / weight.sum()
        np.testing.assert_allclose(centroid, matrix[:, :2] @ (x, y) + matrix[:, 2], atol=0.15)
    np.testing.assert_allclose(
        video.points,
        points @ video.matrices[:, :, :2].transpose(0, 2, 1) + video.matrices[:, None, :, 2],
    )
    assert 50 < inter_ocular(video.points).mean() < 70  # default face size: min(size) / 4


# --- the predict command on a short synthetic face video ----------------------------------------


@pytest.fixture(scope="module")
def face_video(tmp_path_factory):
    photo, points = sample_photo()
    video = synthesize_video(photo, points, num_frames=40, size=(320, 240), face_size=60)
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", video.frames, video.fps)


def test_predict_video_cli_csv_and_overlay(face_video, tmp_path):
    out = tmp_path / "out"
    code = main(["predict", str(face_video), "--format", "csv", "--out", str(out), "--draw",
                 "--threads", "1"])  # fmt: skip
    assert code == 0
    rows = list(csv.DictReader((out / "landmarks.csv").open()))
    assert rows and len(rows[0]) == 6 + 4 * 68 + 5
    frames = [int(r["frame"]) for r in rows]
    assert frames == sorted(frames) and set(frames) <= set(range(40)) and frames[0] == 0
    assert rows[0]["detected"] == "1" and all(np.isfinite(float(r["bx67"])) for r in rows)
    overlay = list(read_frames(out / "clip_landmarks.mp4"))
    assert len(overlay) == 40 and overlay[0].image.shape == (240, 320, 3)


def test_predict_video_cli_json(face_video, tmp_path, capsys):
    code = main(["predict", str(face_video), "--no-smooth", "--threads", "1"])
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert document["smooth"] is False and not document["errors"]
    (video,) = document["videos"]
    assert video["frames"] == 40 and len(video["results"]) == 40
    assert [r["frame"] for r in video["results"]] == list(range(40))
    assert video["results"][0]["detector_ran"] and video["detector_calls"] >= 1
    face = video["results"][0]["faces"][0]
    assert np.array(face["points"]).shape == (68, 2) and np.array(face["scale"]).shape == (68, 2)


def test_predict_video_cli_corrupt_file_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00garbage" * 100)
    assert main(["predict", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "bad.mp4" in capsys.readouterr().err
    assert main(["predict", str(bad), "photo.jpg"]) == 2  # videos and images do not mix
    assert "not both" in capsys.readouterr().err


def test_missing_pyav_is_a_clear_error(tmp_path, monkeypatch):
    import sys

    path = write_video(tmp_path / "clip.mp4", _moving_square(2), fps=10)
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    with pytest.raises(LandmarksError, match=r"laplace-landmarks\[video\]"):
        list(read_frames(path))
