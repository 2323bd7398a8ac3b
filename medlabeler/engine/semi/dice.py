"""Soft Dice loss on softmax probabilities.

Milletari, Navab, Ahmadi, "V-Net: Fully Convolutional Neural Networks for Volumetric Medical
Image Segmentation", 3DV 2016.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from medlabeler.engine.training.method import full_precision


def soft_dice_loss(
    logits: Tensor,
    target: Tensor,
    *,
    smooth: float = 1e-5,
    include_background: bool = True,
    ignore_index: int | None = None,
) -> Tensor:
    """1 - mean over classes of (2 sum p t + s) / (sum p + sum t + s).

    `logits` (B, C, H, W), `target` (B, H, W) integer labels in 0..C-1. Sums run over the
    whole batch and all pixels (per class), which stays stable on slices with no foreground.
    Pixels whose target is `ignore_index` (e.g. pseudo-labels not confident enough) are left out of
    every sum, their predictions included.
    """
    num_classes = logits.shape[1]
    if target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"Dice target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}"
        )
    probs = F.softmax(logits.float(), dim=1)
    if ignore_index is not None:
        keep = (target != ignore_index).unsqueeze(1)
        target = target.masked_fill(~keep.squeeze(1), 0)
        probs = probs * keep
    onehot = F.one_hot(target.long(), num_classes).movedim(-1, 1).float()
    if ignore_index is not None:
        onehot = onehot * keep
    dims = (0, *range(2, logits.dim()))
    intersection = (probs * onehot).sum(dims)
    denominator = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * intersection + smooth) / (denominator + smooth)
    if not include_background:
        dice = dice[1:]
    return 1.0 - dice.mean()


class SoftDiceLoss(nn.Module):
    """Soft Dice loss (Milletari et al., 3DV 2016) over softmax probabilities and label maps."""

    def __init__(self, smooth: float = 1e-5, include_background: bool = True):
        super().__init__()
        self.smooth = smooth
        self.include_background = include_background

    @full_precision
    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return soft_dice_loss(logits, target, smooth=self.smooth, include_background=self.include_background)
