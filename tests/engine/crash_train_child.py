"""Child of test_training_crash: trains tiny models back to back, each saved as a new version."""

import sys

import torch  # noqa: F401  (imported before READY so kills land in training, not in imports)

import medlabeler.engine.methods  # noqa: F401
import medlabeler.engine.models  # noqa: F401
from medlabeler.engine.workflows.train import train_project
from medlabeler.engine.store import Project
from medlabeler.engine.training import run_to_end

CONFIG = {"image_size": 32, "features": [4, 8, 16, 32], "steps": 2, "batch_size": 2, "cap_threads": False}

with Project.open(sys.argv[1]) as project:
    for run in range(10**6):
        result = run_to_end(train_project(project, method="supervised", config=CONFIG))
        sys.stdout.write(f"SAVED {result.version}\n")  # one write: a kill cannot split the line
        sys.stdout.flush()
        if run == 0:  # warmed up: from here on, runs take a fraction of a second
            print("READY", flush=True)
