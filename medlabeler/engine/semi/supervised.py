"""Supervised baseline: cross-entropy (classification) or 0.5 * (CE + soft Dice) (segmentation).

The reference every SSL/semi-supervised pipeline is compared with (S4MI: Self-Supervision and
Semi-Supervision for Medical Imaging, pipeline 1). Weak augmentation, applied to image and mask
identically.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from medlabeler.engine.data.augment import augment, get_spec
from medlabeler.engine.semi.dice import soft_dice_loss
from medlabeler.engine.training.method import Method, to_float_logs


def supervised_loss(logits: Tensor, y: Tensor, task: str) -> tuple[Tensor, dict[str, Tensor]]:
    """CE for classification; 0.5 * (CE + soft Dice over the foreground labels) for segmentation,
    as nnU-Net (Isensee et al., Nature Methods 2021) does. Returns (loss, parts).

    Background stays out of the Dice: with it, the near-perfect background term dominated the
    mean, and on mni-tissue-seg (8-channel U-Net, full labels, seed 2) training settled on never
    predicting white matter (validation Dice 0.32; Dice over the foreground: 0.88; CE alone 0.84).
    Background is still learned through the CE."""
    ce = F.cross_entropy(logits.float(), y.long())
    if task == "classification":
        return ce, {"ce": ce.detach()}
    dice = soft_dice_loss(logits, y, include_background=False)
    return 0.5 * (ce + dice), {"ce": ce.detach(), "dice_loss": dice.detach()}


def accuracy(logits: Tensor, y: Tensor) -> Tensor:
    """Fraction of correct argmax predictions (per image or per pixel)."""
    return (logits.detach().argmax(dim=1) == y).float().mean()


class Supervised(Method):
    """Supervised training on labeled images only (baseline; S4MI pipeline 1).

    Config: augment (preset name, default "weak"), seed (augmentation RNG; None = global).
    """

    name: ClassVar[str] = "supervised"
    kind: ClassVar[str] = "train"
    uses_labels: ClassVar[bool] = True
    uses_unlabeled: ClassVar[bool] = False

    def __init__(
        self, model: nn.Module, *, task: str, num_classes: int, augment: str = "weak", seed: int | None = None
    ):
        super().__init__(task)
        self.model = model
        self.num_classes = num_classes
        self.spec = get_spec(augment)
        self.generator = self._generator(seed)

    def training_step(self, batch: dict[str, Tensor], progress: float) -> tuple[Tensor, dict[str, float]]:
        self._require(batch, "x", "y", method=self.name)
        x, y = batch["x"], batch["y"]
        if self.task == "segmentation":
            x, y = augment(x, self.spec, y, generator=self.generator)
        else:
            x = augment(x, self.spec, generator=self.generator)
        logits = self.model(x)
        loss, parts = supervised_loss(logits, y, self.task)
        return loss, to_float_logs({"loss": loss, **parts, "acc": accuracy(logits, y)})

    def predictor(self) -> nn.Module:
        return self.model
