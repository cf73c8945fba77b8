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
from laplace_landmarks.smoothing import LaplaceKalman, rts_smooth
from laplace_landmarks.video import (
    FaceTracker,
    FrameResult,
    predict_video,
    read_frames,
    smooth_offline,
    write_video,
)
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
    # a missing first measurement starts a diffuse prior: the first valid one sets the point
    start = LaplaceKalman([[np.nan, 1.0], [2.0, 2.0]], [[1.0, 1.0], [1.0, 0.0]], face_size=10.0)
    out = start.update([[5.0, 1.0], [2.0, 7.0]], np.ones((2, 2)))
    np.testing.assert_allclose(out[[0, 1], [0, 1]], [5.0, 7.0], atol=1e-6)
    assert np.isfinite(start.scale).all() and start.scale.max() < 1.0 + 1e-6


# --- the offline (RTS) smoother -------------------------------------------------------------------


def _causal(points, scale, sizes, **options):
    """The causal filter over a whole (T, K, 2) sequence, as the tracker runs it."""
    kf = LaplaceKalman(points[0], scale[0], sizes[0], **options)
    out, b = [kf.points], [kf.scale]
    for t in range(1, len(points)):
        out.append(kf.update(points[t], scale[t], sizes[t]))
        b.append(kf.scale)
    return np.stack(out), np.stack(b)


def _track(kind: str, frames: int = 300, seed: int = 0):
    """Known truth (T, K, 2) for a constant-velocity or random-walk track, Laplace measurements
    with per-point, per-frame scales, and the face size (about 100 px, changing)."""
    rng = np.random.default_rng(seed)
    start = rng.uniform(100, 300, size=(1, 20, 2))
    if kind == "velocity":  # constant velocity per point, plus a little acceleration noise
        velocity = rng.uniform(-1.5, 1.5, size=(1, 20, 2))
        accel = np.cumsum(rng.normal(0, 0.02, size=(frames, 20, 2)), axis=0)
        truth = start + velocity * np.arange(frames)[:, None, None] + np.cumsum(accel, axis=0)
    else:  # random walk
        truth = start + np.cumsum(rng.normal(0, 0.3, size=(frames, 20, 2)), axis=0)
    scale = rng.uniform(0.5, 3.0, size=(frames, 20, 2))
    sizes = 100 + 10 * np.sin(np.arange(frames) / 30)
    return truth, truth + rng.laplace(0.0, scale), scale, sizes


@pytest.mark.parametrize(("kind", "noise"), [("velocity", 0.002), ("random walk", 0.003)])
@pytest.mark.parametrize("motion", ["velocity", "position"])
def test_rts_beats_the_causal_filter_and_the_raw_points(kind, noise, motion):
    truth, measured, scale, sizes = _track(kind)
    options = {"process_noise": noise, "motion": motion}
    smoothed, b = rts_smooth(measured, scale, sizes, **options)
    causal = _causal(measured, scale, sizes, **options)[0]
    error = {name: np.abs(v - truth).mean() for name, v in
             [("raw", measured), ("causal", causal), ("rts", smoothed)]}  # fmt: skip
    assert error["rts"] < 0.85 * error["causal"] and error["rts"] < 0.5 * error["raw"], error
    assert smoothed.shape == b.shape == truth.shape and (b > 0).all()
    assert np.mean(b) < np.mean(_causal(measured, scale, sizes, **options)[1])  # more data


@pytest.mark.parametrize("motion", ["velocity", "position"])
def test_rts_equals_the_causal_filter_on_the_last_frame(motion):
    _, measured, scale, sizes = _track("velocity", frames=40, seed=1)
    measured[5, 3] = np.nan  # skipped measurements too
    scale[7, 4, 0] = 0.0
    smoothed, b = rts_smooth(measured, scale, sizes, process_noise=0.01, motion=motion)
    causal, causal_b = _causal(measured, scale, sizes, process_noise=0.01, motion=motion)
    np.testing.assert_allclose(smoothed[-1], causal[-1], rtol=0, atol=1e-9)
    np.testing.assert_allclose(b[-1], causal_b[-1], rtol=1e-9)
    assert not np.allclose(smoothed[:-1], causal[:-1])  # earlier frames use the later ones
    one, one_b = rts_smooth(measured[:1], scale[:1], sizes[:1], motion=motion)  # a single frame
    np.testing.assert_array_equal(one, measured[:1])
    np.testing.assert_allclose(one_b, scale[:1])


