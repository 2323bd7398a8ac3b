"""Strategies rank stored scores: k-center, hybrid, batches without near-duplicates, cold start."""

import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medlabeler.engine.active import strategies as S
from medlabeler.engine.active.strategies import Selection, select


def ids_of(sel):
    return [s.sample for s in sel]


# ---------------------------------------------------------------- k-center


def test_kcenter_toy_2d_hand_checked():
    # labeled at the origin. Distances: 1->1, 2->10, 3->6, 4->9.06. First pick 2 (10).
    # Then 4 is 1.41 from 2 while 3 stays 6 away: second pick 3, not the runner-up 4.
    emb = {0: [0, 0], 1: [1, 0], 2: [10, 0], 3: [0, 6], 4: [9, 1]}
    emb = {k: np.array(v, float) for k, v in emb.items()}
    sel = select("kcenter", candidates=[1, 2, 3, 4], scores={}, embeddings=emb, labeled=[0], n=2, dedup_threshold=None)
    assert ids_of(sel) == [2, 3]
    assert sel[0].score == pytest.approx(10.0) and sel[1].score == pytest.approx(6.0)
    assert "far from labeled samples (k-center" in sel[0].reason
    full = select("kcenter", candidates=[1, 2, 3, 4], scores={}, embeddings=emb, labeled=[0], n=4, dedup_threshold=None)
    assert ids_of(full) == [2, 3, 4, 1]


def ref_kcenter(points, centers, k):
    """Plain-loop greedy: each pick maximises the distance to the nearest center so far."""
    cen = [list(c) for c in centers]
    picked = []
    for _ in range(k):
        best, best_d = None, -1.0
        for i, p in enumerate(points):
            if i in picked:
                continue
            d = min(math.dist(p, c) for c in cen)
            if d > best_d:
                best, best_d = i, d
        picked.append(best)
        cen.append(list(points[best]))
    return picked


def test_kcenter_greedy_matches_loop_reference():
    rng = np.random.default_rng(0)
    pts, cen = rng.normal(size=(40, 3)), rng.normal(size=(3, 3))
    got, gaps = S.kcenter_greedy(pts, cen, 8)
    assert got == ref_kcenter(pts.tolist(), cen.tolist(), 8)
    assert gaps == sorted(gaps, reverse=True)  # greedy distances never increase


def test_kcenter_without_centers_starts_at_a_typical_sample():
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 5.0]])
    got, gaps = S.kcenter_greedy(pts, None, 2)
    assert got == [0, 3] and math.isinf(gaps[0])  # mean is (0, 1.25): nearest is row 0


# ---------------------------------------------------------------- uncertainty, random, hybrid


def test_uncertainty_by_name_descending_with_readable_reason():
    scores = {i: {"entropy": i / 100} for i in range(100)}
    sel = select("entropy", candidates=list(range(100)), scores=scores, embeddings=None, labeled=[99], n=3)
    assert ids_of(sel) == [98, 97, 96]
    assert sel[0].reason == "entropy 0.98 (most uncertain #1 of 99)"
    assert [s.reason for s in sel[1:]] == ["entropy 0.97 (most uncertain #2 of 99)", "entropy 0.96 (most uncertain #3 of 99)"]
    sel = select("bald", candidates=[1, 2], scores={1: {"bald": 0.2}, 2: {"bald": 0.1}}, embeddings=None, labeled=[], n=1)
    assert sel[0].reason.startswith("model disagreement (BALD) 0.20")


def test_random_is_seeded_and_labelled_as_control():
    cands = list(range(50))
    a = select("random", candidates=cands, scores={}, embeddings=None, labeled=[], n=10, seed=3)
    b = select("random", candidates=cands, scores={}, embeddings=None, labeled=[], n=10, seed=3)
    c = select("random", candidates=cands, scores={}, embeddings=None, labeled=[], n=10, seed=4)
    assert ids_of(a) == ids_of(b) != ids_of(c)
    assert all(s.reason == "random order (the control strategy)" for s in a)


