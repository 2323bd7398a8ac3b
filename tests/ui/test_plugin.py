"""The npe2 manifest: valid, its widgets dock from the Plugins machinery, the demo sample opens."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui


def test_manifest_is_valid_and_points_at_real_callables():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("medlabeler")
    manifest.validate_imports()
    contributions = manifest.contributions
    assert {w.display_name for w in contributions.widgets} >= {"medlabeler", "Project", "Queue", "Label", "Train", "Review", "Metrics"}
    assert contributions.readers[0].command == "medlabeler.get_reader"
    # napari asks the user to choose a reader for a file two plugins claim: PNG and TIFF are napari's
    from npe2 import PluginManager

    plugins = PluginManager.instance()
    plugins.discover()
    claims = plugins.iter_compatible_readers
    for mine in ("scan.dcm", "brain.nii.gz", "IMG.IMA"):
        assert "medlabeler" in {r.plugin_name for r in claims([mine])}, mine
    for theirs in ("photo.png", "stack.tif", "photo.jpg", "notes.txt"):
        assert "medlabeler" not in {r.plugin_name for r in claims([theirs])}, theirs
    assert contributions.sample_data[0].key == "demo"
    assert "napari/layers/annotate" in contributions.menus


def test_panels_docked_one_by_one_keep_the_window_on_a_small_screen(make_napari_viewer, qtbot, brain_project):
    """A trial on 1366x768: Queue, Project and Label from the Plugins menu made the window 1366x1144
    (1427 once a project was open): the Project panel asked for its whole height. Each panel now
    scrolls what it holds."""
    from qtpy.QtWidgets import QApplication

    from medlabeler.ui.widgets import ProjectWidget

    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1366, 740)
    QApplication.processEvents()
    for name in ("Queue", "Project", "Label", "Train"):
        _, panel = viewer.window.add_plugin_dock_widget("medlabeler", name)
        QApplication.processEvents()
    panel.session.open_project(brain_project)
    qtbot.waitUntil(lambda: panel.session.sample is not None, timeout=30_000)
    qtbot.wait(300)
    assert window.height() <= 740
    project = next(w for w in viewer.window.dock_widgets.values() if isinstance(w, ProjectWidget))
    assert project.minimumSizeHint().height() < 200  # it scrolls
    assert project.session is panel.session and project.isVisible()


def test_plugin_widgets_share_one_session(make_napari_viewer, qtbot, brain_project):
    from medlabeler.ui.session import get_session

    viewer = make_napari_viewer()
    _, queue = viewer.window.add_plugin_dock_widget("medlabeler", "Queue")
    _, label = viewer.window.add_plugin_dock_widget("medlabeler", "Label")
    assert queue.session is label.session is get_session(viewer)
    queue.session.open_project(brain_project)
    qtbot.waitUntil(lambda: bool(queue.rows), timeout=10_000)  # the table follows a turn later
    assert label.sample_label.text().startswith("sample ")
    queue.table.cellClicked.emit(1, 0)
    assert queue.session.sample.id == queue.rows[1].sample
    # a widget docked after a sample opened shows that sample (it said "no sample open")
    _, main = viewer.window.add_plugin_dock_widget("medlabeler", "medlabeler")
    assert main.label.sample_label.text() == label.sample_label.text() != ""
    assert "no sample" not in main.label.sample_label.text()


def test_the_app_and_the_plugins_menu_share_one_dock(make_napari_viewer, brain_project):
    """The demo sample docked the app's widget and Plugins > medlabeler then docked a second one."""
    from medlabeler.ui.app import build_app
    from medlabeler.ui.widgets import MedlabelerWidget

    viewer = make_napari_viewer()
    widget = build_app(viewer, brain_project)
    _, from_menu = viewer.window.add_plugin_dock_widget("medlabeler", "medlabeler")
    assert from_menu is widget and build_app(viewer) is widget
    assert sum(isinstance(w, MedlabelerWidget) for w in viewer.window.dock_widgets.values()) == 1


def test_demo_sample_opens_the_demo_project(make_napari_viewer, qtbot):
    from medlabeler.ui.session import get_session

    viewer = make_napari_viewer()
    viewer.open_sample("medlabeler", "demo")
    session = get_session(viewer)
    qtbot.waitUntil(lambda: session.sample is not None, timeout=60_000)
    assert session.project.task.names == ("grey_matter", "white_matter")
    assert not any(layer.metadata.get("medlabeler_placeholder") for layer in viewer.layers)
    assert session.view.layers["image"].data.shape == (189, 233, 197)


def test_closing_the_last_panel_saves_and_closes_the_project(make_napari_viewer, qtbot, brain_project):
    """napari's × on a dock takes the panel out of the window: with none of medlabeler's panels
    left, nothing must go on learning unseen, and strokes not yet saved are saved."""
    from medlabeler.engine.store import Project
    from medlabeler.ui.layers import LABELS
    from tests.ui.test_labeling import stroke

    viewer = make_napari_viewer()
    queue_dock, queue = viewer.window.add_plugin_dock_widget("medlabeler", "Queue")
    label_dock, label = viewer.window.add_plugin_dock_widget("medlabeler", "Label")
    session = queue.session
    assert session.open_project(brain_project)
    qtbot.waitUntil(lambda: session.sample is not None and session.reading is None, timeout=10_000)
    assert session.learning.start()  # the loop learns, as it does on opening in the app
    qtbot.waitUntil(lambda: session.learning.running, timeout=10_000)
    painted = session.sample.id
    layer = session.view.layers[LABELS]
    layer.selected_label = 1
    layer.mode = "paint"
    cy, cx = (s / 2 for s in layer.data.shape[-2:])
    stroke(viewer, [(cy, cx - 3), (cy, cx + 3)])
    assert layer.data.any()

    queue_dock.title.close_button.click()  # the Label panel is still docked: the project stays
    qtbot.wait(50)
    assert session.project is not None and session.learning.running

    label_dock.title.close_button.click()
    qtbot.waitUntil(lambda: session.project is None, timeout=20_000)
    assert not session.learning.running and not session.training_running
    with Project.open(brain_project, readonly=True) as project:
        assert painted in project.labeled_ids()
    # the Plugins menu docks it again, on the same session, ready to open a project
    _, again = viewer.window.add_plugin_dock_widget("medlabeler", "medlabeler")
    assert again.session is session and session.project is None
