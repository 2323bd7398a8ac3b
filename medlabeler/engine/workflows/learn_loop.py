"""The learning loop: keeps the active model improving while someone labels, and never makes it worse.

    control = LoopControl()
    for event in learn(project, control=control):   # on a worker thread (the app) or `medlabeler learn`
        ...                                           # event.kind: see LoopEvent

What it does, one job at a time:
1. When the recommended pipeline pretrains (engine.workflows.recommended) and the project has no pretrained
   encoder, pretrain one, up to the recommended budget, `pretrain_budget_s`, or a loss plateau.
2. Whenever `new_labels` labels were saved since the newest model (default 3), or a retrain is
   requested, train a candidate with the recommended method, warm-started from the active model
   (or from the pretrained encoder / scratch when there is none), validate it on the current
   validation labels together with the active model and promote or keep it (engine.workflows.promotion).
3. After a promotion, re-score the unlabeled pool in chunks (one forward pass per sample); the
   scores of each chunk are stored at once, so the queue re-ranks on them as they arrive.
4. Every round trains a third of a run's steps (the first model too), so that rounds keep up with
   someone labeling. When no label has come for `full_run_after_s` seconds (the clinician stopped or
   rests), give the active model a full-length run on the labels as they are, once per label
   state (RootPainter keeps training while nobody labels; a rest is the time for it). New labels
   (`new_labels` of them) or a retrain request stop that run within seconds: it is discarded and the
   candidate with the new labels trains instead, so labels never wait for it.

Pausing suspends the loop between steps (a paused training run simply waits; nothing is lost);
`cancel` stops it at the next step, and a cancelled or failed run leaves the active model. The
generator never blocks for long: while idle or paused it yields a heartbeat event every
`poll_s` seconds, so its driver can stop it at any time. No Qt here: the app drives it on a
worker thread, `medlabeler learn` drives it in a terminal.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from medlabeler.engine.errors import InitMismatchError, MedlabelerError, error_text
from medlabeler.engine.workflows.model_versions import (newest_pretrained, remove_old_weights, removed_text,
                                                        weights_problem)
from medlabeler.engine.workflows.recommended import WARM_START_MIN_STEPS, WARM_START_SHARE
from medlabeler.engine.workflows.run_config import recommendation

log = logging.getLogger(__name__)

#: New labels (saved since the newest model) that start a new candidate.
NEW_LABELS = 3
#: Consecutive pretraining epochs without a 1% loss improvement that count as a plateau.
PLATEAU_EPOCHS = 3
#: Seconds without a new label after which an idle loop gives the active model, trained on a third
#: of the steps in a round, a full-length run (docs/benchmarks.md, "A full run at rest").
FULL_RUN_AFTER_S = 60.0
#: A full run at rest on the labels the active model saw: nothing new justifies taking a model that
#: validates lower, so it must validate at least as well (promotion's usual 0.005 is for new labels,
#: and a full run that has some, fewer than start a candidate, gets it).
FULL_RUN_TOLERANCE = 0.0


class LoopControl:
    """Thread-safe switches of a running loop: pause/resume, retrain now, cancel."""

    def __init__(self, token=None) -> None:
        from medlabeler.engine.training.cancel import CancelToken

        # handed to the training runs: cancel stops them at the next step (a driver may bring its own)
        self.token = token if token is not None else CancelToken()
        self._running = threading.Event()
        self._running.set()
        self._retrain = threading.Event()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def request_retrain(self) -> None:
        self._retrain.set()

    @property
    def retrain_requested(self) -> bool:
        return self._retrain.is_set()

    def take_retrain(self) -> bool:
        requested = self._retrain.is_set()
        self._retrain.clear()
        return requested

    def cancel(self) -> None:
        self.token.cancel()
        self._running.set()  # a paused loop wakes up to stop

    @property
    def cancelled(self) -> bool:
        return self.token.is_set()


@dataclass
class LoopEvent:
    """One report of the loop (plain data, safe to pass to another thread).

    kind: "phase" (what the loop does now: `phase` is idle | paused | pretraining | training |
    scoring | stopped), "train" / "pretrain" (a run's progress: `run_event` is the training
    Event), "decision" (`decision`: engine.workflows.promotion.Decision), "pretrained", "scored" (a chunk
    of scores stored: `done`/`total`), "failed" (a run raised; the active model stays).
    `labels_since_model` comes with the events that counted them (None on the others).
    """

    kind: str
    phase: str = ""
    message: str = ""
    progress: float | None = None
    run_event: Any = None
    decision: Any = None
    done: int = 0
    total: int = 0
    labels_since_model: int | None = None  # None: not counted for this event (not "none")
    active_version: int | None = None
    version: int | None = None


@dataclass
class LoopSummary:
    """What `learn` returns: its decisions, in order, and the time it ran."""

    decisions: list = field(default_factory=list)
    pretrained: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    removed: list = field(default_factory=list)  # versions whose old weights were removed
    freed_bytes: int = 0
    seconds: float = 0.0
    cancelled: bool = False

    def text(self) -> str:
        promoted = sum(1 for d in self.decisions if d.promoted)
        parts = [f"{len(self.decisions)} candidate{'s' * (len(self.decisions) != 1)}, {promoted} promoted"]
        if self.pretrained:
            parts.append(f"pretrained v{self.pretrained[-1]}")
        if self.failures:
            parts.append(f"{len(self.failures)} failed runs")
        if self.removed:
            parts.append(f"removed {removed_text(self.removed, self.freed_bytes)} to save space")
        parts.append(f"{self.seconds:.0f} s" + (", cancelled" if self.cancelled else ""))
        return ", ".join(parts)


# --- label bookkeeping ----------------------------------------------------------------------------


def newest_model(project):
    """The newest trained model version (candidate or active), None before the first."""
    trained = [m for m in project.models() if not m.method.startswith("pretrain:")]
    return trained[-1] if trained else None


def labels_since_model(project) -> int:
    """Labels saved (or changed) after the newest trained model read its labels, in every split
    (labels saved while it trained count as new)."""
    return labels_since(project, newest_model(project))


def labels_since(project, model) -> int:
    """Labels saved (or changed) after ``model`` read its labels, in every split; all of them for None."""
    if model is None:
        return len(project.labeled_ids())
    read = model.record.get("labels") or {}
    if read.get("mark") is None:  # recorded before label marks: compare times
        return project.count_labels_after(read.get("read_at") or model.created)
    return project.count_labels_after(int(read["mark"]))


def _has_train_labels(project) -> bool:
    return project.count_samples(split="train", labeled=True) > 0


def not_trainable_yet(project) -> str | None:
    """Why the loop cannot train a candidate on the labels so far, or None when it can (a
    classifier needs training labels of two classes: `train.one_class_only`). Two queries: it
    runs at every pass of an idle loop."""
    from medlabeler.engine.workflows.train import one_class_only

    if not _has_train_labels(project):
        return "label a training sample to start"
    return one_class_only(project)


# --- the loop -------------------------------------------------------------------------------------


def learn(project, *, control: LoopControl | None = None, new_labels: int = NEW_LABELS,
          budget_s: float | None = None, run_budget_s: float | None = None, pretrain_budget_s: float | None = None,
          config: dict | None = None, until_idle: bool = False, poll_s: float = 0.25, score: bool = True,
          warm_share: float = WARM_START_SHARE, full_run_after_s: float | None = FULL_RUN_AFTER_S,
          clock: Callable[[], float] = time.monotonic) -> Generator[LoopEvent, None, LoopSummary]:
    """Run the learning loop until cancelled, `budget_s` seconds passed, or (with `until_idle`)
    nothing is left to do. `config`: run-config overrides for every run (tests and benchmarks use
    tiny models); `run_budget_s`: seconds per training run; `warm_share`: the share of the run's
    steps each round trains, the first model's too (never under WARM_START_MIN_STEPS);
    `full_run_after_s`: idle seconds with no new label before the active model, if its newest run
    was a short one, gets a full-length run (None: never; with `until_idle`, before stopping).
    Yields LoopEvents; returns a LoopSummary."""
    control = control or LoopControl()
    summary = LoopSummary()
    started = clock()
    rec = recommendation(project, config)

    ran_out = False  # the budget ended the loop (as rank 0's clock said, under torchrun)

    def out_of_time() -> bool:
        nonlocal ran_out
        from medlabeler.engine.training import distributed

        late = budget_s is not None and clock() - started >= budget_s
        # under torchrun rank 0's clock decides, so every rank starts (or skips) the same runs
        ran_out = bool(distributed.broadcast(late)) if distributed.active() else late
        return ran_out

    def remaining(limit: float | None) -> float | None:
        left = None if budget_s is None else max(0.0, budget_s - (clock() - started))
        if limit is None:
            return left
        return limit if left is None else min(limit, left)

    tried_at: tuple | None = None  # the label state of the last failed run: not retried until it changes
    idle_reported: int | None = None  # labels since the model when "idle" was last reported in words
    scored_at: int | None = None  # labels since the model when an idle loop last completed the scores
    scored_whole: int | None = None  # the active version a scoring pass last went through to the end
    stopped_because = ""  # with until_idle: why there was nothing (more) to do
    paused_reported = False
    idle_since: tuple | None = None  # (labels since the model, when the loop went idle with them)
    full_looked_at: tuple | None = None  # the state whose full run at rest was run or found not needed

    def rested() -> bool:
        """Time for a full run: nobody labeled for `full_run_after_s` (at once with until_idle)."""
        if full_run_after_s is None:
            return False
        return until_idle or (idle_since is not None and clock() - idle_since[1] >= full_run_after_s)

    def needs_scores() -> bool:
        """The pool lacks scores of the active model, and no pass went through with it yet (one whole
        pass per model: a sample that never scores, its file damaged, starts no more)."""
        return scored_whole != _active_version(project) and _unscored(project)

    def rescore() -> Generator[LoopEvent, None, None]:
        nonlocal scored_whole
        if (yield from _rescore(project, control, new_labels)):
            scored_whole = _active_version(project)

    def rescore_after(decision) -> Generator[LoopEvent, None, None]:
        """After a candidate: a new active model ranks the pool afresh; a kept one fills in scores missing."""
        if score and not control.cancelled and (decision.promoted or needs_scores()):
            yield from rescore()
    try:
        while not control.cancelled and not out_of_time():
            if control.paused:
                idle_since = None  # a pause is no rest: the clinician said to wait
                if not paused_reported:
                    yield _phase(project, "paused", "learning paused")
                    paused_reported = True
                else:
                    yield LoopEvent("phase", phase="paused")
                _sleep(poll_s, control)
                continue
            paused_reported = False
            if rec.pretrain and newest_pretrained(project) is None:
                version = yield from _pretrain(project, rec, control, remaining(pretrain_budget_s), config, summary)
                if version is None and not control.cancelled:
                    rec = _without_pretraining(rec)  # it failed: train without it rather than retry forever
                continue
            since = labels_since_model(project)
            retrain = control.take_retrain()
            state = (since, project.count_samples(labeled=True))
            not_yet = not_trainable_yet(project)
            if retrain and not_yet is not None:  # said, not dropped: the Train tab waits for an answer
                yield _phase(project, "idle", f"Retrain: no candidate: {not_yet}")
                idle_reported = since
            due = not_yet is None and (retrain or since >= new_labels or (newest_model(project) is None and since > 0))
            if due and (retrain or state != tried_at):
                idle_reported = idle_since = None
                decision = yield from _train_candidate(project, rec, control, remaining(run_budget_s), config,
                                                       since, summary, warm_share)
                if decision is None:
                    tried_at = state
                else:
                    yield from rescore_after(decision)
                continue
            if idle_since is None or idle_since[0] != since:
                idle_since = (since, clock())
            # not while a candidate is due (its run failed on these labels): the next label retries that
            newest = newest_model(project) if rested() and not due else None
            full_state = (*state, newest.version) if newest is not None else None
            if full_state is not None and full_state != full_looked_at:
                full_looked_at = full_state  # one full run (or one look) per label state and newest model
                if short_run_newest(project, rec, config):
                    decision = yield from _train_candidate(project, rec, control, remaining(run_budget_s), config,
                                                           since, summary, warm_share, full_run=new_labels)
                    idle_reported = idle_since = None
                    # its own result counts as looked at: one cut short by a time budget waits for
                    # the next loop rather than start another here, and the next, forever
                    after = newest_model(project)
                    full_looked_at = (labels_since_model(project), project.count_samples(labeled=True),
                                      after.version) if after is not None else full_state
                    if decision is not None:
                        yield from rescore_after(decision)
                    continue
            more = max(1, new_labels - since) if not_yet is None else None
            if until_idle:
                stopped_because = (f"nothing to do: {not_yet}" if more is None else
                                   f"nothing to do until {more} more label{'s' * (more != 1)} arrive"
                                   f"{'s' * (more == 1)}")
                break
            if more is None:
                waiting = f"waiting for labels: {not_yet}"
            else:
                waiting = f"waiting for labels: {more} more {'starts' if more == 1 else 'start'} a candidate"
            if scored_at != since and score and needs_scores():  # before waiting: a full queue
                scored_at = since
                yield from rescore()
                continue
            if idle_reported != since:
                yield _phase(project, "idle", waiting)
                idle_reported = since
            else:
                yield LoopEvent("phase", phase="idle", labels_since_model=since)
            _sleep(poll_s, control)
    finally:
        summary.seconds = clock() - started
        summary.cancelled = control.cancelled
    if not control.cancelled and not stopped_because and ran_out:
        stopped_because = f"its time budget of {budget_s:g} s ran out"
    why = " (cancelled)" if control.cancelled else f" ({stopped_because})" if stopped_because else ""
    yield _phase(project, "stopped", "learning stopped" + why)
    return summary


def percent(fraction: float) -> str:
    """Whole percent done, rounded down as a progress bar shows it (35.6% is "35%" in both)."""
    return f"{math.floor(fraction * 100 + 1e-9)}%"


def _sleep(seconds: float, control: LoopControl) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not control.cancelled:
        time.sleep(min(0.05, seconds))


def _phase(project, phase: str, message: str) -> LoopEvent:
    active = project.active_model()
    return LoopEvent("phase", phase=phase, message=message, labels_since_model=labels_since_model(project),
                     active_version=active.version if active else None)


def _without_pretraining(rec):
    from dataclasses import replace

    return replace(rec, pretrain=None, init=None if rec.init == "pretrained" else rec.init)


def _paused_wait(control: LoopControl) -> Generator[LoopEvent, None, None]:
    """While paused mid-run: hold the run (its generator is simply not advanced)."""
    while control.paused and not control.cancelled:
        yield LoopEvent("phase", phase="paused", message="learning paused")
        _sleep(0.25, control)


def _drive_run(gen, kind: str, control: LoopControl, describe: Callable[[Any, str], str],
               on_epoch: Callable[[Any], None] | None = None,
               check: Callable[[], None] | None = None) -> Generator[LoopEvent, None, Any]:
    """Forward a training generator's events as LoopEvents, pausing between steps; returns its result.
    `describe(event, left)` words a step; `left` is ", ~3 min left" (or "" too early to say);
    `check()` runs every 2 s (a full run looks for new labels)."""
    timer = _TimeLeft()
    checked = time.monotonic()
    while True:
        if control.paused:
            yield from _paused_wait(control)
            timer.restart()  # the pause is no part of the rate
        if check is not None and time.monotonic() - checked > 2.0:
            checked = time.monotonic()
            check()
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_epoch is not None and event.kind == "epoch":
            on_epoch(event)
        left = timer.text(event.progress) if event.total_steps and event.progress is not None else ""
        message = describe(event, left)
        yield LoopEvent(kind, phase="pretraining" if kind == "pretrain" else "training", run_event=event,
                        progress=event.progress, message=message)


class _TimeLeft:
    """", ~3 min left" from the rate so far (validation passes included): a clinician who
    sees a run at 43% wants to know when its model comes, not only how far it is."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.restart()

    def restart(self, progress: float | None = None) -> None:
        self.started, self.base = self.clock(), progress

    def text(self, progress: float) -> str:
        if self.base is None:  # the first report after a (re)start: the rate counts from here
            self.restart(progress)
            return ""
        elapsed, done = self.clock() - self.started, progress - self.base
        if elapsed < 5 or done <= 0.02 or progress >= 1:  # too early to say
            return ""
        left = elapsed / done * (1 - progress)
        return ", <1 min left" if left < 60 else f", ~{round(left / 60)} min left"  # short: the dock cuts the line


