"""Strategies: choose what the clinician labels next by ranking STORED scores (cheap, no model run).

Built in:
- ``random``: seeded random order, the control every strategy is compared with.
- any score name (``entropy``, ``margin``, ``least_confidence``, ``bald``, or a plugin's score):
  most uncertain first.
- ``kcenter``: k-center greedy core-set on embeddings with the labeled samples as the initial
  centers (Sener & Savarese, "Active Learning for Convolutional Neural Networks: A Core-Set
  Approach", ICLR 2018).
- ``hybrid`` (default): in rounds of one batch, k-center among the top M x batch most uncertain
  not yet picked (M = 4), so each batch is both uncertain and varied (with fewer than M x batch
  left, the most uncertain first).
- ``cold-start``: before any model exists: k-center on (SSL) embeddings if there are any,
  otherwise random. Uncertainty strategies fall back to it when no candidate has a score.

`select` then builds the batch: no labeled sample ever, no two near-duplicates (centred cosine
similarity of embeddings above `dedup_threshold`) and, for slice projects, no two slices of the
same volume closer than `min_slice_gap` (adjacent slices look alike). If those rules leave fewer
than `n`, the batch is filled from the skipped samples and their reason says so.

Stale scores: each score entry may carry the model version that produced it under the key
``"model_version"``. With `model_version` given, entries from any other version are IGNORED
(those samples count as unscored); without it, entries from two versions raise
`MixedScoreVersionsError`. Strategies never rank scores of different models together.

Plugins add strategies through the entry point group ``medlabeler.strategies``: the entry point
loads a callable called with keyword arguments ``candidates, scores, embeddings, labeled, n,
seed, groups, batch`` (and any extra options; accept ``**kwargs``) that returns a ranked
``list[Selection]`` of up to ``n`` candidates.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "medlabeler.strategies"
MODEL_VERSION_KEY = "model_version"
DEFAULT_STRATEGY = "hybrid"
UNCERTAINTY_PREFERENCE = ("entropy", "bald", "margin", "least_confidence")
#: What each built-in strategy puts first, in plain words (the app's tooltips; a plugin's strategy
#: shows its name alone).
STRATEGY_HELP = {
    "hybrid": "the most uncertain samples, chosen so that each batch is varied (the default)",
    "entropy": "the samples the model is least sure about (entropy of its prediction)",
    "margin": "the samples whose two likeliest labels are closest",
    "least_confidence": "the samples whose likeliest label has the lowest probability",
    "bald": "the samples on which repeated predictions (MC dropout) disagree most",
    "kcenter": "the samples least like any labeled one, to cover the images' variety",
    "random": "a random order: the control the other orders are compared with",
}
SCORE_WORDS = {
    "entropy": "entropy",
    "margin": "margin uncertainty",
    "least_confidence": "least confidence",
    "bald": "model disagreement (BALD)",
}


@dataclass(frozen=True)
class Selection:
    """One sample to label next, its score, and why it was chosen (shown to the clinician).

    `score` is None for a request that is not about uncertainty (a validation or test label).
    """

    sample: int
    score: float | None
    reason: str


class MixedScoreVersionsError(ValueError):
    """Scores from different model versions were handed to one ranking."""


StrategyFn = Callable[..., list[Selection]]
Groups = Mapping[int, tuple[Hashable, "int | None"]]

_BUILTIN: dict[str, StrategyFn] = {}
_PLUGINS: dict[str, StrategyFn] | None = None


def register_strategy(name: str, fn: StrategyFn | None = None):
    """Register `fn` under `name` (usable as a decorator). Built-in names cannot be replaced."""

    def add(f: StrategyFn) -> StrategyFn:
        if name in _BUILTIN and _BUILTIN[name] is not f:
            raise ValueError(f"strategy {name!r} is already registered")
        _BUILTIN[name] = f
        return f

    return add(fn) if fn is not None else add


def _plugins() -> dict[str, StrategyFn]:
    global _PLUGINS
    if _PLUGINS is None:
        from importlib.metadata import entry_points

        found: dict[str, StrategyFn] = {}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in _BUILTIN:
                log.warning("strategy plugin %s ignored: the name is built in", ep.name)
                continue
            try:
                found[ep.name] = ep.load()
            except Exception as exc:  # a broken plugin must not stop the app
                log.warning("strategy plugin %s could not be loaded: %s", ep.name, exc)
        _PLUGINS = found
    return _PLUGINS


def available_strategies() -> list[str]:
    """Names of registered and plugin strategies (score names are accepted too, see `select`)."""
    return sorted({*_BUILTIN, *_plugins()})


def get_strategy(name: str) -> StrategyFn | None:
    """The registered or plugin strategy called `name`, or None."""
    return _BUILTIN.get(name) or _plugins().get(name)


# ----------------------------------------------------------------------------- helpers


def _words(name: str) -> str:
    return SCORE_WORDS.get(name, name.replace("_", " "))


def _ranked_by_score(candidates: Sequence[int], scores: Mapping[int, Mapping[str, float]], name: str) -> list[tuple[int, float]]:
    """Candidates holding a finite `name` score, most uncertain first (ties: smaller id first)."""
    vals = []
    for c in candidates:
        v = scores.get(c, {}).get(name)
        if v is not None and math.isfinite(float(v)):
            vals.append((c, float(v)))
    vals.sort(key=lambda cv: (-cv[1], cv[0]))
    return vals


def _uncertainty_reason(name: str, value: float, rank: int, total: int) -> str:
    return f"{_words(name)} {value:.2f} (most uncertain #{rank + 1} of {total})"


def _embedding_matrix(ids: Sequence[int], embeddings: Mapping[int, Any] | None) -> tuple[list[int], np.ndarray]:
    if not embeddings:
        return [], np.zeros((0, 0))
    kept = [i for i in ids if i in embeddings]
    if not kept:
        return [], np.zeros((0, 0))
    return kept, np.stack([np.asarray(embeddings[i], dtype=np.float64).ravel() for i in kept])


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _min_sq_dist(points: np.ndarray, centers: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Squared distance of each point to its nearest center (chunked: pools can be large)."""
    out = np.full(points.shape[0], np.inf)
    if centers.shape[0] == 0:
        return out
    p2 = (points**2).sum(1)
    for start in range(0, centers.shape[0], chunk):
        c = centers[start : start + chunk]
        d = p2[:, None] - 2.0 * points @ c.T + (c**2).sum(1)[None, :]
        out = np.minimum(out, d.min(1))
    return np.maximum(out, 0.0)


