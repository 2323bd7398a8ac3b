"""Batched prediction: softmax probabilities, sliding windows for large inputs, MC dropout.

Sliding-window inference (MONAI `sliding_window_inference`, Gaussian blending) is used when a
segmentation input is larger than `roi_size` along any axis; smaller inputs go through whole.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Sequence

import torch
from torch import nn

from medlabeler.engine.models.common import enable_mc_dropout


def _device_of(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _autocast(device: torch.device, amp: bool | None):
    from medlabeler.engine.training.device import amp_plan

    plan = amp_plan(device, amp)
    return plan.autocast(device) if plan.dtype is not None else nullcontext()


def _needs_window(x: torch.Tensor, roi_size: Sequence[int] | int | None) -> bool:
    if roi_size is None:
        return False
    spatial = x.shape[2:]
    roi = (roi_size,) * len(spatial) if isinstance(roi_size, int) else tuple(roi_size)
    return any(s > r for s, r in zip(spatial, roi))


def _logits(model: nn.Module, x: torch.Tensor, roi_size, overlap: float, sw_batch_size: int) -> torch.Tensor:
    if _needs_window(x, roi_size):
        from monai.inferers import sliding_window_inference

        roi = (roi_size,) * (x.ndim - 2) if isinstance(roi_size, int) else tuple(roi_size)
        return sliding_window_inference(x, roi, sw_batch_size, model, overlap=overlap, mode="gaussian")
    return model(x)


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, *, batch_size: int = 8,
                   roi_size: Sequence[int] | int | None = None, overlap: float = 0.25,
                   amp: bool | None = None, keep_mode: bool = False) -> torch.Tensor:
    """Logits of `images` (N, C, *S) on the model's device, returned on CPU as float32.

    The model is put in eval mode unless `keep_mode` (used by MC dropout)."""
    device = _device_of(model)
    was_training = model.training
    if not keep_mode:
        model.eval()
    try:
        outs = []
        for start in range(0, images.shape[0], batch_size):
            x = images[start:start + batch_size].to(device, torch.float32)
            with _autocast(device, amp):
                out = _logits(model, x, roi_size, overlap, batch_size)
            outs.append(out.float().cpu())
        return torch.cat(outs) if outs else torch.empty(0)
    finally:
        if not keep_mode:
            model.train(was_training)


def predict_probs(model: nn.Module, images: torch.Tensor, **kw) -> torch.Tensor:
    """Softmax probabilities (N, num_classes, *S) (or (N, num_classes) for classifiers)."""
    logits = predict_logits(model, images, **kw)
    return torch.softmax(logits, dim=1) if logits.numel() else logits


def mc_dropout_probs(model: nn.Module, images: torch.Tensor, passes: int = 10, *, seed: int | None = None,
                     **kw) -> torch.Tensor:
    """Monte Carlo dropout (Gal & Ghahramani, ICML 2016): `passes` stochastic forward passes with
    dropout active and batch norm frozen -> probabilities (T, N, C, ...), the input of BALD."""
    if passes < 1:
        raise ValueError("MC dropout needs at least one pass")
    was_training = model.training
    devices = [_device_of(model)] if _device_of(model).type == "cuda" else []
    with torch.random.fork_rng(devices=devices, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        enable_mc_dropout(model)
        try:
            out = torch.stack([predict_probs(model, images, keep_mode=True, **kw) for _ in range(passes)])
        finally:
            model.train(was_training)
    return out


@torch.no_grad()
def predict_features(model: nn.Module, images: torch.Tensor, *, batch_size: int = 16) -> torch.Tensor:
    """Pooled encoder features (N, feature_dim) on CPU (embeddings for k-center)."""
    device = _device_of(model)
    was_training = model.training
    model.eval()
    try:
        outs = [model.forward_features(images[i:i + batch_size].to(device, torch.float32)).float().cpu()
                for i in range(0, images.shape[0], batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0, getattr(model, "feature_dim", 0))


@torch.no_grad()
def predict_probs_and_features(model: nn.Module, images: torch.Tensor, *, batch_size: int = 8,
                               amp: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(softmax probabilities (N, C, ...), pooled encoder features (N, D)) from ONE forward pass
    per batch (`model.forward_with_features`): what active-learning scoring needs, at half the cost
    of `predict_probs` + `predict_features`. Whole inputs only (no sliding window)."""
    device = _device_of(model)
    was_training = model.training
    model.eval()
    probs, feats = [], []
    try:
        for start in range(0, images.shape[0], batch_size):
            x = images[start:start + batch_size].to(device, torch.float32)
            with _autocast(device, amp):
                logits, features = model.forward_with_features(x)
            probs.append(torch.softmax(logits.float(), dim=1).cpu())
            feats.append(features.float().cpu())
    finally:
        model.train(was_training)
    if not probs:
        return torch.empty(0), torch.empty(0, getattr(model, "feature_dim", 0))
    return torch.cat(probs), torch.cat(feats)
