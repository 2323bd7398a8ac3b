"""Benchmarks of the product loop on real data (`medlabeler benchmark NAME`).

- ``active-learning``: simulated clinician; labels each strategy needs to reach 95% of full supervision.
- ``pipelines``: supervised vs SSL-pretrained vs semi-supervised training with few labels.
- ``throughput``: our training loop vs a plain PyTorch loop; SimCLR / PCL pretraining speed.
- ``learning-loop``: simulated clinician labeling from the queue while the learning loop runs.
- ``sanity-ladder``: the checks each self-/semi-supervised method must pass before it is tuned.

Datasets (offline, see `datasets`): ``mni-tissue-seg``, ``mni-tissue-cls`` or a labeled project folder.
Every benchmark prints its figures and the exact command, and writes CSV/markdown (and PNG curves)
into ``--out``. Figures are measurements of this machine, never asserted.
"""

from __future__ import annotations

NAMES = ("active-learning", "pipelines", "throughput", "learning-loop", "sanity-ladder")


def run_benchmark(args) -> int:
    """Run the benchmark `args.name` with the `medlabeler benchmark` arguments; returns the exit code."""
    if args.name == "active-learning":
        from .active_learning import run
    elif args.name == "pipelines":
        from .pipelines import run
    elif args.name == "throughput":
        from .throughput import run
    elif args.name == "learning-loop":
        from .learning_loop import run
    elif args.name == "sanity-ladder":
        from .ladder import run
    else:
        raise ValueError(f"unknown benchmark {args.name!r}; known: {', '.join(NAMES)}")
    return run(args)
