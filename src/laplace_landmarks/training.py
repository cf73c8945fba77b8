"""The trainer: supervised and adversarial steps, checkpoints, resume, metrics, DDP.

Every random draw of an epoch (the order of faces, augmentation, dropout, D's noise, the
unlabelled batches) is seeded from (seed, epoch, rank), so a run resumed from the checkpoint
of epoch e repeats epoch e+1 exactly as an uninterrupted run would. Multi-process training is
PyTorch DDP under ``torchrun`` (gloo on CPU); each rank takes every world-th face of the epoch's
order, so the summed gradient equals the single-process one with the same global batch.

A diverging run (a loss, gradient or weight that is NaN or infinite, e.g. from a far too high
learning rate) stops with a LandmarksError naming the epoch and step before the bad update is
applied or saved, so ``last.pt``, ``best.pt`` and ``best.safetensors`` keep the last good epoch.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from laplace_landmarks.atomic import atomic_path, atomic_torch_save, make_folder
from laplace_landmarks.cache_dirs import crop_cache_dir
from laplace_landmarks.checkpoints import (
    CHECKPOINT_VERSION,
    build_generator,
    load_checkpoint,
    load_generator,
    resolve_checkpoint,
    save_weights,
)
from laplace_landmarks.config import RunConfig
from laplace_landmarks.data.cache import CropCache, build_crop_cache
from laplace_landmarks.data.datasets import load_dataset
from laplace_landmarks.data.markups import MIRROR_PERMUTATIONS
from laplace_landmarks.data.transforms import color_jitter, hflip, random_similarity
from laplace_landmarks.decoding import output_stride, predict_crops
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.evaluation import nme_per_face
from laplace_landmarks.heatmaps import (
    render_gaussian,
    render_laplace,
    spatial_softmax,
    to_heatmap_units,
)
from laplace_landmarks.losses import (
    discriminator_loss,
    gaussian_kl_loss,
    generator_adversarial_loss,
    laplace_kl_loss,
    softargmax_loss,
)
from laplace_landmarks.models import create_model, normalize_input

KILL_ENV = "LAPLACE_LANDMARKS_TEST_KILL_AT_STEP"  # tests: SIGKILL the run at this global step


class _Diverged(Exception):
    """A non-finite loss, gradient or weight; `Trainer` turns it into a LandmarksError.

    ``step`` says where in the epoch ("3 of 10"); empty after the last step (validation)."""

    def __init__(self, reason: str, step: str = "") -> None:
        super().__init__(reason)
        self.step = step


@dataclass
class TrainData:
    train: CropCache
    val: CropCache
    unlabeled: CropCache | None


def default_cache_dir() -> Path:
    """Where crop caches go (see :func:`laplace_landmarks.cache_dirs.crop_cache_dir`)."""
    return crop_cache_dir()


def prepare_data(config: RunConfig, cache_dir: Path, progress: bool = True) -> TrainData:
    """Load the splits and build (or reuse) their crop caches.

    With ``data.self_crops_from``, the training set also holds the self crops of its faces
    (see :mod:`laplace_landmarks.self_crops`)."""
    d = config.data
    kwargs = {"root": d.root, "seed": d.split_seed, "val_fraction": d.val_fraction}
    caches, datasets = [], []
    for split, limit in ((d.train_split, d.max_train), (d.val_split, d.max_val)):
        dataset = load_dataset(d.dataset, split, max_images=limit, **kwargs)
        datasets.append(dataset)
        caches.append(
            build_crop_cache(
                dataset, cache_dir, size=d.size, extension=d.extension, progress=progress
            )
        )
    if d.self_crops_from:
        from laplace_landmarks.self_crops import concat_crop_caches, self_crop_cache

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


def _init_source(init_from: str) -> tuple[torch.nn.Module, RunConfig]:
    """The network and config of ``init_from`` (a weights file or a shipped name); an ensemble
    is refused."""
    model, config, metadata = load_generator(resolve_checkpoint(init_from))
    if "ensemble" in metadata:
        raise LandmarksError(f"train: --init-from {init_from}: an ensemble cannot be fine-tuned")
    return model, config


def init_model_config(config_dict: dict, init_from: str) -> dict:
    """``config_dict`` with its ``model`` section taken from ``init_from``'s weights.

    Fine-tuning starts from another run's network, so its architecture comes from there;
    dropout stays the recipe's (it is a training choice, not a shape)."""
    _, init_config = _init_source(init_from)
    model = {**init_config.to_dict()["model"]}
    model["dropout"] = config_dict.get("model", {}).get("dropout", model["dropout"])
    return {**config_dict, "model": model}