def _pretrain(project, rec, control, budget_s, config, summary) -> Generator[LoopEvent, None, int | None]:
    from medlabeler.engine.workflows.pretrain import pretrain_project

    yield _phase(project, "pretraining", f"pretraining an encoder ({rec.pretrain}) on all images")
    losses: list[float] = []
    deadline = None if budget_s is None else time.monotonic() + budget_s

    def plateau(event) -> None:
        if isinstance(event.loss, float) and math.isfinite(event.loss):
            losses.append(event.loss)
        best_before = min(losses[:-PLATEAU_EPOCHS], default=math.inf)
        plateaued = len(losses) > PLATEAU_EPOCHS and min(losses[-PLATEAU_EPOCHS:]) > 0.99 * best_before
        if plateaued or (deadline is not None and time.monotonic() >= deadline):
            stop.set()

    stop = threading.Event()
    cfg = {**rec.pretrain_config, **(config or {})}  # the caller's sizes, the recommended budget
    for key in ("steps", "epochs", "steps_per_epoch"):
        if key in rec.pretrain_config:
            cfg[key] = rec.pretrain_config[key]
    try:
        gen = pretrain_project(project, method=rec.pretrain, config=cfg, cancel=control.token,
                               stop_when=stop.is_set)
        result = yield from _drive_run(gen, "pretrain", control,
                                       lambda e, left: f"pretraining {percent(e.progress)}{left}" if e.total_steps
                                       else "pretraining",
                                       on_epoch=plateau)
    except (MedlabelerError, ValueError, RuntimeError) as exc:
        summary.failures.append(str(exc))
        yield LoopEvent("failed", phase="pretraining", message=f"pretraining failed: {error_text(exc)}; training without it")
        return None
    if result is None or result.cancelled or result.version is None:
        return None
    summary.pretrained.append(result.version)
    yield LoopEvent("pretrained", phase="pretraining", version=result.version,
                    message=f"pretrained encoder v{result.version} ({rec.pretrain}, {result.steps} steps)")
    return result.version


