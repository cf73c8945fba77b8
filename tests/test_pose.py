"""Head pose (``laplace_landmarks.pose``): synthetic rotations, the 3D model, real mirrored photos."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from laplace_landmarks.data.formats import read_pts
from laplace_landmarks.data.images import load_image
from laplace_landmarks.pose import (
    AXIS_NAMES,
    HEAD_MODEL,
    RIGID_POINTS,
    HeadPose,
    angles_from_rotation,
    estimate_pose,
    head_model,
    pose_axes,
    project,
    rotation_from_angles,
)

SAMPLES = Path(str(resources.files("laplace_landmarks") / "samples"))
TEST_DATA = Path(__file__).resolve().parent / "data"
IMAGE_SHAPE = (480, 640)
CENTRE = (319.5, 239.5)

pytestmark = pytest.mark.usefixtures("one_thread")


def synthetic(
    yaw: float, pitch: float, roll: float, distance: float = 600.0, noise: np.ndarray | None = None
) -> np.ndarray:
    """68 points with the head model's rigid points projected by a 640-px focal pinhole camera."""
    rotation = rotation_from_angles(yaw, pitch, roll)
    pixels = project(HEAD_MODEL, rotation, [20.0, -10.0, distance], 640.0, CENTRE)
    points = np.zeros((68, 2))
    points[list(RIGID_POINTS)] = pixels if noise is None else pixels + noise
    return points


GRID = [
    (yaw, pitch, roll)
    for yaw in range(-60, 61, 10)
    for pitch in range(-30, 31, 10)
    for roll in range(-30, 31, 10)
]


def angle_errors(pose: HeadPose, truth: tuple[float, float, float]) -> np.ndarray:
    return np.abs(np.array([pose.yaw, pose.pitch, pose.roll]) - truth)


def test_angle_convention():
    nose = [HEAD_MODEL[RIGID_POINTS.index(30)]]
    left_eye = [HEAD_MODEL[RIGID_POINTS.index(45)]]  # the subject's left: image right

    def where(point, **angles):
        rotation = rotation_from_angles(**{"yaw": 0.0, "pitch": 0.0, "roll": 0.0, **angles})
        return project(point, rotation, [0.0, 0.0, 600.0], 640.0, CENTRE)[0]

    frontal_nose, frontal_eye = where(nose), where(left_eye)
    assert where(nose, yaw=20.0)[0] > frontal_nose[0]  # yaw > 0: nose to the image's right
    assert where(nose, pitch=20.0)[1] < frontal_nose[1]  # pitch > 0: nose up
    assert where(left_eye, roll=20.0)[1] > frontal_eye[1]  # roll > 0: clockwise
    for angles in [(30.0, -15.0, 10.0), (-60.0, 30.0, -30.0), (0.0, 0.0, 0.0)]:
        assert np.allclose(angles_from_rotation(rotation_from_angles(*angles)), angles)


def test_synthetic_grid_is_recovered_exactly():
    worst = max(
        angle_errors(estimate_pose(synthetic(*truth), IMAGE_SHAPE, focal_length=640.0), truth).max()
        for truth in GRID
    )
    assert worst < 1e-6  # 637 poses; the requirement is 1 degree


def test_one_pixel_noise_stays_within_three_degrees():
    """At 450 mm the eyes are ~90 px apart (the bundled samples: 76-83 px)."""
    rng = np.random.default_rng(0)
    errors = np.array(
        [
            angle_errors(
                estimate_pose(
                    synthetic(*truth, distance=450.0, noise=rng.normal(0, 1, (16, 2))),
                    IMAGE_SHAPE,
                    focal_length=640.0,
                ),
                truth,
            )
            for truth in GRID
        ]
    )
    assert errors.max() < 3.0  # measured 2.6 (mean 0.46)
    assert errors.mean() < 1.0


def test_scales_down_weight_an_uncertain_point():
    truth = (25.0, 10.0, -5.0)
    points = synthetic(*truth)
    points[8] += [0.0, 25.0]  # the chin 25 px off (an open mouth, a beard, an occlusion)
    scale = np.ones((68, 2))
    plain = angle_errors(estimate_pose(points, IMAGE_SHAPE, focal_length=640.0), truth)
    scale[8] = 25.0  # the model says so
    weighted = angle_errors(estimate_pose(points, IMAGE_SHAPE, scale, 640.0), truth)
    assert weighted.max() < 0.2 < plain.max()


