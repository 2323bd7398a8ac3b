"""Curricular SSL pretraining: an ordered list of stages over data pools (a runner spec).

After "Curricular SSL pretraining for pneumonia recognition on chest X-ray images of Covid-19
patients" (SEEDS.md paper 003): SSL pretraining in stages, e.g. a large generic unlabeled pool,
then the project's own unlabeled images, then supervised fine-tuning (chosen, see METHODS.md).
A stage ends when its epoch loss plateaus (relative improvement < 1 % over 3 epochs) or at its
epoch cap. Within a stage the augmentation strength ramps from easy (weak views) to the
method's full views, so easy pairs come first.

This module is the spec and the pure logic; the training loop runs it: for each stage it builds
`build_method(stage.method, config=stage.config)`, loads the previous stage's
`encoder_state()`, and per epoch calls `method.set_augment_strength(stage.augment_strength(e))`
(SSL methods) and ends the stage when `stage.should_end(epoch_losses)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

POOLS: tuple[str, ...] = ("generic", "unlabeled", "labeled", "all")


def stage_should_end(
    losses: Sequence[float],
    patience: int = 3,
    min_rel_improvement: float = 0.01,
    max_epochs: int | None = None,
) -> bool:
    """True when the epoch cap is reached or the loss has plateaued.

    Plateau: the best loss of the last `patience` epochs improves on the best loss before them
    by less than `min_rel_improvement` (relative to that earlier best). Needs more than
    `patience` epochs to judge. Non-finite losses raise ValueError (the run has diverged).
    """
    if patience < 1:
        raise ValueError(f"patience must be >= 1, got {patience}")
    values = [float(v) for v in losses]
    if any(not math.isfinite(v) for v in values):
        raise ValueError("epoch losses contain NaN or infinity: the stage diverged")
    if max_epochs is not None and len(values) >= max_epochs:
        return True
    if len(values) <= patience:
        return False
    before = min(values[:-patience])
    recent = min(values[-patience:])
    relative = (before - recent) / max(abs(before), 1e-12)
    return relative < min_rel_improvement


def augment_strength_ramp(epoch: int, n_epochs: int, start: float = 0.25, end: float = 1.0) -> float:
    """Linear augmentation strength over a stage: `start` at epoch 0, `end` at epoch n_epochs-1."""
    if n_epochs <= 1:
        return float(end)
    t = min(max(epoch / (n_epochs - 1), 0.0), 1.0)
    return float(start + (end - start) * t)


@dataclass(frozen=True)
class CurriculumStage:
    """One stage: a method trained on one data pool until plateau or `max_epochs`.

    method: registry name ("simclr", "pcl", "gravis" for SSL; a train method such as
        "supervised" for the final fine-tuning stage).
    pool: "generic" (an external unlabeled folder, `source`), "unlabeled" (the project's
        unlabeled samples), "labeled", or "all" (every project sample).
    augment_start / augment_end / ramp_epochs: augmentation strength (0 = weak views, 1 = the
        method's full views) ramps linearly from start to end over the first `ramp_epochs`
        epochs (None = over `max_epochs`).
    config: the method's config dict for `build_method`.
    """

    name: str
    method: str
    pool: str = "unlabeled"
    source: str | None = None
    max_epochs: int = 20
    patience: int = 3
    min_rel_improvement: float = 0.01
    augment_start: float = 0.25
    augment_end: float = 1.0
    ramp_epochs: int | None = None
    config: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise ValueError(f"stage {self.name!r}: pool must be one of {POOLS}, not {self.pool!r}")
        if self.pool == "generic" and not self.source:
            raise ValueError(f"stage {self.name!r}: a generic pool needs `source` (a folder of images)")
        if self.max_epochs < 1 or self.patience < 1:
            raise ValueError(f"stage {self.name!r}: max_epochs and patience must be >= 1")
        for value in (self.augment_start, self.augment_end):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"stage {self.name!r}: augmentation strengths must lie in [0, 1]")

    def should_end(self, losses: Sequence[float]) -> bool:
        return stage_should_end(losses, self.patience, self.min_rel_improvement, self.max_epochs)

    def augment_strength(self, epoch: int) -> float:
        n = self.ramp_epochs if self.ramp_epochs is not None else self.max_epochs
        return augment_strength_ramp(epoch, n, self.augment_start, self.augment_end)


@dataclass(frozen=True)
class Curriculum:
    """Ordered stages; each stage starts from the previous stage's encoder weights."""

    stages: tuple[CurriculumStage, ...]

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("a curriculum needs at least one stage")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"curriculum stage names must be unique, got {names}")

    def validate(self, method_kinds: Mapping[str, str]) -> None:
        """Check every method exists (`method_kinds`: name -> "pretrain"|"train") and that no
        pretraining stage follows a training stage."""
        seen_train = False
        for stage in self.stages:
            kind = method_kinds.get(stage.method)
            if kind is None:
                raise ValueError(f"stage {stage.name!r}: unknown method {stage.method!r}")
            if kind == "pretrain" and seen_train:
                raise ValueError(f"stage {stage.name!r}: a pretraining stage cannot follow a training stage")
            seen_train = seen_train or kind == "train"


def default_curriculum(
    ssl_method: str = "simclr", generic_source: str | None = None, finetune_method: str | None = "supervised"
) -> Curriculum:
    """Generic pool (if a folder is given) -> project unlabeled images -> fine-tuning."""
    stages = []
    if generic_source:
        stages.append(
            CurriculumStage("generic", ssl_method, pool="generic", source=generic_source, max_epochs=30)
        )
    stages.append(CurriculumStage("project", ssl_method, pool="all", max_epochs=30))
    if finetune_method:
        stages.append(
            CurriculumStage(
                "finetune", finetune_method, pool="labeled", max_epochs=50, augment_start=1.0, augment_end=1.0
            )
        )
    return Curriculum(tuple(stages))
