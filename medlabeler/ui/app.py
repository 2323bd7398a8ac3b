"""`medlabeler app [PROJECT]`: a napari viewer with the medlabeler dock, the project opened."""

from __future__ import annotations

from pathlib import Path


def dock_widgets(viewer):
    """Dock the medlabeler widget in ``viewer``; returns it (its parts are attributes)."""
    from medlabeler.ui.widgets import MedlabelerWidget

    widget = MedlabelerWidget(viewer)
    viewer.window.add_dock_widget(widget, name="medlabeler", area="right")
    return widget


def build_app(viewer, project_path: str | Path | None = None):
    """Dock the widgets and open ``project_path`` (if given) in an existing viewer."""
    widget = dock_widgets(viewer)
    if project_path:
        widget.session.open_project(project_path)
    return widget


def run_app(project_path: str | Path | None = None) -> None:
    """Start the app and block until its window closes."""
    import napari

    viewer = napari.Viewer(title="medlabeler")
    build_app(viewer, project_path)
    napari.run()
