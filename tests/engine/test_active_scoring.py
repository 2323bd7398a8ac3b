"""Scoring the pool: scores from a predict callable, progress, cancel, staleness in the store."""

import itertools
import math
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from medlabeler.engine.active import aggregate, scoring, uncertainty
from medlabeler.engine.training.events import run_to_end


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def drive(gen):
    events = []
    result = run_to_end(gen, events.append)
    return events, result


def fake_clock(step=0.5):
    ticks = itertools.count()
    return lambda: next(ticks) * step


def test_classification_scores_match_the_score_functions_and_report_progress():
    rng = np.random.default_rng(0)
    probs = softmax(rng.normal(size=(10, 3)), 1)
    calls = []

    def predict(ids):
        calls.append(list(ids))
        return probs[ids]

    events, res = drive(scoring.score_pool(predict, range(10), task="classification", batch_size=4, clock=fake_clock()))
    assert calls == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert set(res.scores) == set(range(10)) and res.names == ("entropy", "margin", "least_confidence")
    ent = uncertainty.entropy(probs)
    for i in range(10):
        assert res.scores[i]["entropy"] == pytest.approx(ent[i])
        assert res.scores[i]["least_confidence"] == pytest.approx(1 - probs[i].max())
    progress = [e for e in events if e.kind == "progress"]
    assert [e.done for e in progress] == [0, 4, 8, 10] and all(e.total == 10 for e in progress)
    assert progress[-1].samples_per_s > 0 and res.samples_per_s > 0 and not res.cancelled


def test_mc_dropout_adds_bald_and_uses_mean_probabilities():
    a = np.array([[1.0, 0.0], [0.7, 0.3]])
    b = np.array([[0.0, 1.0], [0.7, 0.3]])
    mc = np.stack([a, b, a, b])

    def predict(ids):
        return torch.tensor(mc[:, ids])

    _, res = drive(scoring.score_pool(predict, [0, 1], task="classification", mc_passes=4, batch_size=8))
    assert res.scores[0]["bald"] == pytest.approx(math.log(2))
    assert res.scores[0]["entropy"] == pytest.approx(math.log(2))  # of the MC mean (0.5, 0.5)
    assert res.scores[1]["bald"] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="T=3"):
        drive(scoring.score_pool(predict, [0], task="classification", mc_passes=3))
    with pytest.raises(ValueError, match="mc_passes"):
        drive(scoring.score_pool(predict, [0], task="classification", mc_passes=1))
    with pytest.raises(ValueError, match="bald"):
        drive(scoring.score_pool(predict, [0], task="classification", names=["bald"]))


def test_segmentation_topk_aggregation_maps_and_embeddings():
    probs = np.zeros((2, 2, 20, 20))
    probs[:, 0] = 1.0
    probs[0, :, 0:2, 0:2] = 0.5  # a small uncertain spot in sample 0 only
    feats = np.arange(2 * 5, dtype=float).reshape(2, 5)

    def predict(ids):
        return probs[ids], feats[ids]

    _, res = drive(scoring.score_pool(predict, [0, 1], task="segmentation", keep_maps=True, topk_frac=0.01))
    expected = aggregate.topk_mean(uncertainty.entropy(probs), 0.01)
    assert res.scores[0]["entropy"] == pytest.approx(expected[0]) == pytest.approx(math.log(2))
    assert res.scores[1]["entropy"] == 0.0
    assert res.maps[0].shape == (20, 20) and res.maps[0].max() == pytest.approx(1.0)
    np.testing.assert_array_equal(res.embeddings[1], feats[1])
    with pytest.raises(ValueError, match="shape"):
        drive(scoring.score_pool(lambda ids: probs[ids, 0, 0], [0], task="segmentation"))


def test_logits_and_nan_are_refused():
    logits = np.array([[2.0, -1.0]])
    with pytest.raises(ValueError, match="not logits"):
        drive(scoring.score_pool(lambda ids: logits, [0], task="classification"))
    with pytest.raises(ValueError, match="NaN"):
        drive(scoring.score_pool(lambda ids: np.array([[np.nan, 0.5]]), [0], task="classification"))
    with pytest.raises(ValueError, match="task"):
        drive(scoring.score_pool(lambda ids: logits, [0], task="detection"))


@pytest.mark.parametrize("kind", ["event", "callable", "token"])
def test_cancel_stops_between_batches_and_keeps_finished_scores(kind):
    stop = threading.Event()
    token = {"event": stop, "callable": stop.is_set, "token": SimpleNamespace(cancelled=False)}[kind]
    seen = []

    def predict(ids):
        seen.extend(ids)
        stop.set()
        if kind == "token":
            token.cancelled = True
        return np.full((len(ids), 2), 0.5)

    events, res = drive(scoring.score_pool(predict, range(100), task="classification", batch_size=10, cancel=token))
    assert res.cancelled and seen == list(range(10)) and set(res.scores) == set(range(10))
    assert "cancelled after 10/100" in events[-1].message


# ---------------------------------------------------------------- store-facing


class FakeProject:
    """The store contract's score methods, in memory."""

    def __init__(self, n=5):
        self._samples = [SimpleNamespace(id=i, split="train") for i in range(n)]
        self._labeled = set()
        self._scores = {}
        self._emb = {}
        self._active = None

    def samples(self, split=None, labeled=None):
        return [s for s in self._samples if labeled is None or (s.id in self._labeled) == labeled]

    def blank_ids(self):
        return frozenset()

    def models(self):
        return [SimpleNamespace(version=v) for v in sorted(self._scores) if v != 0]

    def active_model(self):
        return None if self._active is None else SimpleNamespace(version=self._active)

    def write_scores(self, model_version, scores):
        self._scores.setdefault(model_version, {}).update(scores)

    def scores(self, model_version=None, name=None):
        return dict(self._scores.get(model_version, {}))

    def write_embeddings(self, model_version, ids, array):
        self._emb[model_version] = (list(ids), np.asarray(array))



def test_write_scores_and_stale_detection():
    p = FakeProject()
    assert scoring.write_scores_to_project(p, 1, {0: {"entropy": 0.5, "model_version": 1}, 1: {"entropy": 0.2}}) == 2
    assert p.scores(1) == {0: {"entropy": 0.5}, 1: {"entropy": 0.2}}
    p._active = 1
    assert scoring.stale(p) == []
    p._active = 2  # a new model was trained: every old score is stale until rescored
    scoring.write_scores_to_project(p, 2, {1: {"entropy": 0.9}})
    assert scoring.stale(p) == [0]
    p._active = None  # no active model: scores of any model are stale, those under key 0 are not
    scoring.write_scores_to_project(p, 0, {3: {"entropy": 0.1}})
    assert scoring.stale(p) == [0, 1]


def test_score_then_write_round_trip_with_embeddings():
    p = FakeProject(4)
    probs = np.array([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4], [1.0, 0.0]])
    _, res = drive(scoring.score_pool(lambda ids: (probs[ids], np.eye(4)[ids]), range(4), task="classification", batch_size=3))
    scoring.write_scores_to_project(p, 3, res.scores)
    assert scoring.write_embeddings_to_project(p, 3, res.embeddings) == 4
    ids, arr = p._emb[3]
    assert ids == [0, 1, 2, 3] and arr.dtype == np.float32 and (arr == np.eye(4)).all()
    assert max(p.scores(3), key=lambda s: p.scores(3)[s]["entropy"]) == 0
