"""The app's side of the learning loop (engine.workflows.learn_loop): on by default, pausable, never in the way.

`LearningLoop` runs the engine generator in the session's training slot (one learning job at a
time) and turns its events into what the clinician sees: a status line (what the background does
now, the last decision, the labels since the last model), a new prediction of the open sample
after a promotion, and a re-ranked queue as scores arrive. It only reads and writes through the
session's signals and methods; labeling never waits for it.

MEDLABELER_LEARN=0 keeps it off when a project opens (scripts, and tests of manual training).
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator

from qtpy.QtCore import QObject, Signal

from medlabeler.ui.layers import GRADCAM, PREDICTION
from medlabeler.ui.workers import EngineJob, main_thread_only

#: Training progress reports closer together than this are dropped on the worker thread.
PROGRESS_INTERVAL_S = 0.2
#: An idle or paused loop still yields a keep-alive (None) this often: napari's quit asks every
#: worker to stop and waits, and a worker can only see that request when its generator yields.
KEEP_ALIVE_S = 0.5


def learn_on_open() -> bool:
    return os.environ.get("MEDLABELER_LEARN", "1") not in ("", "0")


def _thinned(gen) -> Generator:
    """Drop training-step reports closer than PROGRESS_INTERVAL_S (epoch, metric and loop events
    pass); an idle or paused loop's heartbeats become a None every KEEP_ALIVE_S."""
    last = 0.0
    last_alive = time.monotonic()
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        now = time.monotonic()
        run_event = getattr(event, "run_event", None)
        if run_event is not None and run_event.kind == "step" and run_event.step != run_event.total_steps:
            if now - last < PROGRESS_INTERVAL_S:
                continue
            last = now
        if event.kind == "phase" and not event.message:  # heartbeats of an idle or paused loop
            if now - last_alive >= KEEP_ALIVE_S:
                last_alive = now
                yield None
            continue
        last_alive = now
        yield event


