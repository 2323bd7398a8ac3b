"""Learning-rate schedule: linear warmup then cosine decay (Loshchilov & Hutter, ICLR 2017)."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_factor: float = 0.0) -> float:
    """Multiplier of the base learning rate at `step` (0-based): rises linearly to 1 over
    `warmup_steps`, then follows a half cosine down to `min_factor` at `total_steps`."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, max(0.0, (step - warmup_steps) / span))
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))


def warmup_steps_for(total_steps: int, fraction: float = 0.05) -> int:
    """Warmup length: `fraction` of the run, at least 1 step when the run has more than 10."""
    if total_steps <= 10:
        return 0
    return max(1, int(round(fraction * total_steps)))