def test_head_model_is_what_the_300w_slice_gives():
    """The stored 3D model is recomputed from the human-annotated .pts files in tests/data."""
    shapes = [read_pts(p) for p in sorted(TEST_DATA.rglob("*.pts"))]
    assert np.abs(head_model(shapes) - HEAD_MODEL).max() < 0.051  # stored to 0.1 mm
    index = RIGID_POINTS.index
    assert np.linalg.norm(HEAD_MODEL[index(45)] - HEAD_MODEL[index(36)]) == pytest.approx(90.0)
    mirror = [index(j) for j in (8, 27, 28, 29, 30, 35, 34, 33, 32, 31, 45, 42, 39, 36, 54, 48)]
    assert np.allclose(HEAD_MODEL[mirror] * [-1, 1, 1], HEAD_MODEL)  # symmetric
    assert HEAD_MODEL[:, 2].argmin() == index(30)  # the nose tip is nearest the camera
    protrusion = np.linalg.norm(HEAD_MODEL[index(33)] - HEAD_MODEL[index(30)])
    assert 17.0 < protrusion < 23.0  # sn-prn, anthropometry: about 20-21 mm


def test_pose_axes_are_segments_from_the_nose_tip():
    points = synthetic(0.0, 0.0, 0.0)
    pose = estimate_pose(points, IMAGE_SHAPE, focal_length=640.0)
    segments = pose_axes(pose, length=40.0)
    assert segments.shape == (len(AXIS_NAMES), 2, 2)
    assert np.allclose(segments[:, 0], points[30])
    left, down, forward = segments[:, 1] - segments[:, 0]
    assert left[0] > 0 and abs(left[1]) < 1e-6 and down[1] > 0 and abs(down[0]) < 1e-6
    turned = pose_axes(estimate_pose(synthetic(30.0, 0.0, 0.0), IMAGE_SHAPE, focal_length=640.0))
    assert (turned[2, 1] - turned[2, 0])[0] > 0  # facing right: the forward axis points right
    document = pose.to_dict()
    assert set(document) == {
        "yaw", "pitch", "roll", "rotation", "translation", "reprojection_error", "focal_length"
    }  # fmt: skip
    assert document["reprojection_error"] < 1e-6


def test_bad_inputs_raise_value_errors():
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        estimate_pose(np.zeros((5, 2)), IMAGE_SHAPE)
    points = synthetic(0.0, 0.0, 0.0)
    points[30] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        estimate_pose(points, IMAGE_SHAPE)
    with pytest.raises(ValueError, match="positive"):
        estimate_pose(synthetic(0.0, 0.0, 0.0), IMAGE_SHAPE, scale=np.zeros((68, 2)))


# --- real photos, the shipped default model ------------------------------------------------------
@pytest.fixture(scope="module")
def landmarker(one_thread):
    from laplace_landmarks.inference import Landmarker

    return Landmarker.pretrained()


def pose_of(landmarker, rgb: np.ndarray) -> HeadPose:
    face = landmarker.predict(rgb)[0]
    return estimate_pose(face.points, rgb.shape, scale=face.scale)


@pytest.mark.parametrize("name", ["ytf68_Emmy_Rossum_20a.jpg", "ytf68_Takeo_Hiranuma_00a.jpg"])
def test_mirrored_photo_gives_opposite_yaw_and_roll(landmarker, name):
    rgb = load_image(SAMPLES / name)
    pose = pose_of(landmarker, rgb)
    mirrored = pose_of(landmarker, np.ascontiguousarray(rgb[:, ::-1]))
    assert abs(pose.yaw + mirrored.yaw) < 3.0  # measured: -5.5 / 5.2 (Emmy), 1.5 / -0.2 (Takeo)
    assert abs(pose.roll + mirrored.roll) < 3.0  # measured: -4.4 / 4.3, 14.4 / -14.1
    assert abs(pose.pitch - mirrored.pitch) < 3.0
    assert pose.reprojection_error < 6.0 and mirrored.reprojection_error < 6.0


def test_frontal_photo_has_small_yaw(landmarker):
    pose = pose_of(landmarker, load_image(SAMPLES / "ytf68_T_Boone_Pickens_10a.jpg"))
    assert abs(pose.yaw) < 5.0 and abs(pose.roll) < 8.0  # measured: yaw 1.9, roll -3.6
