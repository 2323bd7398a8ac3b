"""The app with the learning loop on (as a user gets it): label while it trains, see its decisions."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from medlabeler.ui import workers
from medlabeler.ui.app import build_app
from medlabeler.ui.layers import PREDICTION
from medlabeler.ui.widgets.train import COL_STATUS, COL_VERSION
from tests.ui.projects import TINY
from tests.ui.test_loop import choose, paint_truth, press, save_screenshot

pytestmark = pytest.mark.gui
LEFT = Qt.MouseButton.LeftButton


def test_the_loop_learns_while_labeling_and_never_regresses(make_napari_viewer, qtbot, brain_project, brain_files,
                                                            tmp_path, monkeypatch):
    monkeypatch.setenv("MEDLABELER_LEARN", "1")  # the default of the app
    _, masks = brain_files
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer)
    session, train = widget.session, widget.train
    session.learning.config = {**TINY, "steps": 16}
    assert session.open_project(brain_project)
    project = session.project
    loop = session.learning
    assert loop.running and train.loop_check.isChecked() and train.pause_button.isEnabled()
    qtbot.waitUntil(lambda: "label a training sample" in train.loop_status.toolTip(), timeout=30_000)
    has_encoder = any(m.method.startswith("pretrain:") for m in project.models())  # the loop may pretrain first
    offered = [train.init_combo.itemText(i) for i in range(train.init_combo.count())]
    assert ("from pretrained encoder" in offered) == has_encoder
    assert ("No pretrained encoder" in train.init_note.text()) == (not has_encoder)  # no model yet
    widget.tabs.setCurrentWidget(widget.metrics)
    assert widget.metrics.canvas.isHidden() and "No" in widget.metrics.caption.text()  # no empty axes
    widget.tabs.setCurrentWidget(widget.label)

    # A validation slice first (promotion needs one), then training slices: the first starts a model.
    val = project.samples(split="val")[1]
    session.open_sample(val.id)
    paint_truth(session, masks)
    press(viewer, "s")
    session.open_next()
    labeled = []
    for _ in range(3):
        labeled.append(paint_truth(session, masks))
        press(viewer, "n")  # labeling never waits for the loop
    qtbot.waitUntil(lambda: len(loop.decisions) >= 1, timeout=120_000)
    first = loop.decisions[0]
    assert first.promoted and project.active_model().version == first.candidate
    assert f"last decision: {first.message}" in train.loop_status.toolTip()
    assert train.init_note.text() == "", "a model exists: training starts from it, nothing is missing"
    widget.tabs.setCurrentWidget(train)
    shown = train.loop_status.text().splitlines()  # a line each, cut to the dock's width: none lost below
    assert len(shown) == 3 and shown[1].startswith("last decision: ") and "new label" in shown[2]
    assert all(train.loop_status.fontMetrics().horizontalAdvance(line) <= train.loop_status.width() for line in shown)
    qtbot.waitUntil(lambda: session.current_prediction is not None, timeout=60_000)
    assert session.view.has_layer(PREDICTION)
    widget.tabs.setCurrentWidget(widget.metrics)  # drawn when shown: one point, labeled axes
    assert widget.metrics.points and not widget.metrics.canvas.isHidden()
    assert widget.metrics.ax.get_xlabel() == "labeled training samples"
    # the labels the project had at the decision, not the ones the model learned from (a model kept
    # after labels were removed read "with 12 training labels" for a model of 42)
    assert "when the project had" in widget.metrics.caption.text()
    widget.tabs.setCurrentWidget(widget.label)

    # Three more labels start a candidate warm-started from the active model.
    qtbot.waitUntil(lambda: "waiting for labels" in loop.now, timeout=120_000)
    before = len(loop.decisions)
    for _ in range(3):
        paint_truth(session, masks)
        press(viewer, "n")
    qtbot.waitUntil(lambda: len(loop.decisions) > before, timeout=120_000)
    decision = loop.decisions[-1]
    assert project.model(decision.candidate).parent == decision.active
    active = project.active_model().version
    assert active == (decision.candidate if decision.promoted else decision.active)
    row = [train.models_table.item(r, COL_VERSION).text().lstrip("● ") for r in range(train.models_table.rowCount())
           ].index(f"v{decision.candidate}")
    status = train.models_table.item(row, COL_STATUS).text()
    assert status == "active" if decision.promoted else status.startswith("not promoted")

    # Pause and resume from the Train tab; Retrain asks the running loop for a candidate.
    qtbot.mouseClick(train.pause_button, LEFT)
    assert loop.paused and train.pause_button.text() == "Resume" and "paused" in train.loop_status.toolTip()
    qtbot.mouseClick(train.pause_button, LEFT)
    assert not loop.paused
    count = len(loop.decisions)
    qtbot.mouseClick(train.train_button, LEFT)
    qtbot.waitUntil(lambda: len(loop.decisions) > count, timeout=120_000)
    # Never a regression: each decision keeps the active validation Dice within the tolerance.
    for d in loop.decisions[1:]:
        if d.promoted and d.active_value is not None:
            assert d.candidate_value >= d.active_value - d.tolerance
    widget.tabs.setCurrentWidget(train)
    qtbot.wait(50)
    save_screenshot(viewer.screenshot(canvas_only=False, flash=False), tmp_path, "app-learning-loop")

    # Switching the loop off stops it; the active model stays.
    active = project.active_model().version
    train.loop_check.setChecked(False)
    qtbot.waitUntil(lambda: not loop.running, timeout=60_000)
    assert project.active_model().version == active and "learning is off" in train.loop_status.toolTip()
    assert not workers.THREAD_CHECKS["violations"]
    session.shutdown()


def test_cancel_stops_the_loop_says_so_and_a_manual_model_resets_the_label_count(make_napari_viewer, qtbot,
                                                                                 brain_project, brain_files, monkeypatch):
    """Cancel during a loop run unticked "Learn in the background" without a word and left
    "Cancelling…" on screen after the run had stopped; a model from Retrain (loop off) left the
    count at "2 new labels since the last model"."""
    from medlabeler.ui.widgets.train import CANCELLED, LOOP_OFF

    monkeypatch.setenv("MEDLABELER_LEARN", "1")
    _, masks = brain_files
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer)
    session, train = widget.session, widget.train
    session.learning.config = {**TINY, "steps": 5000}  # long enough to cancel mid-run
    assert session.open_project(brain_project)
    loop = session.learning
    for _ in range(2):
        paint_truth(session, masks)
        press(viewer, "n")
    steps = []
    session.training_event.connect(steps.append)
    qtbot.waitUntil(lambda: len(steps) >= 2, timeout=60_000)
    widget.tabs.setCurrentWidget(train)
    qtbot.wait(50)
    plot_at = train.plot.mapTo(widget, train.plot.rect().topLeft())
    qtbot.mouseClick(train.cancel_button, LEFT)
    assert train.status.text().startswith("Cancelling") and "Background learning is off" in train.status.text()
    qtbot.wait(50)  # laid out again: the longer message does not move what lies below it
    assert train.plot.mapTo(widget, train.plot.rect().topLeft()) == plot_at
    qtbot.waitUntil(lambda: not loop.running, timeout=60_000)
    # the widgets follow once the job's end reaches the main thread, and the count from its thread
    qtbot.waitUntil(lambda: train.status.text() == CANCELLED + LOOP_OFF, timeout=10_000)
    qtbot.waitUntil(lambda: "2 new labels" in train.loop_status.toolTip(), timeout=10_000)
    assert not train.loop_check.isChecked() and not session.project.models()

    choose(widget, "supervised", steps=4)  # Retrain by hand, the loop off
    qtbot.mouseClick(train.train_button, LEFT)
    qtbot.waitUntil(lambda: session.project.active_model() is not None, timeout=60_000)
    qtbot.waitUntil(lambda: "0 new labels" in train.loop_status.toolTip(), timeout=10_000)


def test_closing_while_a_candidate_trains_says_it_is_not_kept(make_napari_viewer, qtbot, brain_project, brain_files,
                                                             monkeypatch, caplog):
    """A quit during a loop run discarded the run without a word (and, after a pause and resume,
    still did)."""
    monkeypatch.setenv("MEDLABELER_LEARN", "1")
    _, masks = brain_files
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer)
    session = widget.session
    session.learning.config = {**TINY, "steps": 5000}  # still training when the project closes
    assert session.open_project(brain_project)
    project = session.project
    paint_truth(session, masks)
    press(viewer, "n")
    loop = session.learning
    qtbot.waitUntil(lambda: loop.run_under_way and "%" in loop.now, timeout=60_000)
    loop.set_paused(True)  # a pause holds the run: it is still under way after it (it was forgotten)
    qtbot.waitUntil(lambda: loop.phase == "paused", timeout=10_000)
    assert loop.run_under_way
    steps = []
    session.training_event.connect(steps.append)
    loop.set_paused(False)
    qtbot.waitUntil(lambda: len(steps) >= 1, timeout=30_000)
    assert loop.run_under_way
    shown = []  # on screen too, not only on stderr (a new user closed a project and lost a run unawares)
    monkeypatch.setattr("napari.utils.notifications.show_warning", shown.append)
    with caplog.at_level("WARNING", logger="medlabeler.ui.session"):
        session.close_project()
    said = [r.getMessage() for r in caplog.records if "Closing the project" in r.getMessage()]
    assert len(said) == 1 and "steps" in said[0] and "(from scratch, 1 training label)" in said[0], said
    assert "it is not kept, there is no model yet" in said[0] and shown == said
    assert project.closed and not session.learning.run_under_way


def test_quitting_while_the_loop_waits_for_labels_does_not_hang(make_napari_viewer, qtbot, brain_project,
                                                                monkeypatch):
    """napari's quit asks every worker to stop and waits for them: an idle loop must notice."""
    from superqt.utils import WorkerBase

    monkeypatch.setenv("MEDLABELER_LEARN", "1")
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer)
    session, train = widget.session, widget.train
    assert session.open_project(brain_project)
    qtbot.waitUntil(lambda: "label a training sample" in train.loop_status.toolTip(), timeout=30_000)
    qtbot.wait(1500)  # idle for a while: several heartbeats, no event with words
    WorkerBase.await_workers(msecs=5_000)  # what napari connects to the app's aboutToQuit; raises on a timeout
    qtbot.waitUntil(lambda: not session.learning.running, timeout=5_000)
    assert session.learning.job.outcome == "cancelled"