def kcenter_greedy(points: np.ndarray, centers: np.ndarray | None, k: int) -> tuple[list[int], list[float]]:
    """Greedy k-center (Sener & Savarese 2018): repeatedly take the point farthest from all centers.

    `points` (N, D) are the candidates, `centers` (L, D) the already labeled samples (may be
    empty or None). Returns the chosen row indices in pick order and, for each, its Euclidean
    distance to the nearest center at the time it was picked. With no centers the first pick is
    the point nearest the mean of all points (a typical sample), then the farthest ones follow.
    """
    pts = np.asarray(points, dtype=np.float64)
    n = pts.shape[0]
    k = min(k, n)
    if k <= 0:
        return [], []
    cen = np.zeros((0, pts.shape[1])) if centers is None else np.asarray(centers, dtype=np.float64).reshape(-1, pts.shape[1])
    dist = _min_sq_dist(pts, cen)
    picked: list[int] = []
    gaps: list[float] = []
    if cen.shape[0] == 0:
        first = int(np.argmin(((pts - pts.mean(0)) ** 2).sum(1)))
        picked.append(first)
        gaps.append(math.inf)
        dist = np.minimum(dist, ((pts - pts[first]) ** 2).sum(1))
    while len(picked) < k:
        d = dist.copy()
        d[picked] = -1.0
        nxt = int(np.argmax(d))  # ties: lowest index, deterministic
        picked.append(nxt)
        gaps.append(float(math.sqrt(max(d[nxt], 0.0))))
        dist = np.minimum(dist, ((pts - pts[nxt]) ** 2).sum(1))
    return picked, gaps


