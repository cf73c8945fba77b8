"""A training run's data: its splits loaded and cropped once into crop caches.

:func:`prepare_data` turns a run config's ``[data]`` (and ``[adversarial]``) sections into the
:class:`TrainData` the trainer reads: the training and validation crops (plus the self crops of
``data.self_crops_from``, see :mod:`laplace_landmarks.self_crops`), cut by ``data.crop``
(the ground-truth 5-point rule, or the detector path's box crop) and, for the adversarial
branch, the unlabelled faces. Every split is cached under :func:`default_cache_dir` (or the
run's ``data.cache_dir``), so a second run decodes no image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from laplace_landmarks.cache_dirs import crop_cache_dir
from laplace_landmarks.data.cache import CropCache, build_crop_cache, concat_crop_caches
from laplace_landmarks.data.datasets import load_dataset
from laplace_landmarks.run_config import RunConfig
from laplace_landmarks.self_crops import self_crop_cache


@dataclass
class TrainData:
    """The crops of one run: ``train`` and ``val`` (labelled), ``unlabeled`` (the adversarial
    branch's faces, None when it is off)."""

    train: CropCache
    val: CropCache
    unlabeled: CropCache | None


def default_cache_dir() -> Path:
    """Where crop caches go (see :func:`laplace_landmarks.cache_dirs.crop_cache_dir`)."""
    return crop_cache_dir()


def prepare_data(config: RunConfig, cache_dir: Path, progress: bool = True) -> TrainData:
    """Load the splits and build (or reuse) their crop caches in ``cache_dir``.

    With ``data.self_crops_from``, the training set also holds the self crops of its faces
    (see :mod:`laplace_landmarks.self_crops`). Raises ValueError (or OSError) for data that is
    missing or unusable, e.g. no unlabelled face for the adversarial branch."""
    d = config.data
    kwargs = {"root": d.root, "seed": d.split_seed, "val_fraction": d.val_fraction}
    caches, datasets = [], []
    for split, limit in ((d.train_split, d.max_train), (d.val_split, d.max_val)):
        dataset = load_dataset(d.dataset, split, max_images=limit, **kwargs)
        datasets.append(dataset)
        caches.append(
            build_crop_cache(
                dataset,
                cache_dir,
                size=d.size,
                rule=d.crop,
                extension=d.extension,
                fallback=d.crop == "detector",
                progress=progress,
            )
        )
    if d.self_crops_from:
        extra = self_crop_cache(
            d.self_crops_from, datasets[0], cache_dir, threads=config.train.threads
        )
        caches[0] = concat_crop_caches(caches[0], extra)
    unlabeled = None
    if config.adversarial.enabled:
        a = config.adversarial
        dataset = load_dataset(
            "unlabeled", "all", root=a.unlabeled, seed=config.train.seed, max_images=a.num_unlabeled
        )
        unlabeled = build_crop_cache(dataset, cache_dir, size=d.size, progress=progress)
        if len(unlabeled) == 0:
            raise ValueError("adversarial: no usable unlabelled faces were found")
    return TrainData(caches[0], caches[1], unlabeled)
