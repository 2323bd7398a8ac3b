"""Labeling as a clinician does it, driven only through keys, widgets and mouse strokes on the canvas.

One "next": what the app opens at start and on `n` is the queue table's first row and the first
line of `medlabeler queue`, and the app logs it as ``opened sample <id>``.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import QEvent, QPointF, Qt
from qtpy.QtGui import QMouseEvent
from qtpy.QtWidgets import QApplication, QWidget

from medlabeler.cli import main
from medlabeler.ui.app import NATIVE_CANVAS_ENV, build_app, fit_window, give_canvas_its_own_window, wants_native_canvas
from medlabeler.ui.layers import LABELS, PREDICTION, STACK, UNCERTAINTY, volume_key
from medlabeler.ui.widgets.train import COL_METRIC, COL_VERSION
from tests.ui.projects import TINY, truth_slice
from tests.ui.test_loop import press, save_screenshot

pytestmark = pytest.mark.gui
OPENED = re.compile(r"opened sample (\d+)")


@pytest.fixture
def trained_project(brain_project, brain_files):
    """The brain slabs with 3 labels, a tiny model and its scores: the queue ranks by uncertainty."""
    from medlabeler.engine.workflows.active_loop import score_project
    from medlabeler.engine.workflows.train import train_project
    from medlabeler.engine.store import Project
    from medlabeler.engine.training import run_to_end

    _, masks = brain_files
    with Project.open(brain_project) as project:
        for split, count in (("train", 2), ("val", 1)):
            for sample in project.samples(split=split)[:count]:
                project.save_label(sample.id, truth_slice(masks, sample))
        run_to_end(train_project(project, method="supervised", config={**TINY, "steps": 3}))
        run_to_end(score_project(project))
    return brain_project


def cli_first(project_path, capsys) -> int:
    capsys.readouterr()
    assert main(["queue", str(project_path), "--n", "3", "--json"]) == 0
    return json.loads(capsys.readouterr().out)[0]["sample"]


def last_opened(caplog) -> int:
    ids = [int(m.group(1)) for r in caplog.records if r.name == "medlabeler.ui.session" and (m := OPENED.search(r.getMessage()))]
    assert ids, "the app logged no 'opened sample <id>'"
    return ids[-1]


def stroke(viewer, points_yx, *, button=Qt.MouseButton.LeftButton) -> None:
    """A mouse drag on napari's canvas through (y, x) world points, as Qt delivers it."""
    canvas = viewer.window._qt_viewer.canvas.native
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    cy, cx = camera.center[-2:]
    # the camera may show rows upwards and columns leftwards (a NIfTI in RAS order, shown radiologically)
    down = -1 if str(camera.orientation2d[0]) == "up" else 1
    right = -1 if str(camera.orientation2d[1]) == "left" else 1

    def at(y, x):
        return QPointF(canvas.width() / 2 + right * (x - cx) * camera.zoom,
                       canvas.height() / 2 + down * (y - cy) * camera.zoom)

    def send(kind, point, buttons):
        event = QMouseEvent(kind, point, canvas.mapToGlobal(point), button, buttons, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(canvas, event)
        QApplication.processEvents()

    points = [at(y, x) for y, x in points_yx]
    send(QEvent.Type.MouseButtonPress, points[0], button)
    for point in points[1:]:
        send(QEvent.Type.MouseMove, point, button)
    send(QEvent.Type.MouseButtonRelease, points[-1], Qt.MouseButton.NoButton)


def screenshot(viewer, tmp_path, name):
    return save_screenshot(np.asarray(viewer.screenshot(canvas_only=False, flash=False)), tmp_path, name)


def assert_bold_row_fits(table) -> None:
    """The open sample's row is bold: its sample, where and score fit their columns on one line."""
    from qtpy.QtGui import QFontMetrics
    from qtpy.QtWidgets import QStyle

    margin = table.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, table) + 1  # Qt's, each side
    bold_rows = [r for r in range(table.rowCount()) if table.item(r, 0).font().bold()]
    assert bold_rows
    for r in bold_rows:
        for column in range(3):
            item = table.item(r, column)
            width = QFontMetrics(item.font()).horizontalAdvance(item.text())
            assert width <= table.columnWidth(column) - 2 * margin, (item.text(), width, table.columnWidth(column))


def test_the_open_sample_s_bold_row_fits_the_queue_s_columns(make_napari_viewer):
    """Sized for the plain font, the bold row's "slice 119" broke over two lines (seen on the demo)."""
    from qtpy.QtWidgets import QTableWidgetItem

    from medlabeler.ui.widgets.queue import QueueWidget

    queue = QueueWidget(make_napari_viewer(show=True))
    table = queue.table
    table.setRowCount(3)
    for r, (sample, where) in enumerate((("120", "slice 119"), ("133", "slice 132"), ("48", "slice 47"))):
        for c, text in enumerate((sample, where, "0.512", "entropy 1.02")):
            table.setItem(r, c, QTableWidgetItem(text))
    queue._fit_columns([0, 1, 2], whole=True)  # as the table fills, before the open sample's row turns bold
    font = table.item(0, 0).font()
    font.setBold(True)
    for c in range(4):
        table.item(0, c).setFont(font)
    assert_bold_row_fits(table)


def queue_cells(table) -> list[tuple]:
    from qtpy.QtCore import Qt

    return [tuple((table.item(r, c).text(), table.item(r, c).toolTip(), table.item(r, c).data(Qt.ItemDataRole.UserRole))
                  for c in range(table.columnCount())) for r in range(table.rowCount())]


def test_the_queue_table_changes_only_the_rows_that_changed(make_napari_viewer):
    """After a save the queue is the same rows less the one saved: those rows keep their cells (a
    table rebuilt whole at each save stalled the window 13-36 ms while the loop trained), and
    whatever the change, the table shows what a table filled afresh shows."""
    from medlabeler.ui.engine_calls import QueueRow
    from medlabeler.ui.widgets.queue import QueueWidget

    viewer = make_napari_viewer()
    queue, fresh = QueueWidget(viewer), QueueWidget(viewer)
    rows = [QueueRow(s, 1.0 / (s + 1), f"entropy {1.0 / (s + 1):.2f} (rank {s} of 60)") for s in range(10)]
    queue._fill(None, rows)
    kept = [queue.table.item(r, c) for r in range(1, 10) for c in range(4)]
    saved_first = rows[1:] + [QueueRow(10, 0.05, "entropy 0.05 (rank 10 of 60)")]
    queue._fill(None, saved_first)
    assert [queue.table.item(r, c) for r in range(9) for c in range(4)] == kept  # the same cells, moved up
    fresh._fill(None, saved_first)
    assert queue_cells(queue.table) == queue_cells(fresh.table)

    rng = np.random.default_rng(0)
    for _ in range(20):  # rows gone, new, moved, rescored: always what a fresh table shows
        ids = rng.choice(30, size=int(rng.integers(0, 15)), replace=False)
        shuffled = [QueueRow(int(s), None if s % 7 == 0 else float(rng.random()), f"why {int(rng.integers(3))} (of {int(rng.integers(3))})")
                    for s in ids]
        queue._fill(None, shuffled)
        fresh.table.setRowCount(0)
        fresh.rows = []
        fresh._fill(None, shuffled)
        assert queue_cells(queue.table) == queue_cells(fresh.table)


def test_queue_rows_stay_one_line_high_in_a_narrow_dock(make_napari_viewer, qtbot):
    """At 1366x768 each wrapped reason made a row three lines high and the table showed three rows.
    Each row is one line, the reason cut with an ellipsis and whole in its tooltip, also after a
    new row wider in "where" narrowed the stretched "why" column."""
    from medlabeler.ui.engine_calls import QueueRow
    from medlabeler.ui.widgets.queue import QueueWidget

    queue = QueueWidget(make_napari_viewer())
    queue.table.setFixedWidth(330)
    queue.show()
    qtbot.waitExposed(queue)
    reason = "entropy 0.912, among the most uncertain, spread over them (hybrid: 10 picks covering the 40 most)"
    rows = [QueueRow(s, 0.9, reason) for s in range(5)]
    queue._fill(None, rows)
    wide = QueueRow(123456789, 0.9, reason)
    queue._fill(None, rows[1:] + [wide])
    table = queue.table
    line = table.fontMetrics().lineSpacing()
    assert all(table.rowHeight(r) < 2 * line for r in range(table.rowCount())), [table.rowHeight(r) for r in range(5)]
    why = table.item(0, 3)
    assert why.toolTip() == reason and why.text() == "among the most uncertain, spread over them"
    assert table.fontMetrics().horizontalAdvance(why.text()) > table.columnWidth(3)  # cut, not wrapped


def assert_canvas_drawn(viewer, path) -> None:
    """The canvas's part of a window screenshot shows the slice (a native canvas drawn black, or
    left out of the grab, would leave it flat)."""
    from PIL import Image

    canvas = viewer.window._qt_viewer.canvas.native
    at = canvas.mapTo(viewer.window._qt_window, canvas.rect().topLeft())
    shot = np.asarray(Image.open(path))
    part = shot[at.y():at.y() + canvas.height(), at.x():at.x() + canvas.width()]
    assert part.shape[0] > 100 and float(part.std()) > 10, "the canvas is flat in the window's screenshot"


def test_the_canvas_gets_a_window_of_its_own_only_before_the_first_show(make_napari_viewer, monkeypatch):
    """`medlabeler app` gives napari's canvas a native window (no OpenGL compositing of the whole
    window at each dock repaint); the plugin, docked into a viewer on screen, leaves it be."""
    for setting, expected in (("1", True), ("0", False), ("", QApplication.platformName() == "xcb")):
        monkeypatch.setenv(NATIVE_CANVAS_ENV, setting)
        assert wants_native_canvas() is expected
    shown = make_napari_viewer(show=True)
    assert not give_canvas_its_own_window(shown)
    assert not shown.window._qt_viewer.canvas.native.testAttribute(Qt.WidgetAttribute.WA_NativeWindow)


def test_the_apps_viewer_draws_napari_notifications_over_its_native_canvas(qtbot, monkeypatch):
    """napari parents its notification toasts (errors such as "label ... was not saved") to the
    canvas widget: with the canvas in a native window of its own they must still be on screen,
    above it (read from the X server's screen, where a native window could hide them)."""
    from napari.utils.notifications import show_info

    from medlabeler.ui.app import new_viewer

    monkeypatch.setenv(NATIVE_CANVAS_ENV, "1")
    viewer = new_viewer("test", show=False)
    try:
        viewer.window.show()
        window = viewer.window._qt_window
        window.setGeometry(0, 0, 1200, 800)
        canvas = viewer.window._qt_viewer.canvas.native
        assert canvas.internalWinId()
        viewer.add_image(np.zeros((64, 64), np.float32))  # a flat canvas: only the toast draws on it
        show_info("a notification over the canvas")
        qtbot.waitUntil(lambda: any(w.isVisible() and type(w).__name__ == "NapariQtNotification"
                                    for w in window.findChildren(QWidget)), timeout=5_000)
        toast = next(w for w in window.findChildren(QWidget) if type(w).__name__ == "NapariQtNotification")
        qtbot.wait(500)  # its fade-in

        def on_screen(widget, width, height):
            at = widget.mapToGlobal(widget.rect().topLeft())
            image = QApplication.primaryScreen().grabWindow(0, at.x(), at.y(), width, height).toImage()
            return np.array([[image.pixelColor(x, y).value() for x in range(0, width, 2)] for y in range(0, height, 2)])

        assert float(on_screen(canvas, 200, 120).std()) < 2  # the canvas alone is flat
        assert float(on_screen(toast, toast.width(), toast.height()).std()) > 10, "the notification is hidden"
    finally:
        viewer.close()


def open_predicted(make_napari_viewer, qtbot, project_dir):
    """The app on ``project_dir`` once the open sample's prediction is shown and the background
    is quiet; returns the viewer, the dock and a test of that quiet."""
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, project_dir)
    session = widget.session
    settled = lambda: not session.jobs.busy and not session.rankings.busy  # noqa: E731
    qtbot.waitUntil(lambda: session.current_prediction is not None and settled(), timeout=60_000)
    return viewer, widget, settled


