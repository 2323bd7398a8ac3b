"""Model versions: a trained network stored in the project (weights + record), and read back.

`save_version` writes a run's weights and record as a new model version (rank 0 alone under
torchrun); `load_model` builds the network of a version for prediction, `preprocess_from_record`
the preprocessing it was trained with; `newest_pretrained` finds the newest pretrained encoder;
`remove_old_weights` frees the space of versions nobody will go back to.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from pathlib import Path

from medlabeler.engine.errors import ProjectError

#: the learning loop's retention: the newest trained versions (a kept candidate can still be
#: activated by hand) and the newest that were active (roll back that far) keep their weights, as
#: do the active model and the newest pretrained encoder; older ones keep their row and metrics
KEEP_NEWEST = 3
KEEP_ROLL_BACK = 3


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

    try:
        return on_main(save)  # under torchrun rank 0 alone writes; every rank gets the version
    except OSError as exc:  # a full disk said "[Errno 28] No space left on device" and no more
        raise ProjectError(f"{project.root}: the trained model could not be saved in the project: "
                           f"{exc.strerror or exc}") from exc


def read_weights(project, mv):
    """(state_dict, record) of a model version; a clear error where its weights were removed."""
    from medlabeler.engine.store.project import weights_removed_text
    from medlabeler.engine.training.checkpoint import load_weights

    if mv.removed is not None:
        raise ProjectError(f"{project.root}: model v{mv.version} cannot be loaded: {weights_removed_text(mv.removed)}")
    return load_weights(mv.path)


def weights_problem(mv) -> str | None:
    """Why model version ``mv``'s weights are gone for good (removed to save space, the file missing
    or changed since it was saved), or None. It reads the file once (megabytes) to check it."""
    from medlabeler.engine.store.files import sha256_bytes
    from medlabeler.engine.store.project import weights_removed_text

    if mv.removed is not None:
        return weights_removed_text(mv.removed)
    try:
        data = mv.path.read_bytes()
    except FileNotFoundError:
        return f"its weights file {mv.path.name} is missing (in {mv.path.parent})"
    except OSError:  # a share's hiccup, no permission: not a lost model (the run that reads it says why)
        return None
    if mv.checksum and sha256_bytes(data) != mv.checksum:
        return f"its weights file {mv.path.name} is damaged (changed since it was saved)"
    return None


def old_versions(project, keep_newest: int = KEEP_NEWEST, keep_roll_back: int = KEEP_ROLL_BACK) -> list[int]:
    """Versions whose weights `remove_old_weights` removes (see KEEP_NEWEST, KEEP_ROLL_BACK)."""
    present = [m for m in project.models() if m.removed is None]
    trained = [m for m in present if not m.method.startswith("pretrain:")]
    encoders = [m for m in present if m.method.startswith("pretrain:")]
    keep = {m.version for m in present if m.active}
    keep |= {m.version for m in trained[-keep_newest:]} if keep_newest > 0 else set()
    once_active = [m for m in trained if m.was_active]
    keep |= {m.version for m in once_active[-keep_roll_back:]} if keep_roll_back > 0 else set()
    keep |= {encoders[-1].version} if encoders else set()
    return [m.version for m in present if m.version not in keep]


def removed_text(versions: list[int], freed: int) -> str:
    """'the weights of v1, v2 (90 MB)': what `remove_old_weights` did, in words."""
    size = f"{freed / 1e6:.0f} MB" if freed >= 1e6 else f"{freed / 1e3:.0f} kB"
    which = ", ".join(f"v{v}" for v in versions) if len(versions) <= 6 else f"{len(versions)} old versions"
    return f"the weights of {which} ({size})"


def remove_old_weights(project, keep_newest: int = KEEP_NEWEST,
                       keep_roll_back: int = KEEP_ROLL_BACK) -> tuple[list[int], int]:
    """Remove the weights of old versions (rows, metrics and decisions stay); (versions, bytes freed)."""
    versions = old_versions(project, keep_newest, keep_roll_back)
    return versions, project.remove_model_weights(versions) if versions else 0


def newest_pretrained(project):
    """The newest pretrained encoder's ModelVersion, or None."""
    versions = [m for m in project.models() if m.method.startswith("pretrain:") and m.removed is None]
    return versions[-1] if versions else None


def load_model(project, version: int | None = None, device=None):
    """(network in eval mode, record, ModelVersion) of `version` (default: the active model)."""
    from medlabeler.engine.models import build_model
    from medlabeler.engine.training.device import cap_threads, pick_device

    mv = project.model(version) if version is not None else project.active_model()
    if mv is None:
        raise ProjectError(f"{project.root}: no trained model yet; train one first")
    state, record = read_weights(project, mv)
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