def _train_candidate(project, rec, control, budget_s, config, since, summary, warm_share: float,
                     full_run: int | None = None) -> Generator[LoopEvent, None, Any]:
    """Train, validate and promote or keep a candidate: a round of `warm_share` of the steps, or with
    `full_run` the full-length run of a loop at rest, which that many new labels (or a retrain
    request) stop and discard."""
    from medlabeler.engine.workflows.promotion import labels_text
    from medlabeler.engine.workflows.train import train_project

    active = project.active_model()
    run_config = {**rec.config, **(config or {})}
    unloadable = weights_problem(active) if active is not None else None
    if active is not None and unloadable is None:
        init, origin = active.version, f"from v{active.version}"
    elif rec.init == "pretrained" and newest_pretrained(project) is not None:
        init, origin = "pretrained", "from the pretrained encoder"
    else:
        init, origin = None, "from scratch"
    if unloadable:  # a run from it would fail, round after round: start afresh (the decision says why)
        yield _phase(project, "training", f"active v{active.version} cannot be loaded: {unloadable}; training "
                                          f"a candidate {origin} instead")
    # every round while labels arrive trains a share of the steps, the first one too (its labels
    # come sooner: the clinician goes on labeling meanwhile); a full run at rest trains them all
    if full_run is None:
        run_config = _warm_steps(run_config, warm_share)
    labels = labels_text(len(project.samples(split="train", labeled=True)), "train")  # "13 training labels"
    steps = run_config.get("steps")
    doing = "training"  # the first words of each progress line: the dock cuts the rest at 1366 px
    new = labels_since(project, active) if full_run is not None else 0  # read once: the words and the tolerance agree
    if full_run is not None:
        doing = "full run"

    def what(origin: str) -> str:
        if full_run is None:
            return f"training a candidate {origin} with {labels}"
        seen = "on the same labels" if not new else f"with {new} label{'s' * (new != 1)} new since v{active.version}"
        return f"a full run of {steps} steps {origin} {seen} ({labels}; new labels stop it)"

    yield _phase(project, "training", what(origin) + ("" if full_run is not None else
                                                      f" ({since} new)" + (f", {steps} steps" if steps else "")))
    stop = _FullRunStop(control, project, full_run) if full_run is not None else None
    same_labels = stop is not None and not new

    def run(init, origin: str):
        gen = train_project(project, method=rec.method, init=init, budget_s=budget_s, config=run_config,
                            cancel=stop or control.token, tolerance=FULL_RUN_TOLERANCE if same_labels else None)
        return (yield from _drive_run(gen, "train", control,
                                      lambda e, left: _training_progress(e, left, origin, labels, doing)
                                      if e.total_steps else what(origin),
                                      check=stop.check if stop is not None else None))

    try:
        try:
            result = yield from run(init, origin)
        except InitMismatchError as exc:  # the active model is of another network (a `train --config` of
            if init is None:  # another width): every round from it would fail, so this one starts afresh
                raise
            yield _phase(project, "training", f"{error_text(exc)}; training a candidate from scratch instead")
            result = yield from run(None, "from scratch")
    except (MedlabelerError, ValueError, RuntimeError) as exc:
        summary.failures.append(str(exc))
        yield LoopEvent("failed", phase="training", message=f"training failed, the active model stays: {error_text(exc)}")
        return None
    if stop is not None and stop.why and (result is None or result.cancelled):
        yield _phase(project, "training", f"{stop.why}: the full run stops (the active model stays) and "
                                          "the next candidate trains")
    if result is None or result.cancelled or result.decision is None:
        return None
    if result.stopped_by == "time budget":  # validated as it stands; a later loop at rest runs it in full
        yield _phase(project, "training", f"the time budget stopped the run at step {result.steps} of "
                                          f"{result.planned_steps}")
    decision = result.decision
    summary.decisions.append(decision)
    _remove_old_weights(project, summary)
    now_active = project.active_model()
    yield LoopEvent("decision", phase="training", decision=decision, message=decision.message,
                    version=result.version, active_version=now_active.version if now_active else None,
                    labels_since_model=labels_since_model(project))
    return decision