@pytest.mark.parametrize("narrow", [True, False])
def test_on_a_narrow_screen_the_app_starts_with_napari_layer_controls_hidden(make_napari_viewer, qtbot, monkeypatch,
                                                                              narrow):
    """A 1366 px laptop at 125% scaling (1093 of Qt's pixels): napari's layer controls and the dock
    each at their narrowest left the scan 362 of them, a third of the width."""
    from medlabeler.ui import app

    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_info", shown.append)
    monkeypatch.setattr(app, "NARROW_SCREEN", 10_000 if narrow else 1_000)  # this screen: 1600 wide
    viewer = make_napari_viewer(show=True)
    build_app(viewer)
    controls = viewer.window._qt_viewer.dockLayerControls
    fit_window(viewer)
    qtbot.wait(50)
    assert controls.isVisible() is not narrow and viewer.window._qt_viewer.dockLayerList.isVisible()
    assert (shown == [app.LAYER_CONTROLS_HIDDEN_NOTE]) is narrow


def test_label_three_samples_from_the_keyboard_and_the_queue(make_napari_viewer, qtbot, trained_project, tmp_path,
                                                              caplog, capsys):
    caplog.set_level(logging.INFO, logger="medlabeler.ui.session")
    viewer = make_napari_viewer(show=False)  # as `medlabeler app` starts (app.new_viewer):
    assert give_canvas_its_own_window(viewer)  # the canvas in a native window, before the first show
    viewer.window.show()
    widget = build_app(viewer, trained_project)
    fit_window(viewer)
    session, project = widget.session, widget.session.project
    qtbot.waitUntil(lambda: session.current_prediction is not None and not session.jobs.busy, timeout=60_000)
    canvas = viewer.window._qt_viewer.canvas.native
    assert canvas.internalWinId()  # a window of its own, drawn into the window's screenshot below
    assert_canvas_drawn(viewer, screenshot(viewer, tmp_path, "0-start"))
    assert widget.label.keys.text().startswith("<b>Keys</b>") and "eraser" in widget.label.keys.text()

    # Layers: image, prediction, the overlays (hidden), then the clinician's labels on top, selected.
    ours = [layer.name.removeprefix("medlabeler ") for layer in viewer.layers]
    assert ours == [k for k in STACK if k in ours] and ours[-1] == LABELS and PREDICTION in ours
    assert viewer.layers.selection.active is session.view.labels_layer
    assert session.view.layers[PREDICTION].visible and not session.view.layers[UNCERTAINTY].visible
    press(viewer, "u")
    assert session.view.layers[UNCERTAINTY].visible and widget.review.show_uncertainty.isChecked()
    screenshot(viewer, tmp_path, "0-uncertainty-shown")
    press(viewer, "u")
    assert not session.view.layers[UNCERTAINTY].visible and not widget.review.show_uncertainty.isChecked()
    press(viewer, "g")  # Grad-CAM belongs to classification: said so, nothing toggled
    assert viewer.status == "no grad-cam map in a segmentation project"

    # The app's first sample is the queue's first row and `medlabeler queue`'s first line.
    assert session.sample.id == last_opened(caplog) == widget.queue.rows[0].sample == cli_first(trained_project, capsys)
    screenshot(viewer, tmp_path, "1-first-sample")
    labels = session.view.labels_layer
    done = []
    for round_ in range(3):
        sample = session.sample
        press(viewer, "2")  # white matter, and the brush
        assert labels.selected_label == 2 and labels.mode == "paint"
        press(viewer, "e")  # napari's own eraser key still works...
        assert labels.mode == "erase"
        press(viewer, "1")  # ...and a digit takes the brush back, with grey matter
        assert labels.selected_label == 1 and labels.mode == "paint"
        before = np.asarray(labels.data).copy()
        y = 60.0 + 40 * round_  # world (mm): the slabs are 4 mm voxels
        stroke(viewer, [(y, x) for x in np.linspace(40, 160, 16)])
        changed = np.argwhere(np.asarray(labels.data) != before)
        assert len(changed) > 20 and set(changed[:, 0]) == {sample.slice_index}  # only the open slice
        assert set(np.asarray(labels.data)[tuple(changed.T)]) == {1}
        # where the mouse went: row y / 4, columns 10 to 40, though the slabs (RAS) are shown turned
        assert tuple(map(str, viewer.scene.camera.orientation2d)) == ("up", "left")
        assert abs(np.median(changed[:, 1]) - y / 4) <= 2
        assert changed[:, 2].min() <= 40 / 4 + 3 and changed[:, 2].max() >= 160 / 4 - 3
        screenshot(viewer, tmp_path, f"{2 + 2 * round_}-painted-sample-{sample.id}")

        press(viewer, "n")  # saves, then opens the top of the queue as it now stands
        assert widget.label.current_label.text() == "not labeled yet"  # the new sample
        assert session.flush_saves()  # the label lands on the writer thread
        saved = project.load_label(sample.id)
        assert project.label(sample.id).origin == "manual" and int((saved == 1).sum()) == len(changed)
        done.append(sample.id)
        assert session.sample.id not in done
        # the table follows `n` on the next turn of the event loop (it never holds up the slice)
        qtbot.waitUntil(lambda: bool(widget.queue.rows) and widget.queue.rows[0].sample not in done, timeout=10_000)
        first_row = widget.queue.rows[0].sample
        assert session.sample.id == last_opened(caplog) == first_row == cli_first(trained_project, capsys)
        assert widget.queue.table.item(0, 0).text() == str(first_row)
        assert_bold_row_fits(widget.queue.table)
        qtbot.waitUntil(lambda: session.current_prediction is not None, timeout=60_000)
        screenshot(viewer, tmp_path, f"{3 + 2 * round_}-next-sample-{session.sample.id}")
    assert project.status()["labeled"] == 3 + 3

    # Requests for held-out labels read as such, never as an uncertainty of 0.
    for r, row in enumerate(widget.queue.rows):
        assert widget.queue.table.item(r, 3).toolTip() == row.reason  # the cell may leave details out
        if row.score is None:
            assert row.reason.split(":")[0] in ("validation label needed", "test label needed")
            assert widget.queue.table.item(r, 2).text() == ""
    # The queue collapses to its header; the canvas stays the widest part of the window.
    widget.queue.collapse_button.click()
    assert not widget.queue.table.isVisible()
    assert canvas.width() > widget.width()
    screenshot(viewer, tmp_path, "9-queue-collapsed")


def test_s_on_a_new_sample_with_nothing_painted_saves_it_as_all_background(make_napari_viewer, qtbot,
                                                                          brain_project):
    """A slice with nothing to label (or a blank one) can be labeled: `s` with nothing painted."""
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, brain_project)
    session, project = widget.session, widget.session.project
    sample = session.sample
    assert project.label(sample.id) is None
    press(viewer, "9")  # the project has 2 labels: said so, nothing picked
    assert viewer.status.startswith("no label 9 in this project: 1 ") and "2 " in viewer.status
    # The slider moved to another slice of the volume: `s` labels what is on screen, not the open sample.
    shown = session.view.shown
    assert shown.is_stack
    z, other = next((z, sid) for z, sid in sorted(shown.slices.items())
                    if sid != sample.id and project.label(sid) is None)
    viewer.dims.set_point(0, z * shown.scale[0])
    press(viewer, "s")
    assert session.flush_saves()
    assert project.label(sample.id) is None and not project.load_label(other).any()
    assert viewer.status == f"saved the label of sample {other}; all background (nothing painted)"
    viewer.dims.set_point(0, sample.slice_index * shown.scale[0])
    press(viewer, "s")
    assert session.flush_saves()
    assert project.label(sample.id).origin == "manual"
    assert not project.load_label(sample.id).any()
    press(viewer, "s")  # saved already, unchanged: nothing more to do
    assert viewer.status.startswith("nothing to save")
    assert len(project.label_history(sample.id)) == 1

    # A few strokes are not a label: the app says that every unpainted pixel is background.
    session.open_next()
    layer = session.view.labels_layer
    data = np.asarray(layer.data)
    index = (session.sample.slice_index, 5, 5) if data.ndim == 3 else (5, 5)
    data[index] = 1
    layer.refresh()
    press(viewer, "s")
    assert session.flush_saves()
    assert "unpainted pixels count as background" in viewer.status, viewer.status
    assert "only 1 pixel (0.034%) painted" in viewer.status  # not "0.0%"

    # On a held-out sample with no model to compare with, a few percent painted is called strokes too.
    test_sample = next(s for s in project.samples(split="test") if project.label(s.id) is None)
    session.open_sample(test_sample.id)
    data = np.asarray(layer.data)
    data[test_sample.slice_index, 5:15, 5:15] = 1  # 100 of 2950 pixels: 3.4%
    layer.refresh()
    press(viewer, "s")
    assert session.flush_saves()
    assert "unpainted pixels count as background and a test label measures the model" in viewer.status

    # ...unless the training masks saved lately paint that little too: a thin structure (vessels
    # at 4.9% were called strokes), painted whole
    for sample in [s for s in project.samples(split="train") if project.label(s.id) is None][:3]:
        session.open_sample(sample.id)
        data = np.asarray(layer.data)
        data[sample.slice_index, 20:30, 20:30] = 1  # 3.4%, as the structure is in this project
        layer.refresh()
        press(viewer, "s")
    assert session.flush_saves()
    test_sample = next(s for s in project.samples(split="test") if project.label(s.id) is None)
    session.open_sample(test_sample.id)
    data = np.asarray(layer.data)
    data[test_sample.slice_index, 5:15, 5:15] = 1
    layer.refresh()
    press(viewer, "s")
    assert session.flush_saves()
    assert "unpainted pixels" not in viewer.status, viewer.status


def test_n_without_a_label_walks_down_the_queue(make_napari_viewer, qtbot, brain_project, capsys):
    """Leaving a sample unlabeled, `n` skips it and opens the queue's top without it, the first
    line of `medlabeler queue` then: pressed again and again it walks down the rows, a validation
    or test request passed over is asked of another sample of its split in its place, and the
    samples passed over go behind the rest of the queue, in the order they were skipped."""
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, brain_project)
    session = widget.session
    requests = {"validation label needed", "test label needed"}
    rows = session.queue_rows()
    assert session.sample.id == rows[0].sample and len(rows) < 50  # the whole queue is listed
    assert [row.reason.split(":")[0] in requests for row in rows[:4]] == [False, False, True, True]
    press(viewer, "n")  # nothing painted: nothing saved
    press(viewer, "n")
    assert session.sample.id == rows[2].sample == cli_first(brain_project, capsys)  # the validation request
    from napari.utils.notifications import notification_manager

    from medlabeler.engine.workflows.active_loop import where

    project, shown = session.project, []
    notification_manager.notification_ready.connect(shown.append)
    try:
        press(viewer, "n")  # passed over: another validation sample asked for in its place, and said so
    finally:
        notification_manager.notification_ready.disconnect(shown.append)
    assert session.sample.id == cli_first(brain_project, capsys) not in {row.sample for row in rows[:4]}
    assert session.sample.split == "val"
    assert [n.message for n in shown] == [
        f"Skipped sample {rows[2].sample}; asked instead: sample {session.sample.id} ({where(session.sample, project)}"
        "), validation label needed: held out to choose the best model, never trained on. To label a training sample "
        "first, click its row in the queue."]
    rows = [row.sample for row in rows]
    assert not session.project.labeled_ids() and session.project.skipped_ids() == rows[:3]
    qtbot.waitUntil(lambda: widget.queue.sample_ids()[-3:] == rows[:3], timeout=5_000)
    # A click opens its row; `n` there opens the queue's top (not skipped: it was left by a click),
    # and the selection is on the row opened, not the row clicked.
    table = widget.queue.table
    shown = widget.queue.sample_ids()
    cell = table.visualRect(table.model().index(1, 0)).center()
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=cell)
    assert session.sample.id == shown[1]
    press(viewer, "n")
    assert session.sample.id == shown[0]
    qtbot.waitUntil(lambda: [i.row() for i in table.selectionModel().selectedRows()] == [0]
                    and widget.queue.sample_ids()[-1] == shown[1], timeout=5_000)


