"""Pieces shared by every network: MC dropout switch, parameter count, projection head."""

from __future__ import annotations

from torch import nn

DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


def enable_mc_dropout(model: nn.Module) -> nn.Module:
    """Put `model` in eval mode but keep its dropout layers sampling (Monte Carlo dropout).

    Batch norm keeps its running statistics. Returns the model. Raises ValueError when the
    model holds no dropout with p > 0, since MC passes would then all be identical.
    """
    model.eval()
    active = 0
    for module in model.modules():
        if isinstance(module, DROPOUT_TYPES):
            module.train()
            active += int(module.p > 0)
    if active == 0:
        raise ValueError("MC dropout needs a model built with dropout > 0")
    return model


def has_dropout(model: nn.Module) -> bool:
    """True when `model` holds a dropout layer with p > 0."""
    return any(isinstance(m, DROPOUT_TYPES) and m.p > 0 for m in model.modules())


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class ProjectionHead(nn.Module):
    """MLP head for contrastive learning: Linear-BN-ReLU-Linear (SimCLR, Chen et al. 2020)."""

    def __init__(self, in_dim: int, hidden_dim: int | None = None, out_dim: int = 128,
                 batch_norm: bool = True):
        super().__init__()
        hidden_dim = hidden_dim or in_dim
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers += [nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)]
        self.net = nn.Sequential(*layers)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, features):
        return self.net(features)
