"""Metrics: validation performance against the number of labels, over the model versions."""

from __future__ import annotations

from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from medlabeler.ui import engine_calls as calls
from medlabeler.ui.widgets._common import connect, hint, session_for


class MetricsWidget(QWidget):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        layout = QVBoxLayout(self)
        self.figure = Figure(figsize=(4, 3), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(200)
        self.ax = self.figure.add_subplot(111)
        layout.addWidget(self.canvas, 1)
        self.caption = QLabel("")
        self.caption.setWordWrap(True)
        layout.addWidget(self.caption)
        layout.addWidget(hint("Each point is a model version: its validation metric against the labels it was trained on."))
        connect(self, self.session.models_changed, self.refresh)
        connect(self, self.session.project_changed, self.refresh)
        self.points: dict[str, list[tuple[int, float, int]]] = {}
        self.refresh()

    def refresh(self) -> None:
        project = self.session.project
        self.points = {}
        metric_name = ""
        for m in project.models() if project is not None else []:
            metric = calls.model_metric(m.metrics or {})
            if metric is None:
                continue
            metric_name = metric_name or metric[0]
            if metric[0] != metric_name:
                continue
            self.points.setdefault(m.method, []).append((int(m.n_labels or 0), metric[1], m.version))
        self.ax.clear()
        for method, pts in sorted(self.points.items()):
            pts.sort()
            self.ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=method, markersize=4)
            for n, value, version in pts:
                self.ax.annotate(f"v{version}", (n, value), fontsize=7, xytext=(2, 2), textcoords="offset points")
        self.ax.set_xlabel("labeled samples")
        self.ax.set_ylabel(f"validation {metric_name}" if metric_name else "validation metric")
        if self.points:
            self.ax.legend(fontsize=7)
        self.canvas.draw_idle()
        count = sum(len(p) for p in self.points.values())
        if count:
            self.caption.setText(f"{count} model versions with a validation {metric_name}")
        elif project is not None and not project.samples(split="val", labeled=True):
            self.caption.setText("No validation labels yet: the queue mixes in validation samples; "
                                 "label some to measure the models.")
        else:
            self.caption.setText("No evaluated model yet.")
