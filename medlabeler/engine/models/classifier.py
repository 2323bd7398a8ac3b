"""Image classifiers: torchvision ResNets (He et al., CVPR 2016), always from random weights."""

from __future__ import annotations

import torch
from torch import nn

from .encoder import Encoder

RESNETS = ("resnet18", "resnet34", "resnet50")


class ResNetEncoder(Encoder):
    """ResNet trunk up to (and including) global average pooling.

    `stem="standard"` is torchvision's 7x7/2 conv + max pool; `stem="small"` is one 3x3/1 conv
    with no max pool, for images of 64 px or less where the standard stem throws away too much.
    """

    def __init__(self, arch: str = "resnet18", in_channels: int = 1, stem: str = "standard"):
        super().__init__()
        import torchvision

        if arch not in RESNETS:
            raise ValueError(f"unknown ResNet {arch!r}; choose one of {RESNETS}")
        if stem not in ("standard", "small"):
            raise ValueError(f"stem must be 'standard' or 'small', not {stem!r}")
        trunk = getattr(torchvision.models, arch)(weights=None)  # never downloads
        if stem == "small":
            self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
            self.maxpool = trunk.maxpool
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.bn1, self.relu = trunk.bn1, trunk.relu
        self.layer1, self.layer2 = trunk.layer1, trunk.layer2
        self.layer3, self.layer4 = trunk.layer3, trunk.layer4
        self.feature_dim = trunk.fc.in_features
        self.arch, self.in_channels, self.stem = arch, in_channels, stem

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        maps = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            maps.append(x)
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=(2, 3))


class Classifier(nn.Module):
    """Encoder -> dropout -> linear head. `forward` gives logits (B, num_classes)."""

    task = "classification"

    def __init__(self, encoder: Encoder, num_classes: int, dropout: float = 0.0):
        super().__init__()
        if num_classes < 2:
            raise ValueError("a classifier needs at least 2 classes")
        self.encoder = encoder
        self.feature_dim = encoder.feature_dim
        self.num_classes = num_classes
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(self.feature_dim, num_classes)

    @property
    def cam_layer(self) -> nn.Module:
        """The last convolutional block: where Grad-CAM looks."""
        return self.encoder.layer4

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.encoder(x)))

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, pooled features) in one pass."""
        features = self.encoder(x)
        return self.head(self.dropout(features)), features


def build_classifier(arch: str = "resnet18", in_channels: int = 1, num_classes: int = 2,
                     dropout: float = 0.0, stem: str = "standard") -> Classifier:
    """A ResNet classifier from random weights, first conv adapted to `in_channels`."""
    return Classifier(ResNetEncoder(arch, in_channels, stem), num_classes, dropout)
