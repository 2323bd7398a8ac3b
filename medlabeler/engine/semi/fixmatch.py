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

from medlabeler.engine.data.augment import augment, cutmix, get_spec
from medlabeler.engine.semi.dice import soft_dice_loss
from medlabeler.engine.semi.batchnorm import frozen_running_stats
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


def pass_shares(targets: Tensor, num_classes: int) -> dict[str, Tensor]:
    """Logs of the pseudo-labels: `mask_rate` (share of images/pixels passing the threshold) and
    `pass_<c>` (share of all images/pixels pseudo-labelled class c), so a majority class that
    swallows the pseudo-labels shows in the training log."""
    n = max(targets.numel(), 1)
    logs = {"mask_rate": (targets != IGNORE).float().sum() / n}
    for c in range(num_classes):
        logs[f"pass_{c}"] = (targets == c).float().sum() / n
    return logs


def pseudo_label_accuracy(targets: Tensor, reference: Tensor, num_classes: int) -> dict[str, float]:
    """Per class c: share of the pixels pseudo-labelled c whose reference label is c (NaN when
    none passed), and `pseudo_acc` over all passing pixels. For benchmarks and tests, which know
    the reference; training itself never does."""
    passed = targets != IGNORE
    out = {"pseudo_acc": float((targets[passed] == reference[passed]).float().mean()) if passed.any() else float("nan")}
    for c in range(num_classes):
        sel = targets == c
        out[f"pseudo_acc_{c}"] = float((reference[sel] == c).float().mean()) if sel.any() else float("nan")
    return out


class FixMatchLoss(nn.Module):
    """FixMatch unlabeled loss (Sohn et al., NeurIPS 2020).

    `L_u = (1 / |all|) sum_{confident} CE(strong_logits, pseudo_label)`: cross-entropy on the
    strong view against pseudo-labels (IGNORE = not confident), divided by the number of ALL
    images (or pixels), confident or not, as in the paper.

    With `dice` (segmentation), the pseudo-labels are trained as the labels are (`supervised_loss`):
    `0.5 * (L_u + soft Dice over the foreground labels on the confident pixels)`.
    """

    def __init__(self, dice: bool = False):
        super().__init__()
        self.dice = dice

    @full_precision
    def forward(self, strong_logits: Tensor, targets: Tensor) -> Tensor:
        ce = F.cross_entropy(strong_logits.float(), targets.long(), ignore_index=IGNORE, reduction="none")
        ce = ce.sum() / max(targets.numel(), 1)
        if not self.dice:
            return ce
        dice = soft_dice_loss(strong_logits, targets, include_background=False, ignore_index=IGNORE)
        return 0.5 * (ce + dice)