class _FullRunStop:
    """The cancel token of a full run at rest: set by the loop's cancel, by `new_labels` labels
    saved since the newest model, or by a retrain request (`why` says which of the last two)."""

    def __init__(self, control: LoopControl, project, new_labels: int) -> None:
        self.control, self.project, self.new_labels = control, project, new_labels
        self.waiting = labels_since_model(project)
        self.why = ""

    def check(self) -> None:
        from medlabeler.engine.training import distributed

        # under torchrun every rank must take the same steps: the run goes to its end (no one labels there)
        if self.why or distributed.active():
            return
        if self.control.retrain_requested:
            self.why = "a retrain was asked for"
        elif _candidate_due(labels_since_model(self.project), self.waiting, self.new_labels):
            self.why = "new labels arrived"

    def is_set(self) -> bool:
        return self.control.cancelled or bool(self.why)


def _candidate_due(since: int, waiting: int, new_labels: int) -> bool:
    """Whether `since` labels make a candidate due for a job that began with `waiting` of them: a
    candidate due only now stops the job; one due already (its run failed) waits for as many again."""
    return since - waiting >= new_labels if waiting >= new_labels else since >= new_labels


def short_run_newest(project, rec, config) -> bool:
    """Whether the newest trained model is a round shorter than a full run, or a run its time budget
    cut short (`learn --budget-s`), so that a full run from the active model can still help. A run
    that stopped at a plateau ran its course."""
    full = {**rec.config, **(config or {})}.get("steps")
    newest = newest_model(project)
    if not full or newest is None or project.active_model() is None or not _has_train_labels(project):
        return False
    run = newest.record.get("run") or {}
    ran = run.get("steps") if run.get("stopped_by") == "time budget" else (newest.record.get("config") or {}).get("steps")
    return ran is not None and int(ran) < int(full)


