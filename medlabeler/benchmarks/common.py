"""What the benchmarks share: fresh projects with revealed labels, run configs, driving the engine."""

from __future__ import annotations

import json
import math
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

ORACLE = "oracle"

# Small enough for a 2-core CPU: one training round takes seconds to tens of seconds.
SEG_CONFIG = {"image_size": 64, "features": [8, 16, 32, 64], "batch_size": 8, "unlabeled_batch_size": 8,
              "lr": 3e-3, "dropout": 0.1}
CLS_CONFIG = {"image_size": 32, "stem": "standard", "batch_size": 32, "unlabeled_batch_size": 32,
              "lr": 1e-3, "dropout": 0.1}
DEFAULT_STEPS = {"segmentation": 40, "classification": 60}
DEFAULT_PRETRAIN_STEPS = 60


def say(text: str) -> None:
    print(text, flush=True)


RELEVANT = {
    "active-learning": ("dataset", "strategies", "rounds", "per_round", "seeds", "epochs", "steps", "full_steps",
                        "image_size", "batch_size", "config", "method", "warm_start", "mc_passes", "fraction", "threads",
                        "out"),
    "pipelines": ("dataset", "methods", "seeds", "labels", "epochs", "steps", "pretrain_steps", "image_size",
                  "batch_size", "config", "threads", "out"),
    "throughput": ("dataset", "labels", "steps", "pretrain_steps", "image_size", "batch_size", "config", "repeats",
                   "threads", "out"),
    "sanity-ladder": ("labels", "steps", "pretrain_steps", "image_size", "config", "threads", "out"),
    "learning-loop": ("dataset", "rounds", "per_round", "steps", "image_size", "batch_size", "config", "warm_share",
                      "full_run_after_s", "seed", "threads", "out"),
}


def command_line(args) -> str:
    """The `medlabeler benchmark ...` command that reproduces this run (its options spelled out)."""
    parts = ["medlabeler", "benchmark", args.name]
    keys = list(RELEVANT.get(args.name, ()))
    if getattr(args, "dataset", "") == "mni-tissue-cls":
        keys[1:1] = ["patches", "classes"]
    for key in keys:
        value = getattr(args, key, None)
        if value is None or value is False:
            continue
        parts += ["--" + key.replace("_", "-")] + ([] if value is True else [str(value)])
    return " ".join(shlex.quote(p) for p in parts)


def run_config(task: str, args, *, seed: int, steps: int | None = None) -> dict[str, Any]:
    """The training config of a benchmark run: the small defaults, then --image-size / --batch-size,
    then --config (a JSON object or file), then the seed and the step budget (`steps`, default
    DEFAULT_STEPS of the task; ignored when --epochs is given)."""
    config = dict(SEG_CONFIG if task == "segmentation" else CLS_CONFIG)
    if getattr(args, "image_size", None):
        config["image_size"] = int(args.image_size)
    if getattr(args, "batch_size", None):
        config["batch_size"] = config["unlabeled_batch_size"] = int(args.batch_size)
    config.update(extra_config(getattr(args, "config", None)))
    config["seed"] = int(seed)
    steps = steps or DEFAULT_STEPS[task]
    if getattr(args, "epochs", None):
        config.pop("steps", None)
    else:
        config["steps"] = int(steps)
        config.setdefault("steps_per_epoch", max(1, int(steps) // 2))  # validate twice per run
    return config


def extra_config(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    from medlabeler.engine.errors import InputError

    try:
        value = json.loads(Path(text).read_text()) if Path(text).is_file() else json.loads(text)
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(text, f"--config must be a JSON object or a JSON file: {exc}") from exc
    if not isinstance(value, dict):
        raise InputError(text, "--config must be a JSON object")
    return value


def drive_quietly(gen, label: str, verbose: bool = False):
    """Run an engine generator to its end (with a progress bar when verbose); returns its result."""
    if verbose:
        from medlabeler.engine.training.progress import drive

        return drive(gen, label)
    from medlabeler.engine.training.events import run_to_end

    return run_to_end(gen)


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def fresh_project(data, root: Path):
    """A new project of `data` at `root` (an old one there is removed first)."""
    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    return data.make(root)


def has_truth(data, sample) -> bool:
    return data.truth(sample) is not None


def with_two_classes(picked: list, pool: list, data, seed: int) -> list:
    """No run trains a classifier on one class (`train.one_class_only`): where a draw of two or more
    labels holds one class and the pool others, its last pick is swapped for a sample of another
    class, drawn with `seed`."""
    if data.task != "classification" or len(picked) < 2:
        return picked
    classes = {data.truth(s) for s in picked}
    if len(classes) >= 2:
        return picked
    ids = {s.id for s in picked}
    others = [s for s in pool if s.id not in ids and data.truth(s) is not None and data.truth(s) not in classes]
    if not others:
        return picked
    return picked[:-1] + [others[int(np.random.default_rng(seed).integers(len(others)))]]


def reveal(project, data, samples: Iterable) -> int:
    """Save the oracle's label of each sample, as a clinician would (origin manual, author oracle)."""
    count = 0
    for sample in samples:
        value = data.truth(sample)
        if value is None:
            continue
        project.save_label(sample.id, value, author=ORACLE, origin="manual")
        count += 1
    return count


def reveal_eval_splits(project, data) -> dict[str, int]:
    """Reveal every val and test label: val picks the model, test is only reported."""
    return {split: reveal(project, data, project.samples(split=split)) for split in ("val", "test")}


def train_pool(project, data) -> list:
    """Train samples the oracle can label, in (source, slice) order."""
    samples = [s for s in project.samples(split="train") if has_truth(data, s)]
    return sorted(samples, key=lambda s: (s.path, s.series_uid or "", s.slice_index or 0, s.id))


def spread_pick(samples: list, n: int, seed: int, skip_empty=None) -> list:
    """`n` samples spread evenly through `samples` (in order), each moved by -1/0/+1 at random
    with `seed`, as a clinician labels slices across a volume. `skip_empty(sample)` True drops it."""
    candidates = [s for s in samples if not (skip_empty and skip_empty(s))] or list(samples)
    if not candidates or n <= 0:
        return []
    rng = np.random.default_rng(seed)
    picks = np.linspace(0, len(candidates) - 1, num=min(n, len(candidates))).round().astype(int)
    chosen: list[int] = []
    for p in picks:
        q = int(np.clip(p + rng.integers(-1, 2), 0, len(candidates) - 1))
        while q in chosen and q + 1 < len(candidates):
            q += 1
        if q not in chosen:
            chosen.append(q)
    return [candidates[i] for i in sorted(chosen)]


def empty_mask(data):
    """For segmentation: a predicate 'the oracle mask of this sample is all background'."""
    if data.task != "segmentation":
        return None
    return lambda sample: not np.asarray(data.truth(sample)).any()


def copy_project(src: Path, dest: Path):
    """Copy the (closed) project folder `src` to `dest` and open the copy for writing."""
    from medlabeler.engine.store import Project

    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest)
    return Project.open(dest)


def evaluate(project, version: int, metric: str, split: str = "test") -> tuple[float, dict[str, float]]:
    from medlabeler.engine.workflows.evaluate import evaluate_project

    metrics = evaluate_project(project, split=split, version=version)
    return float(metrics.get(metric, math.nan)), metrics


class Stopwatch:
    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return math.nan, math.nan
    return float(np.mean(v)), float(np.std(v))


def machine_text() -> str:
    import os
    import platform

    import torch

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{platform.machine()} {cpus} CPU cores, torch {torch.__version__} with {torch.get_num_threads()} "
            f"thread(s), python {sys.version.split()[0]}")