def test_a_sample_left_unlabeled_at_n_is_asked_for_after_the_rest_until_put_back(make_napari_viewer, qtbot,
                                                                                 brain_project, capsys):
    """A radiologist passed over a test-label request with `n`; after each save elsewhere the same
    slice was on top again. `n` on a sample left unlabeled skips it: the queue (the app's and the
    CLI's) asks for it after the rest, until a right-click puts it back."""
    from napari.utils.notifications import notification_manager

    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, brain_project)
    session, project = widget.session, widget.session.project
    passed = session.sample.id
    shown = []
    notification_manager.notification_ready.connect(shown.append)
    try:
        press(viewer, "n")  # nothing painted
        again = session.sample.id
        press(viewer, "n")
    finally:
        notification_manager.notification_ready.disconnect(shown.append)
    assert project.skipped_ids() == [passed, again] and not project.labeled_ids()
    assert viewer.status == (f"skipped sample {again}: asked for after the rest of the queue; "
                             f"opened sample {session.sample.id}")
    # the first skip is explained where the mouse readout does not replace it, once
    assert [n.message for n in shown] == [f"Skipped sample {passed}: asked for after every other sample (to put it "
                                          "back, right-click its row at the end of the queue)."]
    assert [row.sample for row in session.queue_rows(n=2)][2:] == [passed, again]  # listed in reach whatever n
    assert project.unskip([again]) == 1
    painted = session.sample.id
    press(viewer, "1")
    stroke(viewer, [(60.0, x) for x in np.linspace(40, 160, 16)])
    press(viewer, "n")  # saved: the queue is ranked again, and the skipped sample stays behind
    assert session.flush_saves() and project.labeled_ids() == {painted}
    assert session.sample.id not in (passed, painted) and project.skipped_ids() == [passed]
    qtbot.waitUntil(lambda: "1 sample skipped in the app (`n` on it unlabeled): the queue asks for it after the rest."
                    in widget.project.counts_label.text(), timeout=5_000)  # the Project tab says why
    assert session.sample.id == cli_first(brain_project, capsys)
    capsys.readouterr()
    assert main(["queue", str(brain_project), "--n", "500", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[-1]["sample"] == passed and listed[-1]["reason"].startswith("skipped")
    qtbot.waitUntil(lambda: bool(widget.queue.rows) and widget.queue.rows[0].sample == session.sample.id, timeout=10_000)
    row = widget.queue.sample_ids().index(passed)
    assert widget.queue.table.item(row, 3).text().startswith("skipped")
    assert widget.queue.status.text().startswith(f"the next {row} to label, then 1 skipped with n (right-click one")
    put_back = widget.queue.row_actions(row)[-1]
    assert put_back.text() == f"Put sample {passed} back in its place in the queue" and put_back.isEnabled()
    put_back.trigger()
    assert project.skipped_ids() == [] and viewer.status == f"sample {passed} is back in its place in the queue"
    qtbot.waitUntil(lambda: passed in widget.queue.sample_ids() and not widget.queue.table.item(
        widget.queue.sample_ids().index(passed), 3).text().startswith("skipped"), timeout=10_000)
    assert not any(a.text().startswith("Put sample") for a in widget.queue.row_actions(0))
    # `n` now opens the queue's top, the open sample left out: the one put back where it ranks first
    left = session.sample.id
    top = next(row.sample for row in session.queue_rows() if row.sample != left)
    press(viewer, "n")
    assert session.sample.id == top == passed and project.skipped_ids() == [left]


def test_the_app_logs_each_sample_it_opens_on_stderr(monkeypatch, capsys):
    import logging

    from medlabeler.ui.app import log_to_stderr

    logger = logging.getLogger("medlabeler")
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # pytest's own capture handler aside
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logger, "level", logging.NOTSET)
    monkeypatch.setattr(logger, "propagate", True)
    log_to_stderr()
    logging.getLogger("medlabeler.ui.session").info("opened sample %d", 12)
    assert "opened sample 12" in capsys.readouterr().err
    # a library gives the root logger a stderr handler while the app runs: still printed once
    monkeypatch.setattr(logging.getLogger(), "handlers", [logging.StreamHandler()])
    logging.getLogger("medlabeler.ui.session").warning("closing the project stops the background run")
    assert capsys.readouterr().err.count("closing the project stops the background run") == 1


def test_next_opens_the_queue_first_with_its_prediction_made_ahead_while_the_save_is_written(
        make_napari_viewer, qtbot, trained_project, brain_files, tmp_path, capsys):
    """`n` while the label is still being written: the queue counts it as labeled, the sample
    opened is the queue's first with the prediction made while the clinician painted, shown in the
    same (reused) overlay layer; the label lands afterwards, in order, and only then reads saved."""
    _, masks = brain_files
    viewer, widget, settled = open_predicted(make_napari_viewer, qtbot, trained_project)
    session, project = widget.session, widget.session.project
    qtbot.waitUntil(settled, timeout=60_000)  # the ranking after the save, then its first predicted
    first = session.sample
    ahead = session.rankings.get(session.queue_key(assume=[first.id]))
    upcoming = next(row.sample for row in ahead if row.sample != first.id)
    assert session.predictions[upcoming].model_version == project.active_model().version
    overlay = session.view.layers[PREDICTION]

    painted = truth_slice(masks, first)
    session.view.set_current_mask(painted)
    with project._label_saves:  # the disk is slow: the save cannot land before `n` returns
        press(viewer, "n")
        assert session.pending_labels().keys() == {first.id} and project.label(first.id) is None
        assert session.sample.id == upcoming == session.queue_rows()[0].sample
        assert first.id not in [row.sample for row in session.queue_rows()]
        # The prediction made ahead is on screen at once, in the same layer, on the new slice only.
        assert session.view.prediction_on_screen == upcoming
        assert session.view.layers[PREDICTION] is overlay and overlay.visible
        z = session.sample.slice_index
        assert np.array_equal(overlay.data[z], session.predictions[upcoming].label)
        assert not overlay.data[first.slice_index].any()
        session.open_sample(first.id)  # back to the sample being saved: its paint, not the store's
        assert np.array_equal(session.view.current_mask(), painted)
        assert widget.label.current_label.text() == "saving…"
    assert session.flush_saves()
    assert widget.label.current_label.text() == "mask saved (v1, manual)"
    assert np.array_equal(project.load_label(first.id), painted)
    assert cli_first(trained_project, capsys) == upcoming


def test_opening_another_slice_leaves_the_blank_overlay_shown_until_its_prediction(make_napari_viewer, qtbot,
                                                                                   trained_project):
    """An overlay of a volume holds one slice's map: opening another slice with no prediction at
    hand leaves it shown (hiding and showing it again cost the main thread 10-25 ms at every `n`),
    and nothing of the earlier prediction is on the new slice. In 3D, or when the same slice's
    prediction is dropped, it is hidden as before."""
    viewer, widget, _ = open_predicted(make_napari_viewer, qtbot, trained_project)
    session = widget.session
    overlay, first = session.view.layers[PREDICTION], session.sample
    assert overlay.visible and overlay.data[first.slice_index].any()
    other = next(s for s in session.project.samples() if s.id != first.id and s.id not in session.predictions
                 and s.path == first.path)  # another slice of the same volume
    toggles = []
    overlay.events.visible.connect(lambda event: toggles.append(overlay.visible))
    session.view.show(other)  # what open_sample does with no prediction made ahead
    assert toggles == [] and overlay.visible and session.view.prediction_on_screen is None
    assert not overlay.data[other.slice_index].any()  # the new slice shows no stale map
    assert not overlay.data[first.slice_index].any()  # nor the earlier one, scrolled back to
    assert not session.view.has_layer(PREDICTION)
    viewer.dims.ndisplay = 3  # the whole volume: the earlier slice's map would show
    assert toggles == [False] and not overlay.visible
    viewer.dims.ndisplay = 2
    session.view.show(first, prediction=session.predictions[first.id])  # its prediction, at hand
    assert overlay.visible and session.view.prediction_on_screen == first.id
    session.view.clear_prediction()  # e.g. another model activated by hand: the map on screen goes
    assert not overlay.visible


def test_a_large_volume_is_read_on_a_thread_then_its_slice_opens(make_napari_viewer, qtbot, brain_project,
                                                                 monkeypatch, caplog):
    """A CT series takes seconds to read: the window stays live and the sample opens once read."""
    from medlabeler.ui import session as session_module

    caplog.set_level(logging.INFO, logger="medlabeler.ui.session")
    monkeypatch.setattr(session_module, "READ_ON_A_THREAD_BYTES", 0)  # every volume counts as large
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, brain_project)
    session = widget.session
    first = session.next_sample_id()
    assert session.reading == first and session.sample is None and "reading the images" in viewer.status
    qtbot.waitUntil(lambda: session.sample is not None, timeout=30_000)
    assert session.sample.id == first == last_opened(caplog) and session.reading is None
    # "reading…" stayed in the status bar of napari with the plugin until a mouse moved
    assert viewer.status == f"opened sample {first}"
    image = session.view.layers["image"]
    assert image.data.ndim == 3 and viewer.dims.point[0] == pytest.approx(session.sample.slice_index * image.scale[0])
    other = next(s for s in session.project.samples() if (s.path, s.series_uid) != (session.sample.path,
                                                                                    session.sample.series_uid))
    session.open_sample(other.id)  # another volume: read on a thread too, then shown
    assert session.reading == other.id and session.sample.id == first
    qtbot.waitUntil(lambda: session.sample.id == other.id, timeout=30_000)
    assert session.view.layers["image"].data.shape[0] == other.n_slices


def test_n_while_a_volume_is_read_opens_its_slice_from_the_same_read(make_napari_viewer, qtbot, brain_project,
                                                                     monkeypatch):
    """`n` pressed while the first volume was still being read started a second read of it (the
    demo: 300-500 ms of reading twice); the read on its way opens the slice asked for last."""
    from medlabeler.ui import session as session_module

    monkeypatch.setattr(session_module, "READ_ON_A_THREAD_BYTES", 0)
    reads = []
    real_read = session_module.read_volume
    monkeypatch.setattr(session_module, "read_volume", lambda sample, project: reads.append(sample.id) or real_read(
        sample, project))
    viewer = make_napari_viewer(show=True)
    session = build_app(viewer, brain_project).session
    first = session.reading
    assert first is not None and session.sample is None
    same_volume = next(s for s in session.project.samples()
                       if s.id != first and volume_key(s) == volume_key(session.project.sample(first)))
    session.open_sample(same_volume.id)
    assert session.reading == same_volume.id
    qtbot.waitUntil(lambda: session.sample is not None, timeout=30_000)
    qtbot.wait(200)  # nothing else arrives
    assert session.sample.id == same_volume.id and session.reading is None and len(reads) == 1
    assert viewer.status == f"opened sample {same_volume.id}"


def test_a_slice_in_memory_opened_while_another_volume_is_read_takes_the_reading_note(make_napari_viewer, qtbot,
                                                                                       brain_project, monkeypatch):
    """"reading the images of sample …" stayed in the status bar after a slice of the volume in
    memory was opened meanwhile (and the read, arriving, left the open slice on screen)."""
    from medlabeler.ui import session as session_module

    monkeypatch.setattr(session_module, "READ_ON_A_THREAD_BYTES", 0)
    viewer = make_napari_viewer(show=True)
    session = build_app(viewer, brain_project).session
    qtbot.waitUntil(lambda: session.sample is not None, timeout=30_000)
    here = session.sample
    elsewhere = next(s for s in session.project.samples() if volume_key(s) != volume_key(here))
    in_memory = next(s for s in session.project.samples() if s.id != here.id and s.path == here.path)
    session.open_sample(elsewhere.id)
    assert session.reading == elsewhere.id and "reading the images" in viewer.status
    session.open_sample(in_memory.id)  # changed their mind: a slice of the volume on screen
    assert viewer.status == f"opened sample {in_memory.id}" and session.reading is None
    qtbot.wait(1500)  # the other volume arrives meanwhile, and is not shown
    assert session.sample.id == in_memory.id and viewer.status == f"opened sample {in_memory.id}"