# ----------------------------------------------------------------------------- strategies


def shuffle_keys(ids: Sequence[int], seed: int = 0) -> np.ndarray:
    """A pseudo-random key per sample id (splitmix64 of the seed and the id). A sample keeps its
    key whatever else is in the pool, so a random order stays the same order as samples get
    labeled. A seeded permutation of the pool does not: permuting n and n-1 sorted ids with the
    same draws puts a neighbour of the first pick first, and on a volume labeling the first random
    slice made the next one the slice beside it (72, then 71, then 73 on the demo)."""
    offset = ((int(seed) + 1) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = np.asarray(ids, dtype=np.uint64) + np.uint64(offset)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)  # uint64 arithmetic wraps, as intended
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@register_strategy("random")
def random_strategy(*, candidates: Sequence[int], n: int, seed: int = 0, reason: str = "random order (the control strategy)",
                    **_: Any) -> list[Selection]:
    """Seeded random order, the control: each sample's place comes from its own key
    (`shuffle_keys`), so labeling a sample leaves the order of the others as it was."""
    order = np.argsort(shuffle_keys(candidates, seed), kind="stable")[:n]
    return [Selection(int(candidates[i]), 0.0, reason) for i in order]


def uncertainty_strategy(name: str, *, candidates: Sequence[int], scores: Mapping[int, Mapping[str, float]], n: int, **_: Any) -> list[Selection]:
    """Most uncertain first by stored score `name`; candidates without that score are left out."""
    ranked = _ranked_by_score(candidates, scores, name)
    return [Selection(c, v, _uncertainty_reason(name, v, r, len(ranked))) for r, (c, v) in enumerate(ranked[:n])]


@register_strategy("kcenter")
def kcenter_strategy(
    *,
    candidates: Sequence[int],
    embeddings: Mapping[int, Any] | None,
    labeled: Sequence[int],
    n: int,
    seed: int = 0,
    normalize: bool = False,
    **_: Any,
) -> list[Selection]:
    """k-center greedy with labeled samples as initial centers; random if there are no embeddings.

    Candidates without an embedding are left out. `normalize=True` uses L2-normalised embeddings
    (cosine geometry). Score = distance to the nearest labeled or already chosen sample.
    """
    ids, pts = _embedding_matrix(candidates, embeddings)
    if not ids:
        return random_strategy(candidates=candidates, n=n, seed=seed, reason="random pick (no image embeddings yet)")
    _, cen = _embedding_matrix(labeled, embeddings)
    if normalize:
        pts = _l2_normalise(pts)
        cen = _l2_normalise(cen) if cen.size else cen
    picked, gaps = kcenter_greedy(pts, cen if cen.size else None, n)
    out = []
    for i, g in zip(picked, gaps):
        if math.isinf(g):
            out.append(Selection(ids[i], 0.0, "typical sample of the unlabeled images (k-center start)"))
        else:
            where = "labeled samples" if cen.size else "samples already chosen"
            out.append(Selection(ids[i], g, f"far from {where} (k-center, distance {g:.2f})"))
    return out


def _pick_uncertainty_name(candidates: Sequence[int], scores: Mapping[int, Mapping[str, float]], name: str | None) -> str | None:
    if name:
        return name
    present = {k for c in candidates for k in scores.get(c, {})}
    for k in UNCERTAINTY_PREFERENCE:
        if k in present:
            return k
    return sorted(present)[0] if present else None


