"""Aggregating voxel uncertainty maps per sample, per slice and per volume."""

import math

import numpy as np
import pytest
import torch

from medlabeler.engine.active import aggregate as agg


def ref_topk(values, frac):
    vals = sorted(np.asarray(values, dtype=float).ravel().tolist(), reverse=True)
    k = max(1, math.ceil(frac * len(vals)))
    return sum(vals[:k]) / k


def test_topk_keeps_a_small_uncertain_lesion_visible_where_the_mean_hides_it():
    lesion = np.zeros((64, 64))
    lesion[30:34, 30:34] = 1.0  # 16 of 4096 voxels very uncertain
    diffuse = np.full((64, 64), 0.05)  # mildly unsure everywhere, nothing to learn from
    maps = np.stack([lesion, diffuse])
    mean = agg.mean_score(maps)
    top = agg.topk_mean(maps, 0.05)
    assert mean[0] < mean[1]  # the mean ranks the lesion slice LAST
    assert top[0] > top[1]  # top-5% ranks it first
    assert top[0] == pytest.approx(16 / math.ceil(0.05 * 4096))


def test_topk_matches_reference_and_edge_fractions():
    rng = np.random.default_rng(0)
    maps = rng.random((3, 7, 9))
    for frac in (0.01, 0.05, 0.3, 1.0):
        np.testing.assert_allclose(agg.topk_mean(maps, frac), [ref_topk(m, frac) for m in maps])
    np.testing.assert_allclose(agg.topk_mean(maps, 1.0), maps.reshape(3, -1).mean(1))
    np.testing.assert_allclose(agg.topk_mean(torch.tensor(maps), 0.1), agg.topk_mean(maps, 0.1), rtol=1e-6)
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError):
            agg.topk_mean(maps, bad)


def test_foreground_restriction_and_empty_foreground_fallback():
    m = np.zeros((2, 10, 10))
    m[:, 0, 0] = 0.9  # uncertain background corner
    m[:, 5:7, 5:7] = 0.4  # predicted lesion
    fg = np.zeros((2, 10, 10), bool)
    fg[0, 5:7, 5:7] = True  # sample 1 has no predicted foreground
    got = agg.topk_mean(m, 1.0, foreground=fg)
    assert got[0] == pytest.approx(0.4)  # only foreground counts
    assert got[1] == pytest.approx(m[1].mean())  # fallback: the whole slice
    with pytest.raises(ValueError, match="does not match"):
        agg.topk_mean(m, 0.5, foreground=fg[:, :5])


def test_predicted_foreground_and_aggregate_sample_methods():
    probs = np.zeros((1, 3, 2, 2))
    probs[0, 0] = [[0.8, 0.1], [0.4, 0.2]]
    probs[0, 1] = [[0.1, 0.8], [0.3, 0.1]]
    probs[0, 2] = 1 - probs[0, 0] - probs[0, 1]
    np.testing.assert_array_equal(agg.predicted_foreground(probs)[0], [[False, True], [False, True]])
    maps = np.array([[0.1, 0.2, 0.9]])
    assert agg.aggregate_sample(maps, "max")[0] == pytest.approx(0.9)
    assert agg.aggregate_sample(maps, "mean")[0] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="unknown aggregation"):
        agg.aggregate_sample(maps, "median")


def test_aggregate_volume_one_uncertain_slice_keeps_volume_high():
    slices = [0.01] * 39 + [0.8]
    assert agg.aggregate_volume(slices) == pytest.approx(ref_topk(slices, 0.05))  # 2 slices
    assert agg.aggregate_volume(slices) > 10 * agg.aggregate_volume(slices, "mean")
    assert agg.aggregate_volume({3: 0.2, 4: 0.6}, "max") == pytest.approx(0.6)
    with pytest.raises(ValueError):
        agg.aggregate_volume([])


def test_aggregate_groups_per_volume():
    scores = {1: 0.1, 2: 0.9, 3: 0.2, 4: 0.3, 99: 5.0}
    groups = {1: ("a", 0), 2: ("a", 1), 3: ("b", 0), 4: ("b", 1)}
    got = agg.aggregate_groups(scores, groups, method="max")
    assert got == {"a": pytest.approx(0.9), "b": pytest.approx(0.3)}


def test_uncertainty_map_for_the_viewer_is_scaled_float32():
    p = np.zeros((2, 3, 4, 4))
    p[:, 0] = 1.0
    p[1, :, 0, 0] = 1 / 3  # one fully uncertain voxel
    m = agg.uncertainty_map(p, "entropy")
    assert m.dtype == np.float32 and m.shape == (2, 4, 4)
    assert m[1, 0, 0] == pytest.approx(1.0) and m[0].max() == 0.0
    mc = np.stack([p, p])
    assert agg.uncertainty_map(p, "bald", mc).max() == pytest.approx(0.0)
    assert 0.0 <= agg.uncertainty_map(p, "least_confidence").max() <= 1.0