def load_init_weights(model: torch.nn.Module, init_from: str) -> None:
    """Copy ``init_from``'s weights into ``model``; ``point_offset`` and ``scale_factor`` reset.

    The offset corrects one training set's bias against its labels; fine-tuning on other
    labels must fit its own (``laplace-landmarks calibrate``)."""
    source, _ = _init_source(init_from)
    state = dict(source.state_dict())
    if "point_offset" in state:
        state["point_offset"] = torch.zeros_like(state["point_offset"])
    if "scale_factor" in state:  # fitted to that network's spread, not to the fine-tuned one
        state["scale_factor"] = torch.ones_like(state["scale_factor"])
    own = model.state_dict()
    mismatched = [k for k in own if k not in state or state[k].shape != own[k].shape]
    if mismatched or set(state) - set(own):
        raise LandmarksError(
            f"train: --init-from {init_from}: its network does not match the configured one "
            f"(first differing tensor: {(mismatched or sorted(set(state) - set(own)))[0]}); "
            "leave --arch/--width/--depth unset to take them from the weights"
        )
    model.load_state_dict(state)


def supervised_loss(
    logits: Tensor, points: Tensor, visibility: Tensor, config: RunConfig, stride: int = 1
) -> Tensor:
    """The configured loss; ``points`` and ``target_scale`` are in crop pixels.

    For a model with output stride s > 1 the targets move to heatmap pixels (the KL losses are
    unchanged by that common rescaling) and the softargmax distance is scaled back to crop pixels.
    """
    loss = config.loss
    target, scale = to_heatmap_units(points, stride), loss.target_scale / stride
    if loss.kind == "softargmax":
        distance = softargmax_loss(logits, target, visibility, loss.norm, loss.temperature)
        return distance * (stride**2 if loss.norm == "sql2" else stride)
    if loss.kind == "laplacekl":
        return laplace_kl_loss(logits, target, scale, visibility, loss.direction, loss.temperature)
    return gaussian_kl_loss(logits, target, scale**2, visibility, loss.direction, loss.temperature)


def discriminator_input(images: Tensor, heatmaps: Tensor) -> Tensor:
    """Image in [-1, 1] stacked with heatmaps scaled so each channel's peak is 1.

    Heatmaps coarser than the image (output stride > 1) get the image average-pooled to their size.
    """
    if images.shape[-2:] != heatmaps.shape[-2:]:
        images = F.adaptive_avg_pool2d(images, heatmaps.shape[-2:])
    peak = heatmaps.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)
    return torch.cat([images, heatmaps / peak], dim=1)


