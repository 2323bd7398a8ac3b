"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR.

Chen, Kornblith, Norouzi, Hinton. "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from medlabeler.engine.training.method import full_precision


def cosine_logits(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """(2B, 2B) cosine similarities of the stacked views divided by tau, self-pairs at -inf."""
    z = F.normalize(torch.cat([z1, z2], dim=0).float(), dim=1)
    logits = z @ z.t() / temperature
    eye = torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
    return logits.masked_fill(eye, float("-inf"))


class NTXentLoss(nn.Module):
    """SimCLR's NT-Xent over two views (Chen et al., ICML 2020).

    For the 2B L2-normalised embeddings of `z1` (B, D) and `z2` (B, D), the positive of each
    anchor is its other view and the negatives are the other 2B-2 embeddings:
    `L = mean_a CE(sim(a, .)/tau, partner(a))`, self-similarity masked out.
    """

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"NT-Xent temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    @full_precision
    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        if z1.shape != z2.shape or z1.dim() != 2:
            raise ValueError(
                f"NT-Xent expects two (B, D) views of one shape, got {tuple(z1.shape)}, {tuple(z2.shape)}"
            )
        b = z1.shape[0]
        if b < 2:
            raise ValueError("NT-Xent needs at least 2 images per batch (negatives come from the batch)")
        logits = cosine_logits(z1, z2, self.temperature)
        partner = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(logits.device)
        return F.cross_entropy(logits, partner)


def contrastive_accuracy(z1: Tensor, z2: Tensor) -> float:
    """Fraction of anchors whose most similar other embedding is their partner view."""
    with torch.no_grad():
        logits = cosine_logits(z1, z2, 1.0)
        b = z1.shape[0]
        partner = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(logits.device)
        return float((logits.argmax(dim=1) == partner).float().mean())