def test_a_volume_read_on_a_thread_brings_its_labels_and_the_main_thread_reads_only_what_changed_since(
        make_napari_viewer, qtbot, brain_project, brain_files, monkeypatch):
    """The stored labels of a volume are read with it, off the main thread (70-120 ms of a CT's
    opening stall). A label saved or removed after that read, and one still being written, are
    what the layer shows, and only the label saved since is read again on the main thread."""
    import threading

    from medlabeler.ui import session as session_module

    monkeypatch.setattr(session_module, "READ_ON_A_THREAD_BYTES", 0)
    _, masks = brain_files
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, brain_project)
    session = widget.session
    qtbot.waitUntil(lambda: session.sample is not None, timeout=30_000)
    project, shown = session.project, session.view.shown.key
    key = next((s.path, s.series_uid) for s in project.samples() if (s.path, s.series_uid) != shown)
    other = [s for s in project.samples() if (s.path, s.series_uid) == key]
    as_read, saved_since, removed_since, being_written = other[:4]
    for sample in (as_read, saved_since, removed_since):
        project.save_label(sample.id, truth_slice(masks, sample))
    newer = (truth_slice(masks, saved_since) == 1).astype(np.uint8) * 2  # another mask than the one read
    painted = np.full_like(newer, 1)
    real_read = session_module.read_volume_labels

    def read_then_the_store_moves(sample, project_, shape):
        read = real_read(sample, project_, shape)
        project_.save_label(saved_since.id, newer)
        project_.remove_label(removed_since.id)
        return read

    monkeypatch.setattr(session_module, "read_volume_labels", read_then_the_store_moves)
    monkeypatch.setattr(session.view, "_pending", lambda: {being_written.id: painted})  # on the writer's queue
    on_main = []
    real_load = project.load_label
    monkeypatch.setattr(project, "load_label", lambda sid, *a: (
        on_main.append(sid) if threading.current_thread() is threading.main_thread() else None) or real_load(sid, *a))
    session.open_sample(as_read.id)
    assert session.reading == as_read.id
    qtbot.waitUntil(lambda: session.sample is not None and session.sample.id == as_read.id, timeout=30_000)
    labels = np.asarray(session.view.labels_layer.data)
    assert np.array_equal(labels[as_read.slice_index], truth_slice(masks, as_read))
    assert np.array_equal(labels[saved_since.slice_index], newer)
    assert not labels[removed_since.slice_index].any()
    assert np.array_equal(labels[being_written.slice_index], painted)
    assert on_main == [saved_since.id]
    monkeypatch.setattr(session.view, "_pending", lambda: {})
    session.view.mark_saved(being_written.id, painted)  # as the writer's save would
    assert session.view.changed_masks() == []  # the baseline is what the layer shows


def test_a_damaged_mask_is_left_to_the_main_thread_when_a_volume_s_labels_are_read(brain_project, brain_files):
    """The read with the volume skips a mask it cannot load (the main thread then reads it and
    says what is wrong, as it did before), and the volume still opens with the others."""
    from medlabeler.engine.store import Project
    from medlabeler.ui.layers import read_volume, read_volume_labels

    _, masks = brain_files
    with Project.open(brain_project) as project:
        first = project.samples()[0]
        intact, damaged = [s for s in project.samples() if s.path == first.path][:2]
        project.save_label(intact.id, truth_slice(masks, intact))
        path = project.root / project.save_label(damaged.id, truth_slice(masks, damaged)).mask_relpath
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        shape = read_volume(first, project).pixels.shape
        read = read_volume_labels(first, project, shape)
    assert read.versions == {intact.id: 1}
    assert np.array_equal(read.labels[intact.slice_index], truth_slice(masks, intact))
    assert not read.labels[damaged.slice_index].any() and np.array_equal(read.labels, read.baseline)


def test_a_volume_opens_with_its_saved_slices_unchanged_and_napari_warmed_up(make_napari_viewer, qtbot,
                                                                             trained_project, caplog):
    """The labels layer and its baseline are filled slice by slice (no full copy of the stack):
    right after opening nothing counts as changed, and a painted slice is the only change. The
    napari first-layer costs were paid on the warm-up thread, without a warning."""
    from medlabeler.ui import session as session_module

    caplog.set_level(logging.WARNING, logger="medlabeler.ui.session")
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, trained_project)
    session, view = widget.session, widget.session.view
    session_module.wait_for_warm_up()
    assert session_module._LAYERS_WARM_THREAD is not None and not session_module._LAYERS_WARM_THREAD.is_alive()
    assert not [r for r in caplog.records if "in the background failed" in r.getMessage()]
    import gc

    assert gc.get_freeze_count() > 0  # full collections skip what the app made at start (no 250 ms pauses)
    session.open_sample(session.project.samples(split="train", labeled=True)[0].id)
    labeled = [z for z, sid in view.shown.slices.items() if sid in session.project.labeled_ids()]
    data = np.asarray(view.labels_layer.data)
    assert labeled and all(data[z].any() for z in labeled)  # saved labels shown...
    assert view.changed_masks() == []  # ...and equal to the baseline
    unlabeled = next(z for z in view.shown.slices if z not in labeled)
    data[unlabeled, :4, :4] = 1
    view.labels_layer.data = data
    assert [sid for sid, _ in view.changed_masks()] == [view.shown.slices[unlabeled]]


def test_saving_finds_the_changed_slices_chunk_by_chunk(monkeypatch):
    """The labels on screen are compared with the saved ones a few slices at a time: every changed
    slice is found, also at the edges of a chunk, and no other."""
    from medlabeler.ui import layers

    saved = np.zeros((23, 6, 5), np.uint8)
    painted = saved.copy()
    changed = [0, 6, 7, 13, 22]
    for z in changed:
        painted[z, z % 6, 4] = 2
    for chunk_slices in (1, 3, 7, 23, 100):
        monkeypatch.setattr(layers, "_COMPARE_BYTES", chunk_slices * saved[0].nbytes)
        assert layers._changed_slices(painted, saved) == changed
    assert layers._changed_slices(saved, saved.copy()) == []


def test_a_ranking_the_store_overtook_is_made_again_so_the_table_shows_what_n_opens(
        make_napari_viewer, qtbot, trained_project, monkeypatch):
    """The loop writes a score while the queue is being ranked: that ranking is dropped, and the
    table, still waiting, gets the ranking of the state as it is (the new score on top)."""
    from medlabeler.ui import ranking

    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, trained_project)
    session, project = widget.session, widget.session.project
    session.strategy = "entropy"  # the top row is the highest stored score
    qtbot.waitUntil(lambda: not session.jobs.busy and not session.rankings.busy and bool(widget.queue.rows),
                    timeout=60_000)
    widget.queue.refresh(wait=True)
    version = project.active_model().version
    boosted = next(row.sample for row in reversed(widget.queue.rows)
                   if row.score is not None and row.sample != session.sample.id)
    assert widget.queue.rows[0].sample != boosted
    real_rank, overtaken = ranking.rank, []
    session.rankings.overtaken.connect(overtaken.append)

    def rank_while_the_loop_writes(project_, key):
        rows = real_rank(project_, key)
        if not overtaken and project_.ranking_revision == key.revision:
            project_.write_scores(version, {boosted: {"entropy": 99.0}})  # lands meanwhile
        return rows

    monkeypatch.setattr(ranking, "rank", rank_while_the_loop_writes)
    project.activate(version)  # the store moved: the table's ranking is old
    session.queue_changed.emit()
    qtbot.waitUntil(lambda: bool(overtaken), timeout=30_000)
    first_scored = lambda: next(r.sample for r in widget.queue.rows if r.score is not None)  # noqa: E731
    qtbot.waitUntil(lambda: first_scored() == boosted, timeout=30_000)  # above it: held-out requests
    assert widget.queue.rows == session.queue_rows()
    after_open = next(row.sample for row in widget.queue.rows if row.sample != session.sample.id)
    assert session.next_sample_id() == after_open  # what `n` opens


def test_n_finds_its_ranking_made_ahead_even_when_the_store_moved_while_it_was_made(
        make_napari_viewer, qtbot, trained_project, brain_files, monkeypatch):
    """The ranking `n` needs (the queue once the open sample is saved) is made first, and made again
    when a score written meanwhile drops it: `n` then ranks nothing on the main thread (it had
    stalled the window for up to 50 ms at the first `n` after the loop re-scored)."""
    import threading

    from medlabeler.ui import ranking

    _, masks = brain_files
    viewer, widget, settled = open_predicted(make_napari_viewer, qtbot, trained_project)
    session, project = widget.session, widget.session.project
    version, first = project.active_model().version, session.sample
    ranked, real_rank = [], ranking.rank

    def rank_while_the_loop_writes(project_, key):
        ranked.append((threading.current_thread() is threading.main_thread(), key))
        rows = real_rank(project_, key)
        if len(ranked) == 1:  # a score lands while the first ranking is made
            project_.write_scores(version, {rows[-1].sample: {"entropy": 99.0}})
        return rows

    monkeypatch.setattr(ranking, "rank", rank_while_the_loop_writes)
    project.activate(version)  # the store moved: both rankings are asked for again
    session.rank_ahead()
    after_save = lambda: session.queue_key(assume=[first.id])  # noqa: E731
    qtbot.waitUntil(lambda: session.rankings.get(after_save()) is not None and settled(), timeout=30_000)
    assert ranked[0][1].labeled == after_save().labeled  # asked first, and overtaken
    assert ranked[0][1].revision != after_save().revision
    session.view.set_current_mask(truth_slice(masks, first))
    ranked.clear()
    press(viewer, "n")
    assert session.sample.id != first.id
    assert not any(on_main for on_main, _ in ranked)  # `n` found its ranking waiting


def test_every_page_of_the_dock_fits_the_dock_of_a_1366_px_screen(make_napari_viewer, qtbot, trained_project,
                                                                   monkeypatch):
    """No page is wider than the dock: a combo sized to its longest item (a method's name with its
    experimental note) had pushed the Train tab's Pause, Cancel and Roll back out of sight."""
    from medlabeler.engine.workflows import recommended
    from medlabeler.ui.app import dock_width

    monkeypatch.setitem(recommended.EXPERIMENTAL, "segmentation",
                        {"cross-teaching": "0.015 below supervised test Dice at 8 labels on mni-tissue-seg"})
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, trained_project)
    pages = {name: getattr(widget, name) for name in ("label", "train", "review", "project", "metrics", "queue")}
    widths = {name: page.minimumSizeHint().width() for name, page in pages.items()}
    # a page gets the dock less the tab frame and a vertical scroll bar (its pages scroll)
    area = widget.tabs.widget(0)
    qtbot.waitUntil(lambda: area.width() > 0)
    budget = dock_width(1366) - (widget.width() - area.width()) - area.verticalScrollBar().sizeHint().width()
    assert max(widths.values()) <= budget, (widths, budget)
    combo = widget.train.method_combo
    assert any("experimental" in combo.itemText(i) for i in range(combo.count()))
    longest = max(combo.view().fontMetrics().horizontalAdvance(combo.itemText(i)) for i in range(combo.count()))
    assert combo.view().minimumWidth() > longest > combo.minimumSizeHint().width()  # the open list shows it whole
    # the loop, its runs and the versions before the form only a run by hand uses: on a 768 px
    # screen the versions table was below the fold
    train = widget.train
    assert train.loop_status.y() < train.train_button.y() < train.models_table.y() < train.method_combo.y()
    # The labels layer starts with the brush: the dock says "paint", and a first drag paints.
    assert widget.session.view.labels_layer.mode == "paint"


def test_the_wheel_over_the_train_tab_leaves_its_settings_alone(make_napari_viewer, qtbot):
    """Scrolling down the Train tab with the wheel turned the Batch size field that passed under
    the pointer from 8 to 1, without a sign. The event is handed on, ignored, so that Qt offers a
    real wheel to the page, which scrolls (checked by hand with xdotool: a synthetic event sent to
    a widget is not offered to its parents)."""
    from qtpy.QtCore import QPoint
    from qtpy.QtGui import QWheelEvent

    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer)
    widget.tabs.setCurrentWidget(widget.train)
    field, combo = widget.train.batch_size, widget.train.method_combo
    before = (field.value(), combo.currentIndex())

    def wheel_down(target) -> bool:
        at = QPointF(target.rect().center())
        event = QWheelEvent(at, QPointF(target.mapToGlobal(at.toPoint())), QPoint(0, 0), QPoint(0, -120),
                            Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase,
                            False)
        QApplication.sendEvent(target, event)
        return event.isAccepted()

    assert not any(wheel_down(target) for target in (field, combo)), "the wheel was not handed on to the page"
    assert (field.value(), combo.currentIndex()) == before
    assert field.focusPolicy() == Qt.FocusPolicy.StrongFocus  # a click still puts the cursor in it


def test_every_line_of_the_loop_status_is_drawn_whole(make_napari_viewer, qtbot):
    """The loop's status was sized for 3 lines of the font it had before napari's style sheet: the
    third ("N new labels since the last model") was cut through at the bottom."""
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer)
    widget.tabs.setCurrentWidget(widget.train)
    status = widget.train.loop_status
    status.set_parts(["training: 43% of 100 steps, ~1 min left (from v3, 13 training labels)",
                      "last decision: promoted v4: 0.865 > 0.861", "2 new labels since the last model (any split)"])
    qtbot.waitUntil(lambda: status.isVisible() and status.height() > 0)
    qtbot.wait(100)
    image = status.grab().toImage()
    grey = np.array([[image.pixelColor(x, y).lightness() for x in range(image.width())]
                     for y in range(image.height())])
    text_rows = np.flatnonzero((np.abs(grey - np.median(grey)) > 60).any(axis=1))
    lines = np.split(text_rows, np.flatnonzero(np.diff(text_rows) > 1) + 1)  # runs of rows with letters
    heights = [len(rows) for rows in lines]
    assert len(status.text().splitlines()) == 3 and len(lines) == 3, heights
    assert heights[-1] >= heights[0] - 1, f"the last line is cut: {heights} rows of letters"