@register_strategy("hybrid")
def hybrid_strategy(
    *,
    candidates: Sequence[int],
    scores: Mapping[int, Mapping[str, float]],
    embeddings: Mapping[int, Any] | None,
    labeled: Sequence[int],
    n: int,
    batch: int | None = None,
    multiplier: int = 4,
    score: str | None = None,
    normalize: bool = False,
    **_: Any,
) -> list[Selection]:
    """Rounds of `batch`: k-center among the `multiplier` x batch most uncertain (by `score`,
    default entropy) not yet picked, with the labeled and earlier picks as centres. With fewer than
    that left: among the most uncertain three quarters of them (never fewer than 2 x batch), the
    most uncertain taken first, so that the least sure sample is never left for a later round.

    Rounds of a fixed batch make the ranking prefix-stable: the first k picks do not depend on
    how long a list is asked for. Within a round the picks are listed most uncertain first.
    Without embeddings it is plain uncertainty ranking (the reason says so).
    """
    name = _pick_uncertainty_name(candidates, scores, score)
    if name is None:
        return []
    ranked = _ranked_by_score(candidates, scores, name)
    if not ranked:
        return []
    ids, pts = _embedding_matrix([c for c, _ in ranked], embeddings)
    if not ids:
        return [Selection(c, v, _uncertainty_reason(name, v, r, len(ranked)) + ", by uncertainty only (no image embeddings yet)")
                for r, (c, v) in enumerate(ranked[:n])]
    value = dict(ranked)
    row_of = {c: i for i, c in enumerate(ids)}
    in_order = [c for c, _ in ranked if c in row_of]  # most uncertain first, with an embedding
    if normalize:
        pts = _l2_normalise(pts)
    _, cen = _embedding_matrix(labeled, embeddings)
    if normalize and cen.size:
        cen = _l2_normalise(cen)
    centers = [cen] if cen.size else []
    round_size = max(1, batch or n)
    chosen: list[int] = []
    taken: set[int] = set()
    pool_of: dict[int, tuple[int, int]] = {}  # each pick's round: how many it chose, and among how many
    seeded: set[int] = set()  # rounds' openers (few left): the most uncertain left, taken as such
    while len(chosen) < n:
        left = [c for c in in_order if c not in taken]
        # Of a short list, the most uncertain three quarters at most: with fewer than M x batch
        # left, k-center would choose among all of them and list confident samples first.
        pool = left[: min(multiplier * round_size, max(2 * round_size, math.ceil(0.75 * len(left))))]
        if not pool:
            break
        # With few left the round opens with its most uncertain sample and k-center spreads the rest:
        # 16 left of a batch of 10 had let k-center list entropy 0.000 first and keep 0.287 for the
        # next round. Not with many left: on slices the most uncertain first cost 0.008 test Dice
        # over the active-learning curve (mni-tissue-seg, 3 seeds; docs/benchmarks.md).
        first = [pool[0]] if len(left) < multiplier * round_size else []
        rest = pool[len(first):]
        known = np.concatenate([*centers, pts[[row_of[c] for c in first]]]) if centers or first else None
        picked, _gaps = kcenter_greedy(pts[[row_of[c] for c in rest]], known,
                                       min(round_size, n - len(chosen)) - len(first))
        round_ids = sorted([*first, *(rest[i] for i in picked)], key=lambda c: (-value[c], c))
        seeded.update(first)
        pool_of.update((c, (len(round_ids), len(pool))) for c in round_ids)
        chosen += round_ids
        taken.update(round_ids)
        centers.append(pts[[row_of[c] for c in round_ids]])
    words = _words(name)
    # Not "unlike the labeled": a round's later picks only cover what is left of its pool, and a
    # slice 4 slices from a labeled one was listed first with that claim.
    return [Selection(c, value[c], f"{words} {value[c]:.3f}, among the most uncertain, spread over them "
                      f"(hybrid: {pool_of[c][0]} picks covering the {pool_of[c][1]} most uncertain left, "
                      + ("the most uncertain of them" if c in seeded else
                         "each the one of them farthest from the labeled and earlier picks") + ")") for c in chosen]


