"""Prediction: probabilities, sliding windows for large inputs, MC dropout for BALD, features."""

import pytest
import torch
from torch import nn

from medlabeler.engine.inference import mc_dropout_probs, predict_features, predict_logits, predict_probs
from medlabeler.engine.models import build_model


class Pointwise(nn.Module):
    """A 1x1-conv 'segmenter': its output at a pixel depends on that pixel only."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 1)

    def forward(self, x):
        return self.conv(x)


def test_classifier_probabilities():
    model = build_model("classification", "resnet18", 1, 3).train()
    probs = predict_probs(model, torch.randn(5, 1, 32, 32), batch_size=2)
    assert probs.shape == (5, 3) and torch.allclose(probs.sum(1), torch.ones(5))
    assert model.training  # the caller's mode is restored


def test_sliding_window_matches_whole_image_for_a_pointwise_model():
    torch.manual_seed(0)
    model = Pointwise()
    x = torch.randn(2, 1, 70, 45)
    whole = predict_logits(model, x)
    windowed = predict_logits(model, x, roi_size=32, overlap=0.25)
    assert windowed.shape == (2, 3, 70, 45)
    assert torch.allclose(whole, windowed, atol=1e-5)


def test_sliding_window_unet_any_size():
    model = build_model("segmentation", "unet", 1, 2, features=(8, 16, 32))
    probs = predict_probs(model, torch.randn(1, 1, 80, 50), roi_size=32)
    assert probs.shape == (1, 2, 80, 50) and torch.allclose(probs.sum(1), torch.ones(1, 80, 50), atol=1e-5)
    small = predict_probs(model, torch.randn(1, 1, 24, 24), roi_size=32)  # smaller than the window
    assert small.shape == (1, 2, 24, 24)


def test_mc_dropout_shape_variation_and_reproducibility():
    model = build_model("segmentation", "unet", 1, 2, features=(8, 16, 32), dropout=0.5)
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    running = bn.running_mean.clone()
    x = torch.randn(3, 1, 32, 32)
    probs = mc_dropout_probs(model, x, passes=4, seed=1)
    assert probs.shape == (4, 3, 2, 32, 32)
    assert not torch.allclose(probs[0], probs[1])
    assert torch.equal(probs, mc_dropout_probs(model, x, passes=4, seed=1))
    assert torch.equal(bn.running_mean, running)  # batch norm statistics untouched
    assert model.training  # mode restored (a fresh model is in training mode)
    model.eval()
    mc_dropout_probs(model, x, passes=2)
    assert not any(m.training for m in model.modules())


def test_mc_dropout_classifier_for_bald():
    model = build_model("classification", "resnet18", 1, 2, dropout=0.5).eval()
    probs = mc_dropout_probs(model, torch.randn(4, 1, 32, 32), passes=3, seed=0)
    assert probs.shape == (3, 4, 2) and torch.allclose(probs.sum(-1), torch.ones(3, 4))
    with pytest.raises(ValueError, match="dropout"):
        mc_dropout_probs(build_model("classification", "resnet18", 1, 2), torch.randn(1, 1, 32, 32))


def test_predict_features():
    model = build_model("segmentation", "unet-alt", 1, 2, features=(8, 16, 32))
    feats = predict_features(model, torch.randn(5, 1, 32, 32), batch_size=2)
    assert feats.shape == (5, 32)