def test_activating_an_older_model_says_how_it_validates_and_the_choice_follows_its_version(
        make_napari_viewer, qtbot, trained_project):
    """A new user activated v1 (auc 0.000 against v2's 1.000) without a word from the app; the
    selection then sat on another version's row once a new version pushed the rows down."""
    from medlabeler.engine.store import Project
    from medlabeler.engine.training import run_to_end
    from medlabeler.engine.workflows.promotion import figures_apart, promote_or_keep
    from medlabeler.engine.workflows.train import train_project

    with Project.open(trained_project) as project:
        first = project.active_model().version
        second = run_to_end(train_project(project, method="supervised", config={**TINY, "steps": 40},
                                          promote=False)).version
        promoted = promote_or_keep(project, second, tolerance=1.0)  # promoted whatever it scores
    assert promoted.promoted and promoted.candidate_value != promoted.active_value
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, trained_project)
    train, session = widget.train, widget.session
    train.refresh_models()
    train.models_table.selectRow(1)  # newest first: v1
    qtbot.mouseClick(train.activate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not session.jobs.busy, timeout=60_000)
    assert session.project.active_model().version == first
    mine, theirs = figures_apart(promoted.active_value, promoted.candidate_value)
    assert train.status.text() == (f"v{first} is active, as you chose (dice {mine} against v{second}'s {theirs} "
                                   f"on the 1 validation label of now). Roll back makes v{second} active again.")
    assert f"last decision: v{first} activated by hand" in train.loop_status.toolTip()  # not "promoted v2"
    run_to_end(train_project(session.project, method="supervised", config={**TINY, "steps": 1}, promote=False))
    train.refresh_models()  # a third version: v1's row moves down, and the selection with it
    assert train._selected_version() == first and train.models_table.rowCount() == 3


def test_activating_a_kept_model_by_hand_says_what_validation_said_and_the_way_back(make_napari_viewer, qtbot,
                                                                                    trained_project, brain_files):
    """One click on Activate made a model validation had turned down the active one, without a word;
    and its figure in the table (its run's) differed from its decision's without a word either."""
    from medlabeler.engine.store import Project
    from medlabeler.engine.training import run_to_end
    from medlabeler.engine.workflows.promotion import promote_or_keep
    from medlabeler.engine.workflows.train import train_project

    with Project.open(trained_project) as project:
        candidate = run_to_end(train_project(project, method="supervised", config={**TINY, "steps": 1},
                                             promote=False)).version
        second_val = project.samples(split="val")[1]  # promotion compares on more labels than the run had
        project.save_label(second_val.id, truth_slice(brain_files[1], second_val))
        kept = promote_or_keep(project, candidate, tolerance=-1.0)  # it would have to beat v1 by 1: kept
    assert not kept.promoted
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, trained_project)
    train, session = widget.train, widget.session
    train.refresh_models()
    figure = train.models_table.item(0, COL_METRIC)
    assert figure.text() == f"dice {kept.candidate_value:.3f}"  # what its decision compared, not its run's of then
    assert figure.toolTip() == ("measured by promotion on the 2 validation labels as they are now "
                                "(the figures its decisions compare)")
    train.models_table.selectRow(0)  # newest first
    qtbot.mouseClick(train.activate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not session.jobs.busy, timeout=60_000)
    assert session.project.active_model().version == candidate
    assert train.status.text() == (f"v{candidate} is active, as you chose, though promotion had kept it back ({kept.message}). "
                                   f"Roll back makes v{kept.active} active again.")
    train.refresh_models()  # a hand activation measures nothing: the figure stays (it had turned to "—")
    assert train.models_table.item(0, COL_METRIC).text() == f"dice {kept.candidate_value:.3f}"
    qtbot.mouseClick(train.rollback_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not session.jobs.busy, timeout=60_000)
    assert session.project.active_model().version == kept.active


def _open_an_unlabeled_validation_sample(make_napari_viewer, trained_project, monkeypatch):
    """The app on the trained project, an unlabeled validation sample open; warnings collected."""
    warned = []
    monkeypatch.setattr("napari.utils.notifications.show_warning", warned.append)
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, trained_project)
    session = widget.session
    project = session.project
    val = next(s for s in project.samples(split="val") if project.label(s.id) is None)
    session.open_sample(val.id)
    return viewer, widget, val, warned


def test_strokes_on_a_validation_sample_are_called_what_they_are(make_napari_viewer, qtbot, trained_project,
                                                                  monkeypatch):
    """A held-out label chooses or measures the model: painted far less than the structure the
    model finds, the save says every unpainted pixel is background and what the label is for, in
    the status line and in a notification (the line is cut on a 1366 px screen)."""
    viewer, widget, val, warned = _open_an_unlabeled_validation_sample(make_napari_viewer, trained_project,
                                                                       monkeypatch)
    session = widget.session
    project = session.project
    qtbot.waitUntil(lambda: session.current_prediction is not None, timeout=60_000)
    predicted = session.current_prediction.label
    found = np.count_nonzero(predicted) / predicted.size
    assert found > 0.1, found  # the fixture's model finds the brain
    layer = session.view.labels_layer
    np.asarray(layer.data)[val.slice_index, 5:16, 5:16] = 1  # 121 of 2950 pixels: a stroke or two
    layer.refresh()
    press(viewer, "s")
    assert session.flush_saves()
    assert "unpainted pixels count as background and a validation label chooses the model" in viewer.status
    assert f"(the model finds {found:.1%})" in viewer.status, viewer.status
    assert len(warned) == 1 and warned[0] in viewer.status
    # and in the Label tab, whole, until a later save: the notification shows one line for 4 s, in the
    # canvas's corner (a trial at 125% scaling read 39 of its 175 characters, after n had moved on)
    line = widget.label.save_warning
    assert line.isVisibleTo(widget.label) and line.text() == warned[0]
    train = next(s for s in project.samples(split="train") if project.label(s.id) is None)
    session.open_sample(train.id)
    layer = session.view.labels_layer
    np.asarray(layer.data)[train.slice_index] = 1  # painted whole: nothing to say
    layer.refresh()
    press(viewer, "s")
    assert session.flush_saves() and len(warned) == 1
    assert not line.isVisibleTo(widget.label)  # a later save that needed no word takes the line away


def test_a_validation_label_saved_before_its_prediction_arrived_is_judged_when_it_does(make_napari_viewer, qtbot,
                                                                                        trained_project, monkeypatch):
    """A grey-matter ring saved on a validation sample before the model's prediction of it had
    arrived went into validation without a word (painted 7%: more than strokes, less than half of
    what the model finds)."""
    viewer, widget, val, warned = _open_an_unlabeled_validation_sample(make_napari_viewer, trained_project,
                                                                       monkeypatch)
    session = widget.session
    project = session.project
    assert session.current_prediction is None  # it is made on a thread: not here before the save
    layer = session.view.labels_layer
    np.asarray(layer.data)[val.slice_index, 5:20, 5:20] = 1  # 225 of 2950 pixels
    layer.refresh()
    press(viewer, "s")
    assert val.id in session._unjudged  # to be judged when its prediction comes
    assert session.flush_saves()
    qtbot.waitUntil(lambda: session.current_prediction is not None, timeout=60_000)
    found = np.count_nonzero(session.current_prediction.label) / session.current_prediction.label.size
    assert found > 2 * 225 / 2950, found  # the fixture's model finds the brain: the mask is half of it or less
    qtbot.waitUntil(lambda: bool(warned), timeout=10_000)
    assert warned == [f"Saved earlier: sample {val.id}: only 7.6% painted (the model finds {found:.1%}); unpainted "
                      "pixels count as background and a validation label chooses the model: paint each structure "
                      "whole (or Remove label, if saved by mistake)"]
    # a label removed before its prediction came is not judged when it comes
    other = next(s for s in project.samples(split="val") if project.label(s.id) is None)
    session.open_sample(other.id)
    np.asarray(layer.data)[other.slice_index, 5:20, 5:20] = 1
    layer.refresh()
    press(viewer, "s")
    assert other.id in session._unjudged
    session.remove_label()
    assert other.id not in session._unjudged
    session._judge_later(other.id, np.zeros((80, 512, 512), np.uint8))  # a whole volume's mask: not held
    assert other.id not in session._unjudged


def test_keys_still_reach_the_canvas_after_the_dock_was_clicked(make_napari_viewer, qtbot, brain_project):
    """A click on a combo box, a queue row, a tab or a button leaves the keyboard to the viewer (the
    canvas, or napari's window, which hands keys to the canvas): the next digit picks a label. A
    user found the keys dead after choosing the queue's order: the combo box had kept the focus."""
    from qtpy.QtTest import QTest
    from qtpy.QtWidgets import QAbstractButton, QAbstractItemView, QComboBox

    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, brain_project)
    session = widget.session
    canvas = viewer.window._qt_viewer.canvas.native
    viewer.window._qt_window.activateWindow()
    canvas.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is canvas, timeout=5_000)
    combo = widget.queue.strategy_combo
    qtbot.mouseClick(combo, Qt.MouseButton.LeftButton)  # opens its list
    combo.hidePopup()
    qtbot.waitUntil(lambda: len(widget.queue.rows) > 3, timeout=5_000)
    table = widget.queue.table
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=table.visualRect(table.model().index(1, 0)).center())
    tab_bar = widget.tabs.tabBar()
    qtbot.mouseClick(tab_bar, Qt.MouseButton.LeftButton, pos=tab_bar.tabRect(0).center())
    qtbot.mouseClick(widget.label.class_buttons[0], Qt.MouseButton.LeftButton)
    qtbot.wait(50)
    focused = QApplication.focusWidget()
    assert focused in (canvas, viewer.window._qt_window), focused
    assert not isinstance(focused, (QComboBox, QAbstractItemView, QAbstractButton))
    QTest.keyClick(focused, Qt.Key.Key_2)
    assert session.view.labels_layer.selected_label == 2 and session.view.labels_layer.mode == "paint"
    assert combo.currentText() == session.strategy


def test_queue_cells_leave_bracketed_details_to_the_tooltip():
    from medlabeler.ui.widgets.queue import short_reason

    reason = ("entropy 1.084, among the most uncertain, spread over them (hybrid: 10 picks covering the 40 most "
              "uncertain left, each the one of them farthest from the labeled and earlier picks); "
              "next to another slice of the same volume in this batch (few other samples left)")
    assert short_reason(reason) == ("among the most uncertain, spread over them; "
                                    "next to another slice of the same volume in this batch")
    assert short_reason("margin 0.031, among the most uncertain") == "among the most uncertain"
    assert short_reason("validation label needed: held out") == "validation label needed: held out"


def test_a_whole_volume_sample_is_shown_radiologically_too(make_napari_viewer, qtbot, tmp_path, brain_files):
    """A project of whole volumes (unit image) of RAS NIfTIs: the camera turns them as it turns
    the slices of a slice project; the store answers from the read it made for the pixels."""
    from medlabeler.engine.project.project_import import create_project
    from tests.ui.projects import COLORS, NAMES

    images, _ = brain_files
    project, _ = create_project(tmp_path / "volumes", images, task="segmentation", names=NAMES, colors=COLORS,
                                unit="image")
    sample = project.samples()[0]
    assert sample.is_volume and project.display_orientation(sample) == ("up", "left")
    project.close()
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, tmp_path / "volumes")
    assert widget.session.sample.is_volume
    assert tuple(map(str, viewer.scene.camera.orientation2d)) == ("up", "left")


