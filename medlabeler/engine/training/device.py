"""Device choice (CUDA with AMP, MPS, CPU), CPU thread cap, seeding and determinism."""

from __future__ import annotations

import os
import random
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch


def pick_device(prefer: str | torch.device | None = None) -> torch.device:
    """`prefer` ("cuda", "cuda:1", "mps", "cpu") when given and available, else CUDA, then MPS, then CPU."""
    if prefer not in (None, "auto", ""):
        device = torch.device(prefer)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("CUDA was asked for but no CUDA device is available")
        if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError("MPS was asked for but is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass(frozen=True)
class AmpPlan:
    """Mixed precision for one device: autocast dtype (None = off) and whether a GradScaler is needed."""

    dtype: torch.dtype | None
    scaler: bool

    def autocast(self, device: torch.device):
        if self.dtype is None:
            return torch.autocast(device_type=device.type, enabled=False)
        return torch.autocast(device_type=device.type, dtype=self.dtype)


def amp_plan(device: torch.device, amp: bool | None = None) -> AmpPlan:
    """CUDA: bf16 autocast where supported, else fp16 with a GradScaler. Off on CPU/MPS or when
    `amp` is False. `amp=None` means automatic."""
    if amp is False or device.type != "cuda":
        return AmpPlan(None, False)
    if torch.cuda.is_bf16_supported():
        return AmpPlan(torch.bfloat16, False)
    return AmpPlan(torch.float16, True)


def cap_threads(leave_one: bool = True) -> int:
    """Limit torch's CPU threads so the GUI keeps a core: max(1, cpus - 1), the cpus divided among
    the processes torchrun started on this node. Returns the count."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cpus = max(1, cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)))  # torchrun: share the node
    threads = max(1, cpus - 1) if leave_one else max(1, cpus)
    torch.set_num_threads(threads)
    return threads


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (all devices). Returns a CPU generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@contextmanager
def deterministic(device: torch.device):
    """On CPU: torch.use_deterministic_algorithms(True, warn_only=True) for the block, restored
    after. On GPUs determinism is not forced (some kernels have no deterministic version)."""
    if device.type != "cpu":
        yield
        return
    was = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=was_warn)
