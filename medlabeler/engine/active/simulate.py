"""Simulated-clinician benchmark: does a strategy reach a given quality with fewer labels?

A fully labeled pool is treated as unlabeled; each round a strategy picks `per_round` samples and
the simulated clinician "labels" them (their true labels become usable), a model is trained on the
labeled set and evaluated on held-out data. The curve (labels used, metric) is compared between
strategies, averaged over seeds, as in the active-learning benchmarks of Sener & Savarese (ICLR
2018) and Gal et al. (ICML 2017).

Training is always the caller's: `train_and_eval(labeled_ids) -> metric` (or `(metric, model)`),
and optionally `score_fn(model, unlabeled_ids) -> scores` (or `(scores, embeddings)`) with scores
as {sample: {name: value}}. `arrays_task` builds both from plain arrays for quick studies.
Every round starts from the same seeded random initial set for every strategy, so strategies
are compared on equal footing.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medlabeler.engine.active import strategies, uncertainty

TrainAndEval = Callable[[list[int]], Any]
ScoreFn = Callable[[Any, list[int]], Any]


@dataclass
class Curve:
    """One simulated run: metric after each round against the number of labels used."""

    strategy: str
    seed: int
    labels: list[int] = field(default_factory=list)
    metrics: list[float] = field(default_factory=list)
    chosen: list[list[int]] = field(default_factory=list)

    def points(self) -> list[tuple[int, float]]:
        return list(zip(self.labels, self.metrics))


def _split_output(out: Any) -> tuple[Any, Any]:
    return (out[0], out[1]) if isinstance(out, tuple) else (out, None)


def simulate_active_learning(
    train_and_eval: TrainAndEval | tuple,
    pool_ids: Sequence[int],
    strategy: str,
    rounds: int,
    per_round: int,
    seed: int = 0,
    score_fn: ScoreFn | None = None,
    *,
    initial: Sequence[int] | None = None,
    initial_size: int | None = None,
    embeddings: Mapping[int, Any] | None = None,
    groups: Mapping[int, tuple] | None = None,
    **select_options: Any,
) -> Curve:
    """Run `rounds` acquisition rounds of `per_round` labels with `strategy`; return the curve.

    `train_and_eval` is a callable, or a tuple (x_pool, y_pool, x_test, y_test) handed to
    `arrays_task` (then `score_fn` and embeddings come from it and pool_ids index x_pool).
    The curve has rounds + 1 points: the initial set (`initial`, else `initial_size` (default
    `per_round`) seeded random samples), then one after each round. `embeddings` (fixed, e.g.
    SSL features) serve k-center unless `score_fn` returns its own. Stops early when the pool
    is exhausted.
    """
    if isinstance(train_and_eval, tuple):
        train_and_eval, task_score_fn, task_emb = arrays_task(*train_and_eval)
        score_fn = score_fn or task_score_fn
        embeddings = embeddings if embeddings is not None else task_emb
    pool = [int(i) for i in pool_ids]
    if initial is None:
        size = min(len(pool), initial_size if initial_size is not None else per_round)
        rng = np.random.default_rng(seed)
        initial = [pool[i] for i in rng.choice(len(pool), size=size, replace=False)]
    labeled = list(dict.fromkeys(int(i) for i in initial))
    curve = Curve(strategy, seed, chosen=[list(labeled)])
    for r in range(rounds + 1):
        metric, model = _split_output(train_and_eval(list(labeled)))
        curve.labels.append(len(labeled))
        curve.metrics.append(float(metric))
        if r == rounds:
            break
        labeled_set = set(labeled)
        unlabeled = [i for i in pool if i not in labeled_set]
        if not unlabeled:
            break
        scores: Mapping[int, Mapping[str, float]] = {}
        emb = embeddings
        if score_fn is not None and strategy != "random":
            scores, round_emb = _split_output(score_fn(model, unlabeled))
            emb = round_emb if round_emb is not None else embeddings
        picks = strategies.select(
            strategy, candidates=unlabeled, scores=scores, embeddings=emb, labeled=labeled,
            n=per_round, seed=seed * 100_003 + r, groups=groups, **select_options,
        )
        if not picks:
            break
        curve.chosen.append([p.sample for p in picks])
        labeled.extend(p.sample for p in picks)
    return curve


def run_benchmark(
    train_and_eval: TrainAndEval | tuple,
    pool_ids: Sequence[int],
    strategy_names: Sequence[str],
    seeds: Sequence[int],
    rounds: int,
    per_round: int,
    score_fn: ScoreFn | None = None,
    **kw: Any,
) -> list[Curve]:
    """`simulate_active_learning` for every strategy and seed."""
    return [
        simulate_active_learning(train_and_eval, pool_ids, s, rounds, per_round, seed, score_fn, **kw)
        for s in strategy_names
        for seed in seeds
    ]


def labels_to_reach(curve: Curve | Sequence[tuple[int, float]], target: float) -> int | None:
    """Fewest labels at which the curve's metric is >= `target` (first point reaching it), or None."""
    points = curve.points() if isinstance(curve, Curve) else list(curve)
    for labels, metric in sorted(points, key=lambda p: p[0]):
        if metric >= target:
            return int(labels)
    return None


def summarize(curves: Sequence[Curve]) -> dict[str, list[tuple[int, float, float, int]]]:
    """{strategy: [(labels, mean, std, n_seeds), ...]} over seeds, at each label count."""
    by: dict[str, dict[int, list[float]]] = {}
    for c in curves:
        for labels, metric in c.points():
            by.setdefault(c.strategy, {}).setdefault(labels, []).append(metric)
    return {
        s: [(l, float(np.mean(v)), float(np.std(v)), len(v)) for l, v in sorted(d.items())]
        for s, d in by.items()
    }


