"""SSL methods (SimCLR, PCL, GraVIS): short runs on tiny models lower the loss; edge cases."""

import math
import warnings

import pytest
import torch

from medlabeler.engine.errors import TrainingError
from medlabeler.engine.methods import build_method

from .test_methods_support import one_thread  # noqa: F401  (autouse fixture)
from .test_methods_support import blob_classes, factory, falls, sampler, square_masks, train


def build(name, task="classification", **config):
    return build_method(
        name, task=task, model_factory=factory(task), num_classes=2, in_channels=1, config=config
    )


@pytest.mark.parametrize("name", ["simclr", "gravis"])
def test_ssl_loss_falls_on_blobs(name):
    torch.manual_seed(0)
    images, _ = blob_classes(96, seed=1)
    method = build(name, seed=0, temperature=0.5) if name == "simclr" else build(name, seed=0, views=3)
    losses = train(method, sampler({"u": images}, {"u": 12}), steps=40)
    assert falls(losses)
    state = method.encoder_state()
    assert set(state) == set(method.predictor().encoder.state_dict())


def test_pcl_loss_falls_on_slices_with_positions():
    torch.manual_seed(0)
    # 4 "volumes" of 24 slices whose content drifts with position, so position is learnable
    n_slices = 24
    images, _ = square_masks(4 * n_slices, seed=2)
    positions = torch.arange(1, n_slices + 1).float().repeat(4) / n_slices
    images = images + positions.view(-1, 1, 1, 1) * torch.linspace(-1, 1, 16).view(1, 1, 1, 16)
    method = build("pcl", task="segmentation", seed=0, n_slices=n_slices, theta=0.1, projection_dim=32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # theta is large enough: no "only the partner" warning
        losses = train(method, sampler({"u": images, "u_pos": positions}, {"u": 16}), steps=40)
    assert falls(losses)
    _, logs = method.training_step({"u": images[:16], "u_pos": positions[:16]}, 0.5)
    assert logs["mean_positives"] > 1.0


def test_pcl_falls_back_to_simclr_on_2d_images():
    from medlabeler.engine.ssl.nt_xent import NTXentLoss

    torch.manual_seed(0)
    method = build("pcl", task="segmentation", seed=0, projection_dim=16).eval()  # fixed BatchNorm
    u = torch.randn(6, 1, 16, 16)
    results = []
    for batch in ({"u": u}, {"u": u, "u_pos": torch.full((6,), math.nan)}):
        method.generator = torch.Generator().manual_seed(5)
        loss, logs = method.training_step(batch, 0.0)
        assert logs["mean_positives"] == 1.0
        results.append(float(loss))
    method.generator = torch.Generator().manual_seed(5)
    z1, z2 = method.embed(method.views(u, 2)).chunk(2)
    assert results[0] == pytest.approx(results[1])
    assert results[0] == pytest.approx(float(NTXentLoss(0.1)(z1, z2)), rel=1e-5)  # plain SimCLR


def test_pcl_refuses_a_theta_below_one_slice():
    with pytest.raises(ValueError, match="1/n_slices"):
        build("pcl", task="segmentation", n_slices=10, theta=0.05)


def test_gravis_caps_the_batch_with_a_clear_error():
    method = build("gravis", views=4, max_embeddings=32)
    assert method.max_unlabeled_batch == 8
    with pytest.raises(TrainingError, match="at most 8"):
        method.training_step({"u": torch.randn(9, 1, 16, 16)}, 0.0)


def test_ssl_methods_need_unlabeled_images():
    with pytest.raises(TrainingError, match="'u'"):
        build("simclr").training_step({"x": torch.randn(4, 1, 16, 16)}, 0.0)


def test_augment_strength_blends_from_weak_views():
    from medlabeler.engine.data.augment import CONTRASTIVE, WEAK

    method = build("simclr")
    assert method.view_spec() == CONTRASTIVE
    method.set_augment_strength(0.0)
    assert method.view_spec() == WEAK.blend(CONTRASTIVE, 0.0)
    method.set_augment_strength(7)
    assert method.view_spec() == CONTRASTIVE


def test_same_seed_gives_the_same_step():
    u = torch.randn(8, 1, 16, 16)
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        method = build("simclr", seed=3)
        results.append(float(method.training_step({"u": u}, 0.0)[0]))
    assert results[0] == results[1]