def test_random_order_stays_when_a_sample_is_labeled_and_is_spread_over_a_volume():
    """Labeling the first random pick leaves the rest of the order as it was: with a seeded
    permutation of the pool, the next pick was a neighbour of the one labeled (slices 72, 71, 73)."""
    cands = list(range(1, 190))  # the slices of one volume, in order
    first = ids_of(select("random", candidates=cands, scores={}, embeddings=None, labeled=[], n=6, seed=0))
    for _ in range(4):
        top, rest = first[0], first[1:]
        cands.remove(top)
        after = ids_of(select("random", candidates=cands, scores={}, embeddings=None, labeled=[], n=5, seed=0))
        assert after == rest  # the order did not move
        assert min(abs(a - top) for a in after) > 1
        first = ids_of(select("random", candidates=cands, scores={}, embeddings=None, labeled=[], n=6, seed=0))
    spread = ids_of(select("random", candidates=list(range(1, 190)), scores={}, embeddings=None, labeled=[], n=20, seed=0))
    assert np.std(spread) > 40  # about 55 for uniform picks over 189 slices


def test_hybrid_is_uncertain_and_diverse():
    emb, scores = {}, {}
    for i in range(6):  # very uncertain but all alike, near the labeled sample
        emb[i], scores[i] = np.array([0.01 * i, 0.0]), {"entropy": 0.95 - 0.01 * i}
    emb[6], scores[6] = np.array([5.0, 5.0]), {"entropy": 0.80}
    emb[7], scores[7] = np.array([-5.0, 5.0]), {"entropy": 0.79}
    for i in range(8, 12):  # far away but confident
        emb[i], scores[i] = np.array([100.0 + i, 100.0]), {"entropy": 0.01}
    emb[20] = np.array([0.0, 0.0])
    kw = dict(candidates=list(range(12)), scores=scores, embeddings=emb, labeled=[20], n=2, dedup_threshold=None)
    assert set(ids_of(select("entropy", **kw))) == {0, 1}
    assert ids_of(select("kcenter", **kw))[0] in range(8, 12)  # the far, confident ones
    hyb = select("hybrid", **kw)  # top 4 x 2 = ids 0..7 by entropy, then k-center among them
    assert set(ids_of(hyb)) == {6, 7}
    assert all("hybrid" in s.reason and s.reason.startswith("entropy") for s in hyb)
    plain = select("hybrid", **{**kw, "embeddings": None})
    assert ids_of(plain) == [0, 1] and "no image embeddings" in plain[0].reason
    wide = select("hybrid", multiplier=6, **kw)  # top 12 includes the far confident ones
    assert set(ids_of(wide)) & set(range(8, 12))  # listed after 6: most uncertain first within a round


def test_hybrid_with_few_samples_left_still_prefers_the_uncertain():
    """With 40 left and a batch of 10, "the 40 most uncertain" was all of them: k-center chose the
    far, confident ones and the queue opened with entropy 0.28 to 0.000 before 1.06."""
    emb, scores = {}, {}
    for i in range(30):  # uncertain, close together
        emb[i], scores[i] = np.array([0.1 * i, 0.0]), {"entropy": 1.0 - 0.01 * i}
    for i in range(30, 40):  # confident, far apart
        emb[i], scores[i] = np.array([100.0 * i, 50.0 * (i % 3)]), {"entropy": 0.001 * (40 - i)}
    picks = select("hybrid", candidates=list(range(40)), scores=scores, embeddings=emb, labeled=[], n=10,
                   dedup_threshold=None)
    assert len(picks) == 10 and all(s.sample < 30 for s in picks)
    assert "10 picks covering the 30 most uncertain left" in picks[0].reason


