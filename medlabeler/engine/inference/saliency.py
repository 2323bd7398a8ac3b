"""Grad-CAM saliency for classifiers, and how much of it falls inside a region.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017. Used as in the curricular-SSL chest X-ray paper (SEEDS.md 003): does
the model look at the anatomy (e.g. inside a lung mask drawn in napari) or at a shortcut?
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def default_cam_layer(model: nn.Module) -> nn.Module:
    """The classifier's last convolutional block (`model.cam_layer`), else its last conv layer."""
    layer = getattr(model, "cam_layer", None)
    if isinstance(layer, nn.Module):
        return layer
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
    if not convs:
        raise ValueError("the model has no convolution layer for Grad-CAM")
    return convs[-1]


def grad_cam(model: nn.Module, images: torch.Tensor, target: int | torch.Tensor | None = None,
             layer: nn.Module | None = None) -> torch.Tensor:
    """Grad-CAM maps (B, *S) in [0, 1] at the input resolution for class `target` (an int, one
    per image, or None for each image's predicted class). Runs the model in eval mode."""
    layer = layer or default_cam_layer(model)
    device = next(model.parameters()).device
    captured: dict[str, torch.Tensor] = {}

    def keep(_module, _inputs, output):
        captured["maps"] = output

    handle = layer.register_forward_hook(keep)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = images.to(device, torch.float32)
            logits = model(x)
            if target is None:
                classes = logits.argmax(1)
            else:
                classes = torch.as_tensor(target, device=device).long().expand(x.shape[0])
            chosen = logits.gather(1, classes[:, None]).sum()
            maps = captured["maps"]
            grads, = torch.autograd.grad(chosen, maps)
    finally:
        handle.remove()
        model.train(was_training)
    spatial = tuple(range(2, maps.ndim))
    weights = grads.mean(dim=spatial, keepdim=True)
    cam = F.relu((weights * maps).sum(1, keepdim=True)).detach()
    mode = "bilinear" if cam.ndim == 4 else "trilinear"
    cam = F.interpolate(cam, size=images.shape[2:], mode=mode, align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(1).clamp_min(1e-12).view(-1, *([1] * (cam.ndim - 1)))
    return (cam / peak).cpu()


def saliency_fraction_inside(cam, mask, batched: bool = False) -> float | np.ndarray:
    """Sum of the saliency inside `mask` / total saliency (NaN when the map is all zero).

    One map and a mask of the same shape -> a float. With `batched`, the first axis indexes
    images (e.g. `grad_cam` output (B, H, W)) -> one value per image."""
    cam = cam.detach().cpu().numpy() if isinstance(cam, torch.Tensor) else np.asarray(cam)
    mask = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if cam.shape != mask.shape:
        raise ValueError(f"saliency map {cam.shape} and mask {mask.shape} differ in shape")
    cam = np.clip(cam.astype(np.float64), 0, None)
    inside = mask.astype(bool)
    if not batched:
        total = cam.sum()
        return float(cam[inside].sum() / total) if total > 0 else float("nan")
    flat, flat_mask = cam.reshape(cam.shape[0], -1), inside.reshape(cam.shape[0], -1)
    totals = flat.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, (flat * flat_mask).sum(1) / totals, np.nan)
