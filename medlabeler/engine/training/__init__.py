"""The training loop (a generator of events), cancel token, checkpoints, device choice.

Import the Method base class from `medlabeler.engine.training.method`.
"""

from .cancel import CancelToken
from .checkpoint import load_resume_point, load_weights, save_resume_point, save_weights
from .device import amp_plan, cap_threads, pick_device, seed_everything
from .events import Event, RunResult
from .loop import fit, run_to_end, train
from .schedule import warmup_cosine

__all__ = [
    "CancelToken", "Event", "RunResult", "amp_plan", "cap_threads", "fit", "load_resume_point",
    "load_weights", "pick_device", "run_to_end", "save_resume_point", "save_weights", "seed_everything",
    "train", "warmup_cosine",
]
