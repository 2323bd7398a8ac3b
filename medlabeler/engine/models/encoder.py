"""The `Encoder` interface: the part of a network that SSL pretrains and fine-tuning reuses."""

from __future__ import annotations

import torch
from torch import nn


class Encoder(nn.Module):
    """Base of every encoder.

    `forward(x)` returns pooled features (B, feature_dim); `feature_maps(x)` returns the
    spatial maps the rest of the network uses (a list, shallow to deep). Its `state_dict()` is
    exactly what a pretraining run saves and `model.encoder.load_state_dict(...)` restores.
    """

    feature_dim: int
    spatial_dims: int = 2

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        deepest = self.feature_maps(x)[-1]
        return deepest.flatten(2).mean(-1)
