"""NT-Xent (SimCLR) against a plain-loop reference and on known cases."""

import math

import pytest
import torch

from medlabeler.engine.ssl.nt_xent import NTXentLoss, contrastive_accuracy


def reference_nt_xent(z1, z2, tau):
    z = torch.cat([z1, z2]).double()
    n = z.shape[0]
    b = n // 2
    unit = [z[i] / math.sqrt(float((z[i] ** 2).sum())) for i in range(n)]
    total = 0.0
    for a in range(n):
        partner = (a + b) % n
        denominator = 0.0
        for c in range(n):
            if c != a:
                denominator += math.exp(float((unit[a] * unit[c]).sum()) / tau)
        numerator = math.exp(float((unit[a] * unit[partner]).sum()) / tau)
        total += -math.log(numerator / denominator)
    return total / n


@pytest.mark.parametrize("b,d", [(2, 3), (5, 8), (9, 16)])
@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
def test_matches_loop_reference(b, d, tau):
    g = torch.Generator().manual_seed(b * 100 + d)
    z1, z2 = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
    got = float(NTXentLoss(tau)(z1, z2))
    assert got == pytest.approx(reference_nt_xent(z1, z2, tau), rel=1e-5, abs=1e-6)


def test_aligned_pairs_score_low_and_shuffled_pairs_high():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(16, 32, generator=g)
    loss_fn = NTXentLoss(0.1)
    aligned = float(loss_fn(z, z + 0.01 * torch.randn(16, 32, generator=g)))
    shuffled = float(loss_fn(z, z[torch.randperm(16, generator=g)]))
    assert aligned < 0.5 < shuffled
    assert contrastive_accuracy(z, z) == 1.0


def test_gradient_reaches_both_views_and_bad_input_is_refused():
    z1 = torch.randn(4, 8, requires_grad=True)
    z2 = torch.randn(4, 8, requires_grad=True)
    NTXentLoss(0.2)(z1, z2).backward()
    assert z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        NTXentLoss(0.1)(torch.randn(1, 8), torch.randn(1, 8))
    with pytest.raises(ValueError):
        NTXentLoss(0.0)


def test_full_precision_under_autocast():
    from medlabeler.engine.ssl.gravis import GravisLoss
    from medlabeler.engine.ssl.pcl import PositionalContrastiveLoss

    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    positions = torch.rand(8, generator=g)
    losses = [
        lambda: NTXentLoss(0.1)(z1, z2),
        lambda: PositionalContrastiveLoss(0.1, 0.2)(z1, z2, positions),
        lambda: GravisLoss()(torch.stack([z1, z2], dim=1)),
    ]
    for loss in losses:
        plain = loss()
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            mixed = loss()
        assert mixed.dtype == torch.float32 and float(mixed) == pytest.approx(float(plain), rel=1e-6)
