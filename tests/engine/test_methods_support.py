"""Tiny networks and synthetic tasks for the method tests (the real models live elsewhere).

The networks follow the model interface of contracts.md: forward, forward_features,
feature_dim, encoder.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a busy machine thread contention makes
    them many times slower: run these tests on one intra-op thread, then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class TinyClassifier(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 2, width: int = 8):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
        )
        self.feature_dim = 2 * width
        self.fc = nn.Linear(self.feature_dim, num_classes)

    def forward_features(self, x):
        return self.encoder(x).mean(dim=(2, 3))

    def forward(self, x):
        return self.fc(self.forward_features(x))


class TinySegmenter(nn.Module):
    """Full-resolution conv encoder + 1x1 decoder; `alt=True` gives a different (dilated) design."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2, width: int = 8, alt: bool = False):
        super().__init__()
        dilation = 2 if alt else 1
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=dilation, dilation=dilation),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        self.feature_dim = width
        self.decoder = nn.Conv2d(width, num_classes, 1)

    def forward_features(self, x):
        return self.encoder(x).mean(dim=(2, 3))

    def forward(self, x):
        return self.decoder(self.encoder(x))


def factory(task: str, in_channels: int = 1, num_classes: int = 2):
    def model_factory(arch: str | None = None):
        if task == "classification":
            return TinyClassifier(in_channels, num_classes)
        return TinySegmenter(in_channels, num_classes, alt=(arch == "unet-alt"))

    return model_factory


def blob_classes(n: int, size: int = 16, seed: int = 0):
    """Class 0: one small bright blob; class 1: one large bright blob; random places, noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    cy = torch.randint(5, size - 5, (n,), generator=g).float().view(n, 1, 1)
    cx = torch.randint(5, size - 5, (n,), generator=g).float().view(n, 1, 1)
    radius = torch.where(y == 1, 4.5, 1.5).view(n, 1, 1)
    img = (((yy - cy) ** 2 + (xx - cx) ** 2) <= radius**2).float() * 2.0
    img = img + 0.3 * torch.randn(n, size, size, generator=g)
    return img.unsqueeze(1), y


def square_masks(n: int, size: int = 16, seed: int = 0):
    """Bright squares (label 1) of random size and place on a noisy background (label 0)."""
    g = torch.Generator().manual_seed(seed)
    side = torch.randint(4, 9, (n,), generator=g)
    y0 = (torch.rand(n, generator=g) * (size - side)).long()
    x0 = (torch.rand(n, generator=g) * (size - side)).long()
    idx = torch.arange(size)
    rows = (idx.view(1, -1) >= y0.view(-1, 1)) & (idx.view(1, -1) < (y0 + side).view(-1, 1))
    cols = (idx.view(1, -1) >= x0.view(-1, 1)) & (idx.view(1, -1) < (x0 + side).view(-1, 1))
    mask = (rows.unsqueeze(2) & cols.unsqueeze(1)).long()
    img = mask.float() * 2.0 + 0.5 * torch.randn(n, size, size, generator=g)
    return img.unsqueeze(1), mask


def test_tiny_models_follow_the_model_interface():
    x = torch.randn(3, 1, 16, 16)
    clf = TinyClassifier()
    assert clf(x).shape == (3, 2) and clf.forward_features(x).shape == (3, clf.feature_dim)
    seg = TinySegmenter(alt=True)
    assert seg(x).shape == (3, 2, 16, 16) and seg.forward_features(x).shape == (3, seg.feature_dim)
    assert isinstance(clf.encoder, nn.Module) and isinstance(seg.encoder, nn.Module)


def test_synthetic_tasks_are_balanced_and_labelled():
    x, y = blob_classes(200)
    assert x.shape == (200, 1, 16, 16) and 60 < int(y.sum()) < 140
    x, m = square_masks(10)
    assert m.shape == (10, 16, 16) and set(m.unique().tolist()) == {0, 1}


def train(method, make_batch, steps: int, lr: float = 1e-2):
    """A minimal stand-in for the training loop: Adam over trainable parameters."""
    optimiser = torch.optim.Adam(list(method.trainable_parameters()), lr=lr)
    method.train()
    losses = []
    for step in range(steps):
        loss, logs = method.training_step(make_batch(step), step / steps)
        assert torch.isfinite(loss) and all(isinstance(v, float) for v in logs.values())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        method.after_optimizer_step(step + 1)
        losses.append(float(loss.detach()))
    return losses


def sampler(tensors: dict, batch_sizes: dict, seed: int = 0):
    """make_batch(step) drawing random rows of each named tensor (same rows for x and y)."""
    g = torch.Generator().manual_seed(seed)

    def make_batch(step):
        batch = {}
        for key, size in batch_sizes.items():
            if key in ("y", "u_pos"):
                continue
            idx = torch.randint(0, tensors[key].shape[0], (size,), generator=g)
            batch[key] = tensors[key][idx]
            for dependent in ("y",) if key == "x" else ("u_pos",) if key == "u" else ():
                if dependent in tensors:
                    batch[dependent] = tensors[dependent][idx]
        return batch

    return make_batch


def falls(losses, window: int = 5) -> bool:
    return sum(losses[-window:]) / window < sum(losses[:window]) / window