def test_rts_confident_measurement_pulls_harder():
    """An outlier in the middle of a still track: with a small b it moves the smoothed point
    (and its neighbours) much more than with a large b."""
    points = np.zeros((21, 2, 2))
    scale = np.ones((21, 2, 2))
    points[10] = 5.0
    scale[10, 0], scale[10, 1] = 0.2, 5.0  # point 0 confident, point 1 uncertain
    smoothed, b = rts_smooth(points, scale, 100.0, process_noise=0.01)
    assert smoothed[10, 0, 0] > 4.0 and smoothed[10, 1, 0] < 0.5
    assert smoothed[9, 0, 0] > 4 * smoothed[9, 1, 0] > 0
    assert b[10, 0, 0] < b[10, 1, 0]
    np.testing.assert_allclose(smoothed[..., 0], smoothed[..., 1])  # axes are independent


def test_rts_skips_non_finite_measurements():
    _, measured, scale, sizes = _track("velocity", frames=60, seed=2)
    reference, _ = rts_smooth(measured, scale, sizes, process_noise=0.01)
    holes, bad_scale = measured.copy(), scale.copy()
    holes[20:23, 0] = np.nan  # point 0 missing on three frames (both axes)
    holes[30, 1, 0] = np.inf
    bad_scale[40, 2, 1] = np.nan
    bad_scale[41, 3, 0] = -1.0
    smoothed, b = rts_smooth(holes, bad_scale, sizes, process_noise=0.01)
    assert np.isfinite(smoothed).all() and np.isfinite(b).all()
    assert (b[20:23, 0] > b[19, 0]).all()  # less certain where the measurement is missing
    # skipping equals a measurement with a (practically) infinite variance
    huge = scale.copy()
    huge[20:23, 0], huge[30, 1, 0], huge[40, 2, 1], huge[41, 3, 0] = 1e7, 1e7, 1e7, 1e7
    expected, _ = rts_smooth(measured, huge, sizes, process_noise=0.01)
    np.testing.assert_allclose(smoothed, expected, atol=1e-6)
    untouched = np.ones(measured.shape[1], dtype=bool)
    untouched[:4] = False
    np.testing.assert_allclose(smoothed[:, untouched], reference[:, untouched])


def test_rts_missing_first_frame_starts_from_the_later_ones():
    _, measured, scale, sizes = _track("velocity", frames=60, seed=3)
    measured[:3, 0] = np.nan
    smoothed, b = rts_smooth(measured, scale, sizes, process_noise=0.01)
    assert np.isfinite(smoothed).all() and np.isfinite(b).all()
    full, _ = rts_smooth(_track("velocity", frames=60, seed=3)[1], scale, sizes, process_noise=0.01)
    assert np.abs(smoothed[:3, 0] - full[:3, 0]).max() < 10 * scale[:3, 0].max()
    assert (b[:3, 0] > b[5, 0]).all()


@pytest.mark.parametrize(
    ("points", "scale", "sizes", "options", "match"),
    [
        (np.zeros((5, 3)), np.ones((5, 3)), 1.0, {}, r"\(T, K, 2\)"),
        (np.zeros((0, 3, 2)), np.ones((0, 3, 2)), 1.0, {}, r"T >= 1"),
        (np.zeros((5, 3, 2)), np.ones((5, 2, 2)), 1.0, {}, "scale must have the shape"),
        (np.zeros((5, 3, 2)), np.ones((5, 3, 2)), np.ones(4), {}, r"face_sizes .* \(5,\)"),
        (np.zeros((5, 3, 2)), np.ones((5, 3, 2)), -1.0, {}, "finite and positive"),
        (np.zeros((5, 3, 2)), np.ones((5, 3, 2)), 1.0, {"motion": "jerk"}, "motion"),
        (np.zeros((5, 3, 2)), np.ones((5, 3, 2)), 1.0, {"process_noise": -1}, "process_noise"),
    ],
)
def test_rts_rejects_bad_input(points, scale, sizes, options, match):
    with pytest.raises(ValueError, match=match):
        rts_smooth(points, scale, sizes, **options)