def test_hybrid_lists_the_most_uncertain_first_when_few_are_left():
    """A new user's classification queue: 16 left, a batch of 10. k-center took 10 of all 16 and
    listed entropy 0.133 and five of 0.000 before the one the model was least sure of (0.287),
    which waited for the next round."""
    rng = np.random.default_rng(1)
    emb = {i: rng.normal(size=8) for i in range(24)}
    scores = {i: {"entropy": 0.0} for i in range(16)}
    scores[14] = {"entropy": 0.287}
    scores[12] = {"entropy": 0.133}
    emb[14] = emb[20] + 0.01  # near a labeled sample, as an uncertain one may well be
    picks = select("hybrid", candidates=list(range(16)), scores=scores, embeddings=emb, labeled=[20, 21, 22, 23],
                   n=16, batch=10, dedup_threshold=None)
    assert ids_of(picks)[0] == 14 and picks[0].reason.endswith("the most uncertain of them)")
    assert ids_of(select("hybrid", candidates=list(range(16)), scores=scores, embeddings=emb,
                         labeled=[20, 21, 22, 23], n=1, batch=10, dedup_threshold=None)) == [14]


def test_hybrid_is_prefix_stable_with_a_fixed_batch():
    rng = np.random.default_rng(0)
    emb = {i: rng.normal(size=4) for i in range(120)}
    scores = {i: {"entropy": float(rng.random())} for i in range(100)}
    kw = dict(candidates=list(range(100)), scores=scores, embeddings=emb, labeled=[100, 101], batch=5)
    long = select("hybrid", n=40, **kw)
    for n in (1, 2, 7, 20):
        assert ids_of(select("hybrid", n=n, **kw)) == ids_of(long)[:n]
    # Slices of one volume, most uncertain in a run of neighbours: the batch skips adjacent ones and
    # looks deeper into the ranking, with the same fixed batch.
    pool = list(range(1000))
    adjacent = dict(candidates=pool, scores={i: {"entropy": 1 - i / 1000} for i in pool},
                    embeddings={i: np.array([np.cos(i), np.sin(i), i / 1000]) for i in pool}, labeled=[],
                    groups={i: ("volume", i) for i in pool}, batch=5)
    deeper = select("hybrid", n=40, **adjacent)
    assert len(deeper) == 40 and ids_of(select("hybrid", n=3, **adjacent)) == ids_of(deeper)[:3]
    first_round = [s.score for s in long[:5]]
    assert first_round == sorted(first_round, reverse=True)  # most uncertain first within a round
    assert all("#" not in s.reason and "%" not in s.reason for s in long)  # no ranks out of order


# ---------------------------------------------------------------- batches


def test_near_duplicates_are_not_picked_together_unless_pool_runs_out():
    emb = {1: np.array([1.0, 0.0]), 2: np.array([1.0, 0.001]), 3: np.array([0.0, 1.0])}
    scores = {1: {"entropy": 0.9}, 2: {"entropy": 0.8}, 3: {"entropy": 0.1}}
    kw = dict(candidates=[1, 2, 3], scores=scores, embeddings=emb, labeled=[])
    assert ids_of(select("entropy", n=2, **kw)) == [1, 3]
    assert ids_of(select("entropy", n=2, dedup_threshold=None, **kw)) == [1, 2]
    full = select("entropy", n=3, **kw)
    assert ids_of(full) == [1, 3, 2] and "almost the same" in full[2].reason


def test_adjacent_slices_of_one_volume_are_avoided():
    scores = {i: {"entropy": 1.0 - i / 10} for i in range(5)}
    groups = {0: ("vol", 10), 1: ("vol", 11), 2: ("vol", 12), 3: ("other", 11), 4: ("vol", 30)}
    kw = dict(candidates=list(range(5)), scores=scores, embeddings=None, labeled=[], groups=groups)
    assert ids_of(select("entropy", n=3, **kw)) == [0, 2, 3]
    assert ids_of(select("entropy", n=3, min_slice_gap=3, **kw)) == [0, 3, 4]
    assert ids_of(select("entropy", n=3, min_slice_gap=0, **kw)) == [0, 1, 2]


def test_slices_either_side_of_a_slab_edge_are_neighbours_too():
    # A project of one scan splits it into slabs (split groups): slices 9 and 10 lie in two of
    # them, and are still neighbours in the volume.
    p = FakeProject()
    p._samples = [SimpleNamespace(id=i, group=f"v/slab{i // 10}", path="v.nii", series_uid=None, slice_index=i,
                                  split="train") for i in range(20)]
    p._labeled, p._emb = set(), {}
    p._scores = {2: {i: {"entropy": 1.0 - abs(i - 9.5) / 40} for i in range(20)}}
    assert ids_of(S.select_for_project(p, "entropy", 2)) == [9, 11]


