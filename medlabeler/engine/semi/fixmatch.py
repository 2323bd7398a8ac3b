"""FixMatch: confidence-thresholded pseudo-labels from a weak view train the strong view.

Sohn, Berthelot, Li, Zhang, Carlini, Cubuk, Kurakin, Zhang, Raffel. "FixMatch: Simplifying
Semi-Supervised Learning with Consistency and Confidence", NeurIPS 2020. Applied per image
(classification) and per pixel (segmentation).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medlabeler.engine.data.augment import augment, get_spec
from medlabeler.engine.semi.supervised import accuracy, supervised_loss
from medlabeler.engine.training.method import Method, full_precision, to_float_logs

IGNORE = -1


def pseudo_labels(weak_logits: Tensor, threshold: float = 0.95) -> Tensor:
    """argmax of the weak-view prediction where its max probability >= threshold, else IGNORE.

    Works per image ((B, C) -> (B,)) and per pixel ((B, C, H, W) -> (B, H, W)); no gradient.
    """
    with torch.no_grad():
        probs = F.softmax(weak_logits.detach().float(), dim=1)
        confidence, labels = probs.max(dim=1)
        return torch.where(confidence >= threshold, labels, torch.full_like(labels, IGNORE))


class FixMatchLoss(nn.Module):
    """FixMatch unlabeled loss (Sohn et al., NeurIPS 2020).

    `L_u = (1 / |all|) sum_{confident} CE(strong_logits, pseudo_label)`: cross-entropy on the
    strong view against pseudo-labels (IGNORE = not confident), divided by the number of ALL
    images (or pixels), confident or not, as in the paper.
    """

    @full_precision
    def forward(self, strong_logits: Tensor, targets: Tensor) -> Tensor:
        ce = F.cross_entropy(strong_logits.float(), targets.long(), ignore_index=IGNORE, reduction="none")
        return ce.sum() / max(targets.numel(), 1)


class FixMatch(Method):
    """FixMatch (Sohn et al., NeurIPS 2020) for classification and, pixelwise, segmentation.

    Labeled: supervised loss on a weak view (CE; segmentation 0.5*(CE+Dice)). Unlabeled:
    pseudo-labels where the weak view's max probability >= threshold, CE on a strong view,
    weight unlabeled_weight. For segmentation the strong view is made from the weak view and
    its geometry is applied to the pseudo-label map too, so pixels correspond.

    Config: threshold 0.95, unlabeled_weight 1.0, mu 7 (advisory unlabeled:labeled batch ratio
    for the loop, attribute `unlabeled_ratio`; use less on CPU), weak "weak", strong "strong",
    seed None.
    """

    name: ClassVar[str] = "fixmatch"
    kind: ClassVar[str] = "train"
    uses_labels: ClassVar[bool] = True
    uses_unlabeled: ClassVar[bool] = True

    def __init__(
        self,
        model: nn.Module,
        *,
        task: str,
        num_classes: int,
        threshold: float = 0.95,
        unlabeled_weight: float = 1.0,
        mu: float = 7,
        weak: str = "weak",
        strong: str = "strong",
        seed: int | None = None,
    ):
        super().__init__(task)
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"FixMatch threshold must be in (0, 1], got {threshold}")
        self.model = model
        self.num_classes = num_classes
        self.threshold = float(threshold)
        self.unlabeled_weight = float(unlabeled_weight)
        self.unlabeled_ratio = float(mu)
        self.weak_spec = get_spec(weak)
        self.strong_spec = get_spec(strong)
        self.generator = self._generator(seed)
        self.unlabeled_loss = FixMatchLoss()

    def training_step(self, batch: dict[str, Tensor], progress: float) -> tuple[Tensor, dict[str, float]]:
        g = self.generator
        seg = self.task == "segmentation"
        logs: dict[str, Any] = {}
        inputs: list[Tensor] = []
        n_labeled = 0
        y = None
        if self._has(batch, "x"):
            self._require(batch, "y", method=self.name)
            x, y = batch["x"], batch["y"]
            if seg:
                x, y = augment(x, self.weak_spec, y, generator=g)
            else:
                x = augment(x, self.weak_spec, generator=g)
            inputs.append(x)
            n_labeled = x.shape[0]
        targets = None
        if self._has(batch, "u"):
            u = batch["u"]
            u_weak = augment(u, self.weak_spec, generator=g)
            with torch.no_grad():
                targets = pseudo_labels(self.model(u_weak), self.threshold)
            if seg:
                u_strong, targets = augment(u_weak, self.strong_spec, targets, generator=g)
            else:
                u_strong = augment(u, self.strong_spec, generator=g)
            inputs.append(u_strong)
        if not inputs:
            self._require(batch, "x", method=self.name)
        logits = self.model(torch.cat(inputs))
        loss = logits.new_zeros(())
        if n_labeled:
            sup, parts = supervised_loss(logits[:n_labeled], y, self.task)
            loss = loss + sup
            logs.update(sup=sup, **parts, acc=accuracy(logits[:n_labeled], y))
        if targets is not None:
            unsup = self.unlabeled_loss(logits[n_labeled:], targets)
            loss = loss + self.unlabeled_weight * unsup
            logs.update(unsup=unsup, mask_rate=(targets != IGNORE).float().mean())
        logs["loss"] = loss
        return loss, to_float_logs(logs)

    def predictor(self) -> nn.Module:
        return self.model
