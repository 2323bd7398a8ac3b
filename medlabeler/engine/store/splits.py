"""Train/val/test splits fixed per group (patient or volume), never per slice.

Each group's split comes from a hash of (seed, group) mapped to [0, 1) and cut at the fractions, so
it does not depend on which other groups exist: adding sources later never moves an old group.
Small projects get two corrections. Training is never empty: with no group in train, the new group
whose hash lies nearest to train's range goes there (a one-scan project whose scan hashed into
val could never be trained). And once there are >= 3 groups, a val or test split with a non-zero
fraction that is still empty takes the *new* group whose hash lies nearest to it.
Groups already stored never move, so when groups arrive one at a time the correction may
have to wait for the next new group.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping

from .records import SPLITS


def group_hash(seed: int, group: str) -> float:
    """A number in [0, 1) fixed by (seed, group)."""
    digest = hashlib.sha1(f"{int(seed)}\0{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _bounds(fractions: tuple[float, float, float]) -> dict[str, tuple[float, float]]:
    total = float(sum(fractions))
    train, val = fractions[0] / total, fractions[1] / total
    return {"train": (0.0, train), "val": (train, train + val), "test": (train + val, 1.0)}


def split_of(u: float, fractions: tuple[float, float, float]) -> str:
    for name, (lo, hi) in _bounds(fractions).items():
        if lo <= u < hi:
            return name
    return "test"


def check_fractions(fractions: Iterable[float]) -> tuple[float, float, float]:
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or any(not f >= 0 for f in values) or sum(values) <= 0 or values[0] <= 0:
        raise ValueError(
            f"split_fractions must be three numbers >= 0 (train, val, test) with train > 0, got {values}"
        )
    return values


def assign_splits(
    new_groups: Iterable[str],
    existing: Mapping[str, str],
    seed: int,
    fractions: tuple[float, float, float],
) -> dict[str, str]:
    """Splits for the groups in ``new_groups`` not in ``existing``; ``existing`` never changes."""
    fresh = sorted(set(new_groups) - set(existing))
    hashes = {g: group_hash(seed, g) for g in fresh}
    result = {g: split_of(hashes[g], fractions) for g in fresh}
    counts = Counter(existing.values())
    counts.update(result.values())
    bounds = _bounds(fractions)
    if fresh and not counts["train"]:
        pick = min(fresh, key=lambda g: (hashes[g] - bounds["train"][1], g))
        counts[result[pick]] -= 1
        result[pick] = "train"
        counts["train"] += 1
    if len(existing) + len(fresh) < 3:
        return result
    wanted = [s for s, f in zip(SPLITS, fractions) if f > 0 and s != "train"]
    for target in wanted:
        if counts[target]:
            continue
        lo, hi = bounds[target]
        movable = [g for g in fresh if counts[result[g]] > 1]
        if not movable:
            continue
        pick = min(movable, key=lambda g: (min(abs(hashes[g] - lo), abs(hashes[g] - hi)), g))
        counts[result[pick]] -= 1
        result[pick] = target
        counts[target] += 1
    return result