def test_one_scan_without_validation_samples_shows_training_figures(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    """A whole-volume project of one scan has nothing to hold out: promotion compares on the training
    labels, and the app shows those figures as training figures and says why."""
    from medlabeler.engine.project.project_import import create_project
    from medlabeler.engine.training import run_to_end
    from medlabeler.engine.workflows.train import train_project
    from medlabeler.ui.widgets.metrics import NO_VALIDATION_NOTE
    from medlabeler.ui.widgets.train import COL_METRIC
    from tests.engine.test_pipeline_datasets import write_volumes

    monkeypatch.setenv("MEDLABELER_LEARN", "0")
    write_volumes(tmp_path / "images", n=1, depth=8)
    project, _ = create_project(tmp_path / "project", tmp_path / "images", task="segmentation", names=["lesion"],
                                unit="image")
    with project:
        (scan,) = project.samples()
        project.save_label(scan.id, (project.load_pixels(scan) > 140).astype(np.uint8))
        config = {"cap_threads": False, "features": [4, 8, 16], "batch_size": 2, "lr": 3e-3, "volume_size": 16}
        run_to_end(train_project(project, method="supervised", steps=20, config=config))
        second = run_to_end(train_project(project, method="supervised", steps=20, config=config)).decision
    assert second.split == "train" and second.candidate_value is not None

    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer)
    assert widget.session.open_project(tmp_path / "project")
    widget.tabs.setCurrentWidget(widget.train)
    table = widget.train.models_table
    row = next(r for r in range(table.rowCount()) if table.item(r, COL_VERSION).data(Qt.ItemDataRole.UserRole)
               == second.candidate)
    assert table.item(row, COL_METRIC).text() == f"train dice {second.candidate_value:.3f}"
    widget.tabs.setCurrentWidget(widget.metrics)
    metrics = widget.metrics
    qtbot.waitUntil(lambda: bool(metrics.points), timeout=10_000)  # drawn once the tab is shown
    assert metrics.points and metrics.ax.get_title(loc="left") == "training dice"
    assert NO_VALIDATION_NOTE in metrics.caption.text()
    save_screenshot(viewer.screenshot(canvas_only=False, flash=False), tmp_path, "one-scan-metrics")


