"""Sample relation consistency between student and teacher.

Liu, Yu, Heng, et al. "Semi-supervised Medical Image Classification with Relation-driven
Self-ensembling Model" (SRC-MT), IEEE Transactions on Medical Imaging 2020; used as the
relation term of SRCL (Purpura-Pontoniere, Terzopoulos, Wang, Imran, "Semi-Supervised
Relational Contrastive Learning", arXiv:2304.05047, 2023).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from medlabeler.engine.training.method import full_precision


def relation_matrix(features: Tensor) -> Tensor:
    """G = F F^T over the batch's pooled features (B, D), each row L2-normalised: (B, B)."""
    f = features.float().flatten(1)
    return F.normalize(f @ f.t(), dim=1)


class RelationConsistencyLoss(nn.Module):
    """SRC-MT relation consistency (Liu et al., IEEE TMI 2020).

    `L = sum_ij (G_student - G_teacher)_ij^2 / B`, G = F F^T with rows L2-normalised; the
    teacher's matrix is detached (no gradient reaches the teacher).
    """

    @full_precision
    def forward(self, student_features: Tensor, teacher_features: Tensor) -> Tensor:
        if student_features.shape != teacher_features.shape:
            raise ValueError(
                f"relation consistency needs equal feature shapes, got {tuple(student_features.shape)} "
                f"and {tuple(teacher_features.shape)}"
            )
        g_student = relation_matrix(student_features)
        g_teacher = relation_matrix(teacher_features.detach())
        return ((g_student - g_teacher) ** 2).sum() / student_features.shape[0]
