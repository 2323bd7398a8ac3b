"""Evaluate a model version on a split of the project: `evaluate_project`.

The test split is read here only (training validates on val). Promotion (engine.workflows.promotion)
calls it on the val split to compare a candidate with the active model.
"""

from __future__ import annotations

import numpy as np

from medlabeler.engine.workflows.model_versions import load_model
from medlabeler.engine.workflows.predict import predict_samples


def evaluate_project(project, split: str = "test", version: int | None = None, *, device=None,
                     batch_size: int = 8, unreadable: list | None = None) -> dict[str, float]:
    """Metrics of a model version (default: active) on the labeled samples of `split`, at the
    samples' original resolution. Classification: auc, accuracy, balanced_accuracy,
    recall_<class>. Segmentation: dice (mean over the labels some reference holds), iou, dice_<label>, iou_<label>,
    hd95_<label> (in spacing units). Always "n" (samples evaluated). With a list as `unreadable`,
    a labeled sample whose image no longer reads is left out and its InputError put there (else
    the first one stops the evaluation)."""
    from medlabeler.engine.metrics import SegmentationScores, classification_metrics

    bundle = load_model(project, version, device)
    record = bundle[1]
    names = list(project.task.names)
    samples = project.samples(split=split, labeled=True)
    ids = [s.id for s in samples]
    if record["task"] == "classification":
        ys, probs = [], []
        for sample_id, p in predict_samples(project, ids, model_bundle=bundle, batch_size=batch_size,
                                             unreadable=unreadable):
            ys.append(int(project.load_label(sample_id)))
            probs.append(p)
        return classification_metrics(ys, np.stack(probs) if probs else np.zeros((0, len(names))), names)
    scores = SegmentationScores(names, with_hd95=True)
    by_id = {s.id: s for s in samples}
    for sample_id, p in predict_samples(project, ids, model_bundle=bundle, batch_size=batch_size,
                                             unreadable=unreadable):
        spacing = by_id[sample_id].spacing
        scores.add(p.argmax(0), np.asarray(project.load_label(sample_id)),
                   spacing if len(spacing) == p.ndim - 1 else None)
    return scores.result()
