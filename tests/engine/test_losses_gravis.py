"""GraVIS group loss (Smooth-AP + hardness-aware attention) against a plain-loop reference."""

import math

import pytest
import torch

from medlabeler.engine.errors import TrainingError
from medlabeler.engine.ssl.gravis import GravisLoss


def sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def reference_gravis(z, anneal, tau_h, hardness):
    n, k, d = z.shape
    flat = z.reshape(n * k, d).double()
    big_n = n * k
    unit = [flat[i] / math.sqrt(float((flat[i] ** 2).sum())) for i in range(big_n)]
    s = [[float((unit[a] * unit[c]).sum()) for c in range(big_n)] for a in range(big_n)]
    group = [i // k for i in range(big_n)]
    total = 0.0
    for q in range(big_n):
        positives = [i for i in range(big_n) if i != q and group[i] == group[q]]
        if hardness:
            exps = [math.exp(s[q][i] / tau_h) for i in positives]
            weights = [e / sum(exps) for e in exps]
        else:
            weights = [1.0 / len(positives)] * len(positives)
        ap = 0.0
        for w, i in zip(weights, positives):
            r_all, r_pos = 1.0, 1.0
            for j in range(big_n):
                if j in (q, i):
                    continue
                term = sigmoid((s[q][j] - s[q][i]) / anneal)
                r_all += term
                if group[j] == group[q]:
                    r_pos += term
            ap += w * r_pos / r_all
        total += ap
    return 1.0 - total / big_n


@pytest.mark.parametrize("n,k,d", [(2, 2, 3), (3, 4, 8), (5, 3, 6)])
@pytest.mark.parametrize("anneal,tau_h", [(0.2, 0.5), (0.05, 0.1), (1.0, 2.0)])
@pytest.mark.parametrize("hardness", [True, False])
def test_matches_loop_reference(n, k, d, anneal, tau_h, hardness):
    g = torch.Generator().manual_seed(n * 31 + k * 7 + d)
    z = torch.randn(n, k, d, generator=g)
    got = float(GravisLoss(anneal, tau_h, hardness)(z))
    assert got == pytest.approx(reference_gravis(z, anneal, tau_h, hardness), rel=1e-5, abs=1e-6)


def test_identical_views_in_orthogonal_groups_give_almost_zero():
    n, k = 6, 4
    z = torch.eye(n).unsqueeze(1).repeat(1, k, 1) * 3.0  # unnormalised on purpose
    # each positive ranks level with the other positives; every negative sits 1 below in cosine
    negatives = (n - 1) * k
    expected = 1.0 - 2.0 / (2.0 + negatives * sigmoid(-1.0 / 0.2))
    assert float(GravisLoss()(z)) == pytest.approx(expected, rel=1e-5)
    assert float(GravisLoss(anneal=0.01)(z)) < 1e-6
    shuffled = z.reshape(n * k, n)[torch.randperm(n * k, generator=torch.Generator().manual_seed(0))]
    assert float(GravisLoss()(shuffled.reshape(n, k, n))) > 0.3


def test_embeddings_are_normalised_so_scale_does_not_matter():
    z = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(1))
    assert float(GravisLoss()(z)) == pytest.approx(float(GravisLoss()(100 * z)), rel=1e-5)


def test_embedding_cap_raises_a_clear_error():
    with pytest.raises(TrainingError, match="max_embeddings=16"):
        GravisLoss(max_embeddings=16)(torch.randn(5, 4, 8))
    with pytest.raises(ValueError):
        GravisLoss()(torch.randn(4, 1, 8))