def _training_progress(event, left: str, origin: str, labels: str, doing: str = "training") -> str:
    """"training: 43% of 100 steps, ~1 min left (from v3, 13 training labels)" ("full run: ..." for a
    full run at rest): what, how far and how long first, since a dock a 1366 px screen leaves cuts
    the line at about 45 characters."""
    return f"{doing}: {percent(event.progress)} of {event.total_steps} steps{left} ({origin}, {labels})"


def _warm_steps(run_config: dict, share: float) -> dict:
    """A round's steps: `share` of a full run's, and at least WARM_START_MIN_STEPS of them (a run
    measured in epochs keeps them)."""
    steps = run_config.get("steps")
    if not steps:
        return run_config
    return {**run_config, "steps": max(min(steps, WARM_START_MIN_STEPS), round(steps * share), 1)}


def _remove_old_weights(project, summary: LoopSummary) -> None:
    """A loop that runs all day makes a version every few labels: keep the space it takes bounded."""
    from medlabeler.engine.training.distributed import on_main

    try:
        removed, freed = on_main(lambda: remove_old_weights(project))
    except (MedlabelerError, OSError, RuntimeError) as exc:  # space is not worth a failed round
        log.warning("old model weights were not removed: %s", exc)
        return
    if removed:
        summary.removed += removed
        summary.freed_bytes += freed
        log.info("removed %s to save space; their records stay", removed_text(removed, freed))


