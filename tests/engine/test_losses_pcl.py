"""PCL (positional contrastive loss) against a plain-loop reference and known positive sets."""

import math
import warnings

import pytest
import torch

from medlabeler.engine.ssl.nt_xent import NTXentLoss
from medlabeler.engine.ssl.pcl import PositionalContrastiveLoss, check_theta, positive_mask


def reference_pcl(z1, z2, positions, tau, theta, base_tau=0.07):
    z = torch.cat([z1, z2]).double()
    p = [float(v) for v in positions] * 2
    n = z.shape[0]
    b = n // 2
    unit = [z[i] / math.sqrt(float((z[i] ** 2).sum())) for i in range(n)]
    sim = [[float((unit[a] * unit[c]).sum()) / tau for c in range(n)] for a in range(n)]
    per_anchor = []
    for a in range(n):
        log_denominator = math.log(sum(math.exp(sim[a][c]) for c in range(n) if c != a))
        positives = [c for c in range(n) if c != a and (c == (a + b) % n or abs(p[a] - p[c]) < theta)]
        per_anchor.append(sum(sim[a][c] - log_denominator for c in positives) / len(positives))
    return -(tau / base_tau) * sum(per_anchor) / n


@pytest.mark.parametrize("b,d", [(3, 4), (6, 8), (10, 5)])
@pytest.mark.parametrize("tau,theta", [(0.1, 0.1), (0.5, 0.3), (0.07, 0.05)])
def test_matches_loop_reference(b, d, tau, theta):
    g = torch.Generator().manual_seed(7 * b + d)
    z1, z2 = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
    positions = torch.rand(b, generator=g) * 0.9 + 0.1
    got = float(PositionalContrastiveLoss(tau, theta)(z1, z2, positions))
    assert got == pytest.approx(reference_pcl(z1, z2, positions, tau, theta), rel=1e-5, abs=1e-6)


def test_positive_sets_for_given_positions():
    # slices: a volume's 0.1 and 0.15, another volume's 0.5 and 0.9 -> theta 0.1
    positions = torch.tensor([0.1, 0.15, 0.5, 0.9])
    pos = positive_mask(positions, 0.1)
    expected_first_half = {
        0: {1, 4, 5},  # slice 0.15 (both views) and its own second view
        1: {0, 4, 5},
        2: {6},  # only its partner
        3: {7},
    }
    for a, expected in expected_first_half.items():
        assert set(torch.nonzero(pos[a]).flatten().tolist()) == expected
    assert not pos.diagonal().any()
    assert torch.equal(pos, pos.t())


def test_nan_positions_keep_only_the_partner():
    pos = positive_mask(torch.tensor([float("nan"), 0.5, 0.52]), 0.1)
    assert set(torch.nonzero(pos[0]).flatten().tolist()) == {3}
    assert set(torch.nonzero(pos[1]).flatten().tolist()) == {2, 4, 5}


def test_partner_only_pcl_is_nt_xent_times_temperature_ratio():
    g = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(5, 6, generator=g), torch.randn(5, 6, generator=g)
    far = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9])
    pcl = float(PositionalContrastiveLoss(0.1, 0.05)(z1, z2, far))
    assert pcl == pytest.approx(float(NTXentLoss(0.1)(z1, z2)) * 0.1 / 0.07, rel=1e-5)


def test_warns_when_partner_only_batches_are_systematic_not_on_one_chance_batch():
    g = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(5, 6, generator=g), torch.randn(5, 6, generator=g)
    far = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9])
    near = torch.tensor([0.1, 0.12, 0.5, 0.7, 0.9])
    loss = PositionalContrastiveLoss(0.1, 0.05)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(loss.WARN_AFTER - 1):
            loss(z1, z2, far)
        loss(z1, z2, near)  # a batch with a positive breaks the run
        for _ in range(loss.WARN_AFTER - 1):
            loss(z1, z2, far)
        assert not any("only the partner" in str(w.message) for w in caught)
        loss(z1, z2, far)
        loss(z1, z2, far)
    assert sum("only the partner" in str(w.message) for w in caught) == 1


def test_theta_is_checked_against_slice_count():
    check_theta(0.1, 20)
    with pytest.raises(ValueError, match="1/n_slices"):
        check_theta(0.05, 20)  # the released code's default fails for 20 slices
    with pytest.raises(ValueError):
        PositionalContrastiveLoss(theta=0.0)
