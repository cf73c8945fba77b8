"""An ensemble of trained generators that is itself a generator: one module, one weights file.

The members' heatmaps are averaged as *probabilities*: the forward pass returns
``log(mean_i softmax_i)`` over each channel's pixels, so the decoding every path already uses
(``decode_logits``: spatial softmax, softargmax, Laplace scale) reads the mixture. That makes

- the point the mean of the members' softargmax points (the softargmax is linear in the
  probabilities), and ``point_offset`` the mean of the members' fitted offsets, so the
  ensemble's point is exactly the mean of the members' calibrated points;
- the scale the mixture's mean absolute deviation, which grows with how far the members
  disagree: model uncertainty on top of each member's own. The members' ``scale_factor`` values
  do not carry over (they were fitted to each member's own spread, not the mixture's): the
  ensemble's starts at 1 and ``calibrate`` fits it for the whole.

The ensemble is an ordinary ``nn.Module`` (``config`` and ``point_offset`` like any generator),
so ``Landmarker``, the mirror, ``calibrate`` (it refits ``point_offset`` for the whole) and ONNX
export work on it unchanged. Members must share the landmark count, the output stride and the
crop size; they may differ in width, depth or training run. A member cannot be an ensemble itself
(the weights file describes one level of members): join the members of both instead.

Example:
    >>> import torch
    >>> from laplace_landmarks.models import create_model
    >>> members = [create_model("rcn-lite", width=1 / 16) for _ in range(2)]
    >>> ensemble = EnsembleGenerator(members).eval()
    >>> ensemble(torch.zeros(1, 3, 80, 80)).shape
    torch.Size([1, 68, 40, 40])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from laplace_landmarks.models.rcn import default_fitted_buffers


class EnsembleGenerator(nn.Module):
    """``(B, 3, H, W)`` images in [-1, 1] -> log of the members' mean heatmap probabilities."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        if any(isinstance(member, EnsembleGenerator) for member in members):
            # its weights file lists one config per member: a nested ensemble has none
            raise ValueError("an ensemble member cannot be an ensemble itself; join its members")
        configs = [getattr(m, "config", None) for m in members]
        if any(c is None for c in configs):
            raise ValueError("every ensemble member must be a generator with a config")
        first = configs[0]
        for index, config in enumerate(configs[1:], start=1):
            for field in ("num_landmarks", "output_stride", "input_size", "in_channels"):
                if getattr(config, field, None) != getattr(first, field, None):
                    raise ValueError(
                        f"ensemble member {index} has {field} = {getattr(config, field, None)}, "
                        f"member 0 has {getattr(first, field, None)}"
                    )
        self.members = nn.ModuleList(members)
        self.config = first  # landmark count, output stride and input checks of member 0
        self.register_buffer("point_offset", _mean_offset(members, first.num_landmarks))
        self.register_buffer("scale_factor", torch.ones(()))
        self.register_load_state_dict_pre_hook(default_fitted_buffers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        log_probs = []
        for member in self.members:
            logits = member(images)
            b, k, h, w = logits.shape
            log_probs.append(torch.log_softmax(logits.float().reshape(b, k, h * w), dim=-1))
        mixed = torch.logsumexp(torch.stack(log_probs), dim=0) - math.log(len(log_probs))
        return mixed.reshape(b, k, h, w)


def _mean_offset(members: Sequence[nn.Module], num_landmarks: int) -> torch.Tensor:
    """The mean of the members' ``point_offset`` buffers (zero for a member without one), ``(K, 2)``.

    Members on the meta device (``checkpoints.expected_generator``) have no values to average:
    an empty meta buffer stands in, as the weights file's own ``point_offset`` replaces it."""
    offsets = [getattr(m, "point_offset", None) for m in members]
    if any(isinstance(o, torch.Tensor) and o.is_meta for o in offsets):
        return torch.empty(num_landmarks, 2, device="meta")
    zero = torch.zeros(num_landmarks, 2)
    return torch.stack([zero if o is None else o.detach().float() for o in offsets]).mean(0)
