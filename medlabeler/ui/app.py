"""`medlabeler app [PROJECT]`: a napari viewer with the medlabeler dock, the project opened."""

from __future__ import annotations

from pathlib import Path


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


def fit_window(viewer) -> None:
    """Fill the screen: maximized, and sized to the screen where no window manager maximizes."""
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    window = _main_window(viewer)
    if window is None:
        return
    screen = window.screen() or QApplication.primaryScreen()
    if screen is not None:
        window.setGeometry(screen.availableGeometry())
    window.showMaximized()
    QTimer.singleShot(0, viewer.reset_view)  # once the canvas has its new size: the image fills it


def build_app(viewer, project_path: str | Path | None = None):
    """Dock the widgets and open ``project_path`` (if given) in an existing viewer."""
    widget = dock_widgets(viewer)
    if project_path:
        widget.session.open_project(project_path)
    return widget


def log_to_stderr() -> None:
    """medlabeler's own INFO lines (``opened sample <id>``, which scripts follow) on stderr, unless
    logging was set up already. Sample ids only: no file names, no patient data."""
    import logging

    logger = logging.getLogger("medlabeler")
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def run_app(project_path: str | Path | None = None) -> None:
    """Start the app and block until its window closes."""
    import napari

    log_to_stderr()
    viewer = napari.Viewer(title="medlabeler")
    build_app(viewer, project_path)
    fit_window(viewer)
    napari.run()
