"""Registry of networks by name, and `build_model` used by the pipeline and the methods."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from .classifier import RESNETS, build_classifier
from .unet import build_segmenter


@dataclass(frozen=True)
class ModelSpec:
    """One registered network: the task it serves and a builder
    `build(in_channels, num_classes, **kw) -> nn.Module`."""

    name: str
    task: str
    build: Callable[..., nn.Module]
    description: str = ""


MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, task: str, build: Callable[..., nn.Module], description: str = "") -> None:
    """Add a network (plugins call this). The module it builds must follow the model seam:
    forward -> logits, forward_features -> (B, D), attributes `encoder` and `feature_dim`."""
    if task not in ("classification", "segmentation"):
        raise ValueError(f"task must be classification or segmentation, not {task!r}")
    MODELS[name] = ModelSpec(name, task, build, description)


for _arch in RESNETS:
    register_model(
        _arch, "classification",
        lambda in_channels, num_classes, _a=_arch, dropout=0.0, stem="standard", **_: build_classifier(
            _a, in_channels, num_classes, dropout, stem),
        f"torchvision {_arch}, random init")
for _arch, _text in (("unet", "2D U-Net: double conv, bilinear up"),
                     ("unet-alt", "2D residual U-Net: strided down, transposed up"),
                     ("unet3d", "3D U-Net for whole volumes")):
    register_model(
        _arch, "segmentation",
        lambda in_channels, num_classes, _a=_arch, dropout=0.0, features=(16, 32, 64, 128), **_:
        build_segmenter(_a, in_channels, num_classes, tuple(features), dropout),
        _text)

DEFAULT_ARCH = {"classification": "resnet18", "segmentation": "unet"}


def build_model(task: str, arch: str | None = None, in_channels: int = 1, num_classes: int = 2,
                **kw) -> nn.Module:
    """Build a registered network for `task`. Extra keywords (dropout, features, stem) go to
    the builder; keywords a builder does not know are ignored. The returned module carries
    `build_args`, a JSON-able dict that rebuilds it: `build_model(**model.build_args)`."""
    arch = arch or DEFAULT_ARCH.get(task)
    spec = MODELS.get(arch)
    if spec is None:
        raise ValueError(f"unknown model {arch!r}; known: {sorted(MODELS)}")
    if spec.task != task:
        raise ValueError(f"model {arch!r} is for {spec.task}, not {task}")
    model = spec.build(in_channels=in_channels, num_classes=num_classes, **kw)
    args = {"task": task, "arch": arch, "in_channels": int(in_channels), "num_classes": int(num_classes)}
    for key, value in kw.items():
        args[key] = list(value) if isinstance(value, tuple) else value
    model.build_args = args
    return model
