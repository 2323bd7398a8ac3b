"""The recommended learning pipeline: what Retrain, `medlabeler train` with no `--method`,
`medlabeler learn` and `medlabeler benchmark pipelines --methods auto` run.

One place, so the app, the CLI, the loop and the benchmarks cannot disagree. The choice is made
by evidence (docs/benchmarks.md): change it here, with the benchmark that justifies it.
Torch-free: safe to import from anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CPU_STEPS, GPU_STEPS = 300, 1500
#: Each round of the learning loop trains this share of a run's steps: warm-started from the active
#: model, which already knows all but the newest few labels, and the first model too, so that labels
#: saved meanwhile wait minutes less; a full run follows when nobody labels (docs/benchmarks.md,
#: "Warm-started rounds" and "A full run at rest").
WARM_START_SHARE = 1 / 3
#: ...and never fewer steps than this (or the whole run, when that is shorter): 20 steps, a third
#: of the GUI benchmark's 60, were too few for a candidate to take in its new labels.
WARM_START_MIN_STEPS = 100
#: Patches per step in whole-volume training (docs/benchmarks.md, "Whole volumes on a CPU").
VOLUME_BATCH = 2


@dataclass(frozen=True)
class Recommendation:
    """`pretrain`: the SSL method to pretrain an encoder with first (None: none); `method`: the
    training method; `init`: where training starts when nothing better exists ("pretrained" needs
    a pretrained encoder); `config`: run-config overrides (run_config.DEFAULTS keys);
    `pretrain_config` likewise for the pretraining run."""

    method: str
    pretrain: str | None = None
    init: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    pretrain_config: dict[str, Any] = field(default_factory=dict)
    why: str = ""

    def text(self) -> str:
        """"PCL pretraining (300 steps), then cross-teaching (300 steps)"."""
        train = f"{self.method} ({self.config.get('steps')} steps)"
        if not self.pretrain:
            return train
        return f"{self.pretrain.upper()} pretraining ({self.pretrain_config.get('steps')} steps) on every image, then {train}"


def recommended(task_kind: str, *, spatial_dims: int = 2, gpu: bool = False) -> Recommendation:
    """The recommended pipeline for a task ("classification" | "segmentation")."""
    steps = GPU_STEPS if gpu else CPU_STEPS
    if task_kind == "segmentation" and spatial_dims == 2:
        return Recommendation(
            method="fixmatch", config={"steps": steps},
            why="FixMatch with CutMix (for segmentation: unlabeled weight 0.5, pseudo-label threshold 0.95) has "
                "the best mean validation Dice over 4, 8 and 16 labels of every method compared on mni-tissue-seg "
                "(64 px crops, 3 seeds; supervised 0.9600, PCL + supervised 0.9636, cross teaching 0.9627, "
                "FixMatch 0.9650-0.9665) and is above supervised on test at 4, 8 and 16 labels there; at the "
                "app's 128 px crops its threshold of 0.95 has the best mean validation Dice on mni-tissue-seg and "
                "on mni-tissue3-seg (a 1% CSF label), where it is above supervised on validation and 0.011 below it "
                "on test at 16 labels. In the learning loop at the app's sizes a warm-started round (a third of "
                "the steps) takes about 2.5 minutes on a 2-core CPU (docs/benchmarks.md)")
    if task_kind == "classification":
        return Recommendation(method="srcl", config={"steps": steps},
                              why="SRCL (mean teacher + relation consistency + NT-Xent) beat supervised "
                                  "on mni-tissue-cls (docs/benchmarks.md)")
    # whole volumes: random 64^3 patches at the native voxel grid, sliding-window prediction (as MONAI
    # and nnU-Net), instead of shrinking a 512x512x48 CT to 64^3, where small lesions vanish; two
    # patches a step, as nnU-Net's 3D default: per patch seen (and per minute) better on validation
    # than eight on mni-tissue-vol, and 300 steps take minutes on a CPU, not most of an hour
    return Recommendation(method="supervised",
                          config={"steps": steps, "resize": "crop", "volume_size": 64, "batch_size": VOLUME_BATCH},
                          why="whole volumes: labels-only training on native-resolution 64^3 patches, two a step "
                              "(mni-tissue-vol: per patch seen better on validation than eight, 4-5x less time "
                              "for the same steps; docs/benchmarks.md), until a self- or semi-supervised "
                              "pipeline is shown to beat it on volumes")


def describe() -> str:
    """One line per task of what the recommended pipeline does on this machine's CPU budget."""
    return (f"2D segmentation: {recommended('segmentation').text()}; "
            f"whole-volume segmentation: {recommended('segmentation', spatial_dims=3).text()}; "
            f"classification: {recommended('classification').text()}; "
            "segmentation trains on crops at the images' native resolution and predicts whole images")


# Methods that scored more than 0.01 below supervised at their own defaults and the same budget
# (docs/benchmarks.md, "Do no harm"), per task: offered, but marked experimental with the reason.
# SRCL was marked for segmentation (0.015 below supervised at 8 labels with the plain CE) until the
# class balance that fades over a run: then every method was within 0.0047 of supervised at 4, 8
# and 16 labels (docs/benchmarks.md, "Fading the class balance").
EXPERIMENTAL: dict[str, dict[str, str]] = {
    "segmentation": {},
    "classification": {},
}


def experimental(task_kind: str, method: str) -> str | None:
    """Why `method` is experimental for `task_kind` (None: it is not)."""
    return EXPERIMENTAL.get(task_kind, {}).get(method)


def experimental_text() -> str:
    """"experimental: mean-teacher (segmentation: 0.02 below supervised at 4 labels); ..." or ""."""
    items = [f"{method} ({task}: {why})" for task, marks in EXPERIMENTAL.items() for method, why in marks.items()]
    return ("experimental: " + "; ".join(items)) if items else ""
