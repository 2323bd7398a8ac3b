"""SimCLR pretraining of an encoder with two contrastive views per image.

Chen, Kornblith, Norouzi, Hinton. "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from medlabeler.engine.data.augment import WEAK, AugmentSpec, augment, get_spec
from medlabeler.engine.ssl.nt_xent import NTXentLoss, contrastive_accuracy
from medlabeler.engine.training.method import Method, to_float_logs


def projection_head(in_dim: int, hidden_dim: int, out_dim: int, *, batch_norm: bool = True) -> nn.Sequential:
    """Linear(in, hidden) [-BN] -ReLU- Linear(hidden, out): the MLP between features and loss."""
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(hidden_dim))
    layers += [nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)]
    return nn.Sequential(*layers)


class ContrastivePretraining(Method):
    """Shared plumbing of the SSL methods: a backbone, a projection head, view augmentation.

    `set_augment_strength(s)` (s in [0, 1]) blends the views from weak (s=0) to the method's
    own preset (s=1, the default); a curriculum ramps it up over a stage.
    """

    kind: ClassVar[str] = "pretrain"
    uses_labels: ClassVar[bool] = False
    uses_unlabeled: ClassVar[bool] = True

    def __init__(
        self,
        model: nn.Module,
        head: nn.Module,
        *,
        task: str,
        augment_spec: str | AugmentSpec,
        seed: int | None,
    ):
        super().__init__(task)
        self.model = model
        self.head = head
        self.spec = get_spec(augment_spec)
        self.strength = 1.0
        self.generator = self._generator(seed)

    def set_augment_strength(self, strength: float) -> None:
        self.strength = float(min(max(strength, 0.0), 1.0))

    def view_spec(self) -> AugmentSpec:
        return self.spec if self.strength >= 1.0 else WEAK.blend(self.spec, self.strength)

    def views(self, u: Tensor, k: int) -> Tensor:
        """k independently augmented views stacked view-major: (k*B, C, H, W)."""
        spec = self.view_spec()
        return torch.cat([augment(u, spec, generator=self.generator) for _ in range(k)], dim=0)

    def embed(self, views: Tensor) -> Tensor:
        return self.head(self.model.forward_features(views))

    def predictor(self) -> nn.Module:
        return self.model


class SimCLR(ContrastivePretraining):
    """SimCLR (Chen et al., ICML 2020): NT-Xent between two augmented views of each image.

    Config: temperature 0.1 (0.5 is worth a sweep for small batches), projection_dim 128
    (head Linear(d,d)-BN-ReLU-Linear(d,128)), augment "contrastive" (random resized crop
    0.2-1, flips, rotation, intensity; colour only for RGB), seed None.
    """

    name: ClassVar[str] = "simclr"

    def __init__(
        self,
        model: nn.Module,
        *,
        task: str,
        num_classes: int = 0,
        temperature: float = 0.1,
        projection_dim: int = 128,
        augment: str | AugmentSpec = "contrastive",
        seed: int | None = None,
    ):
        d = int(model.feature_dim)
        super().__init__(
            model, projection_head(d, d, projection_dim), task=task, augment_spec=augment, seed=seed
        )
        self.loss_fn = NTXentLoss(temperature)

    def training_step(self, batch: dict[str, Tensor], progress: float) -> tuple[Tensor, dict[str, float]]:
        self._require(batch, "u", method=self.name)
        u = batch["u"]
        z1, z2 = self.embed(self.views(u, 2)).chunk(2)
        loss = self.loss_fn(z1, z2)
        return loss, to_float_logs({"loss": loss, "contrastive_acc": contrastive_accuracy(z1, z2)})
