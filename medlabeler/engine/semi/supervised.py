"""Supervised baseline: cross-entropy (classification) or 0.5 * (class-balanced CE + soft Dice)
(segmentation), the class balance fading into the plain CE over a run.

The reference every SSL/semi-supervised pipeline is compared with (S4MI: Self-Supervision and
Semi-Supervision for Medical Imaging, pipeline 1). Weak augmentation, applied to image and mask
identically.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medlabeler.engine.data.augment import augment, get_spec
from medlabeler.engine.semi.dice import soft_dice_loss
from medlabeler.engine.training.method import Method, to_float_logs


def class_weights(y: Tensor, num_classes: int, power: float = 1.0) -> Tensor:
    """Per class, the inverse of its share of the pixels in `y` raised to `power`, scaled so the
    classes present average 1 (0 for a class absent from `y`, which no pixel then asks for).
    `power` 1 balances the classes fully, 0 weights every pixel alike (the plain CE).

    Median frequency balancing (Eigen and Fergus, "Predicting Depth, Surface Normals and Semantic
    Labels with a Common Multi-Scale Convolutional Architecture", ICCV 2015), per batch: the scale
    cancels in the weighted mean of `balanced_cross_entropy`, so only the ratios count, and every
    label present pulls on the logits as much as the background does."""
    counts = torch.bincount(y.reshape(-1).long(), minlength=num_classes)[:num_classes].float()
    present = counts > 0
    weights = torch.zeros(num_classes, device=y.device)
    weights[present] = (counts.sum() / counts[present]) ** power
    return weights / weights[present].mean()


#: training progress (0..1) at which the class balance has faded into the plain CE (see
#: `balance_power`)
BALANCE_UNTIL = 1.0


def balance_power(progress: float) -> float:
    """The class weights' power at `progress` (0..1) of a run: 1 (balanced) at the start, falling
    linearly to 0 (the plain CE) at BALANCE_UNTIL.

    The balance is what gets a small label learned at all; once it is, the plain CE places the
    boundaries where the pixels say (full weights shift them towards the rarer label) and FixMatch's
    pseudo-labels follow. Chosen on validation Dice, 3 seeds, 64 px crops, 300 steps
    (docs/benchmarks.md, "Fading the class balance"): on mni-tissue-seg with 16 labels, full
    weights throughout gave supervised 0.9591 and FixMatch 0.9655 (0.010 below supervised on test
    with the benchmark's nested label sets), fading by the end 0.9633 and 0.9685; on
    mni-tissue3-seg with 8 labels 0.8880 / 0.8937 against 0.8992 / 0.9023, CSF learned on every
    seed. Fading by half the run lost CSF again on one seed of 3.
    """
    return max(0.0, 1.0 - float(progress) / BALANCE_UNTIL)


def balanced_cross_entropy(logits: Tensor, y: Tensor, power: float = 1.0) -> Tensor:
    """Pixel cross-entropy weighted by `class_weights(y, C, power)` of the batch's labels (a
    weighted mean, as `F.cross_entropy` with `weight` takes it)."""
    weight = class_weights(y, logits.shape[1], power)
    return F.cross_entropy(logits.float(), y.long(), weight=weight)


def supervised_loss(logits: Tensor, y: Tensor, task: str, progress: float = 0.0) -> tuple[Tensor, dict[str, Tensor]]:
    """CE for classification; 0.5 * (class-balanced CE + soft Dice over the foreground labels) for
    segmentation, the halves nnU-Net (Isensee et al., Nature Methods 2021) adds. Returns (loss, parts).
    `progress` (0..1, the run's) fades the class balance (`balance_power`).

    The CE is class-balanced (`balanced_cross_entropy`): with a plain mean, a label of 1% of the
    pixels gets 1% of the CE's pull, and the Dice's pull on its logits fades as its probability
    nears 0. On mni-tissue3-seg (CSF 1.2% of the pixels) 300 steps with 8 labels at 64 px crops
    then never predicted CSF on seed 0 (its Dice 0, validation Dice 0.603; with every slice
    labeled, 400 steps at 128 px, still 0); weighting each label by the inverse square root of its
    share left 1 seed of 3 there, by the inverse share none (validation 0.879-0.902). On mni-tissue-seg the inverse share kept the
    mean validation Dice over 4, 8 and 16 labels within 0.001 of the plain CE's (docs/benchmarks.md,
    "A small label").

    Background stays out of the Dice: with it, the near-perfect background term dominated the
    mean, and on mni-tissue-seg (8-channel U-Net, full labels, seed 2) training settled on never
    predicting white matter (validation Dice 0.32; Dice over the foreground: 0.88; CE alone 0.84).
    Background is still learned through the CE."""
    if task == "classification":
        ce = F.cross_entropy(logits.float(), y.long())
        return ce, {"ce": ce.detach()}
    ce = balanced_cross_entropy(logits, y, balance_power(progress))
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
        loss, parts = supervised_loss(logits, y, self.task, progress)
        return loss, to_float_logs({"loss": loss, **parts, "acc": accuracy(logits, y)})

    def predictor(self) -> nn.Module:
        return self.model
