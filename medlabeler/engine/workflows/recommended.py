"""The recommended learning pipeline: what Retrain, `medlabeler train` with no `--method`,
`medlabeler learn` and `medlabeler benchmark pipelines --methods auto` run.

One place, so the app, the CLI, the loop and the benchmarks cannot disagree. The choice is made
by evidence (docs/benchmarks.md): change it here, with the benchmark that justifies it.
Torch-free: safe to import from anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Recommendation:
    """`pretrain`: the SSL method to pretrain an encoder with first (None: none); `method`: the
    training method; `init`: where training starts when nothing better exists ("pretrained" needs
    a pretrained encoder); `config`: run-config overrides (pipeline.DEFAULTS keys); `pretrain_config`
    likewise for the pretraining run."""

    method: str
    pretrain: str | None = None
    init: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    pretrain_config: dict[str, Any] = field(default_factory=dict)
    why: str = ""


def recommended(task_kind: str, *, spatial_dims: int = 2, gpu: bool = False) -> Recommendation:
    """The recommended pipeline for a task ("classification" | "segmentation")."""
    steps = 1500 if gpu else 300
    return Recommendation(method="supervised", config={"steps": steps},
                          why="labels-only training until a self- or semi-supervised pipeline is shown "
                              "to beat it (docs/benchmarks.md)")