def augment(
    images: Tensor, points: Tensor, visibility: Tensor, config: RunConfig, rng: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """The improved recipe's augmentation of a uint8 batch; the identity for paper recipes."""
    d = config.data
    if d.flip:
        perm = torch.as_tensor(np.array(MIRROR_PERMUTATIONS[points.shape[1]]))
        flipped_images, flipped_points = hflip(images, points, perm)
        chosen = torch.rand(len(images), generator=rng) < 0.5
        images = torch.where(chosen[:, None, None, None], flipped_images, images)
        points = torch.where(chosen[:, None, None], flipped_points, points)
        visibility = torch.where(chosen[:, None], visibility[:, perm], visibility)
    if d.rotation_deg or d.scale or d.shift:
        images, points = random_similarity(images, points, rng, d.rotation_deg, d.scale, d.shift)
    if d.brightness or d.contrast:
        images = color_jitter(images, rng, d.brightness, d.contrast)
    return images, points, visibility


def validation_nme(model: torch.nn.Module, val: CropCache) -> tuple[float, float]:
    """Mean inter-ocular NME (%) and mean predicted scale (crop px) on the validation crops.

    Crops are similarity transforms of the images, so NME in crop pixels equals NME in image
    pixels.
    """
    mean, scale = predict_crops(model, val.images)
    errors = nme_per_face(mean.numpy(), val.points.numpy(), val.visibility.numpy())
    return float(np.nanmean(errors) * 100), float(scale.mean())


class Trainer:
    """Train one run into ``out_dir``: ``config.json``, ``metrics.csv``, ``last.pt``, ``best.pt``."""

    def __init__(
        self,
        config: RunConfig,
        out_dir: str | Path,
        *,
        resume: bool = False,
        progress: bool = True,
        cache_dir: str | Path | None = None,
        tensorboard: bool = False,
        device: str | torch.device = "cpu",
        time_limit: float | None = None,
        data: TrainData | None = None,
    ) -> None:
        self.config, self.out_dir, self.progress = config, Path(out_dir), progress
        self.rank, self.world = _distributed_setup()
        self.device = resolve_device(device)
        if self.world > 1 and self.device.type != "cpu":
            raise LandmarksError("train: multi-process (torchrun) training runs on the CPU only")
        if time_limit is not None and time_limit <= 0:
            raise LandmarksError(f"train: the time limit must be > 0 s, got {time_limit}")
        self.time_limit = time_limit
        if config.train.threads:
            torch.set_num_threads(config.train.threads)
        self.cache_dir = Path(cache_dir or config.data.cache_dir or default_cache_dir())
        make_folder(self.out_dir)
        self.writer = _tensorboard(self.out_dir) if tensorboard and self.rank == 0 else None
        if data is not None:
            self.data = data
            if config.adversarial.enabled and data.unlabeled is None:
                raise LandmarksError("data: the adversarial branch needs unlabelled faces")
        else:
            try:
                self.data = prepare_data(config, self.cache_dir, progress and self.rank == 0)
            except LandmarksError:
                raise
            except (OSError, ValueError) as exc:  # missing or unreadable data, bad split
                raise LandmarksError(f"data: {exc}") from exc
        _check_batch(len(self.data.train), config.train.batch_size, self.world)
        torch.manual_seed(config.train.seed)
        self.model = build_generator(config)
        if config.train.init_from and not (resume and (self.out_dir / "last.pt").exists()):
            load_init_weights(self.model, config.train.init_from)
        self.stride = output_stride(self.model)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay
        )
        self.memory_format = (
            torch.channels_last if config.train.channels_last else torch.contiguous_format
        )
        self.model.to(self.device, memory_format=self.memory_format)
        self.disc = self.d_optimizer = None
        if config.adversarial.enabled:
            a = config.adversarial
            self.disc = create_model(
                "patchgan",
                in_channels=3 + config.model.num_landmarks,
                base_width=a.base_width,
                noise_std=a.noise_std,
            )
            self.disc.to(self.device, memory_format=self.memory_format)
            self.d_optimizer = torch.optim.Adam(self.disc.parameters(), lr=a.lr, betas=(0.5, 0.999))
        self.start_epoch, self.best_nme, self.history = 0, math.inf, []
        self.stopped_early = False
        if resume and (self.out_dir / "last.pt").exists():
            self._restore(load_checkpoint(self.out_dir / "last.pt"))
        elif resume and self.rank == 0:
            print(f"resume: no checkpoint in {self.out_dir}; starting fresh", file=sys.stderr)
        self.g_step = self._wrap(self.model)
        self.d_step = self._wrap(self.disc) if self.disc is not None else None
        if self.rank == 0:
            (self.out_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))

    def _wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        if self.world == 1:
            return module
        return torch.nn.parallel.DistributedDataParallel(module)

    def _restore(self, payload: dict) -> None:
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.disc is not None and payload.get("disc") is not None:
            self.disc.load_state_dict(payload["disc"])
            self.d_optimizer.load_state_dict(payload["d_optimizer"])
        self.start_epoch = int(payload["epoch"])
        self.best_nme = float(payload["best_val_nme"])
        self.history = list(payload["metrics"])
        if self.rank == 0:
            print(f"resume: continuing after epoch {self.start_epoch}", file=sys.stderr)

    def fit(self) -> list[dict]:
        """Run the remaining epochs; returns the metrics history (one dict per epoch).

        With a time limit, stops after the first epoch that ends past it (``self.stopped_early``
        is then True); ``--resume`` continues from there with the same schedule.
        """
        started, self.stopped_early = time.monotonic(), False
        for epoch in range(self.start_epoch + 1, self.config.train.epochs + 1):
            try:
                row = self._epoch(epoch)
                row["val_nme"], row["val_mean_scale"] = self._validate()
            except _Diverged as exc:
                raise self._diverged_error(epoch, exc) from None
            self.history.append(row)
            if self.rank == 0:
                self._save(epoch, row)
            out_of_time = self.time_limit is not None and (
                time.monotonic() - started >= self.time_limit
            )
            if out_of_time and epoch < self.config.train.epochs:
                self.stopped_early = True
                if self.rank == 0:
                    print(
                        f"time limit: stopped after epoch {epoch}/{self.config.train.epochs}; "
                        f"--resume continues",
                        file=sys.stderr,
                    )
                break
        _barrier(self.world)
        return self.history

    def _validate(self) -> tuple[float, float]:
        """Validation NME and mean scale; raises _Diverged for non-finite weights or NME."""
        weights = [p.detach() for p in self.model.parameters()]
        self._stop_if("a weight became NaN or infinite" if not _all_finite(weights) else None)
        nme, scale = validation_nme(self.model, self.data.val)
        self._stop_if(None if math.isfinite(nme) else f"the validation NME became {nme}")
        return nme, scale

    def _stop_if(self, reason: str | None) -> None:
        """Raise _Diverged on every process when any process gives a reason (DDP stays in step)."""
        if self.world > 1:
            flag = torch.tensor([0.0 if reason is None else 1.0])
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if flag.item() and reason is None:
                reason = "another process's loss or gradient became NaN or infinite"
        if reason is not None:
            raise _Diverged(reason)

    def _checked_loss(self, compute: Callable[[], Tensor], name: str) -> Tensor:
        """``compute()``, or _Diverged when it fails on the network's output or is not finite.

        The targets are checked when the data loads, so a loss that cannot be computed (e.g. a
        heatmap collapsed to zero spread) means the network's output went bad."""
        try:
            loss = compute()
        except ValueError as exc:
            reason = f"the {name} could not be computed ({exc})"
        else:
            value = loss.item()
            reason = None if math.isfinite(value) else f"the {name} became {value}"
        self._stop_if(reason)
        return loss

    def _update(self, optimizer: torch.optim.Optimizer, loss: Tensor, name: str) -> None:
        """Backward and step, unless a gradient is not finite (then _Diverged, weights kept)."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]]
        finite = _all_finite([g for g in grads if g is not None])
        self._stop_if(None if finite else f"a gradient of the {name} became NaN or infinite")
        optimizer.step()

    def _diverged_error(self, epoch: int, exc: _Diverged) -> LandmarksError:
        """The message for a diverged run: where, why, what was kept and what to try."""
        where = f"epoch {epoch}, " + (f"step {exc.step}" if exc.step else "after its last step")
        lr = self.config.train.lr
        if self.start_epoch or self.history:
            kept = f"{self.out_dir / 'last.pt'} (epoch {epoch - 1}) is kept"
            best = self.out_dir / "best.safetensors"
            kept += f", and {best}" if best.exists() else ""
            retry = f"--resume --lr {lr / 10:g} continues from it"
        else:
            kept, retry = "no checkpoint was written", f"try --lr {lr / 10:g}"
        return LandmarksError(
            f"train: the run diverged at {where}: {exc}. Lower the learning rate (--lr "
            f"{lr:g} now; {retry}). {kept[0].upper()}{kept[1:]}."
        )

    def _set_lr(self, epoch: int) -> float:
        t = self.config.train
        lr = t.lr
        if t.schedule == "cosine":
            lr = 0.5 * t.lr * (1 + math.cos(math.pi * (epoch - 1) / t.epochs))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _batches(self, epoch: int) -> list[Tensor]:
        t = self.config.train
        order = torch.randperm(len(self.data.train), generator=_gen(t.seed, epoch, 0))
        per_rank = t.batch_size // self.world
        count = len(order) // t.batch_size  # drop the last partial batch
        if count == 0:
            raise ValueError(f"train: {len(order)} faces is fewer than one batch ({t.batch_size})")
        return [
            order[i * t.batch_size : (i + 1) * t.batch_size][self.rank :: self.world][:per_rank]
            for i in range(count)
        ]

    def _epoch(self, epoch: int) -> dict:
        cfg, data = self.config, self.data
        lr = self._set_lr(epoch)
        torch.manual_seed(_seed(cfg.train.seed, epoch, self.rank + 1))
        aug_rng = _gen(cfg.train.seed, epoch, self.rank + 101)
        unl_rng = _gen(cfg.train.seed, epoch, self.rank + 201)
        self.model.train()
        if self.disc is not None:
            self.disc.train()
        batches = self._batches(epoch)
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        start, seen = time.perf_counter(), 0
        bar = _progress(
            len(batches), f"epoch {epoch}/{cfg.train.epochs}", self.progress and self.rank == 0
        )
        kill_at = int(os.environ.get(KILL_ENV, "0"))
        for step, index in enumerate(batches):
            if kill_at and (epoch - 1) * len(batches) + step + 1 == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            images, points, vis = augment(
                data.train.images[index],
                data.train.points[index],
                data.train.visibility[index],
                cfg,
                aug_rng,
            )
            adversarial = self.disc is not None and step % self.config.adversarial.every == 0
            images, points, vis = (t.to(self.device) for t in (images, points, vis))
            inputs = normalize_input(images).contiguous(memory_format=self.memory_format)
            try:
                stats = self._step(inputs, points, vis, unl_rng, adversarial)
            except _Diverged as exc:
                if bar is not None:
                    bar.close()
                raise _Diverged(str(exc), step=f"{step + 1} of {len(batches)}") from None
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + value
                counts[key] = counts.get(key, 0) + 1
            seen += len(index) * self.world
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    loss=f"{stats['train_loss']:.3f}",
                    img_s=f"{seen / (time.perf_counter() - start):.0f}",
                )
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - start
        row = {
            "epoch": epoch,
            "lr": lr,
            "seconds": round(seconds, 2),
            "images_per_s": round(seen / seconds, 1),
        }
        row.update({k: v / counts[k] for k, v in sums.items()})
        return row

    def _step(
        self,
        images: Tensor,
        points: Tensor,
        vis: Tensor,
        unl_rng: torch.Generator,
        adversarial: bool,
    ) -> dict:
        cfg = self.config
        if not adversarial:
            loss = self._checked_loss(
                lambda: supervised_loss(self.g_step(images), points, vis, cfg, self.stride), "loss"
            )
            self._update(self.optimizer, loss, "loss")
            return {"train_loss": loss.item(), "train_sup_loss": loss.item()}
        return self._adversarial_step(images, points, vis, unl_rng)

    def _adversarial_step(
        self, images: Tensor, points: Tensor, vis: Tensor, unl_rng: torch.Generator
    ) -> dict:
        cfg, a = self.config, self.config.adversarial
        pick = torch.randint(
            len(self.data.unlabeled), (max(1, a.batch_size // self.world),), generator=unl_rng
        )
        unl = normalize_input(self.data.unlabeled.images[pick].to(self.device)).contiguous(
            memory_format=self.memory_format
        )
        stride = self.stride
        size = (images.shape[-2] // stride, images.shape[-1] // stride)
        render = render_laplace if a.heatmap == "laplace" else render_gaussian
        real_heat = render(to_heatmap_units(points, stride), cfg.loss.target_scale / stride, size)
        with torch.no_grad():
            fake_heat = spatial_softmax(self.model(unl), cfg.loss.temperature)
        # D step: real (x_l, ω(y_l)) -> 1, fake (x_u, P(G(x_u))) -> 0, in one forward
        d_in = torch.cat(
            [discriminator_input(images, real_heat), discriminator_input(unl, fake_heat)]
        )
        d_logits = self.d_step(d_in)
        real_logits, fake_logits = d_logits[: len(images)], d_logits[len(images) :]
        d_loss = self._checked_loss(
            lambda: discriminator_loss(real_logits, fake_logits), "discriminator loss"
        )
        self._update(self.d_optimizer, d_loss, "discriminator loss")
        d_acc = 0.5 * ((real_logits > 0).float().mean() + (fake_logits < 0).float().mean())
        # G step: supervised loss + λ · non-saturating adversarial loss on unlabelled faces
        logits = self.g_step(torch.cat([images, unl]))
        sup = self._checked_loss(
            lambda: supervised_loss(logits[: len(images)], points, vis, cfg, self.stride), "loss"
        )
        fake = discriminator_input(
            unl, spatial_softmax(logits[len(images) :], cfg.loss.temperature)
        )
        adv = generator_adversarial_loss(self.disc(fake))
        loss = self._checked_loss(lambda: sup + a.weight * adv, "generator loss")
        self._update(self.optimizer, loss, "generator loss")
        return {
            "train_loss": loss.item(),
            "train_sup_loss": sup.item(),
            "train_adv_g": adv.item(),
            "train_d_loss": d_loss.item(),
            "d_acc": d_acc.item(),
        }

    def _save(self, epoch: int, row: dict) -> None:
        improved = row["val_nme"] < self.best_nme
        self.best_nme = min(self.best_nme, row["val_nme"])
        payload = {
            "version": CHECKPOINT_VERSION,
            "epoch": epoch,
            "best_val_nme": self.best_nme,
            "config": self.config.to_dict(),
            "metrics": self.history,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "disc": self.disc.state_dict() if self.disc is not None else None,
            "d_optimizer": self.d_optimizer.state_dict() if self.d_optimizer else None,
        }
        payload = _to_cpu(payload)  # a checkpoint from any device resumes on any other
        atomic_torch_save(payload, self.out_dir / "last.pt")
        if improved:
            atomic_torch_save(payload, self.out_dir / "best.pt")
            save_weights(
                self.model,
                self.config,
                self.out_dir / "best.safetensors",
                {"epoch": str(epoch), "val_nme": f"{row['val_nme']:.4f}"},
            )
        _write_metrics(self.out_dir / "metrics.csv", self.history)
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch":
                    self.writer.add_scalar(key, value, epoch)
        print(
            f"epoch {epoch}: "
            + ", ".join(f"{k}={_fmt(v)}" for k, v in row.items() if k != "epoch"),
            file=sys.stderr,
        )


def _all_finite(tensors: list[Tensor]) -> bool:
    """True when every element of every tensor is finite (one synchronisation)."""
    if not tensors:
        return True
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def resolve_device(device: str | torch.device) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available); clear error otherwise."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise LandmarksError(f"train: unknown device {device!r} (cpu, cuda, cuda:N, auto)") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise LandmarksError(f"train: device {device!r} asked for, but CUDA is not available here")
    if resolved.type not in ("cpu", "cuda"):
        raise LandmarksError(f"train: device {device!r} is not supported (cpu, cuda, cuda:N, auto)")
    return resolved


def _to_cpu(value):
    """A copy of nested dicts/lists/tuples with every tensor on the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(item) for item in value)
    return value


def _check_batch(num_faces: int, batch_size: int, world: int) -> None:
    """One full batch at least, split evenly over the ranks (so DDP matches one process)."""
    if num_faces < batch_size:
        raise LandmarksError(
            f"train: {num_faces} training faces is fewer than one batch ({batch_size}); "
            "lower --batch-size"
        )
    if batch_size % world:
        raise LandmarksError(
            f"train: batch size {batch_size} must be divisible by the {world} processes"
        )


def _fmt(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _seed(seed: int, epoch: int, stream: int) -> int:
    return (seed * 1_000_003 + epoch * 10_007 + stream * 101) % (2**63)


def _gen(seed: int, epoch: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(_seed(seed, epoch, stream))


def _write_metrics(path: Path, history: list[dict]) -> None:
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=False, file=sys.stderr)


def _tensorboard(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise LandmarksError(
            "tensorboard: install the `tensorboard` package to use --tensorboard"
        ) from exc
    return SummaryWriter(str(out_dir / "tensorboard"))


def _distributed_setup() -> tuple[int, int]:
    """(rank, world size); initialises gloo when launched by torchrun with WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier(world: int) -> None:
    if world > 1 and dist.is_initialized():
        dist.barrier()
