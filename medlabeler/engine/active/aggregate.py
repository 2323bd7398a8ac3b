"""From per-voxel uncertainty maps to one number per sample, per slice and per volume.

A plain mean lets a large confident background drown a small uncertain lesion, so the default is
the mean of the top-k% most uncertain voxels (k = 5%), optionally counted only inside the
predicted foreground. Volumes scored slice by slice are then aggregated again the same way over
their slices (`aggregate_volume`). Top-k pooling of voxel uncertainty for segmentation follows
the common practice in the medical active-learning literature, e.g. Nath et al., "Diminishing
Uncertainty Within the Training Pool: Active Learning for Medical Image Segmentation" (IEEE TMI
2021).

Everything here returns numpy (float64 scores, float32 display maps); torch input is accepted.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from medlabeler.engine.active import uncertainty

DEFAULT_TOPK_FRAC = 0.05
AGGREGATIONS = ("topk", "mean", "max")


def _to_numpy(x: Any) -> np.ndarray:
    if type(x).__module__.startswith("torch"):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def _check_frac(frac: float) -> None:
    if not (0.0 < frac <= 1.0):
        raise ValueError(f"top-k fraction must be in (0, 1]; got {frac}")


def _topk_of(values: np.ndarray, frac: float) -> float:
    k = max(1, math.ceil(frac * values.size))
    if k >= values.size:
        return float(values.mean())
    return float(np.partition(values, values.size - k)[values.size - k :].mean())


def predicted_foreground(probs: Any) -> np.ndarray:
    """Boolean (N, ...) map of voxels whose most probable class is not background (class 0)."""
    p = _to_numpy(probs)
    if p.ndim < 3:
        raise ValueError(f"segmentation probabilities need shape (N, C, ...); got {p.shape}")
    return p.argmax(axis=1) != 0


def _per_sample_values(voxel_scores: Any, foreground: Any | None) -> list[np.ndarray]:
    v = _to_numpy(voxel_scores).astype(np.float64, copy=False)
    if v.ndim < 1:
        raise ValueError("voxel scores need a sample axis (N, ...)")
    flat = v.reshape(v.shape[0], -1)
    if foreground is None:
        return list(flat)
    fg = _to_numpy(foreground).astype(bool).reshape(v.shape[0], -1)
    if fg.shape != flat.shape:
        raise ValueError(f"foreground mask shape {fg.shape} does not match voxel scores {v.shape}")
    # An empty predicted foreground must not hide a missed lesion: fall back to the whole sample.
    return [row[m] if m.any() else row for row, m in zip(flat, fg)]


def mean_score(voxel_scores: Any, foreground: Any | None = None) -> np.ndarray:
    """Mean of each sample's voxel map: (N, ...) -> (N,)."""
    return np.array([r.mean() for r in _per_sample_values(voxel_scores, foreground)], dtype=np.float64)


def topk_mean(voxel_scores: Any, frac: float = DEFAULT_TOPK_FRAC, foreground: Any | None = None) -> np.ndarray:
    """Mean of the top `frac` most uncertain voxels of each sample: (N, ...) -> (N,).

    At least one voxel is always used; frac=1 is the plain mean. With `foreground` (bool, same
    shape), only predicted-foreground voxels count, except in a sample with no predicted
    foreground, where all its voxels count. A single map is passed as `map[None]`.
    """
    _check_frac(frac)
    return np.array([_topk_of(r, frac) for r in _per_sample_values(voxel_scores, foreground)], dtype=np.float64)


def aggregate_sample(
    voxel_scores: Any,
    method: str = "topk",
    frac: float = DEFAULT_TOPK_FRAC,
    foreground: Any | None = None,
) -> np.ndarray:
    """One score per sample from voxel maps (N, ...) with `method` in topk / mean / max."""
    if method == "topk":
        return topk_mean(voxel_scores, frac, foreground)
    if method == "mean":
        return mean_score(voxel_scores, foreground)
    if method == "max":
        return np.array([r.max() for r in _per_sample_values(voxel_scores, foreground)], dtype=np.float64)
    raise ValueError(f"unknown aggregation {method!r}; known: {', '.join(AGGREGATIONS)}")


def aggregate_volume(
    slice_scores: Sequence[float] | Mapping[Any, float] | np.ndarray,
    method: str = "topk",
    frac: float = DEFAULT_TOPK_FRAC,
) -> float:
    """One score for a volume from the scores of its slices (a sequence, or {slice_index: score}).

    Default: mean of the top 5% most uncertain slices (at least one), so one uncertain slice in a
    long volume still ranks the volume high.
    """
    values = np.asarray(list(slice_scores.values()) if isinstance(slice_scores, Mapping) else slice_scores, dtype=np.float64)
    if values.size == 0:
        raise ValueError("a volume needs at least one slice score")
    return float(aggregate_sample(values.reshape(1, -1), method, frac)[0])


def aggregate_groups(
    sample_scores: Mapping[int, float],
    groups: Mapping[int, tuple[Hashable, int | None]],
    method: str = "topk",
    frac: float = DEFAULT_TOPK_FRAC,
) -> dict[Hashable, float]:
    """Per-volume scores {group: score} from per-slice sample scores and {sample: (group, slice)}.

    Samples missing from `groups` are left out.
    """
    per_group: dict[Hashable, list[float]] = {}
    for sid, value in sample_scores.items():
        if sid in groups:
            per_group.setdefault(groups[sid][0], []).append(float(value))
    return {g: aggregate_volume(v, method, frac) for g, v in per_group.items()}


def uncertainty_map(probs: Any, name: str = "entropy", mc_probs: Any | None = None) -> np.ndarray:
    """Per-voxel map the viewer overlays: score `name` scaled to [0, 1] (float32, (N, ...)).

    `probs` (N, C, ...) are the (MC-mean) probabilities; BALD needs `mc_probs` (T, N, C, ...).
    The scale divides by the largest value the score can take for C classes, so maps from
    different samples and models share one colour scale.
    """
    raw = _to_numpy(uncertainty.compute(name, probs, mc_probs))
    num_classes = int((probs if probs is not None else mc_probs[0]).shape[1])
    return np.clip(raw / uncertainty.max_score(name, num_classes), 0.0, 1.0).astype(np.float32)