def reach_table(curves: Sequence[Curve], full_metric: float, fraction: float = 0.95) -> list[dict[str, Any]]:
    """Per strategy: labels needed to reach `fraction` x the full-supervision metric, over seeds."""
    target = fraction * full_metric
    rows = []
    for s in dict.fromkeys(c.strategy for c in curves):
        needed = [labels_to_reach(c, target) for c in curves if c.strategy == s]
        hit = [n for n in needed if n is not None]
        rows.append({
            "strategy": s,
            "target": target,
            "labels_mean": float(np.mean(hit)) if hit else math.nan,
            "labels_std": float(np.std(hit)) if hit else math.nan,
            "seeds_reached": len(hit),
            "seeds": len(needed),
        })
    return rows


def write_report(
    curves: Sequence[Curve],
    out_dir: str | Path,
    full_metric: float | None = None,
    fraction: float = 0.95,
    metric_name: str = "metric",
    title: str = "Active learning: simulated clinician",
) -> dict[str, Path]:
    """Write curves.csv, summary.csv, reach.csv (if `full_metric`) and curves.png into `out_dir`.

    The plot shows mean +- std over seeds per strategy, and the full-supervision level and the
    `fraction` target as dashed lines. Uses matplotlib's Agg canvas directly (no pyplot, no
    change of the process-wide backend, safe inside the napari app).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"curves": out / "curves.csv", "summary": out / "summary.csv", "plot": out / "curves.png"}
    with open(paths["curves"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["strategy", "seed", "round", "labels", metric_name])
        for c in curves:
            for r, (labels, metric) in enumerate(c.points()):
                w.writerow([c.strategy, c.seed, r, labels, f"{metric:.6g}"])
    summary = summarize(curves)
    with open(paths["summary"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["strategy", "labels", f"{metric_name}_mean", f"{metric_name}_std", "seeds"])
        for s, rows in summary.items():
            for labels, mean, std, k in rows:
                w.writerow([s, labels, f"{mean:.6g}", f"{std:.6g}", k])
    if full_metric is not None:
        paths["reach"] = out / "reach.csv"
        with open(paths["reach"], "w", newline="") as f:
            rows = reach_table(curves, full_metric, fraction)
            w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["strategy"])
            w.writeheader()
            w.writerows(rows)

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for s, rows in summary.items():
        x = np.array([r[0] for r in rows])
        m = np.array([r[1] for r in rows])
        sd = np.array([r[2] for r in rows])
        ax.plot(x, m, marker="o", ms=3, label=s)
        ax.fill_between(x, m - sd, m + sd, alpha=0.2)
    if full_metric is not None:
        ax.axhline(full_metric, color="k", ls="--", lw=1, label="all labels")
        ax.axhline(fraction * full_metric, color="grey", ls=":", lw=1, label=f"{fraction:.0%} of all labels")
    ax.set_xlabel("labels used")
    ax.set_ylabel(metric_name)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(paths["plot"])
    return paths


# ----------------------------------------------------------------------------- arrays


class NearestCentroid:
    """Tiny probabilistic classifier (softmax of negative squared distances to class means)."""

    def __init__(self, temperature: float = 1.0):
        self.temperature = temperature

    def fit(self, x: np.ndarray, y: np.ndarray) -> NearestCentroid:
        self.classes_ = np.unique(y)
        self.centroids_ = np.stack([x[y == c].mean(0) for c in self.classes_])
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        d = ((x[:, None, :] - self.centroids_[None]) ** 2).sum(-1) / self.temperature
        z = -d - (-d).max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)


def arrays_task(
    x_pool: np.ndarray,
    y_pool: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    make_model: Callable[[], Any] | None = None,
) -> tuple[TrainAndEval, ScoreFn, dict[int, np.ndarray]]:
    """(train_and_eval, score_fn, embeddings) for a classifier on arrays; sample id = row index.

    `make_model()` returns an estimator with fit / predict_proba / classes_ (scikit-learn style;
    default `NearestCentroid`). Metric: test accuracy. Scores: entropy, margin, least confidence
    over all classes of y_pool. Embeddings: the flattened pool rows.
    """
    xp = np.asarray(x_pool, dtype=np.float64).reshape(len(x_pool), -1)
    xt = np.asarray(x_test, dtype=np.float64).reshape(len(x_test), -1)
    yp, yt = np.asarray(y_pool), np.asarray(y_test)
    classes = np.unique(np.concatenate([yp, yt]))
    make = make_model or NearestCentroid

    def full_proba(model: Any, x: np.ndarray) -> np.ndarray:
        p = np.zeros((len(x), len(classes)))
        cols = np.searchsorted(classes, model.classes_)
        p[:, cols] = model.predict_proba(x)
        return p

    def train_and_eval(labeled: list[int]) -> tuple[float, Any]:
        model = make().fit(xp[labeled], yp[labeled])
        acc = float((classes[full_proba(model, xt).argmax(1)] == yt).mean())
        return acc, model

    def score_fn(model: Any, ids: list[int]) -> dict[int, dict[str, float]]:
        p = full_proba(model, xp[ids])
        vals = {n: uncertainty.compute(n, p) for n in ("entropy", "margin", "least_confidence")}
        return {sid: {n: float(v[j]) for n, v in vals.items()} for j, sid in enumerate(ids)}

    return train_and_eval, score_fn, {i: xp[i] for i in range(len(xp))}
