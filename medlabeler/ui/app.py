"""`medlabeler app [PROJECT]`: a napari viewer with the medlabeler dock, the project opened."""

from __future__ import annotations

import os
from pathlib import Path

#: "1": napari's canvas in a native window of its own; "0": as napari makes it; unset: native on X11.
NATIVE_CANVAS_ENV = "MEDLABELER_NATIVE_CANVAS"

#: The dock's share of the screen width, within bounds: the canvas gets the rest.
DOCK_SHARE, DOCK_MIN, DOCK_MAX = 0.25, 320, 420


def dock_width(screen_width: int) -> int:
    return int(min(DOCK_MAX, max(DOCK_MIN, DOCK_SHARE * screen_width)))


def _main_window(viewer):
    return getattr(viewer.window, "_qt_window", None)  # napari's QMainWindow (private: guarded)


def dock_widgets(viewer):
    """Dock the medlabeler widget in ``viewer``; returns it (its parts are attributes)."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication, QMainWindow

    from medlabeler.ui.widgets import MedlabelerWidget

    docked = next((w for w in viewer.window.dock_widgets.values() if isinstance(w, MedlabelerWidget)), None)
    if docked is not None:  # one dock per viewer (the demo sample, then the Plugins menu, made two)
        return docked
    widget = MedlabelerWidget(viewer)
    dock = viewer.window.add_dock_widget(widget, name=_dock_name(), area="right")
    window = _main_window(viewer)
    screen = (window.screen() if window is not None else None) or QApplication.primaryScreen()
    if isinstance(window, QMainWindow) and screen is not None:
        window.resizeDocks([dock], [dock_width(screen.availableGeometry().width())], Qt.Orientation.Horizontal)
    return widget


def _dock_name() -> str:
    """napari's own name for the plugin's main widget ("medlabeler (medlabeler)"): its Plugins
    menu then finds this dock instead of adding a second one."""
    try:
        from napari.plugins import menu_item_template
    except ImportError:  # an older napari
        return "medlabeler"
    return menu_item_template.format("medlabeler", "medlabeler")


#: Screens narrower than this (in Qt's logical pixels: 1366 px at 125% scaling is 1093) start the
#: app with napari's layer controls hidden: with them, the scan had a third of the width.
NARROW_SCREEN = 1200

LAYER_CONTROLS_HIDDEN_NOTE = ("The scan gets more room on this screen: napari's layer controls are hidden (Window > "
                              "Layer Controls shows them; the Label tab has the labels, the brush and the keys).")


def fit_window(viewer) -> None:
    """Fill the screen: maximized, and sized to the screen where no window manager maximizes. On a
    narrow screen napari's layer controls start hidden (`NARROW_SCREEN`)."""
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    window = _main_window(viewer)
    if window is None:
        return
    screen = window.screen() or QApplication.primaryScreen()
    if screen is not None:
        window.setGeometry(screen.availableGeometry())
        if screen.availableGeometry().width() < NARROW_SCREEN:
            _hide_layer_controls(viewer)
    window.showMaximized()
    QTimer.singleShot(0, viewer.reset_view)  # once the canvas has its new size: the image fills it


def _hide_layer_controls(viewer) -> None:
    controls = getattr(getattr(viewer.window, "_qt_viewer", None), "dockLayerControls", None)  # napari's (private)
    if controls is None or not controls.isVisible():
        return
    import logging

    from napari.utils.notifications import show_info

    controls.setVisible(False)
    logging.getLogger(__name__).info(LAYER_CONTROLS_HIDDEN_NOTE)
    show_info(LAYER_CONTROLS_HIDDEN_NOTE)


def new_viewer(title: str = "medlabeler", show: bool = True):
    """A napari viewer whose canvas, where it pays (`wants_native_canvas`), is a native window of
    its own. napari's canvas is a QOpenGLWidget, which makes Qt composite the whole main window
    with OpenGL at every repaint of any widget in it: under Mesa's software OpenGL one word
    changed in the dock held the event loop 18-24 ms, against 3 ms with the canvas in its own
    window (measured at 1600x1000). Qt keeps compositing a window shown once that way, so the
    canvas must be made native before the first show: the napari plugin, docked into a viewer
    already on screen, leaves the canvas as napari made it."""
    import napari

    viewer = napari.Viewer(title=title, show=False)
    if wants_native_canvas():
        give_canvas_its_own_window(viewer)
    if show:
        viewer.window.show()
    return viewer


def wants_native_canvas() -> bool:
    """Whether to give the canvas its own native window: `NATIVE_CANVAS_ENV` "1" or "0" says;
    unset, yes on X11 only (on Wayland a native child is a subsurface with stacking problems of
    its own, and macOS restricts native children)."""
    from qtpy.QtGui import QGuiApplication

    setting = os.environ.get(NATIVE_CANVAS_ENV, "").strip()
    if setting in ("0", "1"):
        return setting == "1"
    if setting:
        import logging

        logging.getLogger(__name__).warning("%s=%r: expected 0 or 1; the default applies", NATIVE_CANVAS_ENV, setting)
    return QGuiApplication.platformName() == "xcb"


def give_canvas_its_own_window(viewer) -> bool:
    """Make napari's canvas widget native (its ancestors follow, as Qt keeps the stacking right);
    False where that is no longer of use (the window was shown) or the canvas is not found."""
    from qtpy.QtCore import Qt

    canvas = getattr(getattr(viewer.window, "_qt_viewer", None), "canvas", None)  # napari's private parts
    native = getattr(canvas, "native", None)
    window = _main_window(viewer)
    if native is None or window is None or window.isVisible():
        return False
    native.setAttribute(Qt.WidgetAttribute.WA_NativeWindow)
    return True


def build_app(viewer, project_path: str | Path | None = None):
    """Dock the widgets and open ``project_path`` (if given) in an existing viewer. The app keeps
    its layers from one project to the next; started with no project, it makes them now (hidden),
    so that the first project opened later does not stall the window while napari adds them."""
    widget = dock_widgets(viewer)
    widget.session.keep_layers = True
    if project_path:
        widget.session.open_project(project_path)
    else:  # what opening a project would pay, paid while the clinician picks it
        widget.session.make_spare_layers()
        widget.session.warm_up()
    return widget


def log_to_stderr() -> None:
    """medlabeler's own INFO lines (``opened sample <id>``, which scripts follow) on stderr, once
    each, unless logging was set up already. Sample ids only: no file names, no patient data."""
    import logging

    logger = logging.getLogger("medlabeler")
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    # not on to the root logger too: a library gives it a stderr handler while the app runs, and
    # each warning (closing during a run) was printed twice
    logger.propagate = False


def run_app(project_path: str | Path | None = None) -> None:
    """Start the app and block until its window closes."""
    import napari

    log_to_stderr()
    # With a project, the window shows first (its messages need it); without, the layers are made
    # before it shows (build_app)
    viewer = new_viewer(show=bool(project_path))
    build_app(viewer, project_path)
    viewer.window.show()
    fit_window(viewer)
    napari.run()
