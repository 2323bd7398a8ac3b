"""GraVIS: grouped augmented views with hardness-aware attention (dermatology SSL).

Zhou, Lu, Wang, Yu. "GraVIS: Grouping Augmented Views from Independent Sources for
Dermatology Analysis", arXiv:2301.04410, 2023. The group loss is
Smooth-AP (Brown, Xie, Kalogeiton, Zisserman, "Smooth-AP: Smoothing the Path Towards
Large-Scale Image Retrieval", ECCV 2020) with each image's k views as one group.

Memory and time grow as N^3 with N = images x views per batch, so N is capped
(`max_embeddings`, default 128, e.g. 32 images x 4 views); beyond it the loss raises.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medlabeler.engine.data.augment import AugmentSpec
from medlabeler.engine.errors import TrainingError
from medlabeler.engine.ssl.simclr import ContrastivePretraining, projection_head
from medlabeler.engine.training.method import full_precision, to_float_logs


class GravisLoss(nn.Module):
    """Smooth-AP over groups of views with hardness-aware attention (GraVIS, Zhou et al. 2023).

    For `z` (n, k, D): N = n*k L2-normalised embeddings, S = Z Z^T, groups = the k views of
    one image. For query q and positive i (same group, i != q):
    `R_all(q,i) = 1 + sum_{j not in {q,i}} sigmoid((S_qj - S_qi)/anneal)`, `R_pos(q,i)` the same
    sum over j in q's group only; `L = 1 - mean_q sum_{i in P(q)} w_qi R_pos(q,i)/R_all(q,i)`.
    With hardness-aware attention (chosen: absent from the released code) `w_qi =
    softmax_{i in P(q)}(S_qi / tau_h)`, detached, so similar-looking views count more; without
    it w_qi = 1/|P(q)| (plain Smooth-AP). The query itself is left out of its ranking.
    """

    def __init__(
        self, anneal: float = 0.2, tau_h: float = 0.5, hardness: bool = True, max_embeddings: int = 128
    ):
        super().__init__()
        if anneal <= 0 or tau_h <= 0:
            raise ValueError("GraVIS anneal and tau_h must be > 0")
        self.anneal = float(anneal)
        self.tau_h = float(tau_h)
        self.hardness = bool(hardness)
        self.max_embeddings = int(max_embeddings)

    @full_precision
    def forward(self, z: Tensor) -> Tensor:
        if z.dim() != 3:
            raise ValueError(f"GraVIS expects views shaped (n_images, k_views, D), got {tuple(z.shape)}")
        n, k, d = z.shape
        if k < 2:
            raise ValueError("GraVIS needs k >= 2 views per image")
        if n < 2:
            raise ValueError("GraVIS needs at least 2 images per batch")
        big_n = n * k
        if big_n > self.max_embeddings:
            raise TrainingError(
                f"GraVIS batch has {n} images x {k} views = {big_n} embeddings, above max_embeddings="
                f"{self.max_embeddings} (memory grows as N^3): lower the unlabeled batch size to "
                f"{self.max_embeddings // k} or fewer, or raise max_embeddings"
            )
        zn = F.normalize(z.reshape(big_n, d).float(), dim=1)
        s = zn @ zn.t()
        group = torch.arange(n, device=z.device).repeat_interleave(k)
        same = group.view(-1, 1) == group.view(1, -1)
        eye = torch.eye(big_n, dtype=torch.bool, device=z.device)
        positive = same & ~eye  # P(q): [q, i]
        # sig[q, i, j] = sigmoid((S_qj - S_qi) / anneal)
        sig = torch.sigmoid((s.unsqueeze(1) - s.unsqueeze(2)) / self.anneal)
        j_not_q = ~eye.unsqueeze(1)  # [q, 1, j]
        j_not_i = ~eye.unsqueeze(0)  # [1, i, j]
        in_all = j_not_q & j_not_i
        in_pos = in_all & same.unsqueeze(1)  # j in q's group
        r_all = 1.0 + (sig * in_all).sum(dim=2)
        r_pos = 1.0 + (sig * in_pos).sum(dim=2)
        ratio = r_pos / r_all
        if self.hardness:
            weights = torch.softmax((s / self.tau_h).masked_fill(~positive, float("-inf")), dim=1).detach()
        else:
            weights = positive.float() / positive.sum(dim=1, keepdim=True)
        ap = (weights * ratio).masked_fill(~positive, 0.0).sum(dim=1)
        return 1.0 - ap.mean()


class GraVIS(ContrastivePretraining):
    """GraVIS pretraining (Zhou et al. 2023): k views per image grouped by Smooth-AP + attention.

    Config: views 4, anneal 0.2, tau_h 0.5, hardness True, max_embeddings 128 (images x views
    per batch; O(N^3) memory, so the unlabeled batch must be <= max_embeddings // views),
    projection_dim 128 (head Linear(d,d)-BN-ReLU-Linear), augment "gravis" (random resized crop
    0.2-1, rotation 10, colour jitter and grayscale 0.2 for RGB, blur, flips, cutout), seed None.
    """

    name: ClassVar[str] = "gravis"

    def __init__(
        self,
        model: nn.Module,
        *,
        task: str,
        num_classes: int = 0,
        views: int = 4,
        anneal: float = 0.2,
        tau_h: float = 0.5,
        hardness: bool = True,
        max_embeddings: int = 128,
        projection_dim: int = 128,
        augment: str | AugmentSpec = "gravis",
        seed: int | None = None,
    ):
        if views < 2:
            raise ValueError(f"GraVIS needs views >= 2, got {views}")
        d = int(model.feature_dim)
        super().__init__(
            model, projection_head(d, d, projection_dim), task=task, augment_spec=augment, seed=seed
        )
        self.n_views = int(views)
        self.loss_fn = GravisLoss(anneal, tau_h, hardness, max_embeddings)

    @property
    def max_unlabeled_batch(self) -> int:
        """The largest unlabeled batch the N^3 cap allows."""
        return self.loss_fn.max_embeddings // self.n_views

    def training_step(self, batch: dict[str, Tensor], progress: float) -> tuple[Tensor, dict[str, float]]:
        self._require(batch, "u", method=self.name)
        u = batch["u"]
        if u.shape[0] * self.n_views > self.loss_fn.max_embeddings:
            raise TrainingError(
                f"GraVIS: unlabeled batch {u.shape[0]} x {self.n_views} views exceeds max_embeddings="
                f"{self.loss_fn.max_embeddings}; use an unlabeled batch of at most {self.max_unlabeled_batch}"
            )
        b = u.shape[0]
        z = self.embed(self.views(u, self.n_views))  # (k*B, D) view-major
        z = z.view(self.n_views, b, -1).transpose(0, 1)  # (B, k, D)
        loss = self.loss_fn(z)
        return loss, to_float_logs({"loss": loss})
