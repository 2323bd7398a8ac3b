"""The 'medlabeler' dock widget: the queue on top, tabs for labeling, review, training, project, metrics."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QSplitter, QTabWidget, QVBoxLayout, QWidget

from medlabeler.ui.widgets._common import connect
from medlabeler.ui.widgets.label import LabelWidget
from medlabeler.ui.widgets.metrics import MetricsWidget
from medlabeler.ui.widgets.project import ProjectWidget
from medlabeler.ui.widgets.queue import QueueWidget
from medlabeler.ui.widgets.review import ReviewWidget
from medlabeler.ui.widgets.train import TrainWidget


class MedlabelerWidget(QWidget):
    """All of medlabeler in one dock: the parts are also available as separate widgets."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        from medlabeler.ui.session import get_session

        self.viewer = napari_viewer
        self.session = get_session(napari_viewer)
        self.queue = QueueWidget(napari_viewer)
        self.label = LabelWidget(napari_viewer)
        self.review = ReviewWidget(napari_viewer)
        self.train = TrainWidget(napari_viewer)
        self.project = ProjectWidget(napari_viewer)
        self.metrics = MetricsWidget(napari_viewer)
        self.tabs = QTabWidget()
        for widget, title in ((self.label, "Label"), (self.review, "Review"), (self.train, "Train"),
                              (self.project, "Project"), (self.metrics, "Metrics")):
            self.tabs.addTab(widget, title)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.queue)
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        splitter.setSizes([260, 420])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(splitter)
        connect(self, self.session.project_changed, self._project_changed)
        self._project_changed()

    def _project_changed(self) -> None:
        if self.session.project is None:
            self.tabs.setCurrentWidget(self.project)
        elif self.tabs.currentWidget() is self.project:
            self.tabs.setCurrentWidget(self.label)
