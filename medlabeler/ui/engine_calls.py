"""Every engine call the UI makes, in one place (the seam between the UI and the engine).

Generators returned here are handed to :class:`medlabeler.ui.workers.EngineJob` and run on a
worker thread; everything else runs on the main thread and must stay cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medlabeler.engine.project.export import LEFT_OUT as EXPORT_LEFT_OUT  # noqa: F401 - a partial export's words
from medlabeler.engine.workflows.active_loop import QUEUE_DEPTH  # noqa: F401 - rows ranked at once (shorter: a prefix)
from medlabeler.engine.workflows.promotion import (  # noqa: F401 - a version's figure, and where it comes from
    MEASURED_AT_DECISION,
    MEASURED_BY_RUN,
    MEASURED_NOW,
    figures_apart,
    version_figures,
)


def train_methods() -> tuple[str, ...]:
    """Training methods of the registry: the built-ins, then installed plugins."""
    from medlabeler.engine.methods import list_methods

    return tuple(list_methods(kind="train"))


def pretrain_methods() -> tuple[str, ...]:
    """Pretraining methods of the registry (plugins too), plus the curriculum runner."""
    from medlabeler.engine.methods import list_methods

    return (*list_methods(kind="pretrain"), "curriculum")
DEFAULT_STRATEGY = "hybrid"  # the engine's default (engine.active.strategies.DEFAULT_STRATEGY)


# --- warming up -------------------------------------------------------------------------------


def warm_up() -> None:
    """Import torch and the training modules (seconds); run on a worker when the app starts or a
    project opens, so that pressing Retrain starts at once."""
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401  (imported by the first optimizer step anyway)

    from medlabeler.engine import methods  # noqa: F401
    from medlabeler.engine.workflows import pretrain, train  # noqa: F401
    from medlabeler.engine.data import datasets  # noqa: F401
    from medlabeler.engine.training import loop  # noqa: F401


# --- projects -----------------------------------------------------------------------------------


def open_project(path: str | Path, *, readonly: bool = False):
    from medlabeler.engine.project.project_import import require_project
    from medlabeler.engine.store import Project

    return Project.open(require_project(path), readonly=readonly)


def skipped_lines(errors) -> list[str]:
    """Each skipped file or series as the app shows it: its name, the problem, then its folder."""
    from medlabeler.engine.errors import error_text
    from medlabeler.engine.project.project_import import skipped_lines as lines

    return lines(errors, words=error_text)


def create_project(root, images, *, task: str, names: list[str] | None, colors: list[str] | None, unit: str | None):
    """A new project indexing ``images``; returns (project, the import report: summary(), errors, warnings)."""
    from medlabeler.engine.project.project_import import create_project as create

    return create(root, images, task=task, names=names or None, colors=colors or None, unit=unit)


def export_formats(project) -> tuple[str, ...]:
    """The formats `export_project` can write for this project, the default first (PNG for a
    project of 2D images, NIfTI where there are volumes): PNG only where there are 2D images or
    slices, DICOM-SEG only where the images are DICOM."""
    if project.task.kind == "classification":
        return ("csv",)
    samples = project.samples()
    flat = any(not (s.is_volume and s.slice_index is None) for s in samples)
    dicom = any(s.series_uid for s in samples)
    order = ("nifti", "png") if any(s.is_volume for s in samples) else ("png", "nifti")
    return tuple(f for f in (*order, "dicom-seg", "csv") if (flat or f != "png") and (dicom or f != "dicom-seg"))


def export_labels(project, out: str | Path, *, fmt: str, keep_names: bool, deidentify: bool = False) -> str:
    """Write the project's labels to ``out`` (`export_project`); what was written, in words (a
    DICOM-SEG's words say whether it carries the patient's identifiers)."""
    from medlabeler.engine.project.dicom_seg import REQUIRES_IDENTIFIERS
    from medlabeler.engine.errors import error_text
    from medlabeler.engine.project.export import ExportIncomplete, export_project, written_text

    try:
        files, left_out = export_project(project, out, fmt=fmt, keep_names=keep_names, deidentify=deidentify), None
    except ExportIncomplete as exc:  # the others are written
        files, left_out = exc.files, exc
    said = f"exported {written_text(files, fmt)} to {out}"
    if fmt == "dicom-seg":
        said += ("; without patient identifiers" if deidentify else
                 "; " + REQUIRES_IDENTIFIERS.split(";")[0] + ": tick 'without patient identifiers' to leave them out")
    if left_out is not None:
        said += f"; {error_text(left_out)}"
    return said


def import_labels(project, path: str | Path, before: dict[int, int]) -> tuple[str, list[str], list[int]]:
    """Import masks, DICOM-SEGs or a CSV of classes into ``project`` (on a thread): the summary
    line, a line per file skipped or warning, and the samples whose label the import replaced
    (``before``: the label versions when it started; a clinician's saves meanwhile are not its)."""
    from medlabeler.engine.project.project_import import import_labels as run, imported_text

    report = run(project, path)
    lines = [f"skipped {error}" for error in report.errors] + [f"warning: {w}" for w in report.warnings]
    changed = [i for i, v in project.current_label_versions().items()
               if before.get(i) != v and project.label(i).origin == "imported"]
    return imported_text(report, path), lines, changed


def saved_versions(project, sample_id: int) -> list[tuple[int, str, bool]]:
    """(version, what it is in words, whether it is the label now) of each saved version of a
    sample's label, newest first."""
    from medlabeler.engine.store.project import version_text

    return [(lv.version, version_text(lv, project.task), lv.is_current)
            for lv in reversed(project.label_history(sample_id))]


def relink_images(project, folder: str | Path) -> tuple[str, list[str]]:
    """Find the images moved or renamed since the import under ``folder`` (on a thread): the
    summary line, and a line per image still missing or candidate refused."""
    from medlabeler.engine.project.relink import relink_images as run

    report = run(project, folder)
    if not report.found and not report.missing:
        return "no image of the project is missing", []
    return report.summary(folder), report.lines()


def create_demo_project(root: str | Path):
    """The bundled demo (the MNI152 brain MRI in nilearn), created once then reopened."""
    from medlabeler.engine.workflows.demo_loop import open_or_create_demo

    return open_or_create_demo(Path(root))


# --- training -----------------------------------------------------------------------------------


def training_run(project, *, method: str | None, init: str | int | None, epochs: int | None, config: dict,
                 steps: int | None = None, budget_s: float | None = None) -> Callable[[Any], Iterator]:
    """A function of the cancel token that starts the engine run for ``method`` (None: recommended)."""

    def start(token):
        from medlabeler.engine.workflows.pretrain import pretrain_project
        from medlabeler.engine.workflows.train import train_project, train_recommended

        if method in pretrain_methods():
            cfg = dict(config, steps=steps) if steps else config
            return pretrain_project(project, method=method, epochs=epochs, config=cfg, cancel=token)
        if method is None and init in (None, "") and epochs is None:  # the whole recommended pipeline
            return train_recommended(project, steps=steps, budget_s=budget_s, config=config, cancel=token)
        return train_project(project, method=method, init=init, epochs=epochs, steps=steps,
                             budget_s=budget_s, config=config, cancel=token)

    return start


def recommendation(project):
    """The recommended pipeline of the project (engine.workflows.recommended, via the loop's reading of it)."""
    from medlabeler.engine.workflows.run_config import recommendation as rec

    return rec(project)


def has_pretrained(project) -> bool:
    from medlabeler.engine.workflows.model_versions import newest_pretrained

    return project is not None and newest_pretrained(project) is not None


def per_class_text(kind: str, per_class) -> list[str]:
    from medlabeler.engine.store.project import per_class_text as text

    return text(kind, per_class)


def skipped_text(status) -> str | None:
    from medlabeler.engine.store.project import skipped_text as text

    return text(status)


def label_split_notes(kind: str, status) -> list[str]:
    from medlabeler.engine.store.project import label_split_notes as notes

    return notes(kind, status)


def weights_removed_text(removed: str) -> str:
    from medlabeler.engine.store.project import weights_removed_text as text

    return text(removed)


def loop_control(token):
    from medlabeler.engine.workflows.learn_loop import LoopControl

    return LoopControl(token)


def learning_run(project, control, **kw):
    """The engine's learning loop generator (engine.workflows.learn_loop.learn) on ``project``."""
    from medlabeler.engine.workflows.learn_loop import learn

    return learn(project, control=control, **kw)


def labels_since_model(project) -> int:
    from medlabeler.engine.workflows.learn_loop import labels_since_model as since

    return since(project)


def model_decision(project, version: int):
    """The promotion decision recorded for a model version (None: none recorded)."""
    from medlabeler.engine.workflows.promotion import last_decision

    return last_decision(project, version)


def promotion_decisions(project) -> list:
    from medlabeler.engine.workflows.promotion import decisions

    return decisions(project)


def comparison_note(project, split: str) -> str:
    from medlabeler.engine.workflows.promotion import comparison_note as note

    return note(project, split)


def comparison_split(project) -> str:
    """"val", or "train" where validation cannot judge (no validation samples; one class only)."""
    from medlabeler.engine.workflows.promotion import comparison_split as split

    return split(project)


def queue_after_skip(rows: list, sample: int) -> list:
    from medlabeler.engine.workflows.active_loop import queue_after_skip as after

    return after(rows, sample)


def held_out_reason(split: str) -> str:
    """"validation label needed: held out to choose the best model, never trained on"."""
    from medlabeler.engine.workflows.active_loop import HELD_OUT_REASONS

    return HELD_OUT_REASONS[split]


def is_skipped(row) -> bool:
    """A row of a sample skipped with `n` (listed after the rest of the queue)."""
    from medlabeler.engine.workflows.active_loop import is_skipped as skipped

    return skipped(row)


def shown_score(selection, *, has_model: bool):
    from medlabeler.engine.workflows.active_loop import shown_score as score

    return score(selection, has_model=has_model)


def labels_text(n: int, split: str) -> str:
    from medlabeler.engine.workflows.promotion import labels_text as text

    return text(n, split)


def split_word(split: str) -> str:
    """"validation" or "training": what promotion's messages call the labels of `split`."""
    from medlabeler.engine.workflows.promotion import SPLIT_WORDS

    return SPLIT_WORDS[split]


def promotion_tolerance() -> float:
    from medlabeler.engine.workflows.promotion import TOLERANCE

    return TOLERANCE


def run_defaults() -> dict:
    from medlabeler.engine.workflows.run_config import DEFAULTS

    return DEFAULTS


def activate_by_hand(project, version: int):
    from medlabeler.engine.workflows.promotion import activate_by_hand as activate

    return activate(project, version)


def result_version(result) -> int | None:
    """The model version a finished run stored (None for a run that stored nothing)."""
    return getattr(result, "version", None)


# --- prediction and scoring ---------------------------------------------------------------------


@dataclass
class PredictionReady:
    """Yielded by the refresh generator when the open sample's prediction is ready."""

    kind: str
    sample_id: int
    label: Any
    probabilities: np.ndarray | None
    uncertainty: np.ndarray | None
    cam: np.ndarray | None
    model_version: int | None


def _entropy_map(probs: np.ndarray) -> np.ndarray:
    """Per-pixel entropy of class probabilities (C, H, W), scaled to [0, 1]."""
    p = np.clip(probs, 1e-8, 1.0)
    return (-(p * np.log(p)).sum(axis=0) / np.log(p.shape[0])).astype(np.float32)


def prediction_parts(probs, *, task: str) -> tuple[Any, np.ndarray, np.ndarray | None]:
    """(class or mask, probabilities, uncertainty map) from a sample's class probabilities.

    ``probs``: (C,) for classification, (C, *spatial) for segmentation, as
    ``predict.predict_samples`` returns them at the sample's own size.
    """
    probs = np.asarray(probs, dtype=np.float32)
    if task == "classification":
        return int(probs.argmax()), probs, None
    return probs.argmax(axis=0).astype(np.uint8), probs, _entropy_map(probs)


def refresh_run(project, sample_id: int | None, *, score: bool = True, mc_passes: int = 0) -> Callable[[Any], Generator]:
    """After a model change: predict the open sample (yields PredictionReady), then re-score the pool."""

    def start(token):
        return _refresh(project, sample_id, token, score, mc_passes)

    return start


_BUNDLE: dict = {}  # the active model as last loaded: (project id, version, path) -> bundle


def active_bundle(project):
    """The active model (network, record, version), loaded once per version rather than at every
    sample opened. Used by the inference worker only (one job at a time); training loads its own."""
    from medlabeler.engine.workflows.model_versions import load_model

    active = project.active_model()
    key = (id(project), active.version, str(active.path))
    if key not in _BUNDLE:
        _BUNDLE.clear()
        _BUNDLE[key] = load_model(project)
    return _BUNDLE[key]


def _refresh(project, sample_id, token, score, mc_passes) -> Generator:
    if project.active_model() is None:
        return {"scored": 0, "model_version": None}
    bundle = active_bundle(project)
    version = bundle[2].version
    if sample_id is not None:
        yield from _predict(project, sample_id, bundle)
    result = {"scored": 0, "model_version": version}
    if score and not token.cancelled:
        result = yield from score_pool_run(project, token, mc_passes=mc_passes)
    return result


def score_pool_run(project, token, *, mc_passes: int = 0) -> Generator:
    """Score the unlabeled pool with the active model and store the scores (the queue reads them)."""
    from medlabeler.engine.workflows.active_loop import score_project

    return (yield from score_project(project, mc_passes=mc_passes, cancel=token))


def _predict(project, sample_id: int, bundle) -> Generator:
    """Yield a PredictionReady for one sample (probabilities, mask/class, uncertainty, Grad-CAM)."""
    from medlabeler.engine.workflows.predict import predict_samples

    task = project.task.kind
    for sid, probs in predict_samples(project, [sample_id], model_bundle=bundle):
        label, probs, umap = prediction_parts(probs, task=task)
        cam = grad_cam_map(project, sid, bundle) if task == "classification" else None
        yield PredictionReady("prediction", sid, label, probs, umap, cam, bundle[2].version)


def grad_cam_map(project, sample_id: int, bundle) -> np.ndarray:
    """Grad-CAM of the predicted class at the sample's own size, in [0, 1]."""
    from medlabeler.engine.data.datasets import SampleTensors
    from medlabeler.engine.inference.saliency import grad_cam
    from medlabeler.engine.workflows.model_versions import preprocess_from_record

    model, record, _mv = bundle
    tensors = SampleTensors(project, preprocess_from_record(record), cache_mb=0)
    sample = project.sample(sample_id)
    cam = grad_cam(model, tensors.image(sample)[None])
    return tensors.geometry(sample).to_original(cam).numpy()[0].astype(np.float32)


def prediction_only_run(project, sample_id: int) -> Callable[[Any], Generator]:
    """Predict one sample with the active model (opening a sample that has no cached prediction)."""

    def start(token):
        if project.active_model() is None or project.is_missing_slice(sample_id):
            return iter(())  # (a slice missing from its series has no image to predict on)
        return _predict(project, sample_id, active_bundle(project))

    return start


def label_writer(project, on_landed):
    """The project's label writer (engine.store.writer): saves on one background thread, in order."""
    from medlabeler.engine.store.writer import LabelWriter

    return LabelWriter(project, on_landed=on_landed)


def keep_unsaved(home: Path, project, pending, *, trial: bool = False) -> Path:
    """Keep a label whose save failed outside the project (engine.store.unsaved), for its next opening;
    ``trial``: only find out whether it can be kept (the file written, then removed)."""
    from medlabeler.engine.store.unsaved import keep_unsaved as keep

    path = keep(home, project, pending.sample_id, pending.value, author=pending.author, origin=pending.origin,
                replace=not trial)
    if trial:
        path.unlink(missing_ok=True)
    return path


def unsaved_labels(home: Path, project) -> list:
    """The labels kept for ``project`` because their save failed when it last closed."""
    from medlabeler.engine.store.unsaved import unsaved_labels as kept

    return kept(home, project)


def forget_unsaved(label) -> None:
    from medlabeler.engine.store.unsaved import forget_unsaved as forget

    forget(label)


# --- the queue ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueRow:
    sample: int
    score: float | None  # None: a validation/test label request, not an uncertainty
    reason: str


def where(sample, project) -> str:
    """``slice 44`` (from 0, like napari's slider), ``scan 3, slice 44`` in a project of several
    scans, or the split: one convention in every view."""
    from medlabeler.engine.workflows.active_loop import where as engine_where

    return engine_where(sample, project)


def queue_rows(project, *, view: str = "to label", n: int = 50, strategy: str = DEFAULT_STRATEGY,
               assume_labeled=()) -> list[QueueRow]:
    """Rows of the queue table: the next samples to label (ranked; validation and test samples mixed
    in as their share of the labels falls behind), or the first ``n`` labeled / all samples.

    ``assume_labeled``: samples whose labels are still being written, ranked as labeled. The
    samples skipped with `n` follow the ``n`` rows, all of them (in reach of a right-click)."""
    if view == "to label":
        from medlabeler.engine.workflows.active_loop import next_samples

        return [QueueRow(p.sample, None if p.score is None else float(p.score), p.reason)
                for p in next_samples(project, strategy=strategy, n=n, assume_labeled=assume_labeled,
                                      every_skipped=True)]
    active = project.active_model()
    scores = project.scores(active.version) if active is not None else {}
    labeled = {s.id for s in project.samples(labeled=True)}
    unreadable = project.unreadable_ids() & labeled  # a labeled image damaged since: first, to be taken back
    skipped = set(project.skipped_ids())
    samples = project.samples(labeled=True if view == "labeled" else None)
    rows = []
    for s in sorted(samples, key=lambda s: s.id not in unreadable)[:n]:  # stable: by id otherwise
        entry = scores.get(s.id) or {}
        value = entry.get("entropy", next(iter(entry.values()), None))
        word = (_label_word(project, s.id) if s.id in labeled else
                "not labeled, skipped with n" if s.id in skipped else "not labeled")
        broken = (", its image no longer reads: right-click > Remove label, or put the file back and Refresh"
                  if s.id in unreadable else "")
        rows.append(QueueRow(s.id, value, f"{word} ({s.split}){broken}"))
    return rows


def _label_word(project, sample_id: int) -> str:
    """"labeled: melanoma" for a class (a new user's "labeled" view said only "labeled" on every row)."""
    if project.task.kind != "classification":
        return "labeled"
    label, names = project.label(sample_id), project.task.names
    if label is None or label.value is None or not 0 <= int(label.value) < len(names):
        return "labeled"
    how = {"accepted_prediction": ", the model's, accepted"}.get(label.origin, "")
    return f"labeled: {names[int(label.value)]}{how}"


def model_metric(metrics: dict) -> tuple[str, float] | None:
    """The headline validation metric of a model version (Dice for segmentation, else AUC/accuracy)."""
    from medlabeler.engine.workflows.promotion import headline_metric

    return headline_metric(metrics)