def test_a_label_saved_by_mistake_is_removed_from_the_dock(make_napari_viewer, qtbot, brain_project):
    """A stray click, saved when the slider left the slice, made a training label of one dot: Remove
    label makes the sample unlabeled again; the version stays in the history."""
    from qtpy.QtCore import Qt as QtKeys

    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, brain_project)
    session, project = widget.session, widget.session.project
    sample = session.sample
    layer = session.view.labels_layer
    index = (sample.slice_index, 5, 5) if np.asarray(layer.data).ndim == 3 else (5, 5)
    layer.data[index] = 1
    press(viewer, "s")
    assert session.flush_saves() and project.label(sample.id) is not None
    assert "Remove label" in viewer.status  # the note on a dot says how to take it back
    qtbot.mouseClick(widget.label.remove_button, QtKeys.MouseButton.LeftButton)
    assert project.label(sample.id) is None and sample.id not in project.labeled_ids()
    assert not np.asarray(layer.data)[index] and not session.view.changed_masks()  # nothing left to save
    assert viewer.status.startswith(f"removed the label of sample {sample.id}")
    assert [v.version for v in project.label_history(sample.id)] == [1]
    assert widget.label.current_label.text() == "not labeled yet"
    qtbot.mouseClick(widget.label.remove_button, QtKeys.MouseButton.LeftButton)
    assert viewer.status == f"sample {sample.id} has no saved label to remove"


def test_s_on_an_untouched_held_out_slice_asks_again_before_saving_all_background(make_napari_viewer,
                                                                                 brain_project):
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, brain_project)
    session, project = widget.session, widget.session.project
    held_out = next(s for s in project.samples(split="test") if project.label(s.id) is None)
    session.open_sample(held_out.id)
    press(viewer, "s")
    assert session.flush_saves() and project.label(held_out.id) is None
    assert viewer.status.startswith(f"sample {held_out.id} is a test sample: saved with nothing painted")
    assert viewer.status.endswith("Press s again to save it as all background.")
    press(viewer, "s")
    assert session.flush_saves() and not project.load_label(held_out.id).any()
    assert viewer.status == f"saved the label of sample {held_out.id}; all background (nothing painted)"


def test_s_on_a_training_slice_where_the_model_finds_structure_asks_again(make_napari_viewer, brain_project):
    """A new user's `s` saved an empty training slice at once where the model found 21% tissue: a
    wrong label, taught to every later model. Where the model finds (almost) nothing, at once."""
    from medlabeler.ui.layers import PredictionView
    from tests.ui.projects import NAMES

    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, brain_project)
    session, project = widget.session, widget.session.project
    first, second = [s for s in project.samples(split="train") if project.label(s.id) is None][:2]
    session.open_sample(first.id)
    shape = session.view.current_mask().shape
    half = np.zeros(shape, np.uint8)
    half[: shape[0] // 2] = 1
    session.predictions[first.id] = PredictionView(first.id, half)
    press(viewer, "s")
    assert session.flush_saves() and project.label(first.id) is None
    share = np.count_nonzero(half) / half.size
    assert viewer.status == (f"sample {first.id} is a training sample: saved with nothing painted, its label says "
                             f"there is no {' or '.join(NAMES)} on it (the model finds {share:.1%}), and the model "
                             "learns that. Press s again to save it as all background.")
    press(viewer, "s")
    assert session.flush_saves() and not project.load_label(first.id).any()

    session.open_sample(second.id)
    session.predictions[second.id] = PredictionView(second.id, np.zeros(shape, np.uint8))
    press(viewer, "s")
    assert session.flush_saves() and not project.load_label(second.id).any()
    assert viewer.status == f"saved the label of sample {second.id}; all background (nothing painted)"


def test_the_versions_figures_follow_a_new_validation_label(make_napari_viewer, qtbot, trained_project,
                                                            brain_files):
    """The table's figures are promotion's "on the validation labels as they are now": a validation
    label saved in the app makes them figures of then, and the table says so at once."""
    from medlabeler.engine.store import Project

    with Project.open(trained_project) as project:
        active = project.active_model().version
        third_val = project.samples(split="val")[1]
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, trained_project)
    session, train = widget.session, widget.train
    widget.tabs.setCurrentWidget(train)
    train.refresh_models()
    figure = train.models_table.item(0, COL_METRIC)
    assert figure.toolTip().startswith("measured by promotion on the 1 validation label as they are now"), \
        figure.toolTip()
    session.open_sample(third_val.id)
    session.view.set_current_mask(truth_slice(brain_files[1], third_val))
    session.save_current()
    assert session.flush_saves()
    qtbot.waitUntil(lambda: not train.models_table.item(0, COL_METRIC).toolTip().startswith("measured by promotion"),
                    timeout=5_000)
    assert train.models_table.item(0, COL_VERSION).data(Qt.ItemDataRole.UserRole) == active


def test_retrain_with_the_loop_on_says_when_its_candidate_trains():
    """"trains a candidate now" was said while the round under way carried on to its end, and nothing
    said that a full run at rest or a re-scoring stops for it (a new user's Retrain)."""
    from medlabeler.ui.widgets.train import retrain_request_text

    tail = ", with the recommended pipeline (fixmatch); the form below sets a run of its own with learning off."
    assert retrain_request_text("training: 49% of 100 steps", "training", "fixmatch", in_run=True) == (
        "Retrain requested: a candidate trains after the run under way" + tail)
    assert retrain_request_text("learning paused", "paused", "fixmatch", in_run=True) == (
        "Retrain requested: a candidate trains after the run under way" + tail)  # the round resumes first
    assert retrain_request_text("full run: 21% of 300 steps", "training", "fixmatch", in_run=True) == (
        "Retrain requested: the full run at rest stops (the active model stays) and a candidate trains now" + tail)
    assert retrain_request_text("scoring 120/400", "scoring", "fixmatch") == (
        "Retrain requested: the re-scoring stops and a candidate trains now" + tail)
    assert retrain_request_text("pretraining: 43%", "pretraining", "fixmatch", in_run=True).startswith(
        "Retrain requested: a candidate trains after the pretraining under way")
    assert retrain_request_text("waiting for labels: 2 more start a candidate", "idle", "fixmatch") == (
        "Retrain requested: the loop trains a candidate now" + tail)


def test_runs_of_points_measured_on_the_same_labels():
    from medlabeler.ui.widgets.metrics import runs_of_equal_state

    assert runs_of_equal_state(["a", "a", "b", "", "b", "c"]) == [range(0, 2), range(2, 5), range(5, 6)]
    assert runs_of_equal_state(["", "a", "", "a"]) == [range(0, 4)]  # unrecorded: part of the run
    assert runs_of_equal_state([]) == []


def test_the_metrics_curve_breaks_where_the_validation_labels_changed(make_napari_viewer, qtbot, trained_project,
                                                                      brain_files):
    """With one validation label more, the same model's figure jumped from 0.905 to 0.953 on one
    line, which read as a model that improved (a new user's session)."""
    from medlabeler.engine.store import Project
    from medlabeler.engine.training.checkpoint import load_weights
    from medlabeler.engine.workflows.model_versions import save_version
    from medlabeler.engine.workflows.promotion import promote_or_keep

    with Project.open(trained_project) as project:
        active = project.active_model()
        second_val = project.samples(split="val")[1]
        project.save_label(second_val.id, truth_slice(brain_files[1], second_val))
        state, record = load_weights(active.path)
        copy = save_version(project, method_label="supervised", state=state, record=record, metrics={},
                            parent=active.version, activate=False)
        assert promote_or_keep(project, copy.version).promoted  # the same weights, on 2 validation labels
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, trained_project)
    widget.tabs.setCurrentWidget(widget.metrics)
    metrics = widget.metrics
    qtbot.waitUntil(lambda: bool(metrics.points), timeout=10_000)
    assert [p[2] for p in metrics.points] == [active.version, copy.version]
    assert metrics.runs == [range(0, 1), range(1, 2)]
    dotted = [line for line in metrics.ax.get_lines() if line.get_linestyle() == ":"]
    assert len(dotted) == 1 and list(dotted[0].get_xdata()) == [metrics.points[1][0]] * 2
    assert "the line breaks where the validation labels changed" in metrics.caption.text()


def test_the_metrics_legend_covers_no_point(make_napari_viewer, qtbot, brain_project, monkeypatch):
    """A trial at 125% scaling: the newest model, re-measured lower on changed validation labels, sat
    in the plot's lower right corner under the legend, and the curve seemed to end at v2."""
    from medlabeler.ui.widgets import metrics as metrics_module

    curve = [(1, 0.668, 1), (7, 0.745, 2), (10, 0.420, 3)]  # as the trial's project had them
    monkeypatch.setattr(metrics_module, "active_curve", lambda project: ("dice", curve, [(9, 0.41, 4)], ["a", "a", "b"]))
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, brain_project)
    widget.tabs.setCurrentWidget(widget.metrics)
    metrics = widget.metrics
    qtbot.waitUntil(lambda: bool(metrics.points), timeout=10_000)
    metrics.canvas.draw()
    renderer = metrics.figure.canvas.get_renderer()
    boxes = [legend.get_window_extent(renderer) for legend in [metrics.ax.get_legend(), *metrics.figure.legends]
             if legend is not None]
    assert len(boxes) == 1
    for x, y, _ in curve + [(9, 0.41, 4)]:
        px, py = metrics.ax.transData.transform((x, y))
        assert not (boxes[0].x0 <= px <= boxes[0].x1 and boxes[0].y0 <= py <= boxes[0].y1), (x, y)


@pytest.mark.parametrize("gone", ["before the import", "after the import"])
def test_a_slice_missing_from_its_series_is_not_labeled_in_the_app(make_napari_viewer, tmp_path, gone):
    """A CT series with one file gone is read with that slice blank: the dock says there is nothing
    to label, `s` saves nothing, and strokes there are dropped with the reason. A file deleted after
    the import is found when the series is read (it had been shown black and saved as background)."""
    from medlabeler.engine.project.project_import import create_project
    from tests.engine.io_fixtures import write_dicom_series

    hu = np.full((6, 24, 20), -1000.0)
    hu[:, 4:20, 4:16] = 40.0
    paths = write_dicom_series(tmp_path / "ct", hu, shuffle=False)
    if gone == "before the import":
        paths[3].unlink()
    project, _ = create_project(tmp_path / "proj", tmp_path / "ct", task="segmentation", names=["brain"])
    missing = next(s.id for s in project.samples() if s.slice_index == 3)
    project.close()
    if gone == "after the import":
        paths[3].unlink()
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, tmp_path / "proj")
    session, project = widget.session, widget.session.project
    session.open_sample(missing)
    assert widget.label.current_label.text().startswith("missing from its series")
    press(viewer, "s")
    assert session.flush_saves() and project.label(missing) is None
    assert viewer.status.startswith(f"sample {missing} is a slice missing from its DICOM series")
    layer = session.view.labels_layer
    layer.data[3, 5, 5] = 1
    press(viewer, "s")
    assert session.flush_saves() and project.label(missing) is None and not np.asarray(layer.data)[3].any()
    assert "strokes on it are not saved" in viewer.status


def test_a_whole_ct_volume_keeps_its_dicom_window_and_the_slider_says_slice(make_napari_viewer, tmp_path):
    """A whole-volume project (unit image) of a CT series: shown with the series' own window (W400/L40),
    as its slices are in a slice project, not with the percentiles of every voxel (a user found the
    brain flat grey); napari's slider reads "slice", not "-3"."""
    from medlabeler.engine.project.project_import import create_project
    from tests.engine.io_fixtures import write_dicom_series

    hu = np.full((6, 24, 20), -1000.0)
    hu[:, 4:20, 4:16] = 40.0
    hu[:, 8:12, 6:10] = 1200.0  # bone: far outside the brain window
    write_dicom_series(tmp_path / "ct", hu, window=(40.0, 400.0))
    project, _ = create_project(tmp_path / "proj", tmp_path / "ct", task="segmentation", names=["bone"],
                                unit="image")
    project.close()
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, tmp_path / "proj")
    assert widget.session.sample.is_volume
    assert tuple(widget.session.view.layers["image"].contrast_limits) == (-160.0, 240.0)
    assert viewer.dims.axis_labels[0] == "slice"


