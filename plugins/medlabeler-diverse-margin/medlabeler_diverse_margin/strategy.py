"""Diverse mini-batch active learning: margin uncertainty, then diversity by weighted k-means.

Zhdanov, "Diverse mini-batch Active Learning", arXiv:1901.05954 (2019): keep the beta x k most
informative candidates, cluster them into k clusters with k-means weighted by informativeness,
and label the candidate nearest each cluster centre. Informativeness here is medlabeler's stored
margin score 1 - (p_top1 - p_top2); the clustering runs on the stored encoder embeddings
(L2-normalised, the cosine geometry medlabeler's duplicate check uses).

medlabeler calls a strategy with keyword arguments (see ``medlabeler.engine.active.strategies``):
``n`` is how many ranked candidates to return (it asks for a few times the batch so it can skip
near-duplicates), ``batch`` the batch the clinician will label. The first ``batch`` picks are one
per cluster; later ones go round the clusters again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medlabeler.engine.active.strategies import Selection, cold_start_strategy, uncertainty_strategy


def _informative(candidates: Sequence[int], scores: Mapping[int, Mapping[str, float]], name: str) -> list[tuple[int, float]]:
    """Candidates with a finite score, most uncertain first (ties: smaller id first)."""
    found = [(int(c), float(scores[c][name])) for c in candidates
             if name in scores.get(c, {}) and math.isfinite(float(scores[c][name]))]
    return sorted(found, key=lambda cv: (-cv[1], cv[0]))


def weighted_kmeans(points: np.ndarray, weights: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cluster labels (N,) and centres (k, D) of k-means weighted by ``weights``."""
    from sklearn.cluster import KMeans

    model = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(points, sample_weight=weights)
    return model.labels_, model.cluster_centers_


def diverse_margin(
    *,
    candidates: Sequence[int],
    scores: Mapping[int, Mapping[str, float]],
    embeddings: Mapping[int, Any] | None,
    n: int,
    seed: int = 0,
    batch: int | None = None,
    beta: int = 10,
    score: str = "margin",
    **kwargs: Any,
) -> list[Selection]:
    """Up to ``n`` candidates: the top ``beta`` x batch by margin, spread over batch clusters."""
    ranked = _informative(candidates, scores, score)
    if not ranked:  # no model yet: medlabeler's own cold start (k-center on SSL embeddings)
        return cold_start_strategy(candidates=candidates, embeddings=embeddings, n=n, seed=seed,
                                   prefix=f"no {score} scores yet: ", **kwargs)
    k = max(1, min(batch or n, n, len(ranked)))
    top = [(c, v) for c, v in ranked[: max(k, beta * k)] if embeddings and c in embeddings]
    if len(top) <= k:  # too few embedded candidates to cluster: plain margin order
        return uncertainty_strategy(score, candidates=candidates, scores=scores, n=n)
    ids = [c for c, _ in top]
    points = np.stack([np.asarray(embeddings[c], dtype=np.float64).ravel() for c in ids])
    points /= np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-12)
    weights = np.array([v for _, v in top]) + 1e-6  # a zero weight would drop a point
    labels, centres = weighted_kmeans(points, weights, k, seed)
    return _one_per_cluster(ids, dict(top), points, labels, centres, n)


def _one_per_cluster(ids, value_of, points, labels, centres, n: int) -> list[Selection]:
    """Nearest-to-centre member of each cluster first (heaviest clusters first), then round again."""
    members = []
    for cluster in range(centres.shape[0]):
        rows = np.flatnonzero(labels == cluster)
        distance = ((points[rows] - centres[cluster]) ** 2).sum(1)
        members.append([ids[r] for r in rows[np.argsort(distance, kind="stable")]])
    order = sorted(range(len(members)), key=lambda c: -sum(value_of[i] for i in members[c]))
    out: list[Selection] = []
    for depth in range(max(len(m) for m in members)):
        for cluster in order:
            if depth < len(members[cluster]) and len(out) < n:
                sample = members[cluster][depth]
                out.append(Selection(sample, value_of[sample],
                                     f"margin uncertainty {value_of[sample]:.2f}, typical of image cluster "
                                     f"{order.index(cluster) + 1} of {len(order)} (diverse margin)"))
    return out
