"""SRCL: Semi-Supervised Relational Contrastive Learning, joint objective.

Purpura-Pontoniere, Terzopoulos, Wang, Imran. "Semi-Supervised Relational Contrastive
Learning", arXiv:2304.05047, 2023 (ISIC 2018 skin lesion classification).

Two modes, both supported:
(b) joint, this method with mode "joint": every term from the start.
(a) pretrain then fine-tune: pipeline "srcl-pretrain-finetune" in the registry
    (`medlabeler.engine.methods.PIPELINES`): stage 1 "simclr" (NT-Xent only) on all images,
    its `encoder_state()` loaded with `load_encoder_state`, then stage 2 this method with
    mode "finetune" (contrastive term off: Mean Teacher + relation consistency).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from medlabeler.engine.data.augment import augment, get_spec
from medlabeler.engine.semi.batchnorm import frozen_running_stats
from medlabeler.engine.semi.mean_teacher import MeanTeacher
from medlabeler.engine.ssl.nt_xent import NTXentLoss, contrastive_accuracy
from medlabeler.engine.ssl.simclr import projection_head
from medlabeler.engine.training.method import to_float_logs

MODES = ("joint", "finetune")


class SRCL(MeanTeacher):
    """SRCL (Purpura-Pontoniere et al. 2023):
    `L = CE(labeled) + lambda_c * NT-Xent(z1, z2) + lambda(t) * (L_consistency + L_rel)`.

    NT-Xent runs on two contrastive views of every image in the batch (labeled and unlabeled)
    through the student encoder and a projection head Linear(d,d)-BN-ReLU-Linear(d,128); the
    rest is `MeanTeacher` (EMA teacher, softmax-MSE consistency, relation consistency,
    sigmoid ramp over ramp_fraction of the run). Mode "finetune" sets lambda_c to 0.

    Config: mode "joint" | "finetune", contrastive_weight (lambda_c; None: 1.0 for classification,
    0.1 for segmentation), temperature 0.1, projection_dim 128, contrastive_augment "contrastive",
    plus MeanTeacher's keys.

    Why lambda_c is smaller for segmentation: the contrastive views (strong brightness, contrast
    and blur jitter) teach the encoder to ignore intensity, the very cue that separates tissues
    in an MRI. On mni-tissue-seg at native resolution (64 px crops, 300 steps, 3 seeds) SRCL's
    mean validation Dice over 4, 8 and 16 labels was 0.950 with lambda_c 1.0 and 0.960 with 0.1
    (supervised 0.962); in the small sanity ladder 1.0 fell 0.08 below supervised on seed 0
    (docs/benchmarks.md). The paper's setting (skin lesion classification) keeps 1.0.
    """

    #: lambda_c per task when the config leaves it unset (chosen on validation Dice, see above)
    CONTRASTIVE_WEIGHT = {"classification": 1.0, "segmentation": 0.1}

    name: ClassVar[str] = "srcl"

    def __init__(
        self,
        model: nn.Module,
        *,
        task: str,
        num_classes: int,
        mode: str = "joint",
        contrastive_weight: float | None = None,
        temperature: float = 0.1,
        projection_dim: int = 128,
        contrastive_augment: str = "contrastive",
        **mean_teacher: Any,
    ):
        if mode not in MODES:
            raise ValueError(f"SRCL mode must be one of {MODES}, not {mode!r}")
        super().__init__(model, task=task, num_classes=num_classes, **mean_teacher)
        self.mode = mode
        if contrastive_weight is None:
            contrastive_weight = self.CONTRASTIVE_WEIGHT[task]
        self.contrastive_weight = float(contrastive_weight) if mode == "joint" else 0.0
        d = int(model.feature_dim)
        self.head = projection_head(d, d, projection_dim)
        self.contrastive_spec = get_spec(contrastive_augment)
        self.nt_xent = NTXentLoss(temperature)

    def training_step(self, batch: dict[str, Tensor], progress: float) -> tuple[Tensor, dict[str, float]]:
        loss, logs = self.semi_supervised_terms(batch, progress)
        if self.contrastive_weight > 0:
            images = torch.cat([batch[k] for k in ("x", "u") if self._has(batch, k)])
            if images.shape[0] >= 2:
                views = torch.cat(
                    [augment(images, self.contrastive_spec, generator=self.generator) for _ in range(2)]
                )
                with frozen_running_stats(self.student):  # strong views: running stats stay labeled
                    z1, z2 = self.head(self.student.forward_features(views)).chunk(2)
                contrastive = self.nt_xent(z1, z2)
                loss = loss + self.contrastive_weight * contrastive
                logs.update(contrastive=contrastive, contrastive_acc=contrastive_accuracy(z1, z2))
        logs["loss"] = loss
        return loss, to_float_logs(logs)
