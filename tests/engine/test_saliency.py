"""Grad-CAM and the fraction of saliency inside a region."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medlabeler.engine.inference import grad_cam, saliency_fraction_inside
from medlabeler.engine.inference.saliency import default_cam_layer
from medlabeler.engine.models import build_model


def test_fraction_inside_by_hand():
    cam = np.array([[1.0, 3.0], [0.0, 4.0]])
    mask = np.array([[0, 1], [0, 1]])
    assert saliency_fraction_inside(cam, mask) == pytest.approx(7 / 8)
    assert math.isnan(saliency_fraction_inside(np.zeros((2, 2)), mask))
    batch = saliency_fraction_inside(torch.tensor(np.stack([cam, cam[:, ::-1].copy()])),
                                     torch.tensor(np.stack([mask, mask])), batched=True)
    assert batch == pytest.approx([7 / 8, 1 / 8])
    with pytest.raises(ValueError, match="differ in shape"):
        saliency_fraction_inside(cam, np.ones((3, 3)))


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def blobs(n, generator):
    """Class 1: a bright 4x4 blob somewhere in the top-left quadrant; class 0: none.
    Both classes carry a distractor stripe on the right edge."""
    x = 0.3 * torch.randn(n, 1, 24, 24, generator=generator)
    y = torch.arange(n) % 2
    x[:, :, :, 22:] += 1.0
    for i in torch.nonzero(y).flatten():
        r, c = torch.randint(0, 8, (2,), generator=generator).tolist()
        x[i, 0, r:r + 4, c:c + 4] += 2.0
    return x, y


def test_grad_cam_finds_the_signal_region():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = TinyCNN()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(60):
        x, y = blobs(16, g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    x, y = blobs(8, g)
    positives = x[y == 1]
    cam = grad_cam(model, positives, target=1)
    assert cam.shape == (4, 24, 24) and float(cam.min()) >= 0 and float(cam.max()) == pytest.approx(1.0)
    region = torch.zeros(4, 24, 24)
    region[:, :12, :12] = 1  # the quadrant where the signal lives: a quarter of the image
    inside = saliency_fraction_inside(cam, region, batched=True)
    assert np.all(inside > 0.6), inside
    assert default_cam_layer(model) is model.features[2]  # fallback: the last convolution


def test_grad_cam_on_resnet_uses_the_last_block():
    model = build_model("classification", "resnet18", 1, 3).train()
    assert default_cam_layer(model) is model.encoder.layer4
    cam = grad_cam(model, torch.randn(2, 1, 32, 32))
    assert cam.shape == (2, 32, 32) and torch.isfinite(cam).all()
    assert model.training and all(p.grad is None for p in model.parameters())
