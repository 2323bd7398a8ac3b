"""Uncertainty scores against hand-computed cases and slow plain-loop references."""

import math

import numpy as np
import pytest
import torch

from medlabeler.engine.active import uncertainty as u


def _random_probs(rng, shape, axis=1):
    logits = rng.normal(size=shape) * 3
    e = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# ---------------------------------------------------------------- plain-loop references


def ref_entropy(p):
    """p (N, C, H, W) -> (N, H, W) with explicit loops."""
    n, c, h, w = p.shape
    out = np.zeros((n, h, w))
    for i in range(n):
        for y in range(h):
            for x in range(w):
                s = 0.0
                for k in range(c):
                    v = p[i, k, y, x]
                    if v > 0:
                        s -= v * math.log(v)
                out[i, y, x] = s
    return out


def ref_margin_lc(p):
    n, c, h, w = p.shape
    m, lc = np.zeros((n, h, w)), np.zeros((n, h, w))
    for i in range(n):
        for y in range(h):
            for x in range(w):
                vals = sorted((p[i, k, y, x] for k in range(c)), reverse=True)
                m[i, y, x] = 1 - (vals[0] - vals[1])
                lc[i, y, x] = 1 - vals[0]
    return m, lc


def ref_bald(mc):
    t, n, c = mc.shape[:3]
    out = np.zeros(n)
    for i in range(n):
        mean = [sum(mc[s, i, k] for s in range(t)) / t for k in range(c)]
        h_mean = -sum(v * math.log(v) for v in mean if v > 0)
        h_each = 0.0
        for s in range(t):
            h_each += -sum(mc[s, i, k] * math.log(mc[s, i, k]) for k in range(c) if mc[s, i, k] > 0)
        out[i] = h_mean - h_each / t
    return out


# ---------------------------------------------------------------- hand-computed cases


@pytest.mark.parametrize("c", [2, 3, 5])
def test_uniform_probabilities_give_log_c_entropy_and_max_scores(c):
    p = np.full((4, c), 1.0 / c)
    np.testing.assert_allclose(u.entropy(p), math.log(c), rtol=1e-6)
    np.testing.assert_allclose(u.margin(p), 1.0)
    np.testing.assert_allclose(u.least_confidence(p), 1 - 1 / c)
    assert u.max_score("entropy", c) == pytest.approx(math.log(c))
    assert u.max_score("least_confidence", c) == pytest.approx(1 - 1 / c)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_one_hot_gives_zero_without_nan(lib):
    p = np.eye(3)[[0, 2, 1, 1]].reshape(4, 3)
    seg = np.eye(3)[np.random.default_rng(0).integers(0, 3, (2, 5, 6))].transpose(0, 3, 1, 2)
    for arr in (p, seg):
        x = torch.tensor(arr) if lib == "torch" else arr
        for fn in (u.entropy, u.margin, u.least_confidence):
            out = np.asarray(fn(x))
            assert np.isfinite(out).all()
            assert (out == 0).all(), fn.__name__
    mc = np.stack([p, p, p])
    out = np.asarray(u.bald(torch.tensor(mc) if lib == "torch" else mc))
    assert np.isfinite(out).all() and (out == 0).all()


def test_margin_and_least_confidence_by_hand():
    p = np.array([[0.6, 0.3, 0.1], [0.1, 0.45, 0.45]])
    np.testing.assert_allclose(u.margin(p), [0.7, 1.0])
    np.testing.assert_allclose(u.least_confidence(p), [0.4, 0.55])
    np.testing.assert_allclose(u.entropy(p)[0], -(0.6 * math.log(0.6) + 0.3 * math.log(0.3) + 0.1 * math.log(0.1)))


def test_bald_identical_passes_is_zero_even_when_each_pass_is_unsure():
    p = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]])
    mc = np.stack([p] * 6)
    np.testing.assert_allclose(u.bald(mc), 0.0, atol=1e-12)
    assert u.entropy(p)[0] == pytest.approx(math.log(2))  # aleatoric, not epistemic


def test_bald_confident_disagreeing_passes_is_log2():
    a, b = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    mc = np.stack([a, b, a, b])
    np.testing.assert_allclose(u.bald(mc), math.log(2), rtol=1e-9)
    np.testing.assert_allclose(u.bald(torch.tensor(mc)).numpy(), math.log(2), rtol=1e-9)


# ---------------------------------------------------------------- against references


def test_segmentation_maps_match_loop_reference_numpy_and_torch():
    rng = np.random.default_rng(1)
    p = _random_probs(rng, (2, 4, 5, 6))
    m_ref, lc_ref = ref_margin_lc(p)
    for x in (p, torch.tensor(p)):
        np.testing.assert_allclose(np.asarray(u.entropy(x)), ref_entropy(p), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(np.asarray(u.margin(x)), m_ref, rtol=1e-9)
        np.testing.assert_allclose(np.asarray(u.least_confidence(x)), lc_ref, rtol=1e-9)
    assert u.entropy(p).shape == (2, 5, 6)


def test_bald_matches_loop_reference_and_bounds():
    rng = np.random.default_rng(2)
    mc = _random_probs(rng, (10, 7, 3), axis=2)
    got = u.bald(mc)
    np.testing.assert_allclose(got, ref_bald(mc), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(u.bald(torch.tensor(mc)).numpy(), got, rtol=1e-9)
    assert (got >= 0).all() and (got <= math.log(3) + 1e-12).all()


def test_volume_maps_keep_spatial_axes_and_half_precision_is_safe():
    rng = np.random.default_rng(3)
    p = _random_probs(rng, (1, 2, 3, 4, 5))
    assert u.entropy(p).shape == (1, 3, 4, 5)
    mc = np.stack([p, p[:, ::-1]])
    assert u.bald(mc).shape == (1, 3, 4, 5)
    half = torch.tensor(np.eye(2)[[0, 1]], dtype=torch.float16)
    out = u.entropy(half)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_compute_dispatch_and_bad_input():
    p = np.array([[0.5, 0.5]])
    assert u.compute("entropy", p)[0] == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="MC"):
        u.compute("bald", p)
    with pytest.raises(ValueError, match="unknown score"):
        u.compute("variance", p)
    with pytest.raises(ValueError, match="2 classes"):
        u.entropy(np.ones((3, 1)))
    with pytest.raises(ValueError, match="class axis"):
        u.entropy(np.ones(3))
    with pytest.raises(ValueError, match="at least 2 MC"):
        u.bald(np.full((1, 2, 2), 0.5))
