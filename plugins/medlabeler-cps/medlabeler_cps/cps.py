"""Cross pseudo supervision: two networks of one design, each taught by the other's hard labels.

Chen, Yuan, Zeng, Wang. "Semi-Supervised Semantic Segmentation with Cross Pseudo Supervision",
CVPR 2021. Two networks with the same architecture but different initialisations see the same
image; the one-hot argmax of each supervises the other with cross-entropy, on labeled and
unlabeled images alike, so the two stay different and correct each other:

    L = L_sup(a) + L_sup(b) + lambda * w(t) * (CE(p_a, argmax p_b) + CE(p_b, argmax p_a))

Differences from the paper, said here so nobody has to read the code to find them: L_sup is
medlabeler's supervised loss (0.5 x (CE + soft Dice) for segmentation, CE for classification)
rather than plain CE; w(t) is the sigmoid ramp-up medlabeler's other semi-supervised methods use
(exp(-5 (1 - t/T)^2), T = ramp_fraction of the run; 0 switches it off), which small labeled sets
need; CutMix is not applied. The networks come from medlabeler's model factory, so the method
works for 2D segmentation and classification alike.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medlabeler.engine.data.augment import augment, get_spec
from medlabeler.engine.semi.ramps import sigmoid_rampup
from medlabeler.engine.semi.supervised import accuracy, supervised_loss
from medlabeler.engine.training.method import Method, full_precision, to_float_logs


def cps_terms(logits_a: Tensor, logits_b: Tensor) -> tuple[Tensor, Tensor]:
    """(CE of a against argmax b, CE of b against argmax a), each averaged over images and pixels.

    The pseudo labels are detached one-hot argmaxes: no gradient flows into the teaching network.
    """
    return (F.cross_entropy(logits_a, logits_b.detach().argmax(dim=1)),
            F.cross_entropy(logits_b, logits_a.detach().argmax(dim=1)))


class CrossPseudoSupervisionLoss(nn.Module):
    """The CPS term CE(p_a, argmax p_b) + CE(p_b, argmax p_a), computed in float32."""

    @full_precision
    def forward(self, logits_a: Tensor, logits_b: Tensor) -> Tensor:
        a_taught, b_taught = cps_terms(logits_a, logits_b)
        return a_taught + b_taught


class CrossPseudoSupervision(Method):
    """Cross pseudo supervision (Chen et al., CVPR 2021) of two identically built networks.

    Config: cps_weight 1.5 (the paper's lambda for VOC), ramp_fraction 0.3, augment "weak",
    predict_with "a" | "b", seed None (augmentation and the second network's initialisation).
    """

    name: ClassVar[str] = "cross-pseudo-supervision"
    kind: ClassVar[str] = "train"
    tasks: ClassVar[tuple[str, ...]] = ("segmentation", "classification")
    uses_labels: ClassVar[bool] = True
    uses_unlabeled: ClassVar[bool] = True

    def __init__(self, net_a: nn.Module, net_b: nn.Module, *, task: str, num_classes: int, cps_weight: float = 1.5,
                 ramp_fraction: float = 0.3, augment: str = "weak", predict_with: str = "a", seed: int | None = None):
        super().__init__(task)
        if predict_with not in ("a", "b"):
            raise ValueError(f"predict_with must be 'a' or 'b', not {predict_with!r}")
        self.net_a, self.net_b = net_a, net_b
        self.num_classes = num_classes
        self.cps_weight = float(cps_weight)
        self.ramp_fraction = float(ramp_fraction)
        self.spec = get_spec(augment)
        self.predict_with = predict_with
        self.generator = self._generator(seed)
        self.cps_loss = CrossPseudoSupervisionLoss()

    @classmethod
    def from_config(cls, *, task, model_factory, num_classes, in_channels, config) -> "CrossPseudoSupervision":
        cfg = cls.resolve_config(config)
        net_a = model_factory()
        net_b = model_factory()
        reinitialise(net_b, seed=cfg["seed"])  # CPS needs two different starts of one design
        return cls(net_a, net_b, task=task, num_classes=num_classes, **cfg)

    def training_step(self, batch: dict[str, Tensor], progress: float) -> tuple[Tensor, dict[str, float]]:
        images, y, n_labeled = self._view(batch)
        logits_a, logits_b = self.net_a(images), self.net_b(images)
        loss = logits_a.new_zeros(())
        logs: dict[str, Any] = {}
        if n_labeled:
            sup_a, _ = supervised_loss(logits_a[:n_labeled], y, self.task, progress)
            sup_b, _ = supervised_loss(logits_b[:n_labeled], y, self.task, progress)
            loss = loss + sup_a + sup_b
            logs.update(sup_a=sup_a, sup_b=sup_b, acc=accuracy(logits_a[:n_labeled], y))
        weight = self.cps_weight * sigmoid_rampup(progress, self.ramp_fraction)
        cps = self.cps_loss(logits_a, logits_b)  # on labeled and unlabeled images, as in the paper
        loss = loss + weight * cps
        logs.update(cps=cps, cps_weight=weight, loss=loss)
        return loss, to_float_logs(logs)

    def _view(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor | None, int]:
        """One weak view of the labeled then the unlabeled images (both networks see it)."""
        parts, y, n_labeled = [], None, 0
        if self._has(batch, "x"):
            self._require(batch, "y", method=self.name)
            if self.task == "segmentation":
                x, y = augment(batch["x"], self.spec, batch["y"], generator=self.generator)
            else:
                x, y = augment(batch["x"], self.spec, generator=self.generator), batch["y"]
            parts.append(x)
            n_labeled = x.shape[0]
        if self._has(batch, "u"):
            parts.append(augment(batch["u"], self.spec, generator=self.generator))
        if not parts:
            self._require(batch, "x", method=self.name)
        return torch.cat(parts), y, n_labeled

    def predictor(self) -> nn.Module:
        return self.net_a if self.predict_with == "a" else self.net_b

    def load_encoder_state(self, state: dict[str, Tensor]) -> None:
        """A pretrained encoder starts both networks (the paper starts both backbones from the same
        ImageNet weights); their decoders still start apart."""
        self.net_a.encoder.load_state_dict(state)
        self.net_b.encoder.load_state_dict(state)


@torch.no_grad()
def reinitialise(model: nn.Module, seed: int | None) -> None:
    """Draw fresh weights for every layer that can reset itself (seeded when ``seed`` is given)."""
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(int(seed) + 1)
        for module in model.modules():
            if hasattr(module, "reset_parameters") and module is not model:
                module.reset_parameters()