def _active_version(project) -> int | None:
    active = project.active_model()
    return active.version if active is not None else None


def _unscored(project) -> bool:
    """Whether unlabeled training samples that can be scored lack a score from the active model (a
    scoring pass cut short, a kept candidate, a project reopened): the queue would fall back to
    random picks for them."""
    from medlabeler.engine.active.scoring import to_score

    if project.active_model() is None:
        return False
    return bool(set(to_score(project, split="train")) - project.blank_ids())


def _rescore(project, control, new_labels: int = NEW_LABELS) -> Generator[LoopEvent, None, bool]:
    """Score the pool with the active model; stop early (scores so far are kept) when enough new
    labels arrive while it scores for the next candidate: training on them matters more than a full
    pool. Labels that were waiting when it started do not stop it: a pass cut short at once leaves
    the queue on random picks until the next promotion."""
    from medlabeler.engine.training import distributed
    from medlabeler.engine.workflows.active_loop import score_project

    if not project.samples(split="train", labeled=False):
        return True
    if distributed.active():  # under torchrun rank 0 alone scores (it writes); the others wait for it
        whole = (yield from _rescore_pool(project, control, new_labels, score_project)) if distributed.is_main() \
            else True
        distributed.barrier()
        return whole
    return (yield from _rescore_pool(project, control, new_labels, score_project))


