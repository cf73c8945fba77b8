"""The trainer: supervised and adversarial steps, checkpoints, resume and metrics.

Every random draw of an epoch (the order of faces, augmentation, dropout, D's noise, the
unlabelled batches) is seeded from (seed, epoch, rank), so a run resumed from the checkpoint
of epoch e repeats epoch e+1 exactly as an uninterrupted run would. Multi-process training is
PyTorch DDP under ``torchrun`` (gloo on the CPU, NCCL on GPUs; see :mod:`laplace_landmarks.distributed`); each rank
takes every world-th face of the epoch's order, so the summed gradient equals the single-process
one with the same global batch.

A diverging run (a loss, gradient or weight that is NaN or infinite, e.g. from a far too high
learning rate) stops with a LandmarksError naming the epoch and step before the bad update is
applied or saved, so ``last.pt``, ``best.pt`` and ``best.safetensors`` keep the last good epoch.

The run's data comes from :mod:`laplace_landmarks.data.prepare`, its augmentation from
:func:`~laplace_landmarks.data.transforms.augment`, its losses from
:mod:`laplace_landmarks.losses`, fine-tuning from :mod:`laplace_landmarks.fine_tuning` and its
records from :mod:`laplace_landmarks.run_log`.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from laplace_landmarks.atomic import atomic_torch_save, make_folder
from laplace_landmarks.checkpoints import (
    CHECKPOINT_VERSION,
    build_generator,
    load_checkpoint,
    save_weights,
)
from laplace_landmarks.data.cache import CropCache
from laplace_landmarks.data.prepare import TrainData, default_cache_dir, prepare_data
from laplace_landmarks.data.transforms import augment, faceless_images
from laplace_landmarks.decoding import output_stride, predict_crops
from laplace_landmarks.distributed import (
    any_process,
    barrier,
    check_batch,
    distributed_setup,
    rank_device,
    resolve_device,
)
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.evaluation import nme_per_face
from laplace_landmarks.fine_tuning import load_init_weights
from laplace_landmarks.heatmaps import (
    render_gaussian,
    render_laplace,
    spatial_softmax,
    to_heatmap_units,
)
from laplace_landmarks.losses import (
    discriminator_input,
    discriminator_loss,
    generator_adversarial_loss,
    junk_loss,
    supervised_loss,
)
from laplace_landmarks.models import create_model, normalize_input
from laplace_landmarks.run_config import RunConfig
from laplace_landmarks.run_log import RunLog, progress_bar

__all__ = ["Trainer", "default_cache_dir", "resolve_device", "validation_nme"]

#: Called with the run's global step (1-based, counted over all epochs) before that step runs.
StepCallback = Callable[[int], None]


class _Diverged(Exception):
    """A non-finite loss, gradient or weight; `Trainer` turns it into a LandmarksError.

    ``step`` says where in the epoch ("3 of 10"); empty after the last step (validation)."""

    def __init__(self, reason: str, step: str = "") -> None:
        super().__init__(reason)
        self.step = step


def validation_nme(model: torch.nn.Module, val: CropCache) -> tuple[float, float]:
    """Mean inter-ocular NME (%) and mean predicted scale (crop px) on the validation crops.

    Crops are similarity transforms of the images, so NME in crop pixels equals NME in image
    pixels.
    """
    mean, scale = predict_crops(model, val.images)
    errors = nme_per_face(mean.numpy(), val.points.numpy(), val.visibility.numpy())
    return float(np.nanmean(errors) * 100), float(scale.mean())


class Trainer:
    """Train one run into ``out_dir``: ``config.json``, ``metrics.csv``, ``last.pt``, ``best.pt``
    and ``best.safetensors``.

    Args:
        config: the resolved run config.
        out_dir: the run's folder (created).
        resume: continue from ``out_dir/last.pt`` when it exists.
        progress: show a progress bar per epoch (rank 0).
        cache_dir: where crop caches go; default ``config.data.cache_dir``, else
            :func:`default_cache_dir`.
        tensorboard: also write TensorBoard scalars (needs the ``tensorboard`` package).
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (see :func:`resolve_device`).
        time_limit: seconds; :meth:`fit` stops after the first epoch that ends past it.
        data: the run's crops, prepared already (default: :func:`prepare_data` of ``config``).
        on_step: called with the global step (1-based, over all epochs) before each training
            step; tests use it to interrupt a run at a given step.
    """

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
        on_step: StepCallback | None = None,
    ) -> None:
        self.config, self.out_dir, self.progress = config, Path(out_dir), progress
        self.on_step = on_step
        self.device = resolve_device(device)
        self.rank, self.world = distributed_setup(self.device)
        self.device = rank_device(self.device, self.world)
        if time_limit is not None and time_limit <= 0:
            raise LandmarksError(f"train: the time limit must be > 0 s, got {time_limit}")
        self.time_limit = time_limit
        if config.train.threads:
            torch.set_num_threads(config.train.threads)
        self.cache_dir = Path(cache_dir or config.data.cache_dir or default_cache_dir())
        make_folder(self.out_dir)
        self.log = RunLog(self.out_dir, tensorboard=tensorboard and self.rank == 0)
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
        check_batch(len(self.data.train), config.train.batch_size, self.world)
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
        if self.device.type == "cuda":
            return torch.nn.parallel.DistributedDataParallel(module, device_ids=[self.device.index])
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
        barrier(self.world)
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
        if any_process(reason is not None, self.world) and reason is None:
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
        junk_rng = _gen(cfg.train.seed, epoch, self.rank + 301)
        self.model.train()
        if self.disc is not None:
            self.disc.train()
        batches = self._batches(epoch)
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        start, seen = time.perf_counter(), 0
        bar = progress_bar(
            len(batches), f"epoch {epoch}/{cfg.train.epochs}", self.progress and self.rank == 0
        )
        for step, index in enumerate(batches):
            if self.on_step is not None:
                self.on_step((epoch - 1) * len(batches) + step + 1)
            images, points, vis = augment(
                data.train.images[index],
                data.train.points[index],
                data.train.visibility[index],
                cfg.data,
                aug_rng,
            )
            adversarial = self.disc is not None and step % self.config.adversarial.every == 0
            if cfg.loss.junk_weight > 0:  # faceless crops after the faces, for the junk term
                junk = faceless_images(images, max(1, len(images) // 4), junk_rng)
                images = torch.cat([images, junk])
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
            logits = self.g_step(images)
            sup = self._checked_loss(
                lambda: supervised_loss(logits[: len(points)], points, vis, cfg.loss, self.stride),
                "loss",
            )
            loss, stats = self._with_junk(sup, logits[len(points) :])
            self._update(self.optimizer, loss, "loss")
            return {"train_loss": loss.item(), "train_sup_loss": sup.item(), **stats}
        return self._adversarial_step(images, points, vis, unl_rng)

    def _with_junk(self, loss: Tensor, junk_logits: Tensor) -> tuple[Tensor, dict]:
        """``loss`` plus the weighted junk term on the faceless crops' logits (none: unchanged)."""
        if not len(junk_logits):
            return loss, {}
        cfg = self.config.loss
        junk = self._checked_loss(lambda: junk_loss(junk_logits, cfg.temperature), "junk loss")
        return loss + cfg.junk_weight * junk, {"train_junk": junk.item()}

    def _adversarial_step(
        self, images: Tensor, points: Tensor, vis: Tensor, unl_rng: torch.Generator
    ) -> dict:
        cfg, a = self.config, self.config.adversarial
        images, junk_images = images[: len(points)], images[len(points) :]
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
        n, m = len(images), len(images) + len(unl)
        logits = self.g_step(torch.cat([images, unl, junk_images]))
        sup = self._checked_loss(
            lambda: supervised_loss(logits[:n], points, vis, cfg.loss, self.stride), "loss"
        )
        fake = discriminator_input(unl, spatial_softmax(logits[n:m], cfg.loss.temperature))
        adv = generator_adversarial_loss(self.disc(fake))
        loss = self._checked_loss(lambda: sup + a.weight * adv, "generator loss")
        loss, junk_stats = self._with_junk(loss, logits[m:])
        self._update(self.optimizer, loss, "generator loss")
        return {
            "train_loss": loss.item(),
            "train_sup_loss": sup.item(),
            "train_adv_g": adv.item(),
            "train_d_loss": d_loss.item(),
            "d_acc": d_acc.item(),
            **junk_stats,
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
        payload = to_cpu(payload)  # a checkpoint from any device resumes on any other
        atomic_torch_save(payload, self.out_dir / "last.pt")
        if improved:
            atomic_torch_save(payload, self.out_dir / "best.pt")
            save_weights(
                self.model,
                self.config,
                self.out_dir / "best.safetensors",
                {"epoch": str(epoch), "val_nme": f"{row['val_nme']:.4f}"},
            )
        self.log.record(epoch, row, self.history)


def _all_finite(tensors: list[Tensor]) -> bool:
    """True when every element of every tensor is finite (one synchronisation)."""
    if not tensors:
        return True
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def to_cpu(value):
    """A copy of nested dicts/lists/tuples with every tensor on the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: to_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(item) for item in value)
    return value


def _seed(seed: int, epoch: int, stream: int) -> int:
    return (seed * 1_000_003 + epoch * 10_007 + stream * 101) % (2**63)


def _gen(seed: int, epoch: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(_seed(seed, epoch, stream))
