"""The active-learning round on a project: score the unlabeled pool with the active model, then rank.

Scoring is the costly part (one forward pass per sample, plus MC-dropout passes for BALD); it
writes scores and embeddings into the store under the model version that made them. Ranking
(`next_samples`) only reads stored scores, so the queue can re-rank instantly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, Generator

import numpy as np

from medlabeler.engine.errors import ProjectError


def score_project(project, *, mc_passes: int = 0, cancel: Any = None, split: str = "train",
                  batch_size: int = 16, chunk_writes: bool = False) -> Generator[Any, None, dict]:
    """Score every unlabeled sample of ``split`` with the active model; yields progress events.

    One forward pass per sample gives probabilities and embeddings together (MC dropout needs
    its own passes). With ``chunk_writes`` each batch's scores are stored as soon as they exist,
    so the queue re-ranks on them while the rest of a large pool is scored.

    Returns {"scored", "model_version", "samples_per_second", "cancelled"}. Scores and encoder
    embeddings are written with the model version, so older scores become visibly stale.
    """
    from medlabeler.engine.active.scoring import score_pool, write_embeddings_to_project, write_scores_to_project
    from medlabeler.engine.workflows.model_versions import load_model
    from medlabeler.engine.workflows.predict import embed_samples, predict_samples, predict_with_features

    bundle = load_model(project)
    version = bundle[2].version
    samples = project.samples(split=split, labeled=False)
    if not samples:
        return {"scored": 0, "model_version": version, "samples_per_second": 0.0, "cancelled": False}
    # Segmentation probabilities come back at each sample's own size: batch only equal shapes.
    same_shape = len({tuple(s.shape) for s in samples}) == 1
    batch = batch_size if project.task.kind == "classification" or same_shape else 1

    def predict_fn(ids: list[int]):
        if not mc_passes:  # one forward pass gives both the probabilities and the embeddings
            rows = list(predict_with_features(project, ids, model_bundle=bundle, batch_size=batch_size))
            return np.stack([r[1] for r in rows]), np.stack([r[2] for r in rows])
        probs = np.stack([p for _, p in predict_samples(project, ids, mc_samples=mc_passes, model_bundle=bundle)])
        probs = np.swapaxes(probs, 0, 1)  # (N, T, C, ...) -> (T, N, C, ...)
        _, features = embed_samples(project, ids, model_bundle=bundle)
        return probs, features

    def store_chunk(scores: dict) -> None:  # the queue ranks what is scored so far
        write_scores_to_project(project, version, scores)

    result = yield from score_pool(predict_fn, [s.id for s in samples], task=project.task.kind,
                                   mc_passes=mc_passes, batch_size=batch, cancel=cancel,
                                   on_chunk=store_chunk if chunk_writes else None)
    if not chunk_writes:
        write_scores_to_project(project, version, result.scores)
    if result.embeddings:
        # Labeled samples are k-center's starting centres: embed them with the same model.
        labeled_ids, features = embed_samples(project, [s.id for s in project.samples(labeled=True)],
                                              model_bundle=bundle, unreadable=[])  # a centre less, not a failed pass
        embeddings = {**result.embeddings, **dict(zip(labeled_ids, features))}
        write_embeddings_to_project(project, version, embeddings)
    return {"scored": len(result.scores), "model_version": version,
            "samples_per_second": result.samples_per_s, "cancelled": result.cancelled}


#: How the queue asks for held-out labels: a request, not an uncertainty (they carry no score).
HELD_OUT_REASONS = {
    "val": "validation label needed: held out to choose the best model, never trained on",
    "test": "test label needed: held out to measure the model, never trained on nor used to choose",
}
#: Why a skipped sample is where it is: behind every sample not skipped (`Project.skip`).
SKIPPED_REASONS = {
    "train": "skipped (left unlabeled at n): asked for after the rest of the queue",
    "val": "skipped (a validation sample left unlabeled at n): asked for after the rest of the queue",
    "test": "skipped (a test sample left unlabeled at n): asked for after the rest of the queue",
}
#: The queue is always ranked this deep and then cut: the app's first sample, `n`, the queue
#: table, `medlabeler queue` and the demo then agree on the order whatever length each shows.
QUEUE_DEPTH = 50
#: Samples a clinician labels between two models: hybrid picks diverse rounds of this size.
QUEUE_BATCH = 10


def next_samples(project, *, strategy: str = "hybrid", n: int = 10, split: str | None = None, seed: int = 0,
                 assume_labeled: Iterable[int] = (), every_skipped: bool = False):
    """The ``n`` unlabeled samples to label next, each with its score and the reason it was chosen.

    Deterministic for a given active model, label state, strategy and seed, and prefix-stable up
    to ``QUEUE_DEPTH``: asking for 2 or for 50 starts with the same samples. Without ``split``,
    the queue is mostly the strategy's picks from the train split, with validation and test
    requests (score None) mixed in whenever their share of the labels falls behind the split
    fractions: a model can only be chosen and measured on labels someone gave.

    ``assume_labeled``: samples ranked as labeled although the store has no label for them yet
    (a save still being written), so the queue is the one the store gives once the save lands.

    Samples the clinician skipped (`Project.skip`) come after all the others, the longest skipped
    first: a slice that cannot be labeled is not asked for again at each save. A skipped held-out
    request gives its place to the next sample of its split; the strategy's picks keep their order.
    ``every_skipped``: the skipped samples beyond the ``n`` are listed after them (the app's queue
    table, where they stay in reach of a right-click).
    """
    from medlabeler.engine.active.strategies import Selection, select_for_project

    depth = max(n, QUEUE_DEPTH)
    labeled = sorted({s.id for s in project.samples(labeled=True)} | {int(i) for i in assume_labeled})
    known = {"samples": project.samples(), "labeled": labeled}
    skipped = _skipped(project, known, split)
    later = {p.sample for p in skipped}
    depth += len(later)  # ranked as if never skipped, then moved behind: the rest keeps its order
    try:
        if split is not None:
            queue = select_for_project(project, strategy=strategy, n=depth, split=split, seed=seed, batch=QUEUE_BATCH,
                                       **known)
            return _cut([p for p in queue if p.sample not in later], skipped, n, every_skipped)
        plan = held_out_plan(project, depth, known=known)
        picks = select_for_project(project, strategy=strategy, n=plan.count("train"), split="train", seed=seed,
                                   batch=QUEUE_BATCH, **known)
    except ValueError as exc:
        raise ProjectError(f"{project.root}: cannot rank with strategy {strategy!r}: {exc}") from exc
    # a request skipped: the next sample of its split is asked for in its place
    held = {name: iter([p for p in select_for_project(project, strategy="random", n=plan.count(name) + len(later),
                                                      split=name, seed=seed, **known) if p.sample not in later])
            for name in ("val", "test")}
    train = iter(picks)
    queue = []
    for name in plan:
        pick = next(train if name == "train" else held[name], None)
        if pick is not None and pick.sample not in later:
            queue.append(pick if name == "train" else Selection(pick.sample, None, HELD_OUT_REASONS[name]))
    return _cut(queue, skipped, n, every_skipped)


def _skipped(project, known: dict, split: str | None = None) -> list:
    """The skipped samples (of ``split``) still to label, the longest skipped first."""
    from medlabeler.engine.active.strategies import Selection

    splits = {s.id: s.split for s in known["samples"]}
    done = set(known["labeled"]) | project.blank_ids()
    return [Selection(i, None, SKIPPED_REASONS[splits[i]]) for i in project.skipped_ids()
            if i in splits and i not in done and split in (None, splits[i])]


def _cut(queue: list, skipped: list, n: int, every_skipped: bool) -> list:
    """The first ``n`` of the queue with the skipped samples behind it (all of them: ``every_skipped``)."""
    shown = (queue + skipped)[:n]
    return shown + [p for p in skipped if p not in shown] if every_skipped else shown


def queue_after_skip(rows: list, sample: int) -> list:
    """The queue ``rows`` as `next_samples` ranks it once ``sample`` is skipped, as far as the rows
    go, without ranking again (the app's `n` opens its top at once): a pick leaves its place; a
    held-out request's place goes to the next request of its split, and each later one of that
    split moves up a place (the last place, whose sample lies beyond the rows, is left out).
    ``rows``: selections or queue rows (anything with ``sample`` and ``reason``), as ranked before."""
    at = next((i for i, row in enumerate(rows) if row.sample == sample), None)
    if at is None:
        return list(rows)
    if not is_request(rows[at]):
        return rows[:at] + rows[at + 1:]
    places = [i for i, row in enumerate(rows) if row.reason == rows[at].reason and i >= at]
    moved = {i: rows[j].sample for i, j in zip(places, places[1:])}
    return [dataclasses.replace(row, sample=moved[i]) if i in moved else row
            for i, row in enumerate(rows) if i not in places or i in moved]


def is_skipped(selection) -> bool:
    """A sample the clinician skipped, listed after the rest of the queue."""
    return selection.reason in SKIPPED_REASONS.values()


def is_request(selection) -> bool:
    """A held-out label request (validation or test), not an uncertainty pick nor a skipped sample."""
    return selection.reason in HELD_OUT_REASONS.values()


def shown_score(selection, *, has_model: bool) -> float | None:
    """The score a queue shows for a pick: an uncertainty, so none for a first pick (before any
    model, or while the active model's scores are being written: there its score is a k-center
    distance, and "no uncertainty scores yet" beside 0.686 read as a contradiction) and none for a
    held-out request."""
    from medlabeler.engine.active.strategies import is_first_pick

    if not has_model or selection.score is None or is_first_pick(selection.reason):  # a request, a skip
        return None
    return float(selection.score)


def where(sample, project=None) -> str:
    """Where a sample is, as every view shows it: ``slice 44`` counting from 0 like napari's slice
    slider (the sample id is the project's id, as in `medlabeler queue` and exports), ``scan 3,
    slice 44`` in a project of several scans (given ``project``), else its split."""
    if sample.slice_index is None:
        return sample.split
    scan = project.scan_number(sample) if project is not None else None
    return f"scan {scan}, slice {sample.slice_index}" if scan else f"slice {sample.slice_index}"


def held_out_plan(project, n: int, *, known: dict | None = None) -> list[str]:
    """The split each of the next ``n`` labels should come from, keeping labels in split proportion.

    ``known``: the project's ``samples`` and ``labeled`` ids as the caller read them (else read here).
    """
    fractions = dict(zip(("train", "val", "test"), project.task.split_fractions))
    samples = known["samples"] if known else project.samples()
    labeled_ids = set(known["labeled"] if known else (s.id for s in project.samples(labeled=True)))
    labeled = {name: sum(1 for s in samples if s.split == name and s.id in labeled_ids) for name in fractions}
    open_ = {name: sum(1 for s in samples if s.split == name) - labeled[name] for name in fractions}
    plan = []
    for _ in range(n):
        total = sum(labeled.values()) + 1
        behind = [(fractions[s] * total - labeled[s], s) for s in ("val", "test") if open_[s] > 0 and fractions[s] > 0]
        deficit, name = max(behind, default=(0.0, "train"))
        name = name if deficit >= 1.0 or (labeled[name] == 0 and sum(labeled.values()) >= 2) else "train"
        if name == "train" and open_["train"] <= 0:  # every training sample labeled: the held-out ones
            if not behind:
                break
            name = max(behind)[1]
        plan.append(name)
        labeled[name] += 1
        open_[name] -= 1
    return plan