def _face(points, scale, track_id, detected=False):
    from laplace_landmarks.data.crops import Crop
    from laplace_landmarks.tracking import TrackedFace

    crop = crop_from_five_points(five_points_from_68(points), 80)
    assert isinstance(crop, Crop)
    return TrackedFace(points + 7.0, scale, points, scale, (0.0, 0.0, 1.0, 1.0), None, crop,
                       track_id, detected)  # fmt: skip


def test_smooth_offline_smooths_each_track_run_on_its_raw_points():
    from laplace_landmarks.tracking import face_size

    rng = np.random.default_rng(4)
    base = _template() * 60 + 150
    raw = base + rng.laplace(0, 1.0, size=(12, 68, 2))
    scale = np.full((12, 68, 2), 1.0)
    # track 0 on frames 0-5 (detected on 0), none on 6, track 1 on 7-11 beside track 0 again on 9-11
    results = []
    for t in range(12):
        faces = []
        if t <= 5 or t >= 9:
            faces.append(_face(raw[t], scale[t], 0, detected=t == 0))
        if t >= 7:
            faces.append(_face(raw[t] + 200, scale[t], 1, detected=t == 7))
        results.append(FrameResult(t, t / 25, faces, t in (0, 7)))
    smoothed = smooth_offline(results, process_noise=0.01)
    assert len(smoothed) == 12 and [r.index for r in smoothed] == list(range(12))
    assert results[1].faces[0].points is not smoothed[1].faces[0].points  # input unchanged
    np.testing.assert_array_equal(results[1].faces[0].points, raw[1] + 7.0)
    runs = {(0, range(0, 6)): 0, (0, range(9, 12)): 0, (1, range(7, 12)): 200}
    for (track, frames), shift in runs.items():
        members = [next(f for f in smoothed[t].faces if f.track_id == track) for t in frames]
        originals = [next(f for f in results[t].faces if f.track_id == track) for t in frames]
        sizes = [face_size(f.crop) for f in originals]
        expected, b = rts_smooth(raw[list(frames)] + shift, scale[list(frames)], sizes, 0.01)
        np.testing.assert_allclose(np.stack([f.points for f in members]), expected)
        np.testing.assert_allclose(np.stack([f.scale for f in members]), b)
        for face, original in zip(members, originals, strict=True):
            np.testing.assert_array_equal(face.raw_points, original.raw_points)
            assert face.crop is original.crop and face.detected == original.detected
            assert (face.box == original.box) == face.detected  # tracked boxes follow the points
    assert smoothed[6].faces == [] and smoothed[0].detector_ran
    bad = [FrameResult(0, 0.0, [_face(base, scale[0], 3), _face(base, scale[0], 3)], True)]
    with pytest.raises(ValueError, match="same track_id"):
        smooth_offline(bad)


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


def test_predict_video_offline_tracks_causally_and_smooths_afterwards():
    landmarker = DiscLandmarker()
    frames = _disc_video(blank=range(15, 18))
    trackers = {kind: FaceTracker(landmarker) for kind in ("causal", "offline")}
    causal = predict_video(landmarker, frames, smooth=True, tracker=trackers["causal"])
    offline = predict_video(landmarker, frames, smooth="offline", tracker=trackers["offline"],
                            offline_process_noise=0.01)  # fmt: skip
    assert trackers["causal"].detector_calls == trackers["offline"].detector_calls == 5
    for c, o in zip(causal, offline, strict=True):
        assert [f.track_id for f in c.faces] == [f.track_id for f in o.faces]
        for cf, of in zip(c.faces, o.faces, strict=True):  # the same crops and measurements
            np.testing.assert_array_equal(cf.raw_points, of.raw_points)
            np.testing.assert_array_equal(cf.crop.matrix, of.crop.matrix)
    # with the causal filter's process noise, the last frame of the track is the causal one
    np.testing.assert_allclose(offline[14].faces[0].points, causal[14].faces[0].points)
    assert not np.allclose(offline[5].faces[0].points, causal[5].faces[0].points)
    raw = predict_video(landmarker, frames[:3], smooth="none")[1].faces[0]
    np.testing.assert_array_equal(raw.points, raw.raw_points)
    with pytest.raises(ValueError, match="smooth must be"):
        predict_video(landmarker, frames, smooth="fancy")
    with pytest.raises(ValueError, match="on_frame"):
        predict_video(landmarker, frames, smooth="offline", on_frame=lambda frame, result: None)