def test_a_failed_run_stays_in_the_loop_status_until_a_run_gets_through(make_napari_viewer, brain_project):
    """A run that failed (a grey photo among colour ones stopped training) said so for a moment;
    "waiting for labels" then replaced it and the loop seemed to wait for ever."""
    from medlabeler.engine.workflows.learn_loop import LoopEvent
    from medlabeler.engine.workflows.promotion import Decision

    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, brain_project)
    loop, train = widget.session.learning, widget.train
    failure = "training failed, the active model stays: sample 3: image data is truncated or damaged"
    loop._on_event(LoopEvent("failed", phase="training", message=failure))
    loop._on_event(LoopEvent("phase", phase="idle", message="waiting for labels: 1 more starts a candidate"))
    assert train.loop_status.toolTip().startswith("waiting for labels: 1 more starts a candidate · " + failure)
    assert train.status.text() == failure  # not the failed run's last step report
    fields = {name: None for name in Decision.__dataclass_fields__}
    decision = Decision(**{**fields, "candidate": 2, "promoted": False, "message": "v2 not better: 0.71 vs active v1 0.83"})
    loop._on_event(LoopEvent("decision", decision=decision, message=decision.message, labels_since_model=14))
    assert failure not in train.loop_status.toolTip()
    # a pause in the middle of a run reports no count: the 14 labels stay (it read "0 new labels")
    loop._on_event(LoopEvent("phase", phase="paused", message="learning paused"))
    assert "14 new labels" in train.loop_status.toolTip() and loop.phase == "paused"


