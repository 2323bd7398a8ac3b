"""Run an engine generator to its end in a terminal, showing its progress (torch-free).

Used by the command line, the headless demo round and the benchmarks: a tqdm bar on an interactive
stderr, one line per epoch/metric/log event otherwise, nothing on torchrun ranks other than 0.
"""

from __future__ import annotations

import math
import os
import sys

from medlabeler.engine.training.events import run_to_end


def torchrun_rank() -> int:
    """This process's rank under torchrun (0 outside it): only rank 0 writes and prints."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return 0
    return int(os.environ.get("RANK", "0") or 0)


def drive(events, label: str):
    """Run an engine generator to its end, showing progress; returns the generator's result."""
    interactive = sys.stderr.isatty()
    bar = None
    if torchrun_rank() > 0:
        return run_to_end(events)

    def show(event) -> None:
        nonlocal bar
        total = getattr(event, "total_steps", None) or getattr(event, "total", None)
        if interactive and total and bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, desc=label, unit="step", file=sys.stderr)
        if bar is not None and getattr(event, "kind", "") == "step":
            bar.n = getattr(event, "step", bar.n)
            loss = getattr(event, "loss", None)
            if loss is not None:
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            bar.refresh()
        elif not interactive and getattr(event, "kind", "") in ("epoch", "log", "metric"):
            print(f"{label}: {describe(event)}", file=sys.stderr, flush=True)

    try:
        return run_to_end(events, show)
    finally:
        if bar is not None:
            bar.close()


def describe(event) -> str:
    """One line for a progress event: step (a run's length is counted in steps; an epoch is only
    the validation interval), loss, the headline metrics, its message."""
    parts = []
    step, total = getattr(event, "step", None), getattr(event, "total_steps", None)
    if step is not None and total:
        parts.append(f"step {step}/{total}")
    elif getattr(event, "kind", "") == "epoch" and getattr(event, "epoch", None) is not None:
        parts.append(f"epoch {event.epoch}")
    if getattr(event, "loss", None) is not None:
        parts.append(f"loss {event.loss:.4f}")
    for key, value in (getattr(event, "metrics", None) or {}).items():
        headline = key in ("dice", "auc", "accuracy") or key.startswith("dice_")
        if headline and isinstance(value, float) and math.isfinite(value):
            parts.append(f"{key} {value:.3f}")
    if getattr(event, "message", None):
        parts.append(event.message)
    return ", ".join(parts)