#: How the reason of a first pick starts (no uncertainty behind it: its score is a k-center
#: distance or nothing), before any model and while the active model's scores are not written yet.
FIRST_PICK_PREFIXES = ("no model yet: ", "no uncertainty scores yet: ")


def is_first_pick(reason: str) -> bool:
    return reason.startswith(FIRST_PICK_PREFIXES)


@register_strategy("cold-start")
def cold_start_strategy(
    *, candidates: Sequence[int], embeddings: Mapping[int, Any] | None, labeled: Sequence[int], n: int,
    seed: int = 0, prefix: str = FIRST_PICK_PREFIXES[0], **kw: Any,
) -> list[Selection]:
    """No model yet: k-center on (SSL) embeddings if any candidate has one, otherwise random."""
    if embeddings and any(c in embeddings for c in candidates):
        sel = kcenter_strategy(candidates=candidates, embeddings=embeddings, labeled=labeled, n=n, seed=seed, **kw)
    else:
        sel = random_strategy(candidates=candidates, n=n, seed=seed, reason="random pick (no image embeddings yet)")
    return [Selection(s.sample, s.score, f"{prefix}{s.reason}") for s in sel]


# ----------------------------------------------------------------------------- select


def current_scores(scores: Mapping[int, Mapping[str, float]], model_version: int | None = None) -> dict[int, dict[str, float]]:
    """Scores of one model version, with the version key removed (see module doc on stale scores)."""
    versions = {int(v[MODEL_VERSION_KEY]) for v in scores.values() if v.get(MODEL_VERSION_KEY) is not None}
    if model_version is None and len(versions) > 1:
        raise MixedScoreVersionsError(
            f"scores come from model versions {sorted(versions)}; rescore the pool with the active model "
            "or pass model_version to use only its scores"
        )
    out: dict[int, dict[str, float]] = {}
    for sid, entry in scores.items():
        ver = entry.get(MODEL_VERSION_KEY)
        if model_version is not None and ver is not None and int(ver) != model_version:
            continue  # stale: from another model, ignored
        out[sid] = {k: float(v) for k, v in entry.items() if k != MODEL_VERSION_KEY}
    return out


def _cosine(a: tuple[np.ndarray, bool], b: tuple[np.ndarray, bool]) -> float:
    """Cosine of two (unit vector, is zero) pairs, normalised once per batch rather than per pair."""
    (ua, zero_a), (ub, zero_b) = a, b
    if zero_a and zero_b:
        return 1.0  # both sit on the (centring) mean: the same point
    if zero_a or zero_b:
        return 0.0
    return float(ua @ ub)


def _conflict(a: int, b: int, vectors, groups, dedup_threshold, min_slice_gap) -> str | None:
    if groups and min_slice_gap and a in groups and b in groups:
        (ga, sa), (gb, sb) = groups[a], groups[b]
        if ga == gb and sa is not None and sb is not None and abs(int(sa) - int(sb)) < min_slice_gap:
            return "next to another slice of the same volume in this batch"
    if dedup_threshold is not None and a in vectors and b in vectors:
        if _cosine(vectors[a], vectors[b]) > dedup_threshold:
            return "looks almost the same as another sample in this batch"
    return None


