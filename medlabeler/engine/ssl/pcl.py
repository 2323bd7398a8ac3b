"""PCL: positional contrastive learning for volumetric medical image segmentation.

Zeng et al. "Positional Contrastive Learning for Volumetric Medical Image Segmentation",
MICCAI 2021.

Slices whose relative positions along the slice axis are closer than `theta` are positives of
each other, whatever volume they come from. Positions come from the batch (`u_pos`, in (0, 1],
e.g. (i+1)/n_slices, or a normalised patient z from DICOM ImagePositionPatient: the data layer
chooses the source). Slices of 2D images carry NaN positions: their only positive is their own
second view, and a batch made only of 2D images is trained with SimCLR's NT-Xent instead.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medlabeler.engine.data.augment import AugmentSpec
from medlabeler.engine.ssl.nt_xent import NTXentLoss, contrastive_accuracy
from medlabeler.engine.ssl.simclr import ContrastivePretraining, projection_head
from medlabeler.engine.training.method import full_precision, to_float_logs


def check_theta(theta: float, n_slices: int) -> None:
    """Raise ValueError when theta <= 1/n_slices: then no neighbouring slice is ever a positive.

    Positions are (i+1)/n_slices, so neighbours differ by 1/n_slices and are positives only if
    1/n_slices < theta. (The released code's 0.05 fails this for volumes under 20 slices.)
    """
    if n_slices < 1:
        raise ValueError(f"n_slices must be >= 1, got {n_slices}")
    if theta <= 1.0 / n_slices:
        raise ValueError(
            f"PCL theta={theta} is not larger than 1/n_slices={1.0 / n_slices:.4g}: each positive set "
            f"would hold only the partner view. Use theta > {1.0 / n_slices:.4g} "
            f"(e.g. {max(0.1, 2.0 / n_slices):.3g})."
        )


def positive_mask(positions: Tensor, theta: float) -> Tensor:
    """(2B, 2B) bool: b is a positive of a when |p_a - p_b| < theta, b != a (NaN: partner only)."""
    p = torch.cat([positions, positions]).float()
    n = p.shape[0]
    b = n // 2
    close = (p.view(-1, 1) - p.view(1, -1)).abs() < theta  # NaN compares False
    partner = torch.zeros(n, n, dtype=torch.bool, device=p.device)
    idx = torch.arange(n, device=p.device)
    partner[idx, (idx + b) % n] = True
    eye = torch.eye(n, dtype=torch.bool, device=p.device)
    return (close | partner) & ~eye


class PositionalContrastiveLoss(nn.Module):
    """PCL loss (Zeng et al., MICCAI 2021), supervised-contrastive form over positions.

    `L = -(tau / base_tau) * mean_a [ mean_{b in P(a)} log softmax_{c != a}(s_ac / tau)[b] ]`
    with s the cosine similarity of the 2B embeddings, P(a) every other embedding b whose
    position is within `theta` of a's (a's own second view always included). If every P(a)
    in a batch holds only the partner view, PCL degenerates to SimCLR for that batch: after
    WARN_AFTER such batches in a row a RuntimeWarning says so once (theta is then too small for
    the data, see `check_theta`). One such batch alone can be chance: the 5 slices of an epoch's
    short last batch all lie more than 0.1 apart about once in 13 epochs.
    """

    #: partner-only batches in a row before the loss warns that theta is too small
    WARN_AFTER = 20

    def __init__(self, temperature: float = 0.1, theta: float = 0.1, base_temperature: float = 0.07):
        super().__init__()
        if temperature <= 0 or base_temperature <= 0:
            raise ValueError("PCL temperatures must be > 0")
        if not 0 < theta <= 1:
            raise ValueError(f"PCL theta must be in (0, 1], got {theta}")
        self.temperature = float(temperature)
        self.theta = float(theta)
        self.base_temperature = float(base_temperature)
        self._warned = False
        self._partner_only_run = 0
        self.last_mean_positives = float("nan")

    @full_precision
    def forward(self, z1: Tensor, z2: Tensor, positions: Tensor) -> Tensor:
        if z1.shape != z2.shape or z1.dim() != 2:
            raise ValueError(
                f"PCL expects two (B, D) views of one shape, got {tuple(z1.shape)}, {tuple(z2.shape)}"
            )
        if positions.shape != (z1.shape[0],):
            raise ValueError(f"PCL positions must have shape ({z1.shape[0]},), got {tuple(positions.shape)}")
        if z1.shape[0] < 2:
            raise ValueError("PCL needs at least 2 slices per batch")
        z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
        n = z.shape[0]
        eye = torch.eye(n, dtype=torch.bool, device=z.device)
        logits = (z @ z.t() / self.temperature).masked_fill(eye, float("-inf"))
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        pos = positive_mask(positions.to(z.device), self.theta)
        n_pos = pos.sum(dim=1)
        self.last_mean_positives = float(n_pos.float().mean())
        partner_only = bool(torch.isfinite(positions).any()) and bool((n_pos == 1).all())
        self._partner_only_run = self._partner_only_run + 1 if partner_only else 0
        if not self._warned and self._partner_only_run >= self.WARN_AFTER:
            self._warned = True
            warnings.warn(
                f"PCL theta={self.theta} is too small for these slice positions: in {self.WARN_AFTER} "
                "batches in a row every positive set held only the partner view, so PCL reduces to "
                "SimCLR. Scale theta above 1/n_slices or use larger batches.",
                RuntimeWarning,
                stacklevel=2,
            )
        mean_log_prob_pos = log_prob.masked_fill(~pos, 0.0).sum(dim=1) / n_pos
        return -(self.temperature / self.base_temperature) * mean_log_prob_pos.mean()


class PCL(ContrastivePretraining):
    """PCL pretraining (Zeng et al., MICCAI 2021) of the (U-Net) encoder on slices of volumes.

    Positions from `batch["u_pos"]` (missing or all NaN: 2D images -> SimCLR's NT-Xent with the
    same temperature). Config: temperature 0.1, theta 0.1, base_temperature 0.07, n_slices None
    (if given, theta is checked against 1/n_slices at construction), hidden_dim None (= feature
    dim; head GAP -> Linear -> ReLU -> Linear(projection_dim)), projection_dim 512, augment
    "pcl" (the paper's views: flips, rotation, scale 0.7-1.3, elastic, random shift), seed None.

    Likely, these views teach the pooled features to ignore a slice's size, a strong cue of where
    it lies in one scan: on mni-tissue-seg the frozen encoder probed below a random one on seed 0
    (slice-position R² 0.825 vs 0.848; 0.924 and 0.917 on seeds 1 and 2). `augment="weak"` fixes
    the probe on every seed (0.916 / 0.939 / 0.938) but was not made the default: fine-tuning from
    it fell 0.163 below supervised in the small sanity ladder (32 px, 120 steps, seed 0) where the
    paper's views gained 0.010 (docs/benchmarks.md).
    """

    name: ClassVar[str] = "pcl"

    def __init__(
        self,
        model: nn.Module,
        *,
        task: str,
        num_classes: int = 0,
        temperature: float = 0.1,
        theta: float = 0.1,
        base_temperature: float = 0.07,
        n_slices: int | None = None,
        hidden_dim: int | None = None,
        projection_dim: int = 512,
        augment: str | AugmentSpec = "pcl",
        seed: int | None = None,
    ):
        if n_slices is not None:
            check_theta(theta, int(n_slices))
        d = int(model.feature_dim)
        head = projection_head(d, int(hidden_dim or d), projection_dim, batch_norm=False)
        super().__init__(model, head, task=task, augment_spec=augment, seed=seed)
        self.loss_fn = PositionalContrastiveLoss(temperature, theta, base_temperature)
        self.fallback = NTXentLoss(temperature)

    def training_step(self, batch: dict[str, Tensor], progress: float) -> tuple[Tensor, dict[str, float]]:
        self._require(batch, "u", method=self.name)
        u = batch["u"]
        pos = batch.get("u_pos")
        if pos is None:
            pos = torch.full((u.shape[0],), math.nan, device=u.device)
        z1, z2 = self.embed(self.views(u, 2)).chunk(2)
        logs: dict[str, Any] = {}
        if bool(torch.isfinite(pos).any()):
            loss = self.loss_fn(z1, z2, pos.float())
            logs["mean_positives"] = self.loss_fn.last_mean_positives
        else:
            loss = self.fallback(z1, z2)
            logs["mean_positives"] = 1.0
        logs.update(loss=loss, contrastive_acc=contrastive_accuracy(z1, z2))
        return loss, to_float_logs(logs)
