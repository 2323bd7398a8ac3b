"""Dock widgets: thin views over a :class:`medlabeler.ui.session.Session`."""

from medlabeler.ui.widgets.label import LabelWidget
from medlabeler.ui.widgets.main import MedlabelerWidget
from medlabeler.ui.widgets.metrics import MetricsWidget
from medlabeler.ui.widgets.project import ProjectWidget
from medlabeler.ui.widgets.queue import QueueWidget
from medlabeler.ui.widgets.review import ReviewWidget
from medlabeler.ui.widgets.train import TrainWidget

__all__ = [
    "LabelWidget",
    "MedlabelerWidget",
    "MetricsWidget",
    "ProjectWidget",
    "QueueWidget",
    "ReviewWidget",
    "TrainWidget",
]