def test_offline_overlay_draws_the_smoothed_points(tmp_path, monkeypatch):
    from laplace_landmarks.commands import predict_video as command

    path = write_video(tmp_path / "disc.mp4", _disc_video(blank=range(30, 31), count=20), 10)
    drawn = []

    def spy(image, result, pose=False):
        drawn.append([face.points.copy() for face in result.faces])
        return image

    monkeypatch.setattr(command, "overlay", spy)
    landmarker = DiscLandmarker()
    result = command.predict_one_video(landmarker, path, "offline", tmp_path / "out.mp4")
    assert result.smoothing == "offline" and len(result.frames) == len(drawn) == 20
    for points, frame in zip(drawn, result.frames, strict=True):
        np.testing.assert_array_equal(points[0], frame.faces[0].points)
    causal = command.predict_one_video(landmarker, path, "causal")
    assert not np.allclose(causal.frames[3].faces[0].points, drawn[3][0])
    assert len(list(read_frames(tmp_path / "out.mp4"))) == 20
    assert not list(tmp_path.glob(".*tmp*"))


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
    assert rows and len(rows[0]) == 6 + 4 * 68 + 5 + 1
    assert {r["smoothing"] for r in rows} == {"offline"}  # the default for video files
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
    assert document["smoothing"] == "none" and document["process_noise"] is None
    assert document["videos"][0]["smoothing"] == "none"
    (video,) = document["videos"]
    assert video["frames"] == 40 and len(video["results"]) == 40
    assert [r["frame"] for r in video["results"]] == list(range(40))
    assert video["results"][0]["detector_ran"] and video["detector_calls"] >= 1
    face = video["results"][0]["faces"][0]
    assert np.array(face["points"]).shape == (68, 2) and np.array(face["scale"]).shape == (68, 2)


def test_predict_video_cli_smooth_option(face_video, tmp_path, capsys):
    from laplace_landmarks.smoothing import DEFAULT_OFFLINE_PROCESS_NOISE, DEFAULT_PROCESS_NOISE

    documents = {}
    for kind in ("causal", "offline"):
        out = tmp_path / kind
        code = main(["predict", str(face_video), "--smooth", kind, "--out", str(out),
                     "--threads", "1"])  # fmt: skip
        assert code == 0
        documents[kind] = json.loads((out / "landmarks.json").read_text())
        assert not list(out.glob(".*tmp*"))
    noise = {"causal": DEFAULT_PROCESS_NOISE, "offline": DEFAULT_OFFLINE_PROCESS_NOISE}
    for kind, document in documents.items():
        assert document["smooth"] is True and document["smoothing"] == kind
        assert document["process_noise"] == noise[kind]
        assert document["videos"][0]["smoothing"] == kind
    causal, offline = (documents[k]["videos"][0]["results"] for k in ("causal", "offline"))
    assert [r["detector_ran"] for r in causal] == [r["detector_ran"] for r in offline]
    tracks = [[[f["track"] for f in r["faces"]] for r in run] for run in (causal, offline)]
    assert tracks[0] == tracks[1]
    assert causal[5]["faces"][0]["points"] != offline[5]["faces"][0]["points"]
    capsys.readouterr()
    args = ["predict", str(face_video), "--smooth", "offline", "--no-smooth"]
    assert main(args) == 2
    assert "--no-smooth contradicts --smooth offline" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["predict", str(face_video), "--smooth", "sometimes"])
    assert "invalid choice" in capsys.readouterr().err


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


def test_tracker_skips_detections_too_small_to_frame_a_face():
    """A detector box under the minimum face size starts no track (and stops no video)."""
    from laplace_landmarks.detection import Detection
    from laplace_landmarks.inference import Landmarker

    def tiny(image):
        return [Detection((5.0, 5.0, 9.0, 9.0), 1.0)]

    landmarker = Landmarker.pretrained("rcn-lite", detector=tiny, threads=1)
    frames = [np.full((12, 12, 3), 128, np.uint8) for _ in range(3)]
    results = predict_video(landmarker, frames, tracker=FaceTracker(landmarker))
    assert [len(r.faces) for r in results] == [0, 0, 0]
