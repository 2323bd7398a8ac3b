"""Model versions: a trained network stored in the project (weights + record), and read back.

`save_version` writes a run's weights and record as a new model version (rank 0 alone under
torchrun); `load_model` builds the network of a version for prediction, `preprocess_from_record`
the preprocessing it was trained with; `newest_pretrained` finds the newest pretrained encoder.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from pathlib import Path

from medlabeler.engine.errors import ProjectError


def finite_metrics(metrics: dict) -> dict[str, float]:
    """Metrics for the store's JSON: NaN becomes None."""
    return {k: (float(v) if math.isfinite(float(v)) else None) for k, v in metrics.items()}


def save_version(project, *, method_label: str, state: dict, record: dict, metrics: dict,
                 parent: int | None, activate: bool):
    """Store `state` (weights) and `record` as a new model version; returns the ModelVersion."""
    from medlabeler.engine.training.checkpoint import save_weights
    from medlabeler.engine.training.distributed import on_main

    def save():
        with tempfile.TemporaryDirectory(prefix=".train-", dir=project.root) as tmp:
            path = save_weights(Path(tmp) / "weights.safetensors", state, record)
            return project.add_model(method=method_label, weights_file=path, record=record,
                                     metrics=finite_metrics(metrics), parent=parent, activate=activate)

    return on_main(save)  # under torchrun rank 0 alone writes; every rank gets the version


def newest_pretrained(project):
    """The newest pretrained encoder's ModelVersion, or None."""
    versions = [m for m in project.models() if m.method.startswith("pretrain:")]
    return versions[-1] if versions else None


def load_model(project, version: int | None = None, device=None):
    """(network in eval mode, record, ModelVersion) of `version` (default: the active model)."""
    from medlabeler.engine.models import build_model
    from medlabeler.engine.training.checkpoint import load_weights
    from medlabeler.engine.training.device import cap_threads, pick_device

    mv = project.model(version) if version is not None else project.active_model()
    if mv is None:
        raise ProjectError(f"{project.root}: no trained model yet; train one first")
    state, record = load_weights(mv.path)
    if record.get("kind") == "encoder":
        raise ProjectError(f"{project.root}: model v{mv.version} is a pretrained encoder ({mv.method}); it "
                           "cannot predict. Train a model from it with init 'pretrained'")
    args = dict(record["model"])
    if "features" in args:
        args["features"] = tuple(args["features"])
    model = build_model(**args)
    model.load_state_dict(state)
    device = device if device is not None and not isinstance(device, str) else pick_device(device)
    if device.type == "cpu":
        cap_threads(leave_one=True)  # predicting and scoring also leave the GUI a core
    return model.to(device).eval(), record, mv


def preprocess_from_record(record: dict):
    """The `Preprocess` a model version was trained with (predictions must use the same)."""
    from medlabeler.engine.data.datasets import Preprocess

    saved = dict(record.get("preprocess", {}))
    if isinstance(saved.get("window"), list):
        saved["window"] = tuple(saved["window"])
    if "percentiles" in saved:
        saved["percentiles"] = tuple(saved["percentiles"])
    saved.setdefault("max_side", None)  # versions saved before it existed: never scaled down
    return Preprocess(**saved)


def label_fingerprint(project, sample_ids) -> str:
    """sha1 of the sorted (sample id, current label version) pairs of `sample_ids`: equal exactly
    when the same samples carry the same labels (a model record's "ids_sha1", promotion's
    validation state)."""
    rows = sorted([int(i), getattr(project.label(int(i)), "version", None)] for i in sample_ids)
    return hashlib.sha1(json.dumps(rows, default=str).encode()).hexdigest()