def build_batch(
    ranked: Sequence[Selection],
    n: int,
    *,
    embeddings: Mapping[int, Any] | None = None,
    groups: Groups | None = None,
    dedup_threshold: float | None = 0.98,
    min_slice_gap: int = 2,
    refill: bool = True,
) -> list[Selection]:
    """Take `ranked` in order, skipping near-duplicates of samples already taken; refill if short
    (unless `refill` is False: then a short batch is returned short).

    Near-duplicate: cosine similarity > `dedup_threshold` (None: off) of embeddings centred on
    the mean of the ranked samples' embeddings (pooled ReLU features are all positive, so raw
    cosines are high for any two images), or two slices of the same group less than
    `min_slice_gap` apart (0: off; 2 forbids adjacent slices).
    """
    vectors: dict[int, tuple[np.ndarray, bool]] = {}
    if dedup_threshold is not None and embeddings:
        ids, mat = _embedding_matrix([s.sample for s in ranked], embeddings)
        if ids:
            mat = mat - mat.mean(0)
            norms = np.linalg.norm(mat, axis=1)
            zero = norms < 1e-9
            units = mat / np.where(zero, 1.0, norms)[:, None]
            vectors = {i: (u, bool(z)) for i, u, z in zip(ids, units, zero)}
    chosen: list[Selection] = []
    skipped: list[tuple[Selection, str]] = []
    for sel in ranked:
        if len(chosen) >= n:
            break
        why = next((w for c in chosen if (w := _conflict(sel.sample, c.sample, vectors, groups, dedup_threshold, min_slice_gap))), None)
        if why:
            skipped.append((sel, why))
        else:
            chosen.append(sel)
    for sel, why in skipped[: max(0, n - len(chosen))] if refill else []:
        chosen.append(Selection(sel.sample, sel.score, f"{sel.reason}; {why} (few other samples left)"))
    return chosen


def select(
    strategy: str,
    *,
    candidates: Sequence[int],
    scores: Mapping[int, Mapping[str, float]],
    embeddings: Mapping[int, Any] | None,
    labeled: Sequence[int],
    n: int,
    seed: int = 0,
    groups: Groups | None = None,
    model_version: int | None = None,
    dedup_threshold: float | None = 0.98,
    min_slice_gap: int = 2,
    oversample: int = 4,
    batch: int | None = None,
    **options: Any,
) -> list[Selection]:
    """Choose up to `n` samples from `candidates` to label next; never a labeled one.

    `strategy`: a registered / plugin name (random, kcenter, hybrid, cold-start, ...) or a score
    name present in `scores` (ranked most uncertain first). `groups` maps sample ->
    (volume group, slice index) for slice projects. `options` go to the strategy (e.g. hybrid's
    `multiplier`, `score`). `batch` (default `n`) is how many a clinician labels between models:
    hybrid picks in rounds of it, so with a fixed `batch` a longer list starts with the same
    samples as a shorter one. Uncertainty strategies with no scored candidate fall back to
    cold start. See the module doc for stale-score handling (`model_version`).
    """
    if n <= 0:
        return []
    labeled_set = set(labeled)
    pool = [int(c) for c in dict.fromkeys(candidates) if c not in labeled_set]
    if not pool:
        return []
    scores = current_scores(scores, model_version)
    fn = get_strategy(strategy)
    uses_scores = fn is None or strategy == "hybrid"
    if fn is None:
        known = {k for v in scores.values() for k in v}
        if strategy not in known and strategy not in SCORE_WORDS:
            raise ValueError(f"unknown strategy {strategy!r}; known: {', '.join(available_strategies())}, or a score name")

        def fn(**kw: Any) -> list[Selection]:
            return uncertainty_strategy(strategy, **kw)

    if uses_scores and not any(scores.get(c) for c in pool):
        fn = functools.partial(cold_start_strategy, prefix=FIRST_PICK_PREFIXES[1])
    elif uses_scores:
        name = strategy if strategy != "hybrid" else options.get("score")
        if name and not any(name in scores.get(c, {}) for c in pool):
            hint = " (BALD needs scoring with MC dropout)" if name == "bald" else ""
            raise ValueError(f"no unlabeled sample has a {name!r} score{hint}")
    want = min(len(pool), max(n, n * max(1, oversample)))
    deepest = want * 4
    pool_set = set(pool)
    while True:
        ranked = fn(
            candidates=pool, scores=scores, embeddings=embeddings, labeled=sorted(labeled_set),
            n=want, seed=seed, groups=groups, batch=batch or n, **options,
        )
        seen: set[int] = set()
        clean = []
        for s in ranked:  # guard against plugins returning labeled, unknown or repeated samples
            if s.sample in pool_set and s.sample not in seen:
                seen.add(s.sample)
                clean.append(s)
        # Many near-duplicates at the top (e.g. a run of empty slices): look deeper before
        # settling for near-duplicates.
        # One wider look only: hybrid's diversity must stay among the uncertain candidates.
        last = want >= min(len(pool), deepest)
        chosen = build_batch(clean, n, embeddings=embeddings, groups=groups, dedup_threshold=dedup_threshold,
                             min_slice_gap=min_slice_gap, refill=last)
        if len(chosen) >= n or last:
            return chosen
        want = min(len(pool), deepest)