# ---------------------------------------------------------------- never labeled (property)


@settings(max_examples=50, deadline=None)
@given(
    pool=st.lists(st.integers(0, 60), min_size=1, max_size=40, unique=True),
    labeled_frac=st.floats(0, 1),
    extra_labeled=st.lists(st.integers(61, 80), max_size=5),
    n=st.integers(0, 15),
    strategy=st.sampled_from(["random", "entropy", "margin", "kcenter", "hybrid", "cold-start"]),
    seed=st.integers(0, 5),
)
def test_never_returns_labeled_samples(pool, labeled_frac, extra_labeled, n, strategy, seed):
    rng = np.random.default_rng(seed)
    labeled = pool[: int(labeled_frac * len(pool))] + extra_labeled
    everything = pool + extra_labeled
    scores = {i: {"entropy": float(rng.random()), "margin": float(rng.random())} for i in everything}
    emb = {i: rng.normal(size=4) for i in everything}
    groups = {i: ("g", i) for i in everything}
    sel = select(strategy, candidates=pool, scores=scores, embeddings=emb, labeled=labeled, n=n, seed=seed, groups=groups)
    got = ids_of(sel)
    assert not set(got) & set(labeled)
    assert len(got) == len(set(got)) and set(got) <= set(pool)
    assert len(got) == min(n, len(set(pool) - set(labeled)))
    assert all(isinstance(s, Selection) and s.reason for s in sel)


# ---------------------------------------------------------------- cold start, stale scores, registry


def test_cold_start_uses_embeddings_if_any_else_random():
    emb = {i: np.array([float(i), 0.0]) for i in range(10)}
    sel = select("hybrid", candidates=list(range(10)), scores={}, embeddings=emb, labeled=[], n=3, dedup_threshold=None)
    assert all(s.reason.startswith("no uncertainty scores yet:") for s in sel)
    assert "k-center" in sel[0].reason and {0, 9} <= set(ids_of(sel))  # the extremes
    sel = select("entropy", candidates=list(range(10)), scores={}, embeddings=None, labeled=[], n=3, seed=1)
    assert len(sel) == 3 and all(s.reason == "no uncertainty scores yet: random pick (no image embeddings yet)" for s in sel)
    sel = select("cold-start", candidates=list(range(10)), scores={}, embeddings=emb, labeled=[5], n=2, dedup_threshold=None)
    assert ids_of(sel) == [0, 9] and sel[0].reason == "no model yet: far from labeled samples (k-center, distance 5.00)"


def test_stale_scores_are_never_mixed():
    scores = {
        1: {"entropy": 0.99, "model_version": 1},  # stale: from the previous model
        2: {"entropy": 0.50, "model_version": 2},
        3: {"entropy": 0.40, "model_version": 2},
    }
    kw = dict(candidates=[1, 2, 3], scores=scores, embeddings=None, labeled=[], n=3)
    with pytest.raises(S.MixedScoreVersionsError, match=r"\[1, 2\]"):
        select("entropy", **kw)
    assert ids_of(select("entropy", model_version=2, **kw)) == [2, 3]
    assert S.current_scores(scores, 2) == {2: {"entropy": 0.5}, 3: {"entropy": 0.4}}


def test_unknown_strategy_and_missing_score_are_explained():
    kw = dict(candidates=[1], scores={1: {"entropy": 0.5}}, embeddings=None, labeled=[], n=1)
    with pytest.raises(ValueError, match="unknown strategy"):
        select("nonsense", **kw)
    with pytest.raises(ValueError, match="MC dropout"):
        select("bald", **kw)


