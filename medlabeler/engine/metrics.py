"""Metrics for classification (AUC, accuracy, balanced accuracy, recall) and segmentation
(Dice, IoU, HD95), robust to classes or labels missing from a split.

Segmentation conventions (per case, per foreground label):
- Dice and IoU are 1 when prediction and reference are both empty, 0 when exactly one is.
- HD95 (95th percentile of the symmetric surface distances, in spacing units) is NaN unless
  both prediction and reference hold the label.
- Over a split, a label's Dice is the mean over the cases where the label appears in the
  reference or the prediction (so empty slices do not inflate it); 1.0 if it never appears.
  `dice` is the mean of the per-label Dice over the foreground labels that some reference holds:
  a split can only measure those. A label no reference holds would count a 1.0 for nothing
  where the model finds none (organ 0.80 read 0.90), and a 0.0 for a single stray pixel where
  it finds some (organ 0.96 read 0.48, and training chose the weights of its 6th step of 60 as
  the best for finding no lesion yet). When no reference holds any label, `dice` is the mean over
  the labels the model finds (0.0 each), and 1.0 when it finds none either. `scored_<label>`
  counts a label's cases and `in_reference_<label>` the cases whose reference holds it (callers
  say which labels a split cannot measure). IoU likewise (`iou`).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

# --- classification ---------------------------------------------------------------------------


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values`, ties sharing their average rank."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + 1 + end) / 2.0
    return ranks


def binary_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney U statistic (ties count 1/2); NaN without both classes."""
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = average_ranks(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def classification_metrics(y_true: Sequence[int], probs: np.ndarray,
                           names: Sequence[str] | None = None) -> dict[str, float]:
    """AUC (one-vs-rest, macro over the classes present with both positives and negatives; for
    2 classes the AUC of class 1), accuracy, balanced accuracy (mean recall over the classes present
    in `y_true`) and per-class recall `recall_<name>` (NaN for a class absent from `y_true`).

    `probs` is (N, C) class probabilities. Empty input gives NaN everywhere and n = 0.
    """
    y = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != y.shape[0]:
        raise ValueError(f"probs must be (N, C) with N = {y.shape[0]}, got {p.shape}")
    n_classes = p.shape[1]
    names = list(names) if names is not None else [str(i) for i in range(n_classes)]
    out: dict[str, float] = {"n": float(y.size)}
    if y.size == 0:
        out.update(auc=math.nan, accuracy=math.nan, balanced_accuracy=math.nan)
        out.update({f"recall_{name}": math.nan for name in names})
        return out
    pred = p.argmax(axis=1)
    out["accuracy"] = float((pred == y).mean())
    recalls = []
    for c, name in enumerate(names):
        members = y == c
        recall = float((pred[members] == c).mean()) if members.any() else math.nan
        out[f"recall_{name}"] = recall
        if members.any():
            recalls.append(recall)
    out["balanced_accuracy"] = float(np.mean(recalls))
    aucs = []
    classes = [1] if n_classes == 2 else range(n_classes)
    for c in classes:
        auc = binary_auc(y == c, p[:, c])
        if not math.isnan(auc):
            aucs.append(auc)
    out["auc"] = float(np.mean(aucs)) if aucs else math.nan
    return out


# --- segmentation -----------------------------------------------------------------------------


def dice_iou(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """Dice and IoU of two boolean masks (1, 1 when both are empty)."""
    pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
    inter = np.logical_and(pred, ref).sum()
    total = pred.sum() + ref.sum()
    if total == 0:
        return 1.0, 1.0
    union = total - inter
    return float(2 * inter / total), float(inter / union)


def _surface(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(mask.ndim, 1),
                                    border_value=0)
    return mask & ~eroded


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """95th percentile Hausdorff distance between the surfaces of two boolean masks, in the units
    of `spacing` (pixels when None). NaN when either mask is empty."""
    from scipy import ndimage

    pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
    if not pred.any() or not ref.any():
        return math.nan
    spacing = tuple(float(s) for s in spacing) if spacing is not None else (1.0,) * pred.ndim
    sp, sr = _surface(pred), _surface(ref)
    to_ref = ndimage.distance_transform_edt(~sr, sampling=spacing)[sp]
    to_pred = ndimage.distance_transform_edt(~sp, sampling=spacing)[sr]
    return float(np.percentile(np.concatenate([to_ref, to_pred]), 95))


def segmentation_case_metrics(pred: np.ndarray, ref: np.ndarray, names: Sequence[str],
                              spacing: Sequence[float] | None = None, with_hd95: bool = True
                              ) -> dict[str, dict[str, float]]:
    """Per foreground label (value i+1 = names[i]) of one case: dice, iou, hd95, `present` (1 when
    the label is in the reference or the prediction) and `in_reference` (1 when in the reference)."""
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    out = {}
    for i, name in enumerate(names, start=1):
        p, r = pred == i, ref == i
        d, j = dice_iou(p, r)
        in_reference = bool(r.any())
        out[name] = {"dice": d, "iou": j, "hd95": hd95(p, r, spacing) if with_hd95 else math.nan,
                     "present": float(in_reference or p.any()), "in_reference": float(in_reference)}
    return out


class SegmentationScores:
    """Accumulates per-case segmentation metrics over a split (see the module conventions)."""

    def __init__(self, names: Sequence[str], with_hd95: bool = True):
        self.names = list(names)
        self.with_hd95 = with_hd95
        self.cases: list[dict[str, dict[str, float]]] = []

    def add(self, pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None = None) -> None:
        self.cases.append(segmentation_case_metrics(pred, ref, self.names, spacing, self.with_hd95))

    def result(self) -> dict[str, float]:
        out: dict[str, float] = {"n": float(len(self.cases))}
        held, found = [], []  # labels some reference holds (the headline's), labels only the model finds
        for name in self.names:
            rows = [c[name] for c in self.cases if c[name]["present"]]
            for key in ("dice", "iou"):
                if not self.cases:
                    value = math.nan
                elif rows:
                    value = float(np.mean([r[key] for r in rows]))
                else:
                    value = 1.0
                out[f"{key}_{name}"] = value
            finite = [r["hd95"] for r in rows if not math.isnan(r["hd95"])]
            out[f"hd95_{name}"] = float(np.mean(finite)) if finite else math.nan
            # what the label's Dice stands on: a Dice over cases that lack the label in the
            # reference counts only the model's false finds there
            out[f"scored_{name}"] = float(len(rows))
            out[f"in_reference_{name}"] = float(sum(c[name]["in_reference"] for c in self.cases))
            (held if out[f"in_reference_{name}"] else found if rows else []).append(name)
        for key in ("dice", "iou"):
            if not self.cases or not self.names:
                out[key] = math.nan
            else:
                counted = held or found
                out[key] = float(np.mean([out[f"{key}_{n}"] for n in counted])) if counted else 1.0
        return out


def segmentation_metrics(preds: Sequence[np.ndarray], refs: Sequence[np.ndarray], names: Sequence[str],
                         spacings: Sequence[Sequence[float] | None] | None = None,
                         with_hd95: bool = True) -> dict[str, float]:
    """Split-level Dice/IoU/HD95 per label (`dice_<name>`, ...) and their means `dice`, `iou`."""
    scores = SegmentationScores(names, with_hd95)
    spacings = spacings if spacings is not None else [None] * len(preds)
    for pred, ref, spacing in zip(preds, refs, spacings):
        scores.add(pred, ref, spacing)
    return scores.result()
