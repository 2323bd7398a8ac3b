"""The training loop (a generator of events), cancel token, checkpoints, device choice.

Import the Method base class from `medlabeler.engine.training.method`. Names load on first use,
so `from medlabeler.engine.training.cancel import CancelToken` does not import torch.
"""

import importlib

_WHERE = {
    "CancelToken": "cancel",
    "load_resume_point": "checkpoint", "load_weights": "checkpoint", "save_resume_point": "checkpoint",
    "save_weights": "checkpoint",
    "amp_plan": "device", "cap_threads": "device", "pick_device": "device", "seed_everything": "device",
    "Event": "events", "RunResult": "events",
    "FitConfig": "loop", "fit": "loop", "run_to_end": "events",
    "warmup_cosine": "schedule",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
