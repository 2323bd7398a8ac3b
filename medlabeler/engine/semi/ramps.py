"""Ramp-up schedules for unsupervised loss weights, with T a FRACTION of the run.

Laine & Aila, "Temporal Ensembling for Semi-Supervised Learning", ICLR 2017 (the sigmoid-shaped
ramp exp(-5 (1 - t/T)^2)), as used by Mean Teacher (Tarvainen & Valpola, NeurIPS 2017).
Here t is `progress` = step / total steps in [0, 1] and T = `fraction` of the run, so the
ramp always finishes inside the run (the public SRCL code ramps over more steps than it trains).
"""

from __future__ import annotations

import math


def sigmoid_rampup(progress: float, fraction: float = 0.3) -> float:
    """exp(-5 (1 - t/T)^2) for t < T, then 1; T = `fraction` of the run (<= 0: always 1)."""
    if fraction <= 0:
        return 1.0
    t = min(max(float(progress) / float(fraction), 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)


def linear_rampup(progress: float, fraction: float = 0.3) -> float:
    """t/T for t < T, then 1 (T = `fraction` of the run)."""
    if fraction <= 0:
        return 1.0
    return min(max(float(progress) / float(fraction), 0.0), 1.0)
