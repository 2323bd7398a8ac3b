"""Cross teaching between two different segmentation networks (S4MI's semi-supervised method).

Luo, Hu, Song, Wang, Zhang, Zhang. "Semi-Supervised Medical Image Segmentation via Cross
Teaching between CNN and Transformer", MIDL 2022; benchmarked by the S4MI pipeline
("Self-Supervision and Semi-Supervision for Medical Imaging").
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from medlabeler.engine.data.augment import augment, get_spec
from medlabeler.engine.semi.batchnorm import labeled_then_unlabeled
from medlabeler.engine.semi.dice import soft_dice_loss
from medlabeler.engine.semi.ramps import sigmoid_rampup
from medlabeler.engine.semi.supervised import accuracy, supervised_loss
from medlabeler.engine.training.method import Method, to_float_logs


def cross_teaching_terms(logits_a: Tensor, logits_b: Tensor) -> tuple[Tensor, Tensor]:
    """Soft Dice of each network against the other's detached argmax on unlabeled images.

    Returns (loss for network a taught by b, loss for network b taught by a); no gradient flows
    into the teaching network.
    """
    teach_by_b = logits_b.detach().argmax(dim=1)
    teach_by_a = logits_a.detach().argmax(dim=1)
    return soft_dice_loss(logits_a, teach_by_b), soft_dice_loss(logits_b, teach_by_a)


class CrossTeaching(Method):
    """Cross teaching (Luo et al., MIDL 2022) of two segmentation networks of different design.

    `L = sup_a + sup_b + w(t) * (Dice(p_a, argmax p_b) + Dice(p_b, argmax p_a))` with
    sup = 0.5 * (CE + soft Dice) on labeled images and w(t) = unlabeled_weight *
    exp(-5 (1 - t/T)^2), T = ramp_fraction of the run. Both networks see the same weak view.

    Config: unlabeled_weight 0.1, ramp_fraction 0.3, arch_a "unet", arch_b "unet-alt"
    (both from model_factory), augment "weak", predict_with "a" | "b", seed None.
    """

    name: ClassVar[str] = "cross-teaching"
    kind: ClassVar[str] = "train"
    tasks: ClassVar[tuple[str, ...]] = ("segmentation",)
    uses_labels: ClassVar[bool] = True
    uses_unlabeled: ClassVar[bool] = True
    FACTORY_DEFAULTS: ClassVar[dict[str, Any]] = {"arch_a": "unet", "arch_b": "unet-alt"}

    def __init__(
        self,
        net_a: nn.Module,
        net_b: nn.Module,
        *,
        task: str,
        num_classes: int,
        unlabeled_weight: float = 0.1,
        ramp_fraction: float = 0.3,
        augment: str = "weak",
        predict_with: str = "a",
        seed: int | None = None,
    ):
        super().__init__(task)
        if predict_with not in ("a", "b"):
            raise ValueError(f"predict_with must be 'a' or 'b', not {predict_with!r}")
        self.net_a = net_a
        self.net_b = net_b
        self.num_classes = num_classes
        self.unlabeled_weight = float(unlabeled_weight)
        self.ramp_fraction = float(ramp_fraction)
        self.spec = get_spec(augment)
        self.predict_with = predict_with
        self.generator = self._generator(seed)

    @classmethod
    def from_config(cls, *, task, model_factory, num_classes, in_channels, config) -> "CrossTeaching":
        cfg = cls.resolve_config(config)
        net_a = model_factory(cfg.pop("arch_a"))
        net_b = model_factory(cfg.pop("arch_b"))
        return cls(net_a, net_b, task=task, num_classes=num_classes, **cfg)

    def training_step(self, batch: dict[str, Tensor], progress: float) -> tuple[Tensor, dict[str, float]]:
        g = self.generator
        inputs: list[Tensor] = []
        n_labeled = 0
        y = None
        if self._has(batch, "x"):
            self._require(batch, "y", method=self.name)
            x, y = augment(batch["x"], self.spec, batch["y"], generator=g)
            inputs.append(x)
            n_labeled = x.shape[0]
        if self._has(batch, "u"):
            inputs.append(augment(batch["u"], self.spec, generator=g))
        if not inputs:
            self._require(batch, "x", method=self.name)
        images = torch.cat(inputs)
        # labeled and unlabeled views in separate passes (semi.batchnorm)
        logits_a = labeled_then_unlabeled(self.net_a, self.net_a, images, n_labeled)
        logits_b = labeled_then_unlabeled(self.net_b, self.net_b, images, n_labeled)
        loss = logits_a.new_zeros(())
        logs: dict[str, Any] = {}
        if n_labeled:
            sup_a, _ = supervised_loss(logits_a[:n_labeled], y, self.task, progress)
            sup_b, _ = supervised_loss(logits_b[:n_labeled], y, self.task, progress)
            loss = loss + sup_a + sup_b
            logs.update(sup_a=sup_a, sup_b=sup_b, acc=accuracy(logits_a[:n_labeled], y))
        if images.shape[0] > n_labeled:
            unsup_a, unsup_b = cross_teaching_terms(logits_a[n_labeled:], logits_b[n_labeled:])
            weight = self.unlabeled_weight * sigmoid_rampup(progress, self.ramp_fraction)
            loss = loss + weight * (unsup_a + unsup_b)
            logs.update(unsup_a=unsup_a, unsup_b=unsup_b, unsup_weight=weight)
        logs["loss"] = loss
        return loss, to_float_logs(logs)

    def predictor(self) -> nn.Module:
        return self.net_a if self.predict_with == "a" else self.net_b

    def load_encoder_state(self, state: dict[str, Tensor]) -> None:
        """Pretrained weights go to the predicting network (the other has a different design)."""
        self.predictor().encoder.load_state_dict(state)
        self._remember_pretrained(self.predictor().encoder)
