"""Scoring: run a model over the unlabeled pool and turn its probabilities into stored scores.

This is the expensive half of active learning (strategies only rank what is written here).
`score_pool` is a generator: it yields `ScoringEvent`s (progress, throughput) and RETURNS a
`ScoringResult`; drive it with `medlabeler.engine.training.events.run_to_end(gen)` or a for loop catching StopIteration.value.
Inference is a callable the caller supplies, so this module never builds or loads a model:

    predict_fn(sample_ids) -> probs (N, C, ...)            when mc_passes == 0
    predict_fn(sample_ids) -> mc_probs (T, N, C, ...)      when mc_passes == T >= 2 (dropout on)

Either may instead return a pair (probs, features) with features (N, D) pooled encoder
embeddings, which are then returned too (for k-center). Probabilities must be softmax outputs:
logits are refused with a clear error rather than silently scored.

Scores carry the model version that produced them: `write_scores_to_project` stores them under
it, `stale(project)` lists samples whose scores are not from the active model, and strategies
never rank scores from two versions together (see strategies.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medlabeler.engine.active import aggregate, uncertainty
from medlabeler.engine.active.strategies import MODEL_VERSION_KEY
from medlabeler.engine.errors import InputError

log = logging.getLogger(__name__)

TASKS = ("classification", "segmentation")


@dataclass(frozen=True)
class ScoringEvent:
    """Progress of a scoring pass: `done` of `total` samples at `samples_per_s`."""

    kind: str
    done: int
    total: int
    samples_per_s: float
    message: str = ""


@dataclass
class ScoringResult:
    """What a scoring pass produced. `cancelled` passes keep the scores of finished batches."""

    scores: dict[int, dict[str, float]]
    maps: dict[int, np.ndarray] | None = None
    embeddings: dict[int, np.ndarray] | None = None
    cancelled: bool = False
    samples_per_s: float = 0.0
    seconds: float = 0.0
    names: tuple[str, ...] = field(default_factory=tuple)


def is_cancelled(cancel: Any) -> bool:
    """True if `cancel` (None, a callable, a threading.Event or a token object) asks to stop."""
    if cancel is None:
        return False
    for attr in ("is_set", "is_cancelled", "cancelled"):
        if hasattr(cancel, attr):
            v = getattr(cancel, attr)
            return bool(v() if callable(v) else v)
    if callable(cancel):
        return bool(cancel())
    raise TypeError(f"cannot tell whether {type(cancel).__name__} is cancelled")


def _to_numpy(x: Any) -> np.ndarray:
    if type(x).__module__.startswith("torch"):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def _check_output(probs: Any, n: int, task: str, mc_passes: int) -> None:
    shape = tuple(probs.shape)
    lead = 1 if mc_passes else 0
    want = ("(T, N, C)" if mc_passes else "(N, C)") + (", ..." if task == "segmentation" else "")
    ndim_ok = len(shape) == lead + 2 if task == "classification" else len(shape) >= lead + 3
    if not ndim_ok or shape[lead] != n or (mc_passes and shape[0] != mc_passes):
        raise ValueError(f"predict_fn returned shape {shape}; expected {want} with N={n}" + (f", T={mc_passes}" if mc_passes else ""))
    p = _to_numpy(probs)
    if not np.isfinite(p).all():
        raise ValueError("predict_fn returned NaN or infinite probabilities: the model is broken; retrain it")
    sums = p.sum(axis=lead + 1)
    if p.min() < -1e-4 or p.max() > 1 + 1e-4 or not np.allclose(sums, 1.0, atol=1e-3):
        raise ValueError("predict_fn must return probabilities (softmax over the class axis), not logits")


def _score_batch(
    out: Any, task: str, mc_passes: int, names: Sequence[str], aggregation: str, topk_frac: float,
    foreground_only: bool, map_score: str | None,
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    mc = out if mc_passes else None
    probs = out.mean(0) if mc_passes else out
    per_name: dict[str, np.ndarray] = {}
    fg = aggregate.predicted_foreground(probs) if task == "segmentation" and foreground_only else None
    for name in names:
        raw = uncertainty.compute(name, probs, mc)
        per_name[name] = _to_numpy(raw).astype(np.float64) if task == "classification" else aggregate.aggregate_sample(raw, aggregation, topk_frac, fg)
    maps = aggregate.uncertainty_map(probs, map_score, mc) if (map_score and task == "segmentation") else None
    return per_name, maps


def score_pool(
    predict_fn: Callable[[list[int]], Any],
    sample_ids: Iterable[int],
    *,
    task: str,
    mc_passes: int = 0,
    batch_size: int = 16,
    cancel: Any = None,
    names: Sequence[str] | None = None,
    aggregation: str = "topk",
    topk_frac: float = aggregate.DEFAULT_TOPK_FRAC,
    foreground_only: bool = False,
    keep_maps: bool = False,
    map_score: str = "entropy",
    clock: Callable[[], float] = time.perf_counter,
    on_chunk: Callable[[dict[int, dict[str, float]]], None] | None = None,
) -> Generator[ScoringEvent, None, ScoringResult]:
    """Score `sample_ids` batch by batch; yields progress, returns a `ScoringResult`.

    `names` default: entropy, margin, least_confidence, plus bald when mc_passes >= 2 (scores on
    the MC-mean probabilities otherwise). Segmentation maps are aggregated per sample with
    `aggregation` (topk of `topk_frac`, mean, max), inside the predicted foreground if
    `foreground_only`. `keep_maps` keeps each sample's [0, 1] `map_score` map for the viewer
    (memory grows with the pool: use it for the batch on screen, not a whole large pool).
    `cancel` is checked before each batch; a cancelled pass returns what it finished.
    `on_chunk(scores of the batch)` runs after each batch (to store scores as they arrive).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}; got {task!r}")
    if mc_passes == 1 or mc_passes < 0:
        raise ValueError(f"mc_passes must be 0 (no MC dropout) or >= 2; got {mc_passes}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if names is None:
        names = [n for n in uncertainty.SCORE_NAMES if n != "bald" or mc_passes >= 2]
    elif "bald" in names and mc_passes < 2:
        raise ValueError("the bald score needs mc_passes >= 2 (MC-dropout passes)")
    ids = [int(i) for i in sample_ids]
    total = len(ids)
    scores: dict[int, dict[str, float]] = {}
    maps: dict[int, np.ndarray] | None = {} if keep_maps and task == "segmentation" else None
    feats: dict[int, np.ndarray] = {}
    start = clock()
    done = 0
    cancelled = False

    def rate() -> float:
        elapsed = clock() - start
        return done / elapsed if elapsed > 0 else 0.0

    yield ScoringEvent("progress", 0, total, 0.0, f"scoring {total} samples")
    for b in range(0, total, batch_size):
        if is_cancelled(cancel):
            cancelled = True
            break
        batch = ids[b : b + batch_size]
        try:
            out = predict_fn(batch)
        except InputError:  # an image damaged or deleted since the import: score the others
            readable = _readable(predict_fn, batch)
            done += len(batch) - len(readable)  # the unreadable ones are done: nothing to score there
            batch = readable
            if not batch:
                yield ScoringEvent("progress", done, total, rate(), f"scored {done}/{total}")
                continue
            out = predict_fn(batch)
        feat = None
        if isinstance(out, tuple):
            out, feat = out
        _check_output(out, len(batch), task, mc_passes)
        per_name, batch_maps = _score_batch(out, task, mc_passes, names, aggregation, topk_frac, foreground_only, map_score if maps is not None else None)
        for j, sid in enumerate(batch):
            scores[sid] = {name: float(per_name[name][j]) for name in names}
            if batch_maps is not None:
                maps[sid] = batch_maps[j]
        if feat is not None:
            f = _to_numpy(feat).reshape(len(batch), -1)
            feats.update({sid: f[j] for j, sid in enumerate(batch)})
        if on_chunk is not None:
            on_chunk({sid: scores[sid] for sid in batch})
        done += len(batch)
        yield ScoringEvent("progress", done, total, rate(), f"scored {done}/{total}")
    seconds = clock() - start
    msg = f"cancelled after {done}/{total} samples" if cancelled else f"scored {total} samples"
    yield ScoringEvent("log", done, total, rate(), msg)
    return ScoringResult(scores, maps, feats or None, cancelled, rate(), seconds, tuple(names))


def _readable(predict_fn: Callable[[list[int]], Any], batch: list[int]) -> list[int]:
    """The ids of ``batch`` whose images still read, one at a time; the others are logged by id
    (a path may name a patient) and left unscored, so the queue leaves them out."""
    readable = []
    for sample_id in batch:
        try:
            predict_fn([sample_id])
        except InputError as exc:
            log.warning("sample %d left unscored: %s", sample_id, exc.problem)
            continue
        readable.append(sample_id)
    return readable


# ----------------------------------------------------------------------------- store


def write_scores_to_project(project: Any, model_version: int | None, scores: Mapping[int, Mapping[str, float]]) -> int:
    """Store `scores` under `model_version` (the model that produced them); returns how many.

    The store records the write in its audit log itself.
    """
    clean = {int(s): {k: float(v) for k, v in d.items() if k != MODEL_VERSION_KEY} for s, d in scores.items()}
    project.write_scores(model_version, clean)
    return len(clean)


def write_embeddings_to_project(project: Any, model_version: int | None, embeddings: Mapping[int, Any]) -> int:
    """Store per-sample embeddings (for k-center) under `model_version`; returns how many."""
    if not embeddings:
        return 0
    ids = sorted(int(i) for i in embeddings)
    project.write_embeddings(model_version, ids, np.stack([np.asarray(embeddings[i], dtype=np.float32).ravel() for i in ids]))
    return len(ids)


def current_version_key(project: Any) -> int:
    """The store's key for current scores: the active model's version, 0 when none is active."""
    active = project.active_model()
    return active.version if active is not None else 0


def stale(project: Any) -> list[int]:
    """Samples that have scores, but none from the active model (the store's key 0 = no model).

    Their scores are ignored by strategies until the pool is rescored with the active model.
    """
    key = current_version_key(project)
    current = set(project.scores(key))
    older: set[int] = set()
    for v in {0, *(m.version for m in project.models())} - {key}:
        older.update(project.scores(v))
    return sorted(older - current)


def to_score(project: Any, split: str | None = None) -> list[int]:
    """Unlabeled samples without a score from the active model: what the next scoring pass runs on."""
    return project.stale_score_samples(unlabeled_only=True, split=split)