class LearningLoop(QObject):
    """Start/stop/pause the background learning loop of a session and report what it does."""

    status_changed = Signal()  # read .now, .last_decision, .labels_since
    _counted = Signal(object, int)  # project, labels since the last model (from a counting thread)
    run_started = Signal(str)  # "training" | "pretraining": a new run's plot starts empty
    decision_made = Signal(object)  # engine.workflows.promotion.Decision

    def __init__(self, session):
        super().__init__(session)
        self.session = session
        self.job: EngineJob | None = None
        self.control = None
        self.now = "learning is off"
        self.phase = ""  # the loop's phase now: "training", "pretraining", "scoring", "idle", ...
        self._in_run = False  # a candidate or an encoder is being trained (through pauses)
        self.last_decision = ""
        self.last_failure = ""  # the last run's error, until a run gets through
        self.labels_since = 0
        self.decisions: list = []  # this session's decisions, in order (the decision log)
        self.config: dict = {}  # run-config overrides for the loop's runs (tests use tiny models)
        self.new_labels = 3  # labels that start a new candidate
        # more keywords of the engine's loop (warm_share, full_run_after_s): its defaults unless set
        self.options: dict = {}
        self._scoring = False  # scores are arriving: the queue re-ranks once they stop
        self.scored: tuple[int, int] | None = None  # (done, total) of the scoring pass under way
        # Retrain was pressed and the loop has not acted on it yet (a run under way goes on first):
        # the Train tab keeps saying so rather than let the run's step reports replace it at once
        self.retrain_pending = False
        self._counting = False  # a count of the labels since the last model runs on a thread
        self._count_again = False
        self._counter = None
        self._counted.connect(self._count_arrived)
        session.project_changed.connect(self._project_changed)
        session.labels_changed.connect(self._labels_changed)
        session.models_changed.connect(self._labels_changed)  # a manual run's model counts too

    # --- state ----------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.job is not None and self.job.running

    @property
    def scoring(self) -> bool:
        """Whether the loop is writing the pool's scores now (the queue re-ranks when it stops)."""
        return self._scoring

    @property
    def run_under_way(self) -> bool:
        """A candidate or an encoder is being trained now (closing the project discards it)."""
        return self.running and self._in_run

    @property
    def paused(self) -> bool:
        return self.control is not None and self.control.paused

    def status_parts(self) -> list[str]:
        """What the loop does now, its last failure and decision, and the labels since the last model."""
        parts = [self.now]
        if self.last_failure and self.last_failure != self.now:  # it stays until a run gets through
            parts.append(self.last_failure)
        if self.last_decision:
            parts.append(f"last decision: {self.last_decision}")
        # every split counts: a new validation label changes which model promotion keeps
        # the words that matter first: a dock on a 1366 px screen cuts the line at about 45 characters
        parts.append(f"{self.labels_since} new label{'s' if self.labels_since != 1 else ''} since the last model "
                     "(any split)")
        return parts

    # --- control (main thread) ------------------------------------------------------------------
    @main_thread_only
    def start(self) -> bool:
        """Start the loop on the open project (False if none, read-only, or a run is going on)."""
        project = self.session.project
        if project is None or project.readonly or self.running or self.session.training_running:
            return False
        from medlabeler.ui import engine_calls as calls

        job = EngineJob("Learning", lambda token: _thinned(calls.learning_run(
            project, self.control, config=dict(self.config), new_labels=self.new_labels, **self.options)),
                        show_progress=False)
        self.control = calls.loop_control(job.token)
        job.event.connect(self._on_event)
        job.ended.connect(self._ended)
        if not self.session.jobs.start_training(job):
            return False
        self.job = job
        self.now = "learning: starting"
        self.status_changed.emit()
        return True

    @main_thread_only
    def stop(self) -> None:
        if self.running:
            self.job.cancel()

    @main_thread_only
    def set_paused(self, paused: bool) -> None:
        if self.control is None:
            return
        if paused:
            self.control.pause()
            self.now = "learning paused"
        else:
            self.control.resume()
            self.now = "learning resumed"
        self.status_changed.emit()

    @main_thread_only
    def activated_by_hand(self, version: int) -> None:
        """The last decision is the clinician's now: "promoted v2" stood above "v1 is active"."""
        self.last_decision = f"v{int(version)} activated by hand"
        self.status_changed.emit()

    @main_thread_only
    def retrain(self) -> None:
        if self.control is not None and self.running:
            self.control.request_retrain()
            self.retrain_pending = True
            if self.paused:
                self.set_paused(False)

    # --- events ---------------------------------------------------------------------------------
    def _project_changed(self) -> None:
        self.decisions.clear()
        self.last_decision = ""
        self.last_failure = ""
        if self.session.project is not None and learn_on_open():
            self.start()
        self._refresh_count()

    def _labels_changed(self) -> None:
        self._refresh_count()

    def _refresh_count(self) -> None:
        """Count the labels since the last model on a thread (one query per label: not for the
        main thread on a large project); the status follows when the count arrives."""
        project = self.session.project
        if project is None:
            self.labels_since = 0
            self.status_changed.emit()
            return
        if self._counting:
            self._count_again = True
            return
        self._counting = True
        if self._counter is None:  # one thread, started once (starting a thread waits for it)
            from concurrent.futures import ThreadPoolExecutor

            self._counter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medlabeler-label-count")
        self._counter.submit(self._count, project)

    def _count(self, project) -> None:
        from medlabeler.ui import engine_calls as calls

        try:
            count = -1 if project.closed else calls.labels_since_model(project)
        except Exception:  # noqa: BLE001 - a closed project or a race with closing: no count
            count = -1
        self._counted.emit(project, count)

    @main_thread_only
    def _count_arrived(self, project, count: int) -> None:
        self._counting = False
        if project is self.session.project and count >= 0:
            self.labels_since = count
            self.status_changed.emit()
        if self._count_again:
            self._count_again = False
            self._refresh_count()

    @main_thread_only
    def _on_event(self, event) -> None:
        kind = event.kind
        if event.message:
            self.now = event.message
        if kind in ("train", "pretrain") and event.run_event is not None:
            self.session.training_event.emit(event.run_event)
        elif kind == "decision":
            self._in_run = False
            self.last_failure = ""
            self.decisions.append(event.decision)
            self.last_decision = event.decision.message
            self.labels_since = event.labels_since_model
            self.decision_made.emit(event.decision)
            self.session.models_changed.emit()
            if event.decision.promoted:
                self.session.model_promoted()
        elif kind == "scored":
            # Re-ranking runs on the main thread (hundreds of ms on a large pool): once per pass,
            # when the scores stop arriving, not per chunk. The queue reads the stored scores.
            self._scoring = event.done < event.total
            self.scored = (event.done, event.total)
            self.phase = "scoring"  # again after a pause: no phase event says so when the pass goes on
            if not self._scoring:
                self.session.queue_changed.emit()
        elif kind == "failed":
            self._in_run = False
            self.scored = None
            self.last_failure = event.message
            self._scoring_stopped()
            # a labeled image that no longer reads stops a run, and the store noted it: the queue's
            # labeled list puts it first, where a right-click takes its label back
            self.session.queue_changed.emit()
        elif kind == "pretrained":
            self._in_run = False
            self.session.models_changed.emit()
        elif kind == "phase":
            self.phase = event.phase or self.phase
            if event.phase in ("training", "idle", "stopped") and event.message:
                self.retrain_pending = False  # acted on: a new run, or why there is none
            if event.phase == "scoring":
                self.scored = None  # a new pass: nothing scored yet
            if event.phase != "paused":  # a pause holds a run; it does not end it
                self._in_run = event.phase in ("training", "pretraining")
            if event.labels_since_model is not None:  # a pause mid-run counts nothing: "0 new labels"
                self.labels_since = event.labels_since_model
            self._scoring_stopped()  # e.g. early, for new labels
            if event.phase in ("training", "pretraining"):
                view = self.session.view
                if view is not None and event.phase == "training" and not (
                        view.has_layer(PREDICTION) or view.has_layer(GRADCAM)):
                    # Adding napari layers takes up to a second: do it as a run starts, not when
                    # its prediction arrives (a no-op once they exist).
                    view.prepare_overlays()
                self.run_started.emit(event.phase)
        self.status_changed.emit()

    @main_thread_only
    def _ended(self) -> None:
        outcome = self.job.outcome if self.job is not None else None
        self.now = {"failed": f"learning stopped: {self.job.error}" if self.job else "learning stopped"}.get(
            outcome, "learning is off")
        self.control = None
        self.phase = ""
        self._in_run = False
        self.retrain_pending = False
        self.scored = None
        self._scoring_stopped()
        self.status_changed.emit()

    def _scoring_stopped(self) -> None:
        """A scoring pass ended before its "all scored" (new labels, a failure, the loop stopped):
        the queue ranks on what is scored."""
        if self._scoring:
            self._scoring = False
            self.session.queue_changed.emit()
