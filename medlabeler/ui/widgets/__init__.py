"""Dock widgets: thin views over a :class:`medlabeler.ui.session.Session`."""

from medlabeler.ui.widgets._common import scrolled
from medlabeler.ui.widgets.label import LabelWidget
from medlabeler.ui.widgets.main import MedlabelerWidget
from medlabeler.ui.widgets.metrics import MetricsWidget
from medlabeler.ui.widgets.project import ProjectWidget
from medlabeler.ui.widgets.queue import QueueWidget
from medlabeler.ui.widgets.review import ReviewWidget
from medlabeler.ui.widgets.train import TrainWidget

__all__ = [
    "LabelPanel",
    "LabelWidget",
    "MedlabelerWidget",
    "MetricsPanel",
    "MetricsWidget",
    "ProjectPanel",
    "ProjectWidget",
    "QueueWidget",
    "ReviewPanel",
    "ReviewWidget",
    "TrainPanel",
    "TrainWidget",
]


def _scrolling(widget_class: type) -> type:
    """The Plugins menu's entry of one panel: ``widget_class`` in a page that scrolls (`scrolled`)."""

    class Panel(widget_class):
        def __init__(self, napari_viewer, parent=None):
            super().__init__(napari_viewer, parent)
            scrolled(self)

    Panel.__name__ = Panel.__qualname__ = widget_class.__name__.replace("Widget", "Panel")
    return Panel


ProjectPanel = _scrolling(ProjectWidget)
LabelPanel = _scrolling(LabelWidget)
TrainPanel = _scrolling(TrainWidget)
ReviewPanel = _scrolling(ReviewWidget)
MetricsPanel = _scrolling(MetricsWidget)
