"""Uncertainty scores from class probabilities (higher always means more uncertain).

Inputs are numpy arrays or torch tensors of probabilities (after softmax, not logits) with the
class axis at 1: (N, C) for classification, (N, C, H, W) or (N, C, D, H, W) for segmentation.
Outputs drop the class axis: (N,) or per-voxel maps (N, H, W) / (N, D, H, W), same library as
the input. BALD takes MC-dropout samples (T, N, C, ...) and returns (N, ...).

References: Settles, "Active Learning Literature Survey" (2009) for entropy, margin and least
confidence; Houlsby et al., "Bayesian Active Learning for Classification and Preference
Learning" (2011) and Gal, Islam & Ghahramani, "Deep Bayesian Active Learning with Image Data"
(ICML 2017) for BALD with MC dropout.

Numerics: `p * log(p)` is computed as `p * log(max(p, eps))`, so a probability of exactly 0 or 1
contributes exactly 0 (no NaN, no -inf for one-hot predictions); results are clamped at 0 so
rounding never gives a tiny negative score. Half-precision inputs are computed in float32.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

EPS = 1e-12

SCORE_NAMES = ("entropy", "margin", "least_confidence", "bald")
"""Scores this module computes; `bald` needs MC-dropout passes."""


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _as_float(x: Any) -> Any:
    """Float array/tensor (float32 at least) of the same library."""
    if _is_torch(x):
        import torch

        if not torch.is_floating_point(x) or x.dtype in (torch.float16, torch.bfloat16):
            return x.float()
        return x
    arr = np.asarray(x)
    if arr.dtype.kind != "f" or arr.dtype.itemsize < 4:
        return arr.astype(np.float32)
    return arr


def _check_probs(p: Any, what: str = "probabilities") -> None:
    if p.ndim < 2:
        raise ValueError(f"{what} need a sample axis and a class axis (N, C, ...); got shape {tuple(p.shape)}")
    if p.shape[1] < 2:
        raise ValueError(f"{what} need at least 2 classes on axis 1; got shape {tuple(p.shape)}")


def _plogp_sum(p: Any, axis: int) -> Any:
    """sum over `axis` of p * log(p), with 0 * log 0 = 0."""
    if _is_torch(p):
        return (p * p.clamp_min(EPS).log()).sum(dim=axis)
    return (p * np.log(np.maximum(p, EPS))).sum(axis=axis)


def _clamp0(x: Any) -> Any:
    return x.clamp_min(0.0) + 0.0 if _is_torch(x) else np.maximum(x, 0.0)  # + 0.0 turns -0.0 into 0.0


def entropy(p: Any) -> Any:
    """Predictive (Shannon) entropy in nats: `-sum_c p_c log p_c` over axis 1.

    Uniform probabilities over C classes give log(C); a one-hot prediction gives 0.
    """
    p = _as_float(p)
    _check_probs(p)
    return _clamp0(-_plogp_sum(p, axis=1))


def margin(p: Any) -> Any:
    """Margin uncertainty `1 - (p_top1 - p_top2)`, in [0, 1].

    The classic margin score (Scheffer et al. 2001) is `p_top1 - p_top2` where SMALL means
    uncertain; it is flipped here so that, like every score in this module, higher means more
    uncertain: 1 when the two best classes tie, 0 for a one-hot prediction.
    """
    p = _as_float(p)
    _check_probs(p)
    if _is_torch(p):
        import torch

        top2 = torch.topk(p, 2, dim=1).values
        return _clamp0(1.0 - (top2[:, 0] - top2[:, 1]))
    top2 = -np.partition(-p, 1, axis=1)[:, :2]
    return _clamp0(1.0 - (top2[:, 0] - top2[:, 1]))


def least_confidence(p: Any) -> Any:
    """Least-confidence uncertainty `1 - max_c p_c`, in [0, 1 - 1/C]."""
    p = _as_float(p)
    _check_probs(p)
    if _is_torch(p):
        return _clamp0(1.0 - p.amax(dim=1))
    return _clamp0(1.0 - p.max(axis=1))


def bald(mc_probs: Any) -> Any:
    """BALD mutual information `H[mean_t p_t] - mean_t H[p_t]` (nats) from MC-dropout passes.

    `mc_probs` has shape (T, N, C, ...): T stochastic forward passes with dropout kept on.
    Identical passes give 0 (no model disagreement); passes that are each confident but split
    evenly between two classes give log 2. Always in [0, log C].
    """
    q = _as_float(mc_probs)
    if q.ndim < 3:
        raise ValueError(f"MC probabilities need shape (T, N, C, ...); got {tuple(q.shape)}")
    if q.shape[0] < 2:
        raise ValueError(f"BALD needs at least 2 MC-dropout passes; got {q.shape[0]}")
    _check_probs(q[0], "MC probabilities")
    mean_p = q.mean(0) if _is_torch(q) else q.mean(axis=0)
    predictive = -_plogp_sum(mean_p, axis=1)
    expected = -_plogp_sum(q, axis=2)
    expected = expected.mean(0) if _is_torch(q) else expected.mean(axis=0)
    return _clamp0(predictive - expected)


def max_score(name: str, num_classes: int) -> float:
    """Largest value score `name` can take for C classes (to scale a map to [0, 1] for display)."""
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes; got {num_classes}")
    if name in ("entropy", "bald"):
        return math.log(num_classes)
    if name == "margin":
        return 1.0
    if name == "least_confidence":
        return 1.0 - 1.0 / num_classes
    raise ValueError(f"unknown score {name!r}; known: {', '.join(SCORE_NAMES)}")


def compute(name: str, probs: Any, mc_probs: Any = None) -> Any:
    """Score `name` from probs (N, C, ...); `bald` instead needs mc_probs (T, N, C, ...)."""
    if name == "bald":
        if mc_probs is None:
            raise ValueError("BALD needs MC-dropout probabilities (run scoring with mc_passes >= 2)")
        return bald(mc_probs)
    fn = {"entropy": entropy, "margin": margin, "least_confidence": least_confidence}.get(name)
    if fn is None:
        raise ValueError(f"unknown score {name!r}; known: {', '.join(SCORE_NAMES)}")
    return fn(probs)
