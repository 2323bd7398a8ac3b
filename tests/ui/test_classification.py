"""Classification in the app: class keys and buttons, retrain, probabilities, Grad-CAM, accept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import Qt

from medlabeler.ui.app import build_app
from medlabeler.ui.layers import GRADCAM
from tests.ui.projects import CLASSES, TINY
from tests.ui.test_loop import grab, press, save_screenshot

pytestmark = pytest.mark.gui
LEFT = Qt.MouseButton.LeftButton


def test_classify_with_keys_retrain_and_review(make_napari_viewer, qtbot, class_project, brain_pngs, tmp_path):
    _, classes = brain_pngs
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, class_project)
    session = widget.session
    project = session.project
    assert session.view.labels_layer is None  # no painting for classification
    assert [b.text() for b in widget.label.class_buttons] == [f"1: {CLASSES[0]}", f"2: {CLASSES[1]}"]

    def truth():
        return classes[Path(session.sample.path).name]

    # Keys 1-9 label the open image and open the next one (the Image layer's own 1/2 keys lose).
    done = {}
    for _ in range(6):
        sample, value = session.sample, truth()
        press(viewer, str(value + 1))
        done[sample.id] = value
        assert session.sample.id != sample.id
    # Validation images, with the buttons.
    for sample in project.samples(split="val"):
        session.open_sample(sample.id)
        done[sample.id] = truth()
        qtbot.mouseClick(widget.label.class_buttons[truth()], LEFT)
    assert session.flush_saves()  # labels are written on the writer thread, in order
    assert {sid: project.load_label(sid) for sid in done} == done
    assert all(project.label(sid).origin == "manual" for sid in done)

    widget.train.method_combo.setCurrentIndex(widget.train.method_combo.findData("supervised"))
    widget.train.init_combo.setCurrentText("from scratch")
    widget.train.steps.setValue(2)  # one epoch of 2 steps
    widget.train.extra_config = {**TINY, "stem": "small", "steps_per_epoch": 2}
    session.open_next()
    qtbot.mouseClick(widget.train.train_button, LEFT)
    job = session.last_training
    qtbot.waitUntil(lambda: job.outcome is not None, timeout=120_000)
    assert job.outcome == "done", job.error
    qtbot.waitUntil(lambda: not session.jobs.busy, timeout=120_000)

    # Review: class probabilities, and the Grad-CAM of the predicted class over the image.
    pred = session.current_prediction
    assert pred is not None and pred.probabilities.shape == (2,)
    assert np.isclose(pred.probabilities.sum(), 1.0, atol=1e-4)
    assert [bar.format().split(":")[0] for bar in widget.review.bars] == CLASSES
    cam = session.view.layers[GRADCAM]
    assert cam.data.shape == session.view.layers["image"].data.shape[:2]
    assert 0.0 <= cam.data.min() and cam.data.max() <= 1.0 + 1e-6
    assert cam.colormap.name == "inferno" and cam.blending == "additive"
    widget.review.show_cam.setChecked(False)
    assert not cam.visible
    widget.review.show_cam.setChecked(True)

    widget.tabs.setCurrentWidget(widget.review)
    qtbot.wait(50)  # let the newly shown tab lay out its probability bars
    assert all(bar.isVisible() and bar.height() > 0 for bar in widget.review.bars)
    save_screenshot(grab(widget), tmp_path, "review-classification")
    # Accept the prediction: stored with its origin.
    sample = session.sample
    qtbot.mouseClick(widget.review.accept_button, LEFT)
    assert session.flush_saves()
    assert project.label(sample.id).origin == "accepted_prediction"
    assert project.load_label(sample.id) == int(pred.label)
    # what `a` saved, said ("saved the label of sample 5" hid a 49.7% / 48.1% call)
    said = f"{CLASSES[int(pred.label)]}, the prediction of v{pred.model_version} ({pred.probabilities.max():.1%}), accepted"
    qtbot.waitUntil(lambda: said in str(viewer.status), timeout=10_000)
    from types import SimpleNamespace

    near_tie = SimpleNamespace(label=0, model_version=3, probabilities=np.array([0.52, 0.48]))
    assert session._accepted_class_note(near_tie) == (f"{CLASSES[0]}, the prediction of v3 (52.0%), accepted: "
                                                      f"a close call against {CLASSES[1]} (48.0%)")
    tie = SimpleNamespace(label=0, model_version=3, probabilities=np.array([0.5, 0.5]))
    assert session._accepted_class_note(tie).endswith(f"a close call against {CLASSES[1]} (50.0%)")
    # the "labeled" view names each class (it said "labeled" on every row)
    from medlabeler.ui import engine_calls as calls

    rows = {row.sample: row.reason for row in calls.queue_rows(project, view="labeled")}
    assert all(rows[sid] == f"labeled: {CLASSES[value]} ({project.sample(sid).split})" for sid, value in done.items())
    assert rows[sample.id] == f"labeled: {CLASSES[int(pred.label)]}, the model's, accepted ({sample.split})"


def test_a_damaged_image_does_not_open_and_a_key_labels_what_is_on_screen(make_napari_viewer, tmp_path, brain_pngs,
                                                                         monkeypatch):
    """A PNG cut short after the import failed to open with a bare "Error calling Python override",
    and the next class key saved its class to that image, never shown, instead of the one on screen."""
    import shutil

    from medlabeler.engine.project.project_import import create_project

    images, _ = brain_pngs
    shutil.copytree(images, tmp_path / "images")
    project, _ = create_project(tmp_path / "proj", tmp_path / "images", task="classification", names=CLASSES)
    damaged = next(s for s in project.samples() if s.split == "train")
    project.close()
    data = Path(damaged.path).read_bytes()
    Path(damaged.path).write_bytes(data[: len(data) // 3])
    errors = []
    monkeypatch.setattr("medlabeler.ui.session.show_error_message", errors.append)
    viewer = make_napari_viewer(show=True)
    session = build_app(viewer, tmp_path / "proj").session
    if session.sample.id == damaged.id:  # it was first in the queue: the app could not open it
        session.open_next()
    shown = session.sample
    session.open_sample(damaged.id)
    assert session.sample.id == shown.id and len(errors) == 1
    assert errors[0].startswith(f"Cannot open sample {damaged.id}: ") and Path(damaged.path).name in errors[0]
    assert damaged.id in session.project.blank_ids()
    assert damaged.id not in [row.sample for row in session.queue_rows()]  # `n` does not stop there again
    session.advance_after_class = False
    press(viewer, "2")
    assert session.flush_saves()
    assert session.project.label(damaged.id) is None and session.project.load_label(shown.id) == 1


def test_when_the_first_sample_cannot_be_read_the_app_opens_the_next(make_napari_viewer, tmp_path, brain_pngs,
                                                                     monkeypatch):
    """The queue's first image damaged since the import: the app said so and showed napari's
    welcome screen, no sample open (seen checking the right-click menu on a new user's project)."""
    import shutil

    from medlabeler.engine.project.project_import import create_project
    from medlabeler.ui import engine_calls as calls

    images, _ = brain_pngs
    shutil.copytree(images, tmp_path / "images")
    project, _ = create_project(tmp_path / "proj", tmp_path / "images", task="classification", names=CLASSES)
    first = project.sample(calls.queue_rows(project)[0].sample)
    project.close()
    Path(first.path).write_bytes(Path(first.path).read_bytes()[:300])
    errors = []
    monkeypatch.setattr("medlabeler.ui.session.show_error_message", errors.append)
    viewer = make_napari_viewer(show=True)
    session = build_app(viewer, tmp_path / "proj").session
    assert len(errors) == 1 and errors[0].startswith(f"Cannot open sample {first.id}: ")
    assert session.sample is not None and session.sample.id != first.id


def test_the_label_of_an_image_damaged_after_it_was_labeled_can_be_taken_back_in_the_app(
        make_napari_viewer, qtbot, tmp_path, brain_pngs, monkeypatch):
    """A new user's labeled PNG cut short after the import: every training run stopped at it and said
    "take its label back (Remove label…)", but the app could not open it, and Remove label acts on
    the sample open. A right-click on its row in the queue takes it back; the notification puts the
    file's name and the problem before the folder (it had been cut at "/tmp/trial37/")."""
    import shutil

    from medlabeler.engine.project.project_import import create_project

    images, _ = brain_pngs
    shutil.copytree(images, tmp_path / "images")
    project, _ = create_project(tmp_path / "proj", tmp_path / "images", task="classification", names=CLASSES)
    damaged = next(s for s in project.samples() if s.split == "train")
    project.save_label(damaged.id, 1, author="test")
    project.close()
    Path(damaged.path).write_bytes(Path(damaged.path).read_bytes()[:300])
    errors = []
    monkeypatch.setattr("medlabeler.ui.session.show_error_message", errors.append)
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, tmp_path / "proj")
    session = widget.session
    session.open_sample(damaged.id)
    name, folder = Path(damaged.path).name, Path(damaged.path).parent
    assert errors and errors[-1].startswith(f"Cannot open sample {damaged.id}: {name}: image data is truncated")
    assert f"(in {folder})" in errors[-1]
    assert "right-click its row in the queue (labeled) > Remove label" in errors[-1]
    queue = widget.queue
    queue.view_combo.setCurrentText("labeled")
    row = queue.sample_ids().index(damaged.id)
    open_it, remove, restore = queue.row_actions(row)
    assert not restore.isEnabled()  # one saved version, its label now: nothing earlier to restore
    assert remove.text() == f"Remove label of sample {damaged.id}" and remove.isEnabled()
    remove.trigger()
    assert session.project.label(damaged.id) is None
    qtbot.waitUntil(lambda: damaged.id not in queue.sample_ids(), timeout=5000)  # the labeled view follows
    queue.view_combo.setCurrentText("to label")
    assert not queue.row_actions(0)[1].isEnabled()  # nothing to take back