class FixMatch(Method):
    """FixMatch (Sohn et al., NeurIPS 2020) for classification and, pixelwise, segmentation.

    Labeled: supervised loss on a weak view (CE; segmentation 0.5*(CE+Dice)). Unlabeled:
    pseudo-labels where the weak view's max probability >= threshold, CE on a strong view,
    weight unlabeled_weight. For segmentation the strong view is made from the weak view and
    its geometry is applied to the pseudo-label map too, so pixels correspond.

    Segmentation takes its strong perturbation from CutMix (French et al., BMVC 2020): boxes of
    other unlabeled images and their pseudo-labels pasted in, with intensity jitter kept mild
    ("strong-segmentation"). The paper's heavy intensity jitter teaches a segmentation network to
    ignore intensity, which is what tells tissues apart (mni-tissue-seg, 64 px crops, 3 seeds:
    0.015 and 0.018 below supervised at 4 and 8 labels with it, above it at 4, 8 and 16 with
    CutMix; docs/benchmarks.md, "FixMatch for segmentation").

    Config: threshold (None: per task, THRESHOLD), unlabeled_weight (None: per task, UNLABELED_WEIGHT), mu 7 (the paper's
    unlabeled:labeled batch ratio, kept as `unlabeled_ratio` for configs that name it; the training
    loop does not read it: its run config's `unlabeled_batch_size` sets the unlabeled batch),
    weak "weak", strong (None: per task, STRONG), cutmix_p (None: per task, CUTMIX_P;
    segmentation only), unlabeled_dice (None: per task, UNLABELED_DICE; segmentation only), seed None.
    """

    #: strong view and CutMix probability per task when the config leaves them unset (chosen on
    #: validation Dice, see above)
    STRONG = {"classification": "strong", "segmentation": "strong-segmentation"}
    CUTMIX_P = {"classification": 0.0, "segmentation": 1.0}
    #: weight of the unlabeled loss per task when unset: segmentation halves it (at the app's 128 px
    #: crops weight 1 pulled validation Dice below supervised with 4 labels, 0.948 vs 0.956, and 0.5
    #: gave 0.958, 3 seeds; perhaps because a crop holds much confident background, not checked).
    #: Volumes take 0.5 as well, not measured.
    UNLABELED_WEIGHT = {"classification": 1.0, "segmentation": 0.5}
    #: pseudo-label confidence threshold per task when unset: the paper's 0.95, chosen for segmentation
    #: on mean validation Dice over 4, 8 and 16 labels at the app's 128 px crops (3 seeds, 300 steps;
    #: docs/benchmarks.md, "The threshold at the app's resolution"): mni-tissue-seg 0.9581 at 0.95 and
    #: 0.9570 at 0.8, mni-tissue3-seg (a CSF label of 1.2% of the pixels) 0.8968 and 0.8908. At the
    #: benchmark's 64 px crops 0.8 had been the better of the two on both sets (0.9665 / 0.8910
    #: against 0.9650 / 0.8881), and was the default for a day. Volumes take it too, not measured.
    THRESHOLD = {"classification": 0.95, "segmentation": 0.95}
    #: whether the pseudo-labels get the supervised loss's Dice half too (segmentation only). Tried for
    #: the CSF label FixMatch loses at 16 labels on mni-tissue3-seg (128 px, 3 seeds, threshold 0.95):
    #: mean validation Dice over 4, 8 and 16 labels 0.8920 against 0.8968 without it, and still 0.011
    #: below supervised on test at 16 labels (docs/benchmarks.md, "A Dice term on the pseudo-labels").
    UNLABELED_DICE = {"classification": False, "segmentation": False}

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
        threshold: float | None = None,
        unlabeled_weight: float | None = None,
        mu: float = 7,
        weak: str = "weak",
        strong: str | None = None,
        cutmix_p: float | None = None,
        unlabeled_dice: bool | None = None,
        seed: int | None = None,
    ):
        super().__init__(task)
        threshold = self.THRESHOLD[task] if threshold is None else threshold
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"FixMatch threshold must be in (0, 1], got {threshold}")
        self.model = model
        self.num_classes = num_classes
        self.threshold = float(threshold)
        self.unlabeled_weight = float(self.UNLABELED_WEIGHT[task] if unlabeled_weight is None else unlabeled_weight)
        self.unlabeled_ratio = float(mu)
        self.weak_spec = get_spec(weak)
        self.strong = self.STRONG[task] if strong is None else strong
        self.strong_spec = get_spec(self.strong)
        if cutmix_p is None:
            cutmix_p = self.CUTMIX_P[task]
        if not 0.0 <= cutmix_p <= 1.0:
            raise ValueError(f"FixMatch cutmix_p must be in [0, 1], got {cutmix_p}")
        if cutmix_p > 0 and task != "segmentation":
            raise ValueError("FixMatch cutmix_p mixes pixels with their pseudo-labels: segmentation only")
        self.cutmix_p = float(cutmix_p)
        self.generator = self._generator(seed)
        self.unlabeled_dice = self.UNLABELED_DICE[task] if unlabeled_dice is None else bool(unlabeled_dice)
        if self.unlabeled_dice and task != "segmentation":
            raise ValueError("FixMatch unlabeled_dice is a loss over pixels: segmentation only")
        self.unlabeled_loss = FixMatchLoss(dice=self.unlabeled_dice)

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
        u_strong = None
        if self._has(batch, "u"):
            u = batch["u"]
            u_weak = augment(u, self.weak_spec, generator=g)
            with torch.no_grad(), frozen_running_stats(self.model):
                targets = pseudo_labels(self.model(u_weak), self.threshold)
            if seg:
                u_strong, targets = augment(u_weak, self.strong_spec, targets, generator=g)
                u_strong, targets = cutmix(u_strong, targets, p=self.cutmix_p, generator=g)
            else:
                u_strong = augment(u, self.strong_spec, generator=g)
        if not inputs and u_strong is None:
            self._require(batch, "x", method=self.name)
        loss = u_strong.new_zeros(()) if u_strong is not None else inputs[0].new_zeros(())
        if n_labeled:
            # labeled and unlabeled views go through separately: only the labeled (weak) views
            # update the BatchNorm running statistics that evaluation uses (see semi.batchnorm)
            logits = self.model(inputs[0])
            sup, parts = supervised_loss(logits, y, self.task, progress)
            loss = loss + sup
            logs.update(sup=sup, **parts, acc=accuracy(logits, y))
        if targets is not None:
            with frozen_running_stats(self.model):
                strong_logits = self.model(u_strong)
            unsup = self.unlabeled_loss(strong_logits, targets)
            loss = loss + self.unlabeled_weight * unsup
            logs.update(unsup=unsup, **pass_shares(targets, self.num_classes))
        logs["loss"] = loss
        return loss, to_float_logs(logs)

    def predictor(self) -> nn.Module:
        return self.model