def rank(strategy: str, scores, embeddings, labeled_ids, n: int, **kw: Any) -> list[tuple[int, float, str]]:
    """Contract form of `select`: candidates are every sample with a score or an embedding."""
    candidates = sorted({*scores, *(embeddings or {})})
    return [(s.sample, s.score, s.reason) for s in select(strategy, candidates=candidates, scores=scores, embeddings=embeddings, labeled=labeled_ids, n=n, **kw)]


# ----------------------------------------------------------------------------- store


def project_embeddings(project: Any, model_version: int | None) -> dict[int, np.ndarray] | None:
    """Embeddings stored for `model_version` as {sample: vector}, or None if there are none.

    Accepts the store returning a dict, an (ids, array) pair, or None.
    """
    got = project.embeddings(model_version)
    if got is None:
        return None
    if isinstance(got, Mapping):
        return {int(k): np.asarray(v) for k, v in got.items()} or None
    ids, arr = got
    arr = np.asarray(arr)
    return {int(i): arr[j] for j, i in enumerate(ids)} or None


def _newest_embeddings(project: Any) -> dict[int, np.ndarray] | None:
    active = project.active_model()
    versions = [active.version] if active is not None else []
    versions += [m.version for m in sorted(project.models(), key=lambda m: m.version, reverse=True) if m.version not in versions]
    versions.append(0)  # the store's key for "no model" (e.g. embeddings written before any training)
    for v in versions:
        emb = project_embeddings(project, v)
        if emb:
            return emb
    return None


def select_for_project(project: Any, strategy: str = DEFAULT_STRATEGY, n: int = 10, *, seed: int = 0, split: str | None = "train",
                       samples: Sequence[Any] | None = None, labeled: Sequence[int] | None = None,
                       **options: Any) -> list[Selection]:
    """`select` on a project: unlabeled samples of `split`, the ACTIVE model's scores only.

    Embeddings: the active model's, else the newest model's that has any (e.g. an SSL
    pretraining run), else those stored under version 0 (no model), for k-center and cold start.
    Samples found blank at import (`project.blank_ids`) are never candidates. Slices are grouped
    by volume: the `groups` a strategy receives map a slice to ((path, series UID), slice index).
    `samples` (all of the project's) and `labeled` (their labeled ids) save reading them again
    when one ranking makes several calls.
    """
    active = project.active_model()
    version = active.version if active is not None else 0  # the store keys "no model" as 0
    scores = project.scores(version)
    samples = project.samples() if samples is None else samples
    labeled = [s.id for s in project.samples(labeled=True)] if labeled is None else list(labeled)
    done = set(labeled) | project.blank_ids()  # a blank image is never worth a label
    candidates = [s.id for s in samples if (split is None or s.split == split) and s.id not in done]
    # By volume, not by split group: a project of one scan splits it into slabs, and the slices on
    # either side of a slab's edge are neighbours all the same.
    groups = {s.id: ((s.path, s.series_uid), s.slice_index) for s in samples if s.slice_index is not None}
    return select(
        strategy, candidates=candidates, scores=scores, embeddings=_newest_embeddings(project),
        labeled=labeled, n=n, seed=seed, groups=groups or None, model_version=version, **options,
    )
