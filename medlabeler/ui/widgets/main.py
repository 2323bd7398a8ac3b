"""The 'medlabeler' dock widget: the queue on top, tabs for labeling, review, training, project, metrics."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFrame, QScrollArea, QSplitter, QTabWidget, QVBoxLayout, QWidget

from medlabeler.ui.widgets._common import close_with_the_panel, connect, leave_keys_to_the_canvas
from medlabeler.ui.widgets.label import LabelWidget
from medlabeler.ui.widgets.metrics import MetricsWidget
from medlabeler.ui.widgets.project import ProjectWidget
from medlabeler.ui.widgets.queue import QueueWidget
from medlabeler.ui.widgets.review import ReviewWidget
from medlabeler.ui.widgets.train import TrainWidget


class ScrollTabs(QTabWidget):
    """Tabs whose pages scroll, so that a tall page (Train) never sets the window's minimum height
    (a 768 px screen must show the whole window). Pages are addressed by the widget put in."""

    def add_page(self, page: QWidget, title: str) -> None:
        area = QScrollArea()
        area.setWidget(page)
        area.setWidgetResizable(True)
        area.setFrameShape(QFrame.Shape.NoFrame)
        area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.addTab(area, title)

    def setCurrentWidget(self, page: QWidget) -> None:  # noqa: N802 - Qt name
        for i in range(self.count()):
            if self.widget(i) is page or getattr(self.widget(i), "widget", lambda: None)() is page:
                self.setCurrentIndex(i)
                return

    def currentWidget(self) -> QWidget | None:  # noqa: N802 - Qt name
        area = super().currentWidget()
        return area.widget() if isinstance(area, QScrollArea) else area


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
        self.tabs = ScrollTabs()
        for widget, title in ((self.label, "Label"), (self.review, "Review"), (self.train, "Train"),
                              (self.project, "Project"), (self.metrics, "Metrics")):
            self.tabs.add_page(widget, title)
        self.splitter = splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.queue)
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        splitter.setCollapsible(0, False)
        splitter.setSizes([240, 420])
        self.queue.collapsed.connect(self._queue_collapsed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(splitter)
        connect(self, self.session.project_changed, self._project_changed)
        self._project_changed()
        leave_keys_to_the_canvas(self)
        close_with_the_panel(self)

    def _queue_collapsed(self, collapsed: bool) -> None:
        """A collapsed queue keeps only its header row: the tabs get the height."""
        total = sum(self.splitter.sizes())
        queue = self.queue.sizeHint().height() if collapsed else max(200, total * 2 // 5)
        self.splitter.setSizes([queue, max(0, total - queue)])

    def _project_changed(self) -> None:
        if self.session.project is None:
            self.tabs.setCurrentWidget(self.project)
        elif self.tabs.currentWidget() is self.project:
            self.tabs.setCurrentWidget(self.label)