def test_w_steps_through_the_ct_windows_and_the_window_stays_for_the_next_scan(make_napari_viewer, tmp_path,
                                                                               brain_project):
    """A radiologist reads bone in a bone window: `w` steps from the file's window through brain,
    soft tissue, lung and bone, the contrast slider's range follows (it stopped at the file's
    window), and the next scan opens in the window chosen."""
    from medlabeler.engine.project.project_import import create_project
    from tests.engine.io_fixtures import write_dicom_series, write_nifti

    hu = np.full((6, 24, 20), -1000.0)
    hu[:, 4:20, 4:16] = 40.0
    for k in range(2):
        write_dicom_series(tmp_path / "ct" / f"s{k}", hu, window=(40.0, 400.0), series_number=k + 1)
    project, _ = create_project(tmp_path / "proj", tmp_path / "ct", task="segmentation", names=["bone"],
                                unit="image")
    first, second = (s.id for s in project.samples())
    project.close()
    viewer = make_napari_viewer(show=True)
    session = build_app(viewer, tmp_path / "proj").session
    session.open_sample(first)
    image = session.view.layers["image"]
    assert tuple(image.contrast_limits) == (-160.0, 240.0)
    seen = []
    for _ in range(4):
        press(viewer, "w")
        seen.append((tuple(image.contrast_limits), viewer.status))
    assert [limits for limits, _ in seen] == [(0.0, 80.0), (-160.0, 240.0), (-1350.0, 150.0), (-500.0, 1300.0)]
    assert seen[0][1] == "window: brain (L 40 W 80); w: the next"
    assert seen[-1][1].startswith("window: bone (L 400 W 1800)")
    assert tuple(image.contrast_limits_range) == (-500.0, 1300.0)  # the slider fine-tunes within bone
    session.open_sample(second)
    assert tuple(session.view.layers["image"].contrast_limits) == (-500.0, 1300.0)
    press(viewer, "w")
    assert viewer.status == "window: the file's (L 40 W 400); w: the next"
    assert tuple(session.view.layers["image"].contrast_limits) == (-160.0, 240.0)

    session.open_project(brain_project)  # an MRI: not a CT, its contrast stays where it was
    before = tuple(session.view.layers["image"].contrast_limits)
    press(viewer, "w")
    assert "not a CT" in viewer.status and tuple(session.view.layers["image"].contrast_limits) == before

    # a NIfTI CT names no modality: air in Hounsfield units says what it is
    write_nifti(tmp_path / "nifti" / "ct.nii.gz", hu, dtype=np.int16)
    create_project(tmp_path / "nifti_proj", tmp_path / "nifti", task="segmentation", names=["bone"],
                   unit="image")[0].close()
    session.open_project(tmp_path / "nifti_proj")
    assert session.sample.modality != "CT"
    press(viewer, "w")
    assert viewer.status.startswith("window: brain (L 40 W 80)")
    assert tuple(session.view.layers["image"].contrast_limits) == (0.0, 80.0)


def test_the_canvas_edges_name_the_patient_directions_of_a_scan_and_nothing_on_a_photo(make_napari_viewer, qtbot, tmp_path,
                                                                                       class_project, brain_project):
    """A CT slice read radiologically: anterior at the top, the patient's right on the screen's left,
    as every radiology viewer marks it; a 2D image has no patient geometry and gets no letters."""
    from medlabeler.engine.project.project_import import create_project
    from medlabeler.ui.layers import MARKER_POSITIONS, MARKER_PREFIX
    from tests.engine.io_fixtures import write_dicom_series

    write_dicom_series(tmp_path / "ct", np.full((4, 24, 20), 40.0), window=(40.0, 400.0))
    project, _ = create_project(tmp_path / "proj", tmp_path / "ct", task="segmentation", names=["brain"])
    project.close()
    viewer = make_napari_viewer(show=True)
    session = build_app(viewer, tmp_path / "proj").session
    overlays = viewer.canvas.overlays

    def letters():
        return tuple(overlays[MARKER_PREFIX + p].text if MARKER_PREFIX + p in overlays
                     and overlays[MARKER_PREFIX + p].visible else "" for p in MARKER_POSITIONS)

    assert letters() == ("", "", "", "")  # made on the next turn of the event loop: not in the opening's stall
    qtbot.waitUntil(lambda: letters() == ("A", "P", "R", "L"), timeout=5_000)
    save_screenshot(viewer.screenshot(canvas_only=False, flash=False), tmp_path, "ct-orientation-markers")
    session.open_project(brain_project)  # NIfTI in RAS order: turned on screen, the same letters
    assert letters() == ("A", "P", "R", "L")
    viewer.dims.transpose()  # napari's own buttons: the letters would name the wrong sides
    assert letters() == ("", "", "", "")
    viewer.dims.transpose()
    assert letters() == ("A", "P", "R", "L")
    viewer.dims.roll()
    assert letters() == ("", "", "", "")
    viewer.dims.roll()
    viewer.dims.roll()
    assert letters() == ("A", "P", "R", "L")
    camera = viewer.scene.camera
    assert tuple(camera.orientation2d) != ("down", "right")  # the RAS brain is turned on screen
    session.close_project()  # nothing on an empty canvas
    assert letters() == ("", "", "", "")
    # the user's own images are shown as napari shows them again (they stayed upside down, mirrored)
    assert tuple(str(v) for v in camera.orientation2d) == ("down", "right")
    session.open_project(class_project)
    assert session.sample is not None and letters() == ("", "", "", "")


def test_switching_between_volume_and_2d_projects_in_one_window_does_not_crash(make_napari_viewer, qtbot, tmp_path,
                                                                               class_project, brain_files):
    """A volume project, then a 2D one, then the volume again segfaulted in Mesa: the orientation
    letters were hidden on the 2D image and shown again, napari then re-parented its canvas
    overlays, and the labels brush circle drawn during the next layer insert crashed. (A crash
    here ends the whole test run.)"""
    from medlabeler.engine.project.project_import import create_project
    from tests.ui.projects import COLORS, NAMES

    images, _ = brain_files
    create_project(tmp_path / "volumes", images, task="segmentation", names=NAMES, colors=COLORS,
                   unit="image")[0].close()
    viewer = make_napari_viewer(show=True)
    session = build_app(viewer, tmp_path / "volumes").session
    for path in (class_project, tmp_path / "volumes", class_project, tmp_path / "volumes"):
        session.open_project(path)
        qtbot.wait(100)  # paints in between, as a clinician's clicks give
        assert session.sample is not None and session.project.root == path


def test_a_project_with_every_sample_labeled_opens_on_a_sample_not_an_empty_viewer(make_napari_viewer, tmp_path,
                                                                                     brain_files):
    """Reopening a finished whole-volume project showed napari's empty welcome screen: nothing was
    left in the queue, so nothing opened."""
    from medlabeler.engine.project.project_import import create_project
    from tests.ui.projects import COLORS, NAMES

    images, _ = brain_files
    project, _ = create_project(tmp_path / "volumes", images, task="segmentation", names=NAMES, colors=COLORS,
                                unit="image")
    for sample in project.samples():
        project.save_label(sample.id, np.zeros(sample.shape, np.uint8), author="clinician")
    first = project.samples()[0].id
    project.close()
    from napari.utils.notifications import notification_manager

    viewer = make_napari_viewer(show=True)
    shown = []
    notification_manager.notification_ready.connect(lambda n: shown.append(n.message))
    session = build_app(viewer, tmp_path / "volumes").session
    assert session.sample is not None and session.sample.id == first
    assert "every sample is labeled" in viewer.status
    assert any("every sample is labeled" in message for message in shown)  # outlasts the mouse readout


def test_the_open_sample_follows_the_slider_once_it_rests(make_napari_viewer, qtbot, brain_project, caplog):
    """Scrolled to another slice of the volume, strokes save to that slice: once the slider rests
    there it is the open sample, and the dock, the log and the queue say so (a user saved slice 57
    while the dock still said 68)."""
    caplog.set_level(logging.INFO, logger="medlabeler")
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, brain_project)
    session = widget.session
    shown = session.view.shown
    first = session.sample
    z, other = next((z, sid) for z, sid in sorted(shown.slices.items()) if sid != first.id)
    viewer.dims.set_point(0, z * shown.scale[0])
    assert session.sample.id == first.id  # not at once: a scroll passes many slices
    qtbot.waitUntil(lambda: session.sample.id == other, timeout=5_000)
    assert last_opened(caplog) == other
    assert f"sample {other} " in widget.label.sample_label.text(), widget.label.sample_label.text()


def test_closing_opens_nothing_though_the_slider_moved_and_events_run(make_napari_viewer, qtbot, brain_project,
                                                                      caplog, monkeypatch):
    """A quit opened samples 1 and 150 (saving the open one's strokes to each) while it waited for
    the jobs to stop: the slider had moved as the layers went, and the follow timer fired."""
    from medlabeler.ui.session import FOLLOW_SLICE_MS

    caplog.set_level(logging.INFO, logger="medlabeler")
    viewer = make_napari_viewer(show=True)
    session = build_app(viewer, brain_project).session
    shown = session.view.shown
    z = next(z for z, sid in sorted(shown.slices.items()) if sid != session.sample.id)
    viewer.dims.set_point(0, z * shown.scale[0])  # the follow timer starts
    opened_before = last_opened(caplog)
    # a training step takes its time to stop: events run meanwhile, as in `wait_idle`
    monkeypatch.setattr(session.jobs, "wait_idle", lambda timeout_s=60: qtbot.wait(3 * FOLLOW_SLICE_MS) or True)
    session.close_project()
    assert session.project is None and last_opened(caplog) == opened_before


def test_the_dock_brush_follows_napari_brush_size(make_napari_viewer, qtbot, brain_project):
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, brain_project)
    layer = widget.session.view.labels_layer
    press(viewer, "1")
    layer.brush_size = 23  # napari's own slider or its [ ] keys
    assert widget.label.brush.value() == 23
    widget.label.class_buttons[1].click()  # a label button keeps that size
    assert layer.selected_label == 2 and layer.brush_size == 23


def test_each_queue_order_says_what_it_puts_first(make_napari_viewer, brain_project):
    from qtpy.QtCore import Qt as QtCore_Qt

    viewer = make_napari_viewer()
    combo = build_app(viewer, brain_project).queue.strategy_combo
    tips = {combo.itemText(i): combo.itemData(i, QtCore_Qt.ItemDataRole.ToolTipRole) for i in range(combo.count())}
    assert "disagree" in tips["bald"] and "least like any labeled" in tips["kcenter"]
    assert "(the default)" in combo.toolTip()
    combo.setCurrentText("random")
    assert combo.toolTip().startswith("random: a random order")


def test_deleting_the_labels_layer_with_napari_brings_it_back(make_napari_viewer, qtbot, brain_project):
    """napari's delete button took the labels layer: the next sample had none, `1` raised, and `s`
    saved the open slice as all background although nothing could be painted."""
    viewer = make_napari_viewer(show=True)
    session = build_app(viewer, brain_project).session
    sample = session.sample
    deleted = session.view.labels_layer
    viewer.layers.remove(deleted)  # what napari's delete button does
    assert not session.paint_with(1) and session.view.sample_on_screen() is None  # no traceback, nothing saved
    qtbot.waitUntil(lambda: session.view.labels_layer is not deleted, timeout=5_000)
    assert session.view.labels_layer in viewer.layers and session.sample.id == sample.id
    assert session.paint_with(1) and viewer.layers.selection.active is session.view.labels_layer
    session.open_next()
    assert session.view.labels_layer in viewer.layers
    before = set(viewer.layers)
    session.keep_layers = False  # as docked into a user's viewer: closing removes the layers
    session.close_project()  # its own removals are not taken for the user's
    assert not set(viewer.layers) & before and session.sample is None


def test_medlabeler_keys_leave_the_users_own_layers_alone(make_napari_viewer, brain_project):
    """With their own labels layer active, a napari user's `s` saved medlabeler's open sample as
    all background; with no project open, `s` said "no change since the last save"."""
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer)
    session = widget.session
    press(viewer, "s")
    assert "no medlabeler project is open" in viewer.status
    session.open_project(brain_project)
    sample = session.sample
    mine = viewer.add_labels(np.zeros((8, 8), np.uint8), name="my labels")
    viewer.layers.selection.active = mine
    press(viewer, "s")
    assert session.flush_saves() and session.project.label(sample.id) is None
    assert "the active layer, my labels, is not one" in viewer.status
    viewer.layers.selection.active = session.view.labels_layer
    press(viewer, "s")
    assert session.flush_saves() and session.project.label(sample.id) is not None  # all background, as asked


def test_a_napari_users_own_key_bindings_still_work_where_medlabeler_has_nothing_to_do(make_napari_viewer,
                                                                                     brain_project):
    """A trial: a napari user's own `n` (their next frame) was replaced by medlabeler's, and after
    the dock closed `n` only said that no project was open."""
    viewer = make_napari_viewer(show=True)
    ran = []

    @viewer.bind_key("n", overwrite=True)
    def my_next_frame(_viewer):
        ran.append("press")
        yield
        ran.append("release")

    session = build_app(viewer, brain_project).session
    opened = session.sample
    mine = viewer.add_labels(np.zeros((8, 8), np.uint8), name="my labels")
    viewer.layers.selection.active = mine
    press(viewer, "n")
    assert ran == ["press"] and session.sample.id == opened.id
    viewer.layers.selection.active = session.view.labels_layer
    press(viewer, "n")
    assert ran == ["press"] and session.sample.id != opened.id  # medlabeler's next, on its layer
    build_app(viewer)  # a second panel binds the keys again: the user's stays the one before
    session.close_project()
    press(viewer, "n")
    assert ran == ["press", "press"] and "no medlabeler project" not in (viewer.status or "")


