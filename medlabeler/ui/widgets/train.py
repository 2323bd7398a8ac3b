"""Train: choose a method, Retrain / Cancel, live loss and metric plot, model versions to roll back to."""

from __future__ import annotations

import math

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medlabeler.ui import engine_calls as calls
from medlabeler.ui.widgets._common import connect, hint, session_for
from medlabeler.ui.workers import main_thread_only

METHOD_LABELS = {
    "supervised": "supervised (labels only)",
    "mean-teacher": "mean teacher (semi-supervised)",
    "fixmatch": "FixMatch (semi-supervised)",
    "cross-teaching": "cross teaching (semi-supervised)",
    "srcl": "SRCL (semi-supervised, relational contrastive)",
    "simclr": "pretrain: SimCLR (no labels)",
    "pcl": "pretrain: positional contrastive (volumes)",
    "gravis": "pretrain: GraVIS (no labels)",
    "curriculum": "pretrain: curriculum SSL (no labels)",
}
INIT_CHOICES = {"from scratch": None, "from pretrained encoder": "pretrained", "from active model": "active"}


class LossPlot(QWidget):
    """Loss per epoch (left axis) and the validation metric (right axis), drawn on the main thread.

    Lines are updated in place and the layout is fixed: re-laying out a matplotlib figure takes
    hundreds of milliseconds on a slow CPU, which would stall the event loop at every epoch.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4, 2.4))
        self.figure.subplots_adjust(left=0.2, right=0.8, bottom=0.2, top=0.95)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(160)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.ax = self.figure.add_subplot(111)
        self.ax2 = self.ax.twinx()
        from matplotlib.ticker import MaxNLocator

        self.ax.set_xlabel("epoch")
        self.ax.set_ylabel("loss", color="tab:blue")
        self.ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        self.ax2.set_ylabel("val metric", color="tab:orange")
        (self.loss_line,) = self.ax.plot([], [], "o-", color="tab:blue", markersize=3)
        (self.metric_line,) = self.ax2.plot([], [], "s--", color="tab:orange", markersize=3)
        self.draws = 0
        self.reset()

    def reset(self) -> None:
        self.epochs: list[float] = []
        self.losses: list[float] = []
        self.metric_epochs: list[float] = []
        self.metric_values: list[float] = []
        self.metric_name = ""
        self._draw()

    @main_thread_only
    def add_event(self, event) -> None:
        kind = getattr(event, "kind", "")
        if kind == "epoch" and isinstance(getattr(event, "loss", None), float) and math.isfinite(event.loss):
            self.epochs.append(float(event.epoch))
            self.losses.append(event.loss)
        metric = calls.model_metric(getattr(event, "metrics", None) or {})
        if kind == "metric" and metric is not None:
            self.metric_name = metric[0]
            self.metric_epochs.append(float(getattr(event, "epoch", len(self.metric_values))))
            self.metric_values.append(metric[1])
        if kind in ("epoch", "metric"):
            self._draw()

    def _draw(self) -> None:
        self.loss_line.set_data(self.epochs, self.losses)
        self.metric_line.set_data(self.metric_epochs, self.metric_values)
        self.ax2.set_ylabel(f"val {self.metric_name}" if self.metric_name else "val metric", color="tab:orange")
        for ax in (self.ax, self.ax2):
            ax.relim()
            ax.autoscale_view()
        self.canvas.draw_idle()
        self.draws += 1


class TrainWidget(QWidget):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        #: More engine config keys (see engine.pipeline.DEFAULTS), merged over the form's values.
        self.extra_config: dict = {}
        layout = QVBoxLayout(self)

        form = QFormLayout()
        self.method_combo = QComboBox()
        for name in (*calls.train_methods(), *calls.pretrain_methods()):
            self.method_combo.addItem(METHOD_LABELS.get(name, name), name)
        form.addRow("Method", self.method_combo)
        self.init_combo = QComboBox()
        self.init_combo.addItems(list(INIT_CHOICES))
        self.init_combo.setCurrentText("from pretrained encoder")
        form.addRow("Start", self.init_combo)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.epochs.setValue(10)
        form.addRow("Epochs", self.epochs)
        self.image_size = QSpinBox()
        self.image_size.setRange(32, 1024)
        self.image_size.setSingleStep(32)
        self.image_size.setValue(128)
        form.addRow("Image size", self.image_size)
        self.batch_size = QSpinBox()
        self.batch_size.setRange(1, 512)
        self.batch_size.setValue(8)
        form.addRow("Batch size", self.batch_size)
        layout.addLayout(form)

        buttons = QHBoxLayout()
        self.train_button = QPushButton("Retrain")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        layout.addWidget(self.progress)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.plot = LossPlot()
        layout.addWidget(self.plot)

        layout.addWidget(QLabel("Model versions"))
        self.models_table = QTableWidget(0, 5)
        self.models_table.setHorizontalHeaderLabels(["", "version", "method", "labels", "val metric"])
        self.models_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.models_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.models_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.models_table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.models_table.verticalHeader().setVisible(False)
        layout.addWidget(self.models_table, 1)
        self.activate_button = QPushButton("Activate selected version")
        layout.addWidget(self.activate_button)
        layout.addWidget(hint("Training runs in the background: keep labeling. The previous model "
                              "stays active if a run is cancelled or fails."))

        self.train_button.clicked.connect(self.retrain)
        self.cancel_button.clicked.connect(self.session.cancel_training)
        self.activate_button.clicked.connect(self.activate_selected)
        self.method_combo.currentIndexChanged.connect(lambda _: self._method_changed())
        connect(self, self.session.training_event, self._on_event)
        connect(self, self.session.training_started, self._started)
        connect(self, self.session.training_ended, self._ended)
        connect(self, self.session.models_changed, self.refresh_models)
        connect(self, self.session.project_changed, self._project_changed)
        self._project_changed()

    @property
    def method(self) -> str:
        return self.method_combo.currentData()

    def _method_changed(self) -> None:
        self.init_combo.setEnabled(self.method in calls.train_methods())

    def _project_changed(self) -> None:
        self.train_button.setEnabled(self.session.project is not None and not self.session.training_running)
        self.refresh_models()

    def config(self) -> dict:
        return {"image_size": self.image_size.value(), "batch_size": self.batch_size.value(),
                "unlabeled_batch_size": self.batch_size.value(), **self.extra_config}

    def retrain(self) -> bool:
        init = INIT_CHOICES[self.init_combo.currentText()]
        if init == "active":
            active = self.session.project.active_model() if self.session.project else None
            init = active.version if active is not None else None
        if init == "pretrained" and not self._has_pretrained():
            init = None
        return self.session.start_training(self.method, init=init, epochs=self.epochs.value(), config=self.config())

    def _has_pretrained(self) -> bool:
        project = self.session.project
        return project is not None and any(m.method in calls.pretrain_methods() for m in project.models())

    def _started(self, method: str) -> None:
        self.plot.reset()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.train_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(f"{METHOD_LABELS.get(method, method)}: starting…")

    @main_thread_only
    def _on_event(self, event) -> None:
        self.plot.add_event(event)
        parts = []
        if getattr(event, "total_steps", 0):
            parts.append(f"step {event.step}/{event.total_steps}")
            if self.progress.maximum() != event.total_steps:
                self.progress.setRange(0, event.total_steps)
            self.progress.setValue(min(event.step, event.total_steps))
        if getattr(event, "epoch", None) is not None:
            parts.append(f"epoch {event.epoch}")
        if isinstance(getattr(event, "loss", None), float):
            parts.append(f"loss {event.loss:.4f}")
        speed = getattr(event, "images_per_second", None)
        if speed:
            parts.append(f"{speed:.0f} img/s")
        if getattr(event, "message", ""):
            parts.append(event.message)
        self.status.setText(", ".join(parts))

    def _ended(self, outcome: str) -> None:
        self.train_button.setEnabled(self.session.project is not None)
        self.cancel_button.setEnabled(False)
        words = {"done": "Training finished; updating predictions and the queue.",
                 "cancelled": "Cancelled; the previous model stays active.",
                 "failed": "Training stopped with an error; the previous model stays active."}
        self.status.setText(words.get(outcome, outcome))
        self.refresh_models()

    def refresh_models(self) -> None:
        project = self.session.project
        models = project.models() if project is not None else []
        active = project.active_model() if project is not None else None
        self.models_table.setRowCount(len(models))
        for r, m in enumerate(sorted(models, key=lambda m: m.version, reverse=True)):
            metric = calls.model_metric(m.metrics or {})
            cells = ["●" if active and m.version == active.version else "", f"v{m.version}", m.method,
                     str(m.n_labels or 0), f"{metric[0]} {metric[1]:.3f}" if metric else "—"]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c == 1:
                    item.setData(Qt.ItemDataRole.UserRole, m.version)
                self.models_table.setItem(r, c, item)
        self.models_table.resizeColumnsToContents()

    def activate_selected(self) -> None:
        rows = self.models_table.selectionModel().selectedRows()
        if not rows:
            return
        version = int(self.models_table.item(rows[0].row(), 1).data(Qt.ItemDataRole.UserRole))
        method = self.models_table.item(rows[0].row(), 2).text()
        if method.startswith("pretrain:"):
            from napari.utils.notifications import show_info

            show_info(f"v{version} is a pretrained encoder, not a model that predicts: train from it "
                      "with Start 'from pretrained encoder'.")
            return
        self.session.activate_model(version)