def test_the_progress_bar_counts_the_pool_while_the_loop_scores_it(make_napari_viewer, brain_project):
    """A new user saw "scoring 112/235" beside a bar at 0% (the last run's) and thought it stuck."""
    from medlabeler.engine.workflows.learn_loop import LoopEvent
    from medlabeler.engine.training.events import Event

    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, brain_project)
    loop, bar = widget.session.learning, widget.train.progress
    loop._on_event(LoopEvent("phase", phase="scoring", message="scoring the pool with v2"))
    loop._on_event(LoopEvent("scored", phase="scoring", done=112, total=235, message="scoring 112/235"))
    assert (bar.value(), bar.maximum(), bar.text()) == (112, 235, "scored 112 of 235")
    loop._on_event(LoopEvent("scored", phase="scoring", done=235, total=235, message="scoring 235/235"))
    assert bar.text() == "scored 235 of 235"
    loop._on_event(LoopEvent("phase", phase="scoring", message="scoring the pool with v3"))
    loop._on_event(LoopEvent("phase", phase="paused", message="learning paused"))
    loop._on_event(LoopEvent("scored", phase="scoring", done=128, total=235, message="scoring 128/235"))
    assert bar.text() == "scored 128 of 235"  # the pass goes on after a pause: no phase event says so
    loop._on_event(LoopEvent("failed", phase="scoring", message="scoring failed: disk full"))
    assert bar.text() == "0%"  # not the failed pass's count beside its failure
    loop._on_event(LoopEvent("phase", phase="training", message="training a candidate"))
    assert (bar.value(), bar.text()) == (0, "0%")  # a run's bar again
    loop._on_event(LoopEvent("train", phase="training", run_event=Event(kind="step", step=5, total_steps=20)))
    assert (bar.value(), bar.maximum(), bar.text()) == (5, 20, "25%")


