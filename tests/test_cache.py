"""The crop cache: built once, a cache hit decodes nothing, changes rebuild, bad images skip."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from laplace_landmarks.data import images as image_io
from laplace_landmarks.data.cache import CropCache, build_crop_cache
from laplace_landmarks.data.crops import crop_from_box, crop_from_five_points, five_points_from_68
from laplace_landmarks.data.types import LandmarkDataset, Sample


def synthetic_face_points(rng: np.random.Generator, center: np.ndarray) -> np.ndarray:
    """68 points spread around ``center`` (not a real face, but valid for the 5-point rule)."""
    return center + rng.uniform(-30, 30, (68, 2))


@pytest.fixture
def dataset(tmp_path: Path) -> LandmarkDataset:
    rng = np.random.default_rng(0)
    samples = []
    for index in range(4):
        path = tmp_path / "images" / f"face{index}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (120, 100, 3), dtype=np.uint8)).save(path)
        points = synthetic_face_points(rng, np.array([50.0, 60.0]))
        samples.append(Sample(path, points, np.ones(68, bool), identity=f"person{index % 2}"))
    return LandmarkDataset("toy", "train", 68, samples)


def build(dataset: LandmarkDataset, cache_dir: Path, **kwargs) -> CropCache:
    return build_crop_cache(dataset, cache_dir, progress=False, **kwargs)


def test_build_holds_crops_and_points_in_crop_coordinates(dataset, tmp_path):
    cache = build(dataset, tmp_path / "cache", size=40)
    assert cache.images.shape == (4, 3, 40, 40) and cache.images.dtype == torch.uint8
    assert cache.points.shape == (4, 68, 2) and cache.points.dtype == torch.float32
    assert cache.visibility.dtype == torch.bool and cache.visibility.all()
    assert cache.matrices.shape == (4, 2, 3) and cache.matrices.dtype == torch.float64
    assert cache.identities == ["person0", "person1", "person0", "person1"]
    first = dataset.samples[0]
    expected = crop_from_five_points(five_points_from_68(first.points), size=40).to_crop(
        first.points
    )
    np.testing.assert_allclose(cache.points[0].numpy(), expected, atol=1e-4)
    np.testing.assert_allclose(cache.crop(0).to_image(expected), first.points, atol=1e-6)
    assert cache.file.suffix == ".pt" and cache.file.parent == tmp_path / "cache"
    reloaded = CropCache.load(cache.file)  # weights_only=True
    assert torch.equal(reloaded.images, cache.images) and reloaded.paths == cache.paths


def test_second_build_is_a_hit_without_decoding(dataset, tmp_path, monkeypatch, capsys):
    first = build(dataset, tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError("a cache hit must not decode images")

    monkeypatch.setattr(image_io, "load_image", refuse)
    second = build(dataset, tmp_path)
    assert torch.equal(second.images, first.images) and second.file == first.file
    assert "cache hit" in capsys.readouterr().err


def test_changes_rebuild(dataset, tmp_path):
    original = build(dataset, tmp_path).file
    assert build(dataset, tmp_path, extension=1.5).file != original
    moved = dataset.samples[1].points.copy()
    moved[0] += 1.0
    dataset.samples[1] = Sample(dataset.samples[1].image_path, moved, dataset.samples[1].visibility)
    assert build(dataset, tmp_path).file != original
    after_edit = build(dataset, tmp_path).file
    stat = os.stat(dataset.samples[2].image_path)
    os.utime(dataset.samples[2].image_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert build(dataset, tmp_path).file != after_edit


def test_corrupt_and_missing_images_are_skipped_and_counted(dataset, tmp_path, capsys):
    dataset.samples[1].image_path.write_bytes(b"\xff\xd8\xff garbage, not an image")
    dataset.samples.append(Sample(tmp_path / "missing.jpg", dataset.samples[0].points))
    cache = build(dataset, tmp_path / "cache")
    assert len(cache) == 3
    assert [Path(p).name for p, _ in cache.skipped] == ["face1.png", "missing.jpg"]
    assert all(reason for _, reason in cache.skipped)
    assert "3 crops, 2 skipped" in capsys.readouterr().err


def test_too_large_images_are_skipped(dataset, tmp_path):
    cache = build(dataset, tmp_path, max_pixels=100 * 100)
    assert len(cache) == 0 and len(cache.skipped) == 4
    assert cache.images.shape == (0, 3, 80, 80) and cache.points.shape == (0, 68, 2)


def test_unlabelled_faces_use_the_detector(tmp_path, test_data):
    faces = sorted((test_data / "unlabeled_slice").rglob("*.jpg"))[:2]
    if not faces:
        pytest.skip("tests/data/unlabeled_slice not available")
    blank = tmp_path / "blank.png"
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(blank)
    dataset = LandmarkDataset("lfw", "all", 0, [Sample(p) for p in faces] + [Sample(blank)])
    cache = build(dataset, tmp_path)
    assert len(cache) == 2 and cache.points is None and cache.visibility is None
    assert cache.skipped == [(str(blank), "no face detected")]
    # the face is roughly centred in these frames: so is the crop
    for index, path in enumerate(faces):
        height, width = image_io.load_image(path).shape[:2]
        centre = cache.crop(index).to_image([[39.5, 39.5]])[0]
        assert np.abs(centre - [width / 2, height / 2]).max() < 0.2 * max(width, height)


def test_five_point_rule_needs_68_points(tmp_path):
    sample = Sample(tmp_path / "x.png", np.zeros((19, 2)), np.ones(19, bool))
    with pytest.raises(ValueError, match="68"):
        build(LandmarkDataset("aflw", "train", 19, [sample]), tmp_path)


def test_box_rule_uses_the_visible_points(dataset, tmp_path):
    first = dataset.samples[0]
    visibility = np.ones(68, bool)
    visibility[:10] = False
    moved = first.points.copy()
    moved[:10] = 1000.0  # invisible points far away must not stretch the box
    dataset.samples[0] = Sample(first.image_path, moved, visibility)
    cache = build(dataset, tmp_path, rule="box", box_scale=1.25)
    visible = moved[visibility]
    box = (*visible.min(axis=0), *visible.max(axis=0))
    expected = crop_from_box(box, size=80, scale=1.25).to_crop(visible)
    np.testing.assert_allclose(cache.points[0].numpy()[visibility], expected, atol=1e-3)
    assert not cache.visibility[0, :10].any() and cache.visibility[0, 10:].all()


def _slice_300w():
    from conftest import TEST_DATA

    from laplace_landmarks.data.datasets import load_dataset

    return load_dataset("300w", "common", root=TEST_DATA / "300w_slice")


def test_detector_crops_are_the_one_pass_landmarker_crops(tmp_path, one_thread):
    """``data.crop = "detector"``: every face cut as the one-pass path cuts it, points mapped by
    ``crop_from_detection(box).to_crop``; a separate cache file from the five-point one."""
    from laplace_landmarks.detection import DlibHogDetector, crop_from_detection, labelled_face_box

    dataset = _slice_300w()
    cache = build(dataset, tmp_path, rule="detector", fallback=True)
    assert len(cache) == len(dataset.samples) and not cache.skipped
    detector = DlibHogDetector(upsample=1)
    for index, sample in enumerate(dataset.samples):
        rgb = image_io.load_image(sample.image_path)
        box, _ = labelled_face_box(detector(rgb), sample.points, sample.visibility)
        crop = crop_from_detection(box, 80)
        np.testing.assert_allclose(cache.matrices[index].numpy(), crop.matrix)
        np.testing.assert_allclose(
            cache.points[index].numpy(), crop.to_crop(sample.points), atol=1e-4
        )
    assert build(dataset, tmp_path).file != cache.file  # five-point: another key
    assert build(dataset, tmp_path, rule="detector").file != cache.file  # no fallback: another


def test_detector_crops_fall_back_to_the_five_point_equivalent_box(tmp_path, monkeypatch):
    from laplace_landmarks import detection

    monkeypatch.setattr(detection, "DlibHogDetector", lambda upsample: lambda image: [])
    dataset = _slice_300w()
    skipping = build(dataset, tmp_path / "skip", rule="detector")
    assert len(skipping) == 0 and len(skipping.skipped) == len(dataset.samples)
    cache = build(dataset, tmp_path / "fallback", rule="detector", fallback=True)
    for index, sample in enumerate(dataset.samples):
        expected = crop_from_five_points(five_points_from_68(sample.points), size=80)
        np.testing.assert_allclose(cache.matrices[index].numpy(), expected.matrix, atol=1e-9)
    with pytest.raises(ValueError, match="fallback"):
        build(dataset, tmp_path, fallback=True)