def _rescore_pool(project, control, new_labels: int, score_project) -> Generator[LoopEvent, None, bool]:
    """Score the pool; True when the pass went through to the end."""
    active = project.active_model()
    yield _phase(project, "scoring", f"scoring the pool with v{active.version}")
    stop = threading.Event()
    gen = score_project(project, cancel=lambda: stop.is_set() or control.cancelled, chunk_writes=True)
    checked = time.monotonic()
    waiting = labels_since_model(project)
    final = None
    try:
        while True:
            if control.paused:
                yield from _paused_wait(control)
            if time.monotonic() - checked > 2.0:
                checked = time.monotonic()
                if _candidate_due(labels_since_model(project), waiting, new_labels) or control.retrain_requested:
                    stop.set()
            try:
                event = next(gen)
            except StopIteration:
                break
            if getattr(event, "kind", "") == "progress" and event.done:
                scored = LoopEvent("scored", phase="scoring", done=event.done, total=event.total,
                                   progress=event.done / max(1, event.total), active_version=active.version,
                                   message=f"scoring {event.done}/{event.total}")
                if event.done < event.total:
                    yield scored
                else:  # "all scored" once the embeddings are written too: the queue re-ranks on it
                    final = scored
    except (MedlabelerError, ValueError, RuntimeError) as exc:
        yield LoopEvent("failed", phase="scoring", message=f"scoring failed: {exc}")
        return False
    if final is not None:
        yield final
    if stop.is_set():
        yield _phase(project, "training", "new labels arrived: scoring stops here (the queue uses the scores so "
                                          "far) and the next candidate trains")
    return not stop.is_set() and not control.cancelled