def test_a_run_stopped_by_a_labeled_image_damaged_since_lists_it_first_among_the_labeled(
        make_napari_viewer, qtbot, tmp_path, brain_pngs):
    """The labeled list shows the first 50 labels by id: a damaged one further on, which stops every
    run, could not be reached by a right-click (a review). The sample that stopped the run is
    listed first, with why, and taken back from there."""
    from medlabeler.ui import engine_calls as calls

    train = _copied_and_labeled(brain_pngs, tmp_path)
    damaged = train[-1]
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, tmp_path / "proj")
    session = widget.session
    _join_labeled_check()  # damaged while the app runs, after its check at opening
    Path(damaged.path).write_bytes(Path(damaged.path).read_bytes()[:300])
    assert calls.queue_rows(session.project, view="labeled", n=1)[0].sample != damaged.id  # by id at first
    assert session.start_training("supervised", steps=2, config={**TINY, "stem": "small"})
    job = session.jobs.training
    qtbot.waitUntil(lambda: job.outcome is not None, timeout=120_000)
    assert job.outcome == "failed" and damaged.id in session.project.unreadable_ids()  # noted as the run read it
    assert job.error.startswith(f"Training (supervised) stopped: {Path(damaged.path).name}: image data is truncated")
    first = calls.queue_rows(session.project, view="labeled", n=1)[0]
    assert first.sample == damaged.id and "its image no longer reads: right-click > Remove label" in first.reason
    queue = widget.queue
    queue.view_combo.setCurrentText("labeled")
    assert queue.sample_ids()[0] == damaged.id
    queue.row_actions(0)[1].trigger()
    assert session.project.label(damaged.id) is None


def _copied_and_labeled(brain_pngs, tmp_path) -> list:
    """A classification project over a copy of the PNGs (they get damaged), every training sample
    labeled; its training samples. Closed: the app opens it."""
    import shutil

    from medlabeler.engine.project.project_import import create_project

    images, _ = brain_pngs
    shutil.copytree(images, tmp_path / "images")
    project, _ = create_project(tmp_path / "proj", tmp_path / "images", task="classification", names=CLASSES)
    train = project.samples(split="train")
    for k, sample in enumerate(train):
        project.save_label(sample.id, k % 2, author="test")
    project.close()
    return train


def _join_labeled_check() -> None:
    import threading

    for thread in threading.enumerate():
        if thread.name == "medlabeler-labeled-check":
            thread.join(30)


def test_a_labeled_image_damaged_while_the_app_was_closed_is_named_as_the_project_opens(
        make_napari_viewer, qtbot, tmp_path, brain_pngs, monkeypatch):
    """Before, such an image was found only when a run failed on it or the clinician opened it: now
    a check at opening names it and lists it first among the labeled, where a right-click takes the
    label back. An image only touched since (same pixels) is fine and not named."""
    import os

    train = _copied_and_labeled(brain_pngs, tmp_path)
    damaged, touched = train[-1], train[0]
    whole = Path(damaged.path).read_bytes()
    Path(damaged.path).write_bytes(whole[:300])
    os.utime(touched.path, (1, 1))
    warned = []
    monkeypatch.setattr("napari.utils.notifications.show_warning", warned.append)
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, tmp_path / "proj")
    session = widget.session
    qtbot.waitUntil(lambda: bool(warned), timeout=30_000)
    assert warned[0].startswith(f"1 labeled sample no longer reads: {Path(damaged.path).name}: image data is truncated")
    assert session.project.unreadable_ids() >= {damaged.id} and touched.id not in session.project.unreadable_ids()
    assert touched.path not in session.project.check_labeled_sources().readable  # its new fingerprint recorded
    queue = widget.queue
    queue.view_combo.setCurrentText("labeled")
    qtbot.waitUntil(lambda: queue.sample_ids()[:1] == [damaged.id], timeout=5000)
    # put back, as the messages advise: Refresh reads it again and it is listed as before (it had
    # stayed "no longer reads" for the rest of the session: a trial)
    Path(damaged.path).write_bytes(whole)
    qtbot.mouseClick(queue.refresh_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: damaged.id not in session.project.unreadable_ids(), timeout=30_000)
    qtbot.waitUntil(lambda: queue.sample_ids()[:1] != [damaged.id], timeout=5000)
    assert session.project.label(damaged.id) is not None
    Path(damaged.path).write_bytes(whole[:300])  # damaged again: its label taken back from the list
    session.project.note_unreadable(session.project.sample(damaged.id))  # as a run's failed read does
    session.queue_changed.emit()
    qtbot.waitUntil(lambda: queue.sample_ids()[:1] == [damaged.id], timeout=5000)
    queue.row_actions(0)[1].trigger()
    assert session.project.label(damaged.id) is None