def test_retrain_says_what_it_asked_for_until_the_loop_acts_on_it(make_napari_viewer, qtbot, brain_project,
                                                                   monkeypatch):
    """Retrain pressed during a round: its text was replaced by the round's next step report within
    a second, and a new user saw no feedback at all."""
    from medlabeler.engine.training.events import Event
    from medlabeler.engine.workflows.learn_loop import LoopControl, LoopEvent
    from medlabeler.ui.learning import LearningLoop

    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, brain_project)
    loop, train = widget.session.learning, widget.train
    monkeypatch.setattr(LearningLoop, "running", property(lambda self: True))  # a loop in a round
    loop.control = LoopControl()
    loop._on_event(LoopEvent("phase", phase="training", message="training: 0% of 100 steps (from v2)"))
    qtbot.mouseClick(train.train_button, Qt.MouseButton.LeftButton)
    assert loop.control.retrain_requested and loop.retrain_pending
    asked = train.status.text()
    assert asked.startswith("Retrain requested: a candidate trains after the run under way")
    step = Event(kind="step", step=40, total_steps=100, loss=0.5)
    loop._on_event(LoopEvent("train", phase="training", run_event=step, message="training: 40% of 100 steps"))
    assert train.status.text() == asked and train.progress.value() == 40  # the bar still moves
    loop._on_event(LoopEvent("phase", phase="training", message="training a candidate with the new labels"))
    loop._on_event(LoopEvent("train", phase="training", run_event=Event(kind="step", step=3, total_steps=100)))
    assert not loop.retrain_pending and train.status.text().startswith("step 3/100")
    # asked for where nothing can train: the loop's answer replaces the request
    loop._on_event(LoopEvent("phase", phase="idle", message="waiting for labels: 2 more start a candidate"))
    qtbot.mouseClick(train.train_button, Qt.MouseButton.LeftButton)
    answer = "Retrain: no candidate: training labels of two classes are needed (so far only white)"
    loop._on_event(LoopEvent("phase", phase="idle", message=answer))
    assert not loop.retrain_pending and train.status.text() == answer


def test_when_nobody_labels_the_loop_gives_a_short_round_a_full_run(make_napari_viewer, qtbot, brain_project,
                                                                    brain_files, monkeypatch):
    """Rounds train a third of the steps; a minute (here a second) without a label, the Train tab
    says a full run started, and its decision arrives like any other."""
    from medlabeler.engine.workflows import learn_loop

    monkeypatch.setenv("MEDLABELER_LEARN", "1")
    monkeypatch.setattr(learn_loop, "WARM_START_MIN_STEPS", 4)  # tiny rounds: a third of 24 steps
    _, masks = brain_files
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer)
    session, train, loop = widget.session, widget.train, widget.session.learning
    loop.config = {**TINY, "steps": 24}
    loop.options = {"full_run_after_s": 1.0}
    assert session.open_project(brain_project)
    project = session.project
    shown: list[str] = []
    loop.status_changed.connect(lambda: shown.append(train.loop_status.toolTip()))
    session.open_sample(project.samples(split="val")[0].id)
    paint_truth(session, masks)
    press(viewer, "s")
    session.open_next()

    def label(n: int) -> None:
        for _ in range(n):
            if session.sample.split != "train":  # the queue may ask for a validation label
                session.open_sample(project.samples(split="train", labeled=False)[0].id)
            paint_truth(session, masks)
            press(viewer, "n")

    label(1)  # the first model: a third of the steps from scratch, then, at rest, the full run
    qtbot.waitUntil(lambda: len(loop.decisions) == 2, timeout=180_000)
    short, full = (project.model(d.candidate) for d in loop.decisions)
    assert short.record["run"]["steps"] == 8 and full.record["run"]["steps"] == 24
    assert full.n_labels == short.n_labels == 1
    assert any(text.startswith("a full run of 24 steps from v") for text in shown)
    assert f"last decision: {loop.decisions[-1].message}" in train.loop_status.toolTip()
    qtbot.waitUntil(lambda: "waiting for labels" in loop.now, timeout=60_000)
    qtbot.wait(2500)
    assert len(loop.decisions) == 2, "one full run per set of labels"
    assert not workers.THREAD_CHECKS["violations"]
    session.shutdown()


