"""Promotion, never regression: the one rule that decides whether a finished run becomes active.

Every finished training run is stored as a *candidate* (not active). It is promoted (made the
active model) only when its validation metric, measured on the project's CURRENT validation
labels, is at least the active model's metric on the same labels minus `TOLERANCE`. The active
model is re-evaluated every time: labels change between runs, so its stored metric is stale.
RootPainter keeps a new model only when validation improves (Smith et al., New Phytologist
2022); Cellpose users report retraining regressions: this rule prevents them.

- No active model yet: the first candidate is promoted (nothing to regress from), with its
  metric if validation labels exist.
- An active model but no validation labels: promotion waits (the candidate is kept); the queue
  mixes in validation samples to get them (active_loop.held_out_plan).
- A project with no validation samples at all (one or two scans in a whole-volume project, too few
  to hold one out) would wait forever: there the candidate is compared on the training labels
  instead, and the message says so. That catches a broken run (one class everywhere, a run cut
  short), not overfitting.
- A candidate whose metric is undefined (NaN) is kept.
- The tolerance does not stack: a candidate must also come within `TOLERANCE` (or a caller's
  larger tolerance) of the best value any model reached on the same validation labels since the
  last activation by hand. Otherwise
  a chain of candidates each a little below the last walks the active model down (the learning
  loop benchmark, 2026-12-05: three promotions "within 0.005" took validation Dice from 0.975 to
  0.967 and test Dice from 0.970 to 0.963).

The CLI (`medlabeler train`), the learning loop, the app and the benchmarks all call
`promote_or_keep`. Decisions are written to the project's audit log (action "promotion") so any
process can show them (`decisions(project)`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from medlabeler.engine.project.project_import import ONE_CLASS_NOTE, only_validation_class
from medlabeler.engine.workflows.evaluate import evaluate_project
from medlabeler.engine.workflows.model_versions import label_fingerprint, weights_problem

#: A candidate may be this much below the active model and still be promoted: validation Dice on
#: a handful of slices moves by about this much between equally good models.
TOLERANCE = 0.005
#: The headline validation metric of each task, then the fallbacks when it is undefined.
METRICS = {"segmentation": ("dice",), "classification": ("auc", "balanced_accuracy", "accuracy")}
AUDIT_ACTION = "promotion"


@dataclass
class Decision:
    """What happened to candidate `candidate`. `active` is the version active before the decision."""

    candidate: int
    promoted: bool
    message: str
    metric: str = ""
    candidate_value: float | None = None
    active: int | None = None
    active_value: float | None = None
    tolerance: float = TOLERANCE
    n_val: int = 0
    waiting: bool = False  # kept only because there are no validation labels to compare on
    best_value: float | None = None  # the best value any model reached on these validation labels
    val_state: str = ""  # which validation labels: `validation_state`
    split: str = "val"  # the labels compared on: "train" only in a project with no validation samples

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def headline(self) -> str:
        """"promoted v3: …" or "kept: v7 not better: …": the verdict said once, first."""
        word = "promoted" if self.promoted else "kept"
        said = self.message.startswith((word, f"v{self.candidate} {word}"))  # "v7 kept, promotion waits: …"
        return self.message if said else f"{word}: {self.message}"

    def measured(self) -> tuple[str, float] | None:
        """(metric, value) the candidate scored on the validation labels when this was decided."""
        value = self.candidate_value
        if self.metric and isinstance(value, (int, float)) and math.isfinite(value):
            return (self.metric if self.split == "val" else f"{self.split} {self.metric}"), float(value)
        return None


#: What the labels of each split that promotion compares on are called in its messages.
SPLIT_WORDS = {"val": "validation", "train": "training"}


def labels_text(n: int, split: str = "val") -> str:
    """"3 validation labels", "1 training label"."""
    return f"{n} {SPLIT_WORDS[split]} label{'s' if n != 1 else ''}"


def _pick(task_kind: str, metrics: dict[str, float]) -> tuple[str, float | None]:
    names = METRICS.get(task_kind, ("dice",))
    for name in names:
        value = metrics.get(name)
        if value is not None and math.isfinite(float(value)):
            return name, float(value)
    return names[0], None


def headline_metric(metrics: dict[str, Any] | None) -> tuple[str, float] | None:
    """(name, value) of a model's headline validation metric (Dice for segmentation, else AUC, then
    balanced accuracy, then accuracy); None when it has none that is finite."""
    for name in ("dice", *METRICS["classification"]):
        value = (metrics or {}).get(name)
        if isinstance(value, (int, float)) and math.isfinite(value):
            return name, float(value)
    return None


#: Where a version's figure comes from (`VersionFigure.origin`).
MEASURED_NOW = "now"  # promotion measured it on the labels as they are now
MEASURED_BY_RUN = "run"  # its training run, on the validation labels of then
MEASURED_AT_DECISION = "decided"  # promotion, on the labels of then (its run had no validation labels)


@dataclass(frozen=True)
class VersionFigure:
    """The validation figure a model version is shown with, and where it comes from."""

    name: str  # "dice", or "train dice" where promotion compared on the training labels
    value: float
    origin: str  # MEASURED_NOW, MEASURED_BY_RUN or MEASURED_AT_DECISION
    n_val: int = 0  # the labels it was measured on (MEASURED_NOW)
    split: str = "val"


def version_figures(project, models, log: list[Decision] | None = None) -> dict[int, VersionFigure]:
    """The figure each of ``models`` is shown with (versions with none are left out).

    First the newest figure promotion measured on the labels it compares on now (validation, or
    training in a project without), as they are now, for the candidate or the active model it
    compared with: then the versions table and the decision
    ("v5 not better: 0.936 vs active v4 0.953") agree, where a run's own validation, made on the
    labels of then, had shown 0.910 and 0.905 beside it. Else the version's own run's validation
    metric, else the one measured when it was decided. A hand activation measures nothing and
    takes nothing away."""
    log = decisions(project) if log is None else log
    states: dict[str, str] = {}

    def now(split: str) -> str:
        if split not in states:
            states[split] = validation_state(project, split)
        return states[split]

    compared_on: list[str] = []  # the labels promotion compares on now (read once, when needed)
    figures: dict[int, VersionFigure] = {}
    for decision in reversed(log):  # the newest first
        if not decision.metric or not decision.val_state:
            continue
        if not compared_on:
            compared_on.append(comparison_split(project))
        if decision.split != compared_on[0] or decision.val_state != now(decision.split):
            continue  # e.g. a training-label figure once validation labels of both classes came
        name = decision.metric if decision.split == "val" else f"{decision.split} {decision.metric}"
        for version, value in ((decision.candidate, decision.candidate_value), (decision.active, decision.active_value)):
            if version is not None and version not in figures and _finite(value):
                figures[version] = VersionFigure(name, float(value), MEASURED_NOW, decision.n_val, decision.split)
    measured_at = {d.candidate: d for d in log if d.measured() is not None}  # the newest of each
    for model in models:
        if model.version in figures:
            continue
        own = headline_metric(model.metrics)
        decided = measured_at.get(model.version)
        if own is not None:
            figures[model.version] = VersionFigure(*own, MEASURED_BY_RUN)
        elif decided is not None:
            figures[model.version] = VersionFigure(*decided.measured(), MEASURED_AT_DECISION, decided.n_val,
                                                   decided.split)
    return figures


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def validation_metric(project, version: int, *, device=None, metric: str | None = None, split: str = "val"
                      ) -> tuple[str, float | None, int]:
    """(metric name, value or None, samples) of a model version on the current labels of `split`."""
    metrics = evaluate_project(project, split, version, device=device)
    n = int(metrics.get("n", 0))
    if metric is not None:
        value = metrics.get(metric)
        return metric, (float(value) if value is not None and math.isfinite(float(value)) else None), n
    name, value = _pick(project.task.kind, metrics)
    return name, value, n


#: Bumped when the way a headline figure is computed changes: figures logged before are measured
#: otherwise, and must not set the bar a candidate meets (2026-12-07: segmentation's Dice counts the
#: labels some reference holds; a label none held had counted 1.000, or 0.000 for a stray pixel).
HEADLINE_REVISION = {"segmentation": "+dice2"}


def validation_state(project, split: str = "val") -> str:
    """A fingerprint of the current labels of `split` (which samples, which label versions) and of
    how the headline figure is computed: metrics measured under the same state are comparable."""
    labels = label_fingerprint(project, [s.id for s in project.samples(split=split, labeled=True)])
    return labels + HEADLINE_REVISION.get(project.task.kind, "")


def comparison_split(project) -> str:
    """The labels promotion compares on: "val", or "train" in a project with no validation samples
    at all, where waiting for validation labels would mean waiting forever, and in a classification
    project whose validation labels hold one class only while its training labels hold more (any
    model that predicts that class everywhere would win there)."""
    if not project.samples(split="val") or only_validation_class(project) is not None:
        return "train"
    return "val"


def comparison_note(project, split: str) -> str:
    """Why promotion compares on the training labels ("" when it compares on validation)."""
    if split == "val":
        return ""
    only = only_validation_class(project) if project.samples(split="val") else None
    if only is not None:
        return "; " + ONE_CLASS_NOTE.format(name=project.task.names[only])
    return "; this project has no validation samples, so models are compared on the training labels"


def best_value(project, val_state: str, metric: str) -> float | None:
    """The best `metric` any model reached on the validation labels `val_state`, from the decisions
    logged since the last activation by hand (which resets it: the user chose)."""
    best = None
    for entry in project.audit_log():
        if entry["action"] != AUDIT_ACTION:
            continue
        detail = entry["detail"]
        if detail.get("by_hand"):
            best = None
            continue
        if detail.get("val_state") != val_state or detail.get("metric") != metric:
            continue
        values = [detail.get("active_value")] + ([detail.get("candidate_value")] if detail.get("promoted") else [])
        for value in values:
            if isinstance(value, (int, float)) and math.isfinite(value):
                best = value if best is None else max(best, value)
    return best


def decide(project, candidate: int, *, tolerance: float = TOLERANCE, device=None) -> Decision:
    """Compare candidate `candidate` with the active model on the current validation labels (on the
    training labels in a project with no validation samples: `comparison_split`)."""
    active = project.active_model()
    split = comparison_split(project)
    n_val = len(project.samples(split=split, labeled=True))
    no_val_note = comparison_note(project, split)
    if active is not None and active.version == candidate:
        return Decision(candidate, True, f"v{candidate} is already active", active=candidate, n_val=n_val, split=split)
    unloadable = weights_problem(active) if active is not None else None
    if unloadable is not None:  # kept active, it would stay so for good, and every run from it fail
        return _in_place_of_unloadable(project, candidate, active, unloadable, n_val, split, device)
    if n_val == 0:
        if active is None:
            return Decision(candidate, True, f"promoted v{candidate}: the first model (no validation labels yet "
                                             "to measure it)", n_val=0, split=split)
        ask = "the queue asks for validation samples, label one" if split == "val" else "label a training sample"
        return Decision(candidate, False, (
            f"v{candidate} kept, promotion waits: no {SPLIT_WORDS[split]} labels to "
            f"compare it with active v{active.version}; {ask}"),
            active=active.version, n_val=0, waiting=True, split=split)
    name, value, _ = validation_metric(project, candidate, device=device, split=split)
    if active is None:
        shown = f"{value:.3f}" if value is not None else "undefined"
        return Decision(candidate, True, f"promoted v{candidate}: the first model ({split} {name} {shown}"
                                         f"{no_val_note})", metric=name, candidate_value=value, n_val=n_val,
                        val_state=validation_state(project, split), split=split)
    _, active_value, _ = validation_metric(project, active.version, device=device, metric=name, split=split)
    state = validation_state(project, split)
    best = best_value(project, state, name)
    if active_value is not None:
        best = active_value if best is None else max(best, active_value)
    common = dict(metric=name, candidate_value=value, active=active.version, active_value=active_value,
                  tolerance=tolerance, n_val=n_val, best_value=best, val_state=state, split=split)
    on = f"{split} {name} on {labels_text(n_val, split)}{no_val_note}"
    if value is None:
        return Decision(candidate, False, f"v{candidate} not better: its {split} {name} is undefined; active "
                                          f"v{active.version} stays{no_val_note}", **common)
    if active_value is None:
        return Decision(candidate, True, f"promoted v{candidate}: {split} {name} {value:.3f}, active "
                                         f"v{active.version} undefined{no_val_note}", **common)
    # the best bar never stricter than the usual one: a caller's stricter tolerance for the active model
    # (a full run at rest, 0) must not refuse a candidate that beats the active model
    if value >= active_value - tolerance and value < best - max(tolerance, TOLERANCE):
        return Decision(candidate, False, f"v{candidate} not better: {value:.3f} vs the best {best:.3f} on these "
                                          f"{SPLIT_WORDS[split]} labels (active v{active.version} {active_value:.3f}, "
                                          f"{on})", **common)
    shown, shown_active = figures_apart(value, active_value)
    if value >= active_value - tolerance:
        if value > active_value:
            compare = f"{shown} > {shown_active}"
        elif value == active_value:
            compare = f"{shown} = {shown_active}"
        else:
            compare = f"{shown} within {tolerance:g} of {shown_active}"
        return Decision(candidate, True, f"promoted v{candidate}: {compare} (active v{active.version}, {on})",
                        **common)
    return Decision(candidate, False, f"v{candidate} not better: {shown} vs active v{active.version} "
                                      f"{shown_active} ({on})", **common)


def _in_place_of_unloadable(project, candidate: int, active, problem: str, n_val: int, split: str, device) -> Decision:
    """Promote ``candidate`` in place of an active model whose weights cannot be loaded any more."""
    name = value = None
    if n_val:
        name, value, _ = validation_metric(project, candidate, device=device, split=split)
    measured = f" ({split} {name} {value:.3f})" if value is not None else ""
    return Decision(candidate, True, f"promoted v{candidate}{measured}: active v{active.version} cannot be loaded: "
                                     f"{problem}", metric=name or "", candidate_value=value, active=active.version,
                    n_val=n_val, val_state=validation_state(project, split) if n_val else "", split=split)


def figures_apart(a: float, b: float) -> tuple[str, str]:
    """``a`` and ``b`` with 3 decimals, or with as many more (up to 6) as it takes to print two
    different values differently: "promoted v4: 0.905 > 0.905" read as a mistake."""
    for digits in range(3, 7):
        shown_a, shown_b = f"{a:.{digits}f}", f"{b:.{digits}f}"
        if shown_a != shown_b or a == b:
            break
    return shown_a, shown_b


def promote_or_keep(project, candidate: int, *, tolerance: float = TOLERANCE, device=None) -> Decision:
    """Decide, activate the candidate if promoted, and log the decision in the audit log."""
    decision = decide(project, candidate, tolerance=tolerance, device=device)
    active = project.active_model()
    if decision.promoted and (active is None or active.version != candidate):
        project.activate(candidate)
    project.audit(AUDIT_ACTION, **decision.to_dict())
    return decision


def activate_by_hand(project, version: int) -> Decision:
    """Activate a kept candidate (or roll back) on the user's word; logged like a decision."""
    before = project.active_model()
    project.activate(version)
    decision = Decision(version, True, f"v{version} activated by hand"
                        + (f" (was v{before.version})" if before is not None else ""),
                        active=before.version if before else None)
    project.audit(AUDIT_ACTION, **decision.to_dict(), by_hand=True)
    return decision


def decisions(project) -> list[Decision]:
    """Every promotion decision of the project, oldest first."""
    out = []
    fields = set(Decision.__dataclass_fields__)
    for entry in project.audit_log():
        if entry["action"] == AUDIT_ACTION:
            detail = {k: v for k, v in entry["detail"].items() if k in fields}
            try:
                out.append(Decision(**detail))
            except TypeError:
                continue
    return out


def last_decision(project, version: int) -> Decision | None:
    """The newest decision about `version` (None if none was made, e.g. a model of an older medlabeler)."""
    found = None
    for decision in decisions(project):
        if decision.candidate == version:
            found = decision
    return found
