"""What a training run reports: one `Event` per step/epoch/validation, a `RunResult` at the end."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from collections.abc import Callable, Generator
from typing import Any, Literal

EventKind = Literal["step", "epoch", "metric", "checkpoint", "log", "done"]


@dataclass
class Event:
    """One progress report of a run (plain data: safe to hand to another thread)."""

    kind: EventKind
    step: int = 0
    total_steps: int = 0
    epoch: int = 0
    loss: float | None = None
    lr: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    message: str = ""
    images_per_second: float | None = None

    @property
    def progress(self) -> float:
        """Fraction of the run done, in [0, 1]."""
        return self.step / self.total_steps if self.total_steps else 0.0


@dataclass
class RunResult:
    """The generator's return value.

    `metrics` are the validation metrics of the weights kept (the best by `monitor`, else the
    last); `version` is set by the pipeline once the weights are stored as a model version.
    """

    steps: int = 0
    total_steps: int = 0
    epochs: int = 0
    seconds: float = 0.0
    images_per_second: float = 0.0
    cancelled: bool = False
    best_metrics: dict[str, float] = field(default_factory=dict)
    last_metrics: dict[str, float] = field(default_factory=dict)
    best_step: int | None = None
    monitor: str | None = None
    final_loss: float = math.nan
    batch_size: int = 0
    version: int | None = None
    record: dict[str, Any] = field(default_factory=dict)
    distributed: dict[str, Any] | None = None  # torchrun runs: world size, samples of each rank
    decision: Any = None  # engine.workflows.promotion.Decision of a stored training run (promoted or kept)
    planned_steps: int = 0  # the steps the run was set to take
    stopped_by: str = ""  # what ended it before them: "time budget", "plateau"

    @property
    def metrics(self) -> dict[str, float]:
        return self.best_metrics or self.last_metrics

    @property
    def model_version(self) -> int | None:
        return self.version


def run_to_end(gen: Generator[Any, None, Any], on_event: Callable[[Any], None] | None = None) -> Any:
    """Drive any engine generator (training, pretraining, scoring) synchronously; returns its result."""
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(event)
