"""Simulated-clinician benchmark, end to end on a toy set with a tiny classifier."""

import csv
import math

import numpy as np
import pytest

from medlabeler.engine.active import simulate as sim


def toy_blobs(seed=0, n_pool=120, n_test=60):
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    y = rng.integers(0, 3, n_pool + n_test)
    x = centers[y] + rng.normal(scale=0.8, size=(len(y), 2))
    return x[:n_pool], y[:n_pool], x[n_pool:], y[n_pool:]


def test_labels_to_reach_by_hand():
    curve = sim.Curve("x", 0, labels=[5, 10, 15, 20], metrics=[0.5, 0.7, 0.69, 0.9])
    assert sim.labels_to_reach(curve, 0.7) == 10
    assert sim.labels_to_reach(curve, 0.85) == 20
    assert sim.labels_to_reach(curve, 0.95) is None
    assert sim.labels_to_reach([(20, 0.9), (5, 0.8)], 0.75) == 5


def test_only_chosen_labels_are_revealed_and_the_model_reaches_score_fn():
    pool = list(range(30))
    seen_labeled, seen_models = [], []

    def train_and_eval(labeled):
        seen_labeled.append(list(labeled))
        return len(labeled) / 30, {"trained_on": len(labeled)}

    def score_fn(model, ids):
        seen_models.append(model["trained_on"])
        return {i: {"entropy": i / 30} for i in ids}  # higher id = more uncertain

    curve = sim.simulate_active_learning(train_and_eval, pool, "entropy", rounds=3, per_round=4, seed=1, score_fn=score_fn, initial=[0, 1])
    assert curve.labels == [2, 6, 10, 14] and curve.metrics == pytest.approx([2 / 30, 6 / 30, 10 / 30, 14 / 30])
    assert seen_labeled[1] == [0, 1, 29, 28, 27, 26]  # the four most uncertain, nothing else revealed
    assert seen_models == [2, 6, 10]
    flat = [i for round_ids in curve.chosen for i in round_ids]
    assert len(flat) == len(set(flat)) == 14


def test_benchmark_end_to_end_writes_csv_png_and_reach_table(tmp_path):
    task = toy_blobs()
    train_and_eval, _, _ = sim.arrays_task(*task)
    pool = list(range(len(task[0])))
    full = train_and_eval(pool)[0]
    assert full > 0.8  # the toy task is learnable
    strategies = ["random", "entropy", "kcenter", "hybrid"]
    curves = sim.run_benchmark(task, pool, strategies, seeds=[0, 1, 2], rounds=4, per_round=3)
    assert len(curves) == 12
    for c in curves:
        assert c.labels == [3, 6, 9, 12, 15]
        assert all(0.0 <= m <= 1.0 for m in c.metrics)
    # same seed -> same initial labeled set for every strategy (fair comparison)
    assert len({tuple(c.chosen[0]) for c in curves if c.seed == 0}) == 1

    paths = sim.write_report(curves, tmp_path / "bench", full_metric=full, metric_name="accuracy")
    rows = list(csv.DictReader(open(paths["curves"])))
    assert len(rows) == 12 * 5 and set(rows[0]) == {"strategy", "seed", "round", "labels", "accuracy"}
    summary = list(csv.DictReader(open(paths["summary"])))
    assert len(summary) == 4 * 5
    r = [s for s in summary if s["strategy"] == "random" and s["labels"] == "3"][0]
    vals = [c.metrics[0] for c in curves if c.strategy == "random"]
    assert float(r["accuracy_mean"]) == pytest.approx(np.mean(vals), rel=1e-5)
    assert float(r["accuracy_std"]) == pytest.approx(np.std(vals), rel=1e-4, abs=1e-6)
    reach = list(csv.DictReader(open(paths["reach"])))
    assert [row["strategy"] for row in reach] == strategies
    assert float(reach[0]["target"]) == pytest.approx(0.95 * full, rel=1e-6)
    for row in sim.reach_table(curves, full):
        needed = [sim.labels_to_reach(c, 0.95 * full) for c in curves if c.strategy == row["strategy"]]
        hit = [n for n in needed if n is not None]
        assert row["seeds_reached"] == len(hit)
        assert (math.isnan(row["labels_mean"]) and not hit) or row["labels_mean"] == pytest.approx(np.mean(hit))
    png = paths["plot"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_uncertainty_beats_random_where_labels_near_the_boundary_matter():
    # 1D pool: most points far from the class boundary at 0, a few near it. A threshold learned
    # from the labeled points is exact only if points near 0 get labeled.
    rng = np.random.default_rng(0)
    far = np.concatenate([rng.uniform(-10, -3, 90), rng.uniform(3, 10, 90)])
    near = rng.uniform(-0.6, 0.6, 20)
    x_pool = np.concatenate([far, near])[:, None]
    y_pool = (x_pool[:, 0] > 0).astype(int)
    x_test = np.linspace(-1, 1, 201)[:, None]
    y_test = (x_test[:, 0] > 0).astype(int)

    class Threshold:
        def fit(self, x, y):
            self.classes_ = np.unique(y)
            lo, hi = x[y == 0, 0].max(initial=-np.inf), x[y == 1, 0].min(initial=np.inf)
            self.t = 0.5 * (lo + hi) if np.isfinite(lo) and np.isfinite(hi) else 0.0
            return self

        def predict_proba(self, x):
            p1 = 1 / (1 + np.exp(-(x[:, 0] - self.t) * 2))
            p = np.stack([1 - p1, p1], 1)
            return p if len(self.classes_) == 2 else p[:, self.classes_]

    task = (x_pool, y_pool, x_test, y_test)
    pool = list(range(len(x_pool)))
    far_pos = np.flatnonzero(x_pool[:, 0] >= 3)
    init = [int(np.argmin(x_pool[:, 0])), int(far_pos[np.argmin(x_pool[far_pos, 0])])]  # threshold starts near -3.5
    kw = dict(rounds=5, per_round=2, initial=init, dedup_threshold=None)
    te, sf, _ = sim.arrays_task(*task, make_model=Threshold)
    unc = [sim.simulate_active_learning(te, pool, "margin", seed=s, score_fn=sf, **kw) for s in range(3)]
    rnd = [sim.simulate_active_learning(te, pool, "random", seed=s, score_fn=sf, **kw) for s in range(3)]
    assert np.mean([c.metrics[-1] for c in unc]) > np.mean([c.metrics[-1] for c in rnd])
    assert min(c.metrics[-1] for c in unc) > 0.95
