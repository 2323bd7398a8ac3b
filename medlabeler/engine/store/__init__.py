"""The project store: a folder with an SQLite index, label masks, models and an audit log.

``from medlabeler.engine.store import Project, Sample, LabelVersion, ModelVersion, TaskSpec``
"""

from .project import Project
from .records import ORIGINS, SPLITS, LabelVersion, ModelVersion, Sample, TaskSpec

__all__ = ["Project", "Sample", "LabelVersion", "ModelVersion", "TaskSpec", "ORIGINS", "SPLITS"]
