"""The napari sample-data entry: opens the bundled demo project (a real brain MRI) in the viewer."""

from __future__ import annotations

import numpy as np

PLACEHOLDER = "medlabeler_placeholder"


def demo_project():
    """npe2 sample data: schedules opening the demo project and returns a placeholder layer.

    napari requires sample data to return at least one layer; the project (the MNI152 T1 as a
    slice segmentation project, created in ~/.medlabeler/demo the first time) then replaces it.
    """
    import napari
    from qtpy.QtCore import QTimer

    viewer = napari.current_viewer()
    if viewer is not None:
        QTimer.singleShot(0, lambda: _open_demo(viewer))
    return [(np.zeros((2, 2), np.float32), {"name": "loading the medlabeler demo…", "metadata": {PLACEHOLDER: True}}, "image")]


def _open_demo(viewer) -> None:
    from medlabeler.ui.app import dock_widgets
    from medlabeler.ui.session import get_session
    from medlabeler.ui.widgets import MedlabelerWidget

    for layer in list(viewer.layers):
        if layer.metadata.get(PLACEHOLDER):
            viewer.layers.remove(layer)
    if not any(isinstance(w, MedlabelerWidget) for w in viewer.window.dock_widgets.values()):
        dock_widgets(viewer)
    get_session(viewer).open_demo()
