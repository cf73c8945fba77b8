"""Tests for laplace_landmarks.evaluation (metrics) and laplace_landmarks.plots (figures)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from laplace_landmarks import evaluation as ev


def face68(num_faces: int = 1) -> np.ndarray:
    """(N, 68, 2) faces: outer eye corners 36 at (10, 20) and 45 at (50, 20), so d_io = 40."""
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 60, size=(num_faces, 68, 2))
    pts[:, 36] = (10.0, 20.0)
    pts[:, 45] = (50.0, 20.0)
    return pts


# --- normalisers ------------------------------------------------------------------------------


def test_inter_ocular_68_is_outer_corner_distance() -> None:
    pts = face68()
    pts[0, 45] = (40.0, 60.0)  # 30, 40 away from (10, 20)
    assert ev.normalizer(pts, "inter-ocular") == pytest.approx([50.0])


def test_inter_pupil_68_uses_eye_means() -> None:
    pts = np.zeros((1, 68, 2))
    pts[0, 36:42] = [(0, 0), (2, 0), (4, 0), (6, 0), (2, 2), (4, 2)]  # mean (3, 2/3)
    pts[0, 42:48] = pts[0, 36:42] + (24.0, 0.0)
    assert ev.normalizer(pts, "inter-pupil") == pytest.approx([24.0])


def test_wflw_and_cofw_indices() -> None:
    wflw = np.zeros((1, 98, 2))
    wflw[0, 72] = (8.0, 6.0)
    wflw[0, 96], wflw[0, 97] = (1.0, 1.0), (4.0, 5.0)
    assert ev.normalizer(wflw, "inter-ocular") == pytest.approx([10.0])
    assert ev.normalizer(wflw, "inter-pupil") == pytest.approx([5.0])
    cofw = np.zeros((1, 29, 2))
    cofw[0, 9] = (0.0, 7.0)
    cofw[0, 17] = (3.0, 0.0)
    assert ev.normalizer(cofw, "inter-ocular") == pytest.approx([7.0])
    assert ev.normalizer(cofw, "inter-pupil") == pytest.approx([3.0])


def test_box_normaliser_given_and_from_visible_points() -> None:
    pts = np.array([[[0.0, 0.0], [8.0, 2.0], [4.0, 2.0], [100.0, 100.0]]])
    boxes = np.array([[10.0, 20.0, 14.0, 29.0]])  # w 4, h 9
    assert ev.normalizer(pts, "box", boxes=boxes) == pytest.approx([6.0])
    vis = np.array([[1, 1, 1, 0]])
    assert ev.normalizer(pts, "box", visibility=vis) == pytest.approx([4.0])  # sqrt(8 * 2)


def test_unsupported_normaliser_combinations_raise() -> None:
    with pytest.raises(ValueError, match="K=19"):
        ev.normalizer(np.ones((2, 19, 2)), "inter-ocular")
    with pytest.raises(ValueError, match="kind must be one of"):
        ev.normalizer(face68(), "inter-nose")
    with pytest.raises(ValueError, match="face 0"):
        ev.normalizer(np.zeros((1, 68, 2)), "inter-ocular")
    with pytest.raises(ValueError, match="boxes"):
        ev.normalizer(face68(2), "box", boxes=np.ones((3, 4)))


# --- NME --------------------------------------------------------------------------------------


def test_nme_golden_value() -> None:
    gt = face68(2)
    pred = gt.copy()
    pred[0] += (3.0, 4.0)  # every point 5 px off: 5 / 40
    pred[1, :34] += (0.0, 8.0)  # half the points 8 px off: 4 / 40 on average
    assert ev.nme_per_face(pred, gt) == pytest.approx([0.125, 0.1])


def test_nme_perfect_prediction_is_zero_and_accepts_torch() -> None:
    torch = pytest.importorskip("torch")
    gt = face68(3)
    assert ev.nme_per_face(gt, gt) == pytest.approx(np.zeros(3))
    out = ev.nme_per_face(torch.tensor(gt, dtype=torch.float32), torch.tensor(gt))
    assert isinstance(out, np.ndarray) and out == pytest.approx(np.zeros(3), abs=1e-6)


def test_visibility_excludes_points_exactly() -> None:
    gt = face68(1)
    pred = gt.copy()
    pred[0, :10] += 1000.0  # wild, but invisible
    pred[0, 10:] += (0.0, 2.0)
    gt_nan = gt.copy()
    gt_nan[0, :10] = np.nan  # invisible points may be unannotated
    vis = np.ones((1, 68), dtype=bool)
    vis[0, :10] = False
    expected = 2.0 / 40.0
    assert ev.nme_per_face(pred, gt, visibility=vis)[0] == pytest.approx(expected, rel=1e-12)
    assert ev.nme_per_face(pred, gt_nan, visibility=vis.astype(int))[0] == pytest.approx(expected)


def test_face_without_visible_points_is_nan() -> None:
    gt = face68(2)
    vis = np.ones((2, 68), dtype=bool)
    vis[1] = False
    out = ev.nme_per_face(gt + 1.0, gt, visibility=vis, norm="box")
    assert out[0] > 0 and math.isnan(out[1])


def test_bad_shapes_name_the_argument() -> None:
    gt = face68(2)
    with pytest.raises(ValueError, match="pred"):
        ev.nme_per_face(gt[:1], gt)
    with pytest.raises(ValueError, match="gt"):
        ev.nme_per_face(gt, gt[..., :1])
    with pytest.raises(ValueError, match="visibility"):
        ev.nme_per_face(gt, gt, visibility=np.ones((2, 67)))
    with pytest.raises(ValueError, match="pred has NaN"):
        ev.nme_per_face(np.full_like(gt, np.nan), gt)
    with pytest.raises(ValueError, match="scale"):
        ev.calibration(gt, gt, np.ones((2, 68)))
    with pytest.raises(ValueError, match="errors"):
        ev.auc_at(np.ones((2, 2)))


# --- CED, AUC, FR -----------------------------------------------------------------------------


def test_ced_auc_fr_golden() -> None:
    errors = np.array([0.0, 0.02, 0.04, 0.1])
    thresholds, fraction = ev.ced_curve(errors, max_error=0.08, steps=5)
    assert thresholds == pytest.approx([0.0, 0.02, 0.04, 0.06, 0.08])
    assert fraction == pytest.approx([0.25, 0.5, 0.75, 0.75, 0.75])
    # area = mean(max(0, 0.08 - e)) / 0.08 = (1 + 0.75 + 0.5 + 0) / 4
    assert ev.auc_at(errors, 0.08) == pytest.approx(0.5625)
    assert ev.failure_rate(errors, 0.08) == pytest.approx(0.25)
    assert ev.failure_rate(np.array([0.08]), 0.08) == 0.0  # strictly above fails


def test_auc_extremes_and_riemann_limit() -> None:
    assert ev.auc_at(np.zeros(10)) == 1.0
    assert ev.auc_at(np.full(10, 0.2)) == 0.0
    errors = np.random.default_rng(1).uniform(0, 0.1, 500)
    _, fraction = ev.ced_curve(errors, 0.08, steps=20001)
    assert ev.auc_at(errors) == pytest.approx(np.trapezoid(fraction, dx=1 / 20000), abs=1e-4)


# --- Spearman and calibration -----------------------------------------------------------------


def test_spearman_matches_scipy_with_ties() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(2)
    a = rng.integers(0, 5, 300).astype(float)  # many ties
    b = a + rng.integers(0, 4, 300)
    assert ev.spearman_correlation(a, b) == pytest.approx(stats.spearmanr(a, b)[0], abs=1e-12)
    c = rng.normal(size=50)
    assert ev.spearman_correlation(c, -(c**3)) == pytest.approx(-1.0)
    assert math.isnan(ev.spearman_correlation(np.ones(5), c[:5]))


def test_coverage_of_laplace_samples_matches_nominal() -> None:
    rng = np.random.default_rng(3)
    n = 200_000
    scale = np.broadcast_to(np.array([1.5, 0.5]), (n, 1, 2))
    gt = np.zeros((n, 1, 2))
    pred = rng.laplace(0.0, scale)
    result = ev.calibration(pred, gt, scale)
    assert result["coverage_50"] == pytest.approx(0.5, abs=0.005)
    assert result["coverage_90"] == pytest.approx(0.9, abs=0.005)
    assert result["coverage_50_per_axis"] == pytest.approx([0.5, 0.5], abs=0.006)
    assert result["mean_scale_px"] == pytest.approx(1.0)
    assert result["mean_abs_error_px_per_axis"] == pytest.approx([1.5, 0.5], rel=0.02)


def test_calibration_spearman_per_landmark_and_visibility() -> None:
    rng = np.random.default_rng(4)
    scale = np.repeat(rng.uniform(0.5, 3.0, size=(40, 3, 1)), 2, axis=-1)  # isotropic
    gt = np.zeros((40, 3, 2))
    pred = scale * 2.0  # error grows with scale: a perfect ranking
    pred[:, 2] = rng.normal(size=(40, 2))
    vis = np.ones((40, 3), dtype=bool)
    vis[:, 1] = False
    result = ev.calibration(pred, gt, scale, visibility=vis)
    assert result["spearman_per_landmark"][0] == pytest.approx(1.0)
    assert result["spearman_per_landmark"][1] is None  # no visible samples
    assert abs(result["spearman_per_landmark"][2]) < 0.5
    assert result["mean_scale_px"] == pytest.approx(scale[:, [0, 2]].mean())


def test_summarize_is_json_ready_and_table_renders() -> None:
    gt = face68(4)
    pred = gt + np.array([0.0, 2.0])
    scale = np.full_like(gt, 2.0)
    summary = ev.summarize(pred, gt, scale=scale)
    json.loads(json.dumps(summary, allow_nan=False))
    assert summary["nme_percent"]["inter-ocular"] == pytest.approx(5.0)
    assert summary["auc"] == pytest.approx(1 - 0.05 / 0.08)
    assert summary["failure_rate"] == 0.0
    assert summary["mean_scale_px"] == pytest.approx(2.0)
    no_scale = ev.summarize(pred, gt, norms=("box",))
    assert no_scale["calibration"] is None
    table = ev.format_table({"common": summary, "aflw": no_scale})
    lines = table.splitlines()
    assert lines[0].startswith("| split | faces | NME % (inter-ocular) | NME % (inter-pupil)")
    assert "| common | 4 | 5.00 |" in lines[2]
    assert lines[3].count("–") == 6  # inter-ocular, inter-pupil and four calibration cells


# --- plots ------------------------------------------------------------------------------------


def _open_png(path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        return image.size


def test_draw_landmarks_returns_image_and_saves(tmp_path) -> None:
    from laplace_landmarks.plots import draw_landmarks

    image = np.zeros((40, 50, 3), dtype=np.uint8)
    points = np.array([[10.0, 20.0], [30.0, 5.0], [np.nan, np.nan]])
    scale = np.array([[4.0, 2.0], [1.0, 1.0], [1.0, 1.0]])
    out = draw_landmarks(image, points, scale, tmp_path / "overlay.png")
    assert out.size == (50, 40) and image.max() == 0  # input untouched
    assert np.asarray(out)[20, 10].any()  # the landmark pixel is drawn
    assert np.asarray(out)[20, 14].any()  # the ellipse reaches x + bx
    assert _open_png(tmp_path / "overlay.png") == (50, 40)
    assert not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(ValueError, match="points"):
        draw_landmarks(image, np.zeros((3, 3)))


def test_plot_functions_write_pngs(tmp_path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is optional; plots need it")
    from laplace_landmarks import plots

    rng = np.random.default_rng(5)
    plots.plot_ced(
        {"a": rng.uniform(0, 0.1, 50), "b": rng.uniform(0, 0.05, 50)}, tmp_path / "c.png"
    )
    scale = rng.uniform(0.5, 2, 300)
    plots.plot_calibration(scale, np.abs(rng.laplace(0, scale)), tmp_path / "cal.png")
    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text("epoch,train_loss,val_nme,note\n1,2.0,,x\n2,1.5,0.07,y\n3,1.2,0.06,z\n")
    plots.plot_training_curves(csv_path, tmp_path / "curves.png")
    for name in ("c.png", "cal.png", "curves.png"):
        width, height = _open_png(tmp_path / name)
        assert width > 100 and height > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["c.png", "cal.png", "curves.png", "metrics.csv"]
    )