def test_registry_and_entry_point_plugins(monkeypatch):
    def greedy_ids(*, candidates, n, labeled, **_):  # a misbehaving plugin returning labeled ones
        return [Selection(i, 1.0, "plugin") for i in [*labeled, *sorted(candidates, reverse=True)]][: n + len(labeled)]

    class FakeEntryPoint:
        name = "largest-id"

        def load(self):
            return greedy_ids

    class BrokenEntryPoint:
        name = "broken"

        def load(self):
            raise ImportError("missing dependency")

    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [FakeEntryPoint(), BrokenEntryPoint()] if group == S.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(S, "_PLUGINS", None)
    assert "largest-id" in S.available_strategies() and "broken" not in S.available_strategies()
    assert {"random", "kcenter", "hybrid", "cold-start"} <= set(S.available_strategies())
    sel = select("largest-id", candidates=[1, 2, 3, 4], scores={}, embeddings=None, labeled=[4], n=2)
    assert ids_of(sel) == [3, 2]
    with pytest.raises(ValueError, match="already registered"):
        S.register_strategy("random", greedy_ids)


def test_rank_contract_form():
    got = S.rank("entropy", {1: {"entropy": 0.2}, 2: {"entropy": 0.7}, 3: {"entropy": 0.9}}, None, [3], 1)
    assert got == [(2, 0.7, "entropy 0.70 (most uncertain #1 of 2)")]


# ---------------------------------------------------------------- store-facing


class FakeProject:
    """Just the store contract the strategies use."""

    def __init__(self):
        mk = lambda i, sl=None: SimpleNamespace(id=i, group="v", path="v.nii", series_uid=None, slice_index=sl, split="train")
        self._samples = [mk(i, i) for i in range(6)]
        self._labeled = {0}
        self._scores = {1: {1: {"entropy": 0.99}}, 2: {2: {"entropy": 0.3}, 4: {"entropy": 0.6}}}
        self._emb = {1: ([1, 2, 3, 4, 5], np.eye(5))}
        self._active = 2

    def samples(self, split=None, labeled=None):
        return [s for s in self._samples if (split is None or s.split == split) and (labeled is None or (s.id in self._labeled) == labeled)]

    def active_model(self):
        return SimpleNamespace(version=self._active) if self._active else None

    def models(self):
        return [SimpleNamespace(version=v) for v in (1, 2)]

    def scores(self, model_version=None, name=None):
        return dict(self._scores.get(model_version, {}))

    def embeddings(self, model_version):
        return self._emb.get(model_version)

    def blank_ids(self):
        return frozenset(self._blank) if hasattr(self, "_blank") else frozenset()


def test_select_for_project_uses_active_scores_and_newest_embeddings():
    p = FakeProject()
    sel = S.select_for_project(p, "entropy", 5)
    assert ids_of(sel) == [4, 2]  # sample 1's 0.99 is from model 1: ignored
    p._blank = {4}  # a blank image is never a candidate
    assert ids_of(S.select_for_project(p, "entropy", 5)) == [2]
    del p._blank
    assert S.project_embeddings(p, 1)[3].tolist() == [0, 0, 1, 0, 0]
    p._active = None
    sel = S.select_for_project(p, "hybrid", 2)
    assert all(s.reason.startswith("no uncertainty scores yet: ") and "k-center" in s.reason for s in sel)
    assert 0 not in ids_of(sel)


def test_a_run_of_look_alike_top_candidates_sends_the_search_deeper():
    """Twenty identical, most-uncertain samples (e.g. empty slices) must not fill the batch."""
    look_alike = {i: {"entropy": 1.0 - i * 1e-4} for i in range(20)}
    varied = {i: {"entropy": 0.5 - (i - 20) * 1e-3} for i in range(20, 60)}
    rng = np.random.default_rng(0)
    embeddings = {i: np.ones(8) if i < 20 else rng.normal(size=8) for i in range(60)}
    picks = select("entropy", candidates=list(range(60)), scores={**look_alike, **varied},
                   embeddings=embeddings, labeled=[], n=5, oversample=2)
    assert len(picks) == 5
    assert sum(p.sample < 20 for p in picks) == 1
    assert not any("few other samples left" in p.reason for p in picks)