def test_the_sample_whose_image_stopped_a_loop_run_comes_first_among_the_labeled(make_napari_viewer, brain_project):
    """The labeled list shows 50 rows by id: a damaged label further on had no row to right-click.
    The store notes the image as the run fails to read it; the failed run refreshes the queue."""
    from medlabeler.engine.workflows.learn_loop import LoopEvent
    from medlabeler.ui import engine_calls as calls

    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, brain_project)
    session = widget.session
    for sample in session.project.samples(split="train")[:2]:
        session.project.save_label(sample.id, np.zeros(sample.shape, np.uint8))
    last = [s.id for s in session.project.samples(labeled=True)][-1]
    assert calls.queue_rows(session.project, view="labeled", n=1)[0].sample != last
    session.project.note_unreadable(session.project.sample(last))  # what the run's failed read does
    refreshed = []
    session.queue_changed.connect(lambda *_: refreshed.append(True))
    session.learning._on_event(LoopEvent("failed", phase="training", message="training failed, the active model stays: …"))
    assert refreshed  # the failed run asked the queue table to show it
    # its whole scan no longer reads: the labeled slices of it come first, it among them
    rows = calls.queue_rows(session.project, view="labeled", n=2)
    assert last in {row.sample for row in rows} and all("its image no longer reads" in row.reason for row in rows)
    assert last in session.project.unreadable_ids()


def test_metrics_and_project_tabs_name_a_label_the_validation_labels_lack(make_napari_viewer, qtbot, brain_project,
                                                                           monkeypatch):
    """A radiologist's validation slices held no lesion: the Metrics tab showed the headline Dice
    alone, as if it measured the lesion too."""
    from medlabeler.engine.store import Project
    from medlabeler.engine.training import run_to_end
    from medlabeler.engine.workflows.train import train_project
    from medlabeler.ui.widgets.project import counts_text

    monkeypatch.setenv("MEDLABELER_LEARN", "0")
    with Project.open(brain_project) as project:
        train = [s for s in project.samples(split="train")][:2]
        val = next(s for s in project.samples(split="val"))
        for sample in train:
            mask = np.zeros(sample.shape, np.uint8)
            mask[10:30, 10:30], mask[32:40, 32:40] = 1, 2
            project.save_label(sample.id, mask)
        grey = np.zeros(val.shape, np.uint8)
        grey[10:30, 10:30] = 1  # no white matter in the validation label
        project.save_label(val.id, grey)
        run_to_end(train_project(project, method="supervised", steps=4, config={**TINY, "cap_threads": False}))
        words = counts_text(project.status(), "segmentation")
    assert words.endswith("No validation label holds white_matter: the validation Dice (what promotion compares) "
                          "leaves it out; label validation samples that show white_matter to measure it.")
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer)
    assert widget.session.open_project(brain_project)
    widget.tabs.setCurrentWidget(widget.metrics)
    qtbot.waitUntil(lambda: bool(widget.metrics.points), timeout=10_000)
    assert ". No validation label holds white_matter: the validation Dice" in widget.metrics.caption.text()
