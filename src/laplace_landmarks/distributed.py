"""Where a training run executes: its device and, under ``torchrun``, its process group.

Multi-process training is PyTorch DDP launched by ``torchrun``: gloo on the CPU, NCCL on GPUs
(one GPU per process, ``cuda:$LOCAL_RANK``). Each rank takes every world-th face of a batch, so the summed gradient equals one process's with the same
global batch (:func:`check_batch` makes the batch split evenly).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from laplace_landmarks.errors import LandmarksError


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


def distributed_setup(device: torch.device | None = None) -> tuple[int, int]:
    """(rank, world size); when launched by torchrun with WORLD_SIZE > 1, initialises the
    process group: NCCL for a CUDA ``device``, gloo otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(process_group_backend(device))
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def process_group_backend(device: torch.device | None) -> str:
    """``"nccl"`` for CUDA, ``"gloo"`` for the CPU (the collective library each device needs)."""
    return "nccl" if device is not None and device.type == "cuda" else "gloo"


def rank_device(device: torch.device, world: int) -> torch.device:
    """The device of this process: under torchrun on CUDA, GPU ``$LOCAL_RANK`` (one per process;
    a refusal when there are fewer GPUs than processes on this node); else ``device``."""
    if world == 1 or device.type != "cuda":
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if local >= torch.cuda.device_count():
        raise LandmarksError(
            f"train: process {local} on this node has no GPU of its own "
            f"({torch.cuda.device_count()} visible); start at most that many processes per node"
        )
    torch.cuda.set_device(local)
    return torch.device("cuda", local)


def barrier(world: int) -> None:
    """Wait for every process (nothing to wait for in a single-process run)."""
    if world > 1 and dist.is_initialized():
        dist.barrier()


def any_process(flag: bool, world: int) -> bool:
    """Whether ``flag`` is True on any process (every process gets the same answer)."""
    if world == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=_collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def check_batch(num_faces: int, batch_size: int, world: int) -> None:
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


def _collective_device() -> torch.device:
    """Where a tensor for a collective must live: the current GPU under NCCL, else the CPU."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