def test_closing_a_project_gives_the_slider_its_name_back(make_napari_viewer, brain_project):
    """A trial: after the dock closed, napari's slider still read "slice" for the user's own stack."""
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((5, 16, 16)), name="my stack")
    before = tuple(viewer.dims.axis_labels)
    session = build_app(viewer).session
    session.open_project(brain_project)
    assert tuple(viewer.dims.axis_labels) == ("slice", "y", "x")
    session.keep_layers = False  # as docked into a user's viewer
    session.close_project()
    assert tuple(viewer.dims.axis_labels) == before != ("slice", "y", "x")


def test_no_stroke_past_the_scan_when_a_users_layer_reaches_further(make_napari_viewer, qtbot, brain_project):
    """A trial: with the user's own taller stack in the viewer, the slider went past the scan and
    each brush stroke there raised napari's IndexError."""
    viewer = make_napari_viewer(show=True)
    session = build_app(viewer, brain_project).session
    labels = session.view.layers[LABELS]
    qtbot.waitUntil(lambda: labels.visible and labels.mode == "paint", timeout=10_000)
    depth, scale = labels.data.shape[0], session.view.shown.scale
    viewer.add_image(np.zeros((depth * 3, 8, 8)), scale=scale, name="my taller stack")
    viewer.layers.selection.active = labels
    viewer.dims.set_point(0, (depth + 2) * scale[0])
    assert not labels.editable and "past the scan" in viewer.status
    before = labels.data.copy()
    errors = []
    from napari.utils.notifications import notification_manager  # a callback's error becomes a notification

    notification_manager.notification_ready.connect(errors.append)
    stroke(viewer, [(20 * scale[1], 15 * scale[2]), (22 * scale[1], 20 * scale[2])])
    notification_manager.notification_ready.disconnect(errors.append)
    assert np.array_equal(labels.data, before) and not [e for e in errors if "IndexError" in str(e.message) or
                                                         "out of bounds" in str(e.message)]
    viewer.dims.set_point(0, 1 * scale[0])
    assert labels.editable and labels.mode == "paint"


def test_the_metric_plot_leaves_room_above_a_perfect_score():
    """A new user's classifier at validation AUC 1.000 sat on the plot's top edge, the axis ticked
    0.960, 0.975, 0.990 and no tick at 1."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from medlabeler.ui.widgets.metrics import metric_limits

    bottom, top = metric_limits([1.0])
    assert 0.94 < bottom < 1.0 < top <= 1.02
    ax = Figure().add_subplot()
    ax.set_ylim(bottom, top)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 5, 10]))
    assert any(abs(t - 1.0) < 1e-9 for t in ax.get_yticks())
    assert metric_limits([0.5, 0.8]) == pytest.approx((0.45, 0.85))
    assert metric_limits([0.0, 0.02])[0] == 0.0


def test_the_brush_and_the_prediction_outline_fit_the_image_size(make_napari_viewer, qtbot, tmp_path):
    """A new user's 1955 px chest X-ray: the 10 px brush painted a lung in strokes a fifth of a
    screen pixel wide, the slider stopped at 60, and the prediction's 1 px outline broke into dots;
    on a 20 px tile the same brush covered half the image. Images of one size keep the brush the
    clinician chose."""
    from PIL import Image

    from medlabeler.engine.project.project_import import create_project
    from medlabeler.ui.layers import PredictionView

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, side in (("a_large.png", 1500), ("b_tiny.png", 24), ("c_tiny.png", 24)):
        Image.fromarray(rng.integers(0, 255, (side, side), dtype=np.uint8)).save(folder / name)
    project, _ = create_project(tmp_path / "p", folder, task="segmentation", names=["lung"])
    ids = {Path(s.path).name: s.id for s in project.samples()}
    project.close()
    widget = build_app(make_napari_viewer(show=True), tmp_path / "p")
    session, brush = widget.session, widget.label.brush
    session.open_sample(ids["a_large.png"])
    assert widget.label.sample_label.toolTip() == "image file: a_large.png"  # which file, on hover only
    assert "a_large" not in widget.label.sample_label.text()
    assert (brush.value(), brush.maximum()) == (30, 187)
    assert session.view.labels_layer.brush_size == 30
    mask = np.zeros((1500, 1500), np.uint8)
    mask[400:900, 300:700] = 1
    session.view.show_prediction(PredictionView(ids["a_large.png"], mask))
    assert session.view.layers[PREDICTION].contour == 3
    session.open_sample(ids["b_tiny.png"])
    assert (brush.value(), brush.maximum()) == (3, 60)
    brush.setValue(5)  # the clinician's choice
    session.open_sample(ids["c_tiny.png"])
    assert brush.value() == 5 and session.view.labels_layer.brush_size == 5


def _disk(monkeypatch, root):
    """A switch that makes files under ``root`` fail to write as on a full disk."""
    import errno

    from medlabeler.engine.store import files

    full = {"on": False}
    write = files._write_durable

    def write_or_fail(path, data):
        if full["on"] and Path(path).is_relative_to(root):
            raise OSError(errno.ENOSPC, "No space left on device")
        write(path, data)

    monkeypatch.setattr(files, "_write_durable", write_or_fail)
    return full


def _paint(session, value=1):
    layer = session.view.labels_layer
    z = session.sample.slice_index
    layer.data[z, 10:20, 10:20] = value
    return np.asarray(layer.data[z]).copy()


def test_strokes_whose_save_failed_on_a_full_disk_are_kept_and_saved_once_there_is_room(make_napari_viewer, qtbot,
                                                                                     brain_project, monkeypatch,
                                                                                     tmp_path):
    """A full disk: the save behind `n` failed after the next sample had opened, and its strokes were
    gone for good (reopened empty once space was freed); the status said "saving 1 label…" on."""
    full = _disk(monkeypatch, brain_project)
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, brain_project)
    session, dock = widget.session, widget.label
    project = session.project
    first = session.sample.id
    full["on"] = True
    painted = _paint(session)
    press(viewer, "n")
    session.flush_saves()
    assert project.label(first) is None and session.sample.id != first
    assert viewer.status.startswith(f"The label of sample {first} was not saved: [Errno 28] No space left on device")
    assert str(brain_project / "masks") in viewer.status  # the disk it failed on
    second = session.sample.id
    _paint(session, value=2)
    press(viewer, "n")  # fails again, for both
    session.flush_saves()
    assert project.label(first) is None and project.label(second) is None
    assert viewer.status.startswith(f"The labels of samples {first}, {second} were not saved")
    assert dock.save_warning.isVisibleTo(dock) and dock.save_warning.text().startswith(
        f"The labels of samples {first}, {second} were not saved: [Errno 28] No space left on device")
    session.open_sample(first)  # the strokes show when the sample opens again
    assert np.array_equal(session.view.current_mask(), painted)
    assert dock.current_label.text().startswith("not saved")
    # the user's folder can keep them: closing may go on, and nothing is kept until it does (a file
    # kept now would be saved over the labels saved later, at the next opening)
    assert session.may_close() and not list((tmp_path / "home" / "unsaved").rglob("*.npz"))
    full["on"] = False  # space freed: the next save takes both
    press(viewer, "s")
    session.flush_saves()
    assert np.array_equal(project.load_label(first), painted)
    assert project.load_label(second).max() == 2
    assert viewer.status.startswith("saved the labels of samples")
    assert not session._not_saved
    assert not dock.save_warning.isVisibleTo(dock)


def test_strokes_whose_save_still_fails_at_closing_are_kept_and_saved_when_the_project_opens(
        make_napari_viewer, qtbot, brain_project, monkeypatch, tmp_path):
    full = _disk(monkeypatch, brain_project)
    viewer = make_napari_viewer(show=True)
    session = build_app(viewer, brain_project).session
    sample = session.sample.id
    full["on"] = True
    painted = _paint(session)
    press(viewer, "n")
    session.close_project()
    kept = list((tmp_path / "home" / "unsaved").rglob("*.npz"))
    assert len(kept) == 1 and "project" not in kept[0].name  # named by a hash of the folder
    full["on"] = False
    session.open_project(brain_project)
    session.flush_saves()
    assert np.array_equal(session.project.load_label(sample), painted)
    assert session.project.label(sample).author == "tester"
    assert not list((tmp_path / "home" / "unsaved").rglob("*.npz"))  # saved: the kept file goes


def test_a_failed_save_taken_back_by_hand_is_never_saved_again(make_napari_viewer, qtbot, brain_project, monkeypatch,
                                                                tmp_path):
    """A review: a version restored (or the label removed) while the sample's last save had failed
    on a full disk, and the next save of any sample wrote the failed strokes over it; strokes dropped
    with Remove label came back from the user's folder at the next opening."""
    full = _disk(monkeypatch, brain_project)
    viewer = make_napari_viewer(show=True)
    session = build_app(viewer, brain_project).session
    project = session.project
    first = session.sample.id
    v1 = _paint(session)
    session.save_current()
    session.flush_saves()
    full["on"] = True
    _paint(session, value=2)  # painted over v1, not saved
    press(viewer, "n")
    session.flush_saves()
    assert first in session.not_saved_ids()
    assert session.restore_label(first, 1)  # the disk still full: a row of the database, no file
    full["on"] = False
    press(viewer, "s")  # another sample's save
    session.flush_saves()
    assert np.array_equal(project.load_label(first), v1) and project.label(first).version == 1
    # kept at a closing, then dropped with Remove label: not back at the next opening
    second = session.sample.id
    full["on"] = True
    _paint(session)
    session.close_project()
    session.open_project(brain_project)  # still full: its kept label fails again
    session.flush_saves()
    assert second in session.not_saved_ids()
    assert session.remove_label(second)
    full["on"] = False
    session.close_project()
    session.open_project(brain_project)
    session.flush_saves()
    assert session.project.label(second) is None
    assert not list((tmp_path / "home" / "unsaved").rglob("*.npz"))


def test_closing_when_the_failed_saves_cannot_be_kept_either_asks_first(make_napari_viewer, qtbot, brain_project,
                                                                       monkeypatch, tmp_path):
    """The user's folder on the same full disk: closing dropped the strokes after promising to keep them."""
    from medlabeler.ui import session as session_module

    full = _disk(monkeypatch, tmp_path)  # the project and the user's folder on one disk
    asked, answers = [], ["stay", "retry", "close"]
    monkeypatch.setattr(session_module, "ask_about_lost_labels", lambda ids: asked.append(ids) or answers.pop(0))
    viewer = make_napari_viewer(show=True)
    session = build_app(viewer, brain_project).session
    sample = session.sample.id
    full["on"] = True
    _paint(session)
    press(viewer, "n")
    assert not session.may_close() and asked == [[sample]]  # stay: nothing closes, the strokes stay kept
    assert session.project is not None and sample in session.not_saved_ids()
    assert session.may_close() and len(asked) == 3  # retry (still full), then close anyway
    full["on"] = False
    assert session.may_close() and len(asked) == 3  # saved now: nothing to ask
    assert session.project.label(sample) is not None


def test_a_damaged_mask_file_is_said_when_the_project_opens(make_napari_viewer, qtbot, brain_project, monkeypatch):
    """A torn mask file was said by nothing until a training run stopped at it (a trial)."""
    from medlabeler.engine.store import Project

    with Project.open(brain_project) as project:
        sample = project.samples()[3]
        project.save_label(sample.id, np.ones(sample.shape, np.uint8))
        (brain_project / project.label(sample.id).mask_relpath).write_bytes(b"torn")
    warned = []
    monkeypatch.setattr("napari.utils.notifications.show_warning", warned.append)
    viewer = make_napari_viewer(show=True)
    build_app(viewer, brain_project)
    qtbot.waitUntil(lambda: any("saved mask file is damaged or missing" in w for w in warned), timeout=10_000)
    (said,) = [w for w in warned if "saved mask file" in w]
    assert said.startswith("1 label whose saved mask file is damaged or missing: ") and f"sample {sample.id}" in said
