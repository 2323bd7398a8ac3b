"""Default validation: metrics of a network over a dataset of (image, label) items."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from medlabeler.engine.metrics import SegmentationScores, classification_metrics


@torch.no_grad()
def evaluate_model(model: nn.Module, dataset, *, task: str, device: torch.device | str | None = None,
                   names: Sequence[str] | None = None, batch_size: int = 16,
                   roi_size: int | Sequence[int] | None = None, with_hd95: bool = False) -> dict[str, float]:
    """Classification: auc/accuracy/balanced_accuracy/recall_<name>. Segmentation (at model
    resolution): dice, iou, dice_<name>, ... (`names` are the foreground labels). HD95 is off by
    default here (validation runs every epoch); `evaluate_project` reports it. With `roi_size`,
    items larger than it (native-resolution volumes) are predicted with a sliding window."""
    from medlabeler.engine.inference.predict import predict_logits

    if device is not None:
        model.to(device)
    ys, outs = [], []
    for items in _same_shape_batches(dataset, 1 if roi_size is not None else batch_size):
        x = torch.stack([torch.as_tensor(item[0]) for item in items])
        y = torch.stack([torch.as_tensor(item[1]) for item in items])
        logits = predict_logits(model, x, batch_size=batch_size, roi_size=roi_size)
        outs.append(torch.softmax(logits, 1).numpy() if task == "classification" else logits.argmax(1).numpy())
        ys.append(y.numpy())
    num_classes = getattr(model, "num_classes", None)
    if task == "classification":
        if not outs:
            return classification_metrics([], np.zeros((0, num_classes or 2)), names)
        return classification_metrics(np.concatenate(ys), np.concatenate(outs), names)
    if names is None:
        names = [str(i) for i in range(1, (num_classes or 2))]
    scores = SegmentationScores(names, with_hd95=with_hd95)
    for pred_batch, ref_batch in zip(outs, ys):
        for pred, ref in zip(pred_batch, ref_batch):
            scores.add(pred, ref)
    return scores.result()


def _same_shape_batches(dataset, batch_size: int):
    """Lists of up to `batch_size` consecutive items whose images share a shape (native-resolution
    images differ in size, so they cannot always be stacked)."""
    batch: list = []
    for i in range(len(dataset)):
        item = dataset[i]
        if batch and (len(batch) >= batch_size or torch.as_tensor(item[0]).shape != torch.as_tensor(batch[0][0]).shape):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch
