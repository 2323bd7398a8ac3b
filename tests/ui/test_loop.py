"""The whole labeling round in the app, on a real brain MRI project: label, retrain, review, cancel."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from qtpy.QtCore import Qt

from medlabeler.ui import workers
from medlabeler.ui.app import build_app
from medlabeler.ui.layers import PREDICTION, UNCERTAINTY, hex_to_rgba
from medlabeler.ui.widgets.train import COL_METRIC, COL_STATUS, COL_VERSION
from tests.ui.projects import COLORS, NAMES, TINY, truth_slice

pytestmark = pytest.mark.gui
LEFT = Qt.MouseButton.LeftButton


def press(viewer, key: str) -> None:
    """A key press as napari's canvas dispatches it (active layer first, then the viewer)."""
    handler = viewer.window._qt_viewer._key_map_handler
    handler.press_key(key)
    handler.release_key(key)


def paint_truth(session, masks) -> int:
    sample = session.sample
    layer = session.view.labels_layer
    layer.data[sample.slice_index] = truth_slice(masks, sample)
    layer.refresh()
    return sample.id


def choose(widget, method: str, *, steps: int, init: str = "from scratch") -> None:
    widget.train.method_combo.setCurrentIndex(widget.train.method_combo.findData(method))
    widget.train.init_combo.setCurrentText(init)
    widget.train.steps.setValue(steps)
    widget.train.extra_config = dict(TINY)


def save_screenshot(image: np.ndarray, tmp_path: Path, name: str) -> Path:
    """Write a screenshot (tmp dir, and MEDLABELER_SCREENSHOTS when set) and check it is not blank."""
    from PIL import Image

    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert float(image[..., :3].std()) > 10, f"{name} screenshot is blank"
    folders = [tmp_path] + ([Path(os.environ["MEDLABELER_SCREENSHOTS"])] if os.environ.get("MEDLABELER_SCREENSHOTS") else [])
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(image[..., :3])).save(folder / f"{name}.png")
    return tmp_path / f"{name}.png"


def grab(widget) -> np.ndarray:
    image = widget.grab().toImage().convertToFormat(widget.grab().toImage().Format.Format_RGBA8888)
    ptr = image.constBits()
    array = np.frombuffer(ptr, np.uint8, count=image.sizeInBytes()).reshape(image.height(), image.bytesPerLine() // 4, 4)
    return array[:, : image.width()].copy()


def test_label_retrain_review_cancel(make_napari_viewer, qtbot, brain_project, brain_files, tmp_path, monkeypatch):
    _, masks = brain_files
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, brain_project)
    session = widget.session
    project = session.project

    # The first sample of the queue is open: its whole volume, jumped to its slice, with labels.
    first = session.sample
    assert first is not None and first.split == "train"
    image = session.view.layers["image"]
    assert image.data.ndim == 3 and tuple(image.scale) == (4.0, 4.0, 4.0)
    assert viewer.dims.point[0] == pytest.approx(first.slice_index * 4.0)
    labels = session.view.labels_layer
    assert list(labels.features["name"]) == ["background", *NAMES]
    for value, color in enumerate(COLORS, start=1):
        assert np.allclose(labels.colormap.map(value), hex_to_rgba(color))

    press(viewer, "a")  # no model yet: nothing to accept, said in the status line; the sample stays
    assert session.sample.id == first.id and "no prediction yet" in viewer.status

    # Label three training slices: paint, then 'n' saves and opens the next one.
    labeled = []
    for _ in range(3):
        labeled.append(paint_truth(session, masks))
        press(viewer, "n")
        assert session.sample.id not in labeled
    # ...and one validation slice, saved explicitly with 's'.
    val = next(s for s in project.samples(split="val") if s.id not in labeled)  # the queue may ask for one
    session.open_sample(val.id)
    paint_truth(session, masks)
    press(viewer, "s")
    assert widget.label.current_label.text() in ("saving…", "mask saved (v1, manual)")
    assert session.flush_saves()  # labels are written on the writer thread, in order
    assert widget.label.current_label.text() == "mask saved (v1, manual)"
    for sample_id in [*labeled, val.id]:
        assert project.label(sample_id).origin == "manual"
        assert project.label(sample_id).author == "tester"
    assert project.status()["labeled"] == 4
    assert "4 of 24 samples labeled" in widget.project.counts_label.text()

    session.open_next()
    qtbot.waitUntil(lambda: bool(widget.queue.rows), timeout=10_000)  # the table follows a turn later
    queue_before = [(row.sample, row.reason) for row in widget.queue.rows]
    assert queue_before and not any(row.sample in labeled for row in widget.queue.rows)

    # Retrain: a tiny U-Net for two epochs (4 steps each) on a worker; the UI stays live.
    choose(widget, "supervised", steps=8)
    qtbot.mouseClick(widget.train.train_button, LEFT)
    assert not widget.train.train_button.isEnabled() and widget.train.cancel_button.isEnabled()
    job = session.last_training
    qtbot.waitUntil(lambda: job.outcome is not None, timeout=120_000)
    assert job.outcome == "done", job.error
    qtbot.waitUntil(lambda: not session.jobs.busy, timeout=120_000)

    # New model version listed with its metric; loss plotted per epoch on the main thread.
    assert [m.version for m in project.models()] == [1]
    assert widget.train.models_table.rowCount() == 1
    assert "dice" in widget.train.models_table.item(0, COL_METRIC).text()
    assert widget.train.models_table.item(0, COL_STATUS).text() == "active"  # the first model: promoted
    assert len(widget.train.plot.losses) == 2
    widget.tabs.setCurrentWidget(widget.metrics)  # the plot is drawn when its tab is shown
    assert widget.metrics.points  # performance vs labels
    widget.tabs.setCurrentWidget(widget.label)
    # The open sample got its prediction overlay and uncertainty map; the queue re-ranked.
    assert session.view.has_layer(PREDICTION) and session.view.has_layer(UNCERTAINTY)
    overlay = session.view.layers[PREDICTION].data[session.sample.slice_index]
    assert overlay.shape == (59, 50) and overlay.max() > 0
    assert "Model v1" in widget.review.summary.text()
    qtbot.waitUntil(lambda: widget.queue.rows == session.queue_rows(), timeout=30_000)  # ranked on a thread
    queue_after = [(row.sample, row.reason) for row in widget.queue.rows]
    assert queue_after != queue_before
    assert project.scores(1), "the pool was re-scored with the new model"

    # Accept the prediction of a training sample as its label.
    if session.sample.split != "train":  # the queue's first may ask for a held-out label (below)
        session.open_sample(next(s.id for s in project.samples(split="train") if s.id not in project.labeled_ids()))
        qtbot.waitUntil(lambda: session.current_prediction is not None, timeout=60_000)
    accepted = session.sample.id
    qtbot.mouseClick(widget.review.accept_button, LEFT)
    assert session.flush_saves()
    assert project.label(accepted).origin == "accepted_prediction"
    assert np.array_equal(project.load_label(accepted), session.current_prediction.label)

    # Correct the prediction of the next one: copy it, paint over it, save.
    press(viewer, "n")
    qtbot.waitUntil(lambda: session.current_prediction is not None, timeout=60_000)
    corrected = session.sample.id
    qtbot.mouseClick(widget.review.edit_button, LEFT)
    session.view.labels_layer.data[session.sample.slice_index, :5, :5] = 2
    qtbot.mouseClick(widget.label.save_button, LEFT)
    assert session.flush_saves()
    assert project.label(corrected).origin == "corrected_prediction"

    # Reviewing from the keyboard: `a` accepts the prediction and opens the next sample.
    pending = next(s.id for s in project.samples(split="train") if s.id not in project.labeled_ids())
    session.open_sample(pending)
    qtbot.waitUntil(lambda: session.current_prediction is not None, timeout=60_000)
    model = session.current_prediction.model_version
    press(viewer, "a")
    assert session.flush_saves() and project.label(pending).origin == "accepted_prediction"
    assert session.sample.id != pending
    saved = np.asarray(project.load_label(pending))
    shares = ", ".join(f"{name} {100 * (saved == i + 1).sum() / saved.size:.1f}%" for i, name in enumerate(NAMES))
    # what `a` saved, said: a trial's accepted slices held a rare label's stray pixels, seen nowhere
    assert viewer.status == f"saved the label of sample {pending}; the prediction of v{model}, accepted ({shares})"
    # ...but never over strokes painted and not saved yet: they stay, and the status line says why
    stroked = next(s.id for s in project.samples(split="train") if s.id not in project.labeled_ids())
    session.open_sample(stroked)
    qtbot.waitUntil(lambda: session.current_prediction is not None, timeout=60_000)
    session.view.labels_layer.data[session.sample.slice_index, :4, :4] = 2
    press(viewer, "a")
    assert session.sample.id == stroked and "strokes not saved yet" in viewer.status
    assert session.view.labels_layer.data[session.sample.slice_index, :4, :4].tolist() == [[2] * 4] * 4
    press(viewer, "s")
    assert session.flush_saves() and project.label(stroked).origin == "manual"

    # A held-out sample's prediction is not accepted in one click: the model would grade itself.
    held_out = next(s for s in project.samples(split="test") if s.id not in project.labeled_ids())
    session.open_sample(held_out.id)
    qtbot.waitUntil(lambda: session.current_prediction is not None, timeout=60_000)
    assert not widget.review.accept_button.isEnabled()
    assert "test sample" in widget.review.accept_button.toolTip()
    assert not session.accept_prediction() and "Correct it" in viewer.status
    press(viewer, "a")  # refused: the sample stays open, its status line saying why
    assert session.sample.id == held_out.id and "Correct it" in viewer.status
    assert session.flush_saves() and held_out.id not in project.labeled_ids()
    # 'Correct it…' then s with no edit saves it (checked, maybe), with a warning that says what it is
    warned = []
    monkeypatch.setattr("medlabeler.ui.session._said", lambda words, **how: warned.append(words) or words)
    assert session.edit_prediction()
    press(viewer, "s")
    assert session.flush_saves() and project.label(held_out.id).origin == "accepted_prediction"
    assert [w for w in warned if "saved unedited from the model's prediction. A test label measures" in w]
    project.remove_label(held_out.id)
    # Nor does it replace a label someone drew or corrected.
    hand = next(i for i in labeled if project.sample(i).split == "train")
    session.open_sample(hand)
    qtbot.waitUntil(lambda: session.current_prediction is not None, timeout=60_000)
    assert not session.accept_prediction() and f"sample {hand} has your label" in viewer.status
    assert session.flush_saves() and project.label(hand).origin == "manual"

    save_screenshot(viewer.screenshot(canvas_only=False, flash=False), tmp_path, "app-after-retrain")
    save_screenshot(grab(widget), tmp_path, "medlabeler-dock")
    widget.tabs.setCurrentWidget(widget.train)
    qtbot.wait(50)
    save_screenshot(grab(widget), tmp_path, "train-tab")
    widget.tabs.setCurrentWidget(widget.label)

    # Cancel a run mid-way: nothing saved, the previous model stays active.
    choose(widget, "supervised", steps=2000)
    qtbot.mouseClick(widget.train.train_button, LEFT)
    job = session.last_training
    qtbot.waitUntil(lambda: job.events_seen >= 2, timeout=60_000)
    qtbot.mouseClick(widget.train.cancel_button, LEFT)
    # heard at once (a step of a whole CT takes tens of seconds on a CPU); no step report overwrites it
    assert widget.train.status.text().startswith("Cancelling") and not widget.train.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: job.outcome is not None and not job.running, timeout=60_000)  # ended: widgets updated
    assert job.outcome == "cancelled"
    assert [m.version for m in project.models()] == [1] and project.active_model().version == 1
    assert widget.train.train_button.isEnabled() and not widget.train.cancel_button.isEnabled()
    assert "previous model stays active" in widget.train.status.text()
    plot = widget.train.plot  # an empty plot says the run ended, not that it is training
    assert plot.losses or plot.metric_values or "training" not in plot.empty_text.get_text()

    # A run that fails: the error in plain words, buttons back, the previous model still active.
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    assert session.start_training("supervised", init="pretrained", epochs=1, config=TINY)
    job = session.last_training
    # the outcome is known when the worker errs; the message follows when it has finished
    qtbot.waitUntil(lambda: job.outcome is not None and not job.running, timeout=60_000)
    assert job.outcome == "failed"
    assert shown == ["Training (supervised) stopped: no pretrained encoder in this project yet: run pretraining first"]
    assert widget.train.train_button.isEnabled() and project.active_model().version == 1

    # A second model: promoted only if its validation Dice is not worse; activate it by hand if
    # kept, then roll back to the first from the versions table.
    choose(widget, "supervised", steps=4, init="from active model")
    qtbot.mouseClick(widget.train.train_button, LEFT)
    job = session.last_training
    qtbot.waitUntil(lambda: job.outcome is not None, timeout=120_000)
    qtbot.waitUntil(lambda: not session.jobs.busy, timeout=120_000)
    decision = job.result.decision
    assert decision.candidate == 2 and decision.active == 1 and widget.train.status.text() == decision.message
    if not decision.promoted:
        assert widget.train.models_table.item(0, COL_STATUS).text().startswith("not promoted")
        assert project.active_model().version == 1
        widget.train.models_table.selectRow(0)
        qtbot.mouseClick(widget.train.activate_button, LEFT)
        qtbot.waitUntil(lambda: not session.jobs.busy, timeout=60_000)
    assert project.active_model().version == 2 and session.current_prediction.model_version == 2
    assert widget.train.rollback_button.isEnabled()
    widget.train.models_table.selectRow(1)  # newest first: row 1 is v1
    qtbot.mouseClick(widget.train.activate_button, LEFT)
    qtbot.waitUntil(lambda: not session.jobs.busy, timeout=60_000)
    assert project.active_model().version == 1
    assert session.current_prediction.model_version == 1
    assert widget.train.models_table.item(1, COL_VERSION).text() == "● v1"

    # The loop removes old weights to save space: the row stays and says so; it cannot come back.
    project.remove_model_weights([2])
    widget.train.refresh_models()
    assert widget.train.models_table.item(0, COL_STATUS).text().startswith("weights removed (")
    shown_info = []
    monkeypatch.setattr("napari.utils.notifications.show_info", shown_info.append)
    widget.train.models_table.selectRow(0)
    qtbot.mouseClick(widget.train.activate_button, LEFT)
    assert project.active_model().version == 1 and "v2: its weights were removed" in shown_info[0]

    # The queue's other view: the labeled samples.
    widget.queue.view_combo.setCurrentText("labeled")
    assert set(widget.queue.sample_ids()) == {*labeled, val.id, accepted, corrected, pending, stroked}
    assert workers.THREAD_CHECKS["calls"] > 50 and not workers.THREAD_CHECKS["violations"]
    session.shutdown()
    assert session.project is None and not any(layer.name.startswith("medlabeler") for layer in viewer.layers)
