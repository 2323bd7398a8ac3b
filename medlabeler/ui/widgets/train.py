"""Train: the background learning loop (on by default, Pause), Retrain / Cancel, a live loss and
metric plot, and the model versions (active, candidates not promoted) to activate or roll back to."""

from __future__ import annotations

import math
from dataclasses import replace

from qtpy.QtCore import QEvent, Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDoubleSpinBox,
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
from medlabeler.ui.widgets._common import (
    CompactCombo, close_with_the_panel, connect, hint, leave_keys_to_the_canvas, session_for,
)
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
INIT_CHOICES = {"from active model": "active", "from scratch": None, "from pretrained encoder": "pretrained"}
RECOMMENDED = "recommended"
#: Rows the versions table shows without scrolling.
VERSION_ROWS = 6
#: the versions table's columns; the method is the version cell's tooltip, and the active version
#: reads "● vN", so the status (the one long text) gets the room a 1366 px screen's dock has
VERSION_COLUMNS = ("version", "status", "labels", "val metric")
COL_VERSION, COL_STATUS, COL_LABELS, COL_METRIC = range(len(VERSION_COLUMNS))
ACTIVE_MARK = "●"
CANCELLING = "Cancelling after the step it is on; the active model stays."
CANCELLED = "Cancelled; the previous model stays active."
LOOP_OFF = " Background learning is off: tick it to go on."
RUN_FORMAT = "%p%"  # a run's steps
SCORING_FORMAT = "scored %v of %m"  # the loop's re-scoring of the pool


def retrain_request_text(now: str, phase: str, pipeline: str, *, in_run: bool = False) -> str:
    """What a Retrain pressed with the loop on does, as things stand (``in_run``: a candidate or an
    encoder is being trained, paused or not). "trains a candidate now" was said while the round
    under way carried on to its end (the request is taken between jobs), and nothing said that a
    full run at rest or a re-scoring is stopped for it."""
    if now.startswith(("full run", "a full run")):
        when = "the full run at rest stops (the active model stays) and a candidate trains now"
    elif phase == "scoring":
        when = "the re-scoring stops and a candidate trains now"
    elif phase == "pretraining":
        when = "a candidate trains after the pretraining under way"
    elif phase == "training" or in_run:
        when = "a candidate trains after the run under way"
    else:
        when = "the loop trains a candidate now"
    return (f"Retrain requested: {when}, with the recommended pipeline ({pipeline}); the form below sets a run "
            "of its own with learning off.")


class LossPlot(QWidget):
    """Loss (left axis) and the validation metric (right axis) against the run's optimizer steps,
    a point per epoch and per validation, drawn on the main thread.

    Lines are updated in place and the layout is fixed: re-laying out a matplotlib figure takes
    hundreds of milliseconds on a slow CPU, which would stall the event loop at every epoch.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4, 2.4))
        self.figure.subplots_adjust(left=0.16, right=0.84, bottom=0.25, top=0.88)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(160)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.ax = self.figure.add_subplot(111)
        self.ax2 = self.ax.twinx()
        from matplotlib.ticker import MaxNLocator

        self.ax.set_xlabel("step")
        # the axes' names over them, each on its side: rotated labels were cut off in a narrow dock
        # (a fixed height: matplotlib's own placement lifted them out of the figure beside an empty twin)
        self.ax.set_title("loss", loc="left", color="tab:blue", fontsize=9, y=1.0, pad=3)
        self.ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        self.metric_title = self.ax.set_title("val metric", loc="right", color="tab:orange", fontsize=9, y=1.0, pad=3)
        (self.loss_line,) = self.ax.plot([], [], "o-", color="tab:blue", markersize=3)
        (self.metric_line,) = self.ax2.plot([], [], "s--", color="tab:orange", markersize=3)
        self.empty_text = self.ax.text(0.5, 0.5, "no training run yet", ha="center", va="center",
                                       transform=self.ax.transAxes, color="gray")
        self.ax.yaxis.set_major_locator(MaxNLocator(4))
        self.ax2.yaxis.set_major_locator(MaxNLocator(4))
        self.draws = 0
        self._stale = False  # data changed while the plot was hidden: drawn when it is shown
        self.reset()

    def ended(self, outcome: str) -> None:
        """A run ended ("done", "cancelled", "failed"): an empty plot stops saying it is training."""
        if outcome != "done" and not self.losses and not self.metric_values:
            self.empty_text.set_text(f"the run was {'cancelled' if outcome == 'cancelled' else 'stopped'} "
                                     "before its first point")
            self._draw()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt name
        super().showEvent(event)
        if self._stale:
            self._draw()

    def reset(self, running: bool = False) -> None:
        """Empty; ``running``: a run has started (a point comes every few steps, the first soon)."""
        # short: the plot is as narrow as the dock ("...comes after the first epoch" ran past its frame)
        self.empty_text.set_text("training: first point soon" if running else "no training run yet")
        self.steps: list[float] = []
        self.losses: list[float] = []
        self.metric_steps: list[float] = []
        self.metric_values: list[float] = []
        self.metric_name = ""
        self._draw()

    @main_thread_only
    def add_event(self, event) -> None:
        kind = getattr(event, "kind", "")
        if kind == "epoch" and isinstance(getattr(event, "loss", None), float) and math.isfinite(event.loss):
            self.steps.append(float(event.step or event.epoch))
            self.losses.append(event.loss)
        metric = calls.model_metric(getattr(event, "metrics", None) or {})
        if kind == "metric" and metric is not None:
            self.metric_name = metric[0]
            self.metric_steps.append(float(event.step or event.epoch))
            self.metric_values.append(metric[1])
        if kind in ("epoch", "metric"):
            self._draw()

    def _draw(self) -> None:
        empty = not self.losses and not self.metric_values
        for ax in (self.ax, self.ax2):  # no ticks on an axis with nothing on it
            ax.tick_params(left=bool(self.losses) and ax is self.ax, labelleft=bool(self.losses) and ax is self.ax,
                           right=bool(self.metric_values) and ax is self.ax2,
                           labelright=bool(self.metric_values) and ax is self.ax2, bottom=not empty,
                           labelbottom=not empty)
        self.metric_title.set_visible(bool(self.metric_values))
        self.empty_text.set_visible(empty)
        self.loss_line.set_data(self.steps, self.losses)
        self.metric_line.set_data(self.metric_steps, self.metric_values)
        self.metric_title.set_text(f"val {self.metric_name}" if self.metric_name else "val metric")
        for ax in (self.ax, self.ax2):
            ax.relim()
            ax.autoscale_view()
        if not self.isVisible():  # rendering a figure takes 50-150 ms of the main thread: not for no one
            self._stale = True
            return
        self._stale = False
        self.canvas.draw_idle()
        self.draws += 1


class StatusLabel(QLabel):
    """A wrapped status of a fixed number of lines, the whole text in its tooltip: a message
    longer or shorter than the one before (Cancel's, a step report) moved the plot and the versions
    table under the pointer."""

    def __init__(self, lines: int, parent=None):
        super().__init__("", parent)
        self.lines = lines
        self.setWordWrap(True)
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self._fit_height()

    def _fit_height(self) -> None:
        # Qt lays a line of text out on whole pixels: a line takes lineSpacing + 1 at some sizes
        margins = self.contentsMargins()
        line = self.fontMetrics().lineSpacing() + 1
        self.setFixedHeight(self.lines * line + margins.top() + margins.bottom() + 2)

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        """napari's style sheet sets a larger font after the label was made: sized for the old one,
        the third line of the loop's status was cut in half."""
        super().changeEvent(event)
        if event.type() in (QEvent.Type.FontChange, QEvent.Type.StyleChange):
            self._fit_height()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self._fit_height()  # polished by now: the font it is drawn with
        super().showEvent(event)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        super().setText(text)
        self.setToolTip(text)


class StatusLines(StatusLabel):
    """A status of a fixed number of lines, one part on each, cut to the width with an ellipsis
    (the whole text in the tooltip): wrapped, the loop's "labels since the last model" fell
    below its last line. Parts beyond the lines share the last one."""

    def __init__(self, lines: int, parent=None):
        super().__init__(lines, parent)
        self.setWordWrap(False)
        self.parts: list[str] = []
        self.setMinimumWidth(1)  # elided: its text never widens the dock

    def set_parts(self, parts: list[str]) -> None:
        self.parts = [p for p in parts if p]
        self.setToolTip(" · ".join(self.parts))
        self._show()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._show()

    def _show(self) -> None:
        parts = self.parts[: self.lines - 1] + ([" · ".join(self.parts[self.lines - 1:])]
                                                if len(self.parts) >= self.lines else [])
        width = max(1, self.contentsRect().width())
        metrics = self.fontMetrics()
        QLabel.setText(self, "\n".join(metrics.elidedText(p, Qt.TextElideMode.ElideRight, width) for p in parts))


class TrainWidget(QWidget):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.learning = self.session.learning
        #: More engine config keys (see engine.workflows.run_config.DEFAULTS), merged over the form's values.
        self.extra_config: dict = {}
        layout = QVBoxLayout(self)

        loop_row = QHBoxLayout()
        self.loop_check = QCheckBox("Learn in the background")
        self.loop_check.setToolTip("Train a new candidate after every few labels; it replaces the active model "
                                   "only if its validation metric is not worse")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        loop_row.addWidget(self.loop_check)
        loop_row.addWidget(self.pause_button)
        layout.addLayout(loop_row)
        self.loop_status = StatusLines(lines=3)  # fixed: its words change length as the loop works
        layout.addWidget(self.loop_status)

        form = QFormLayout()
        self.method_combo = CompactCombo()
        self.method_combo.addItem("recommended", RECOMMENDED)
        for name in (*calls.train_methods(), *calls.pretrain_methods()):
            self.method_combo.addItem(METHOD_LABELS.get(name, name), name)
        form.addRow("Method", self.method_combo)
        self.init_combo = CompactCombo()
        self._offered_active = False
        form.addRow("Start", self.init_combo)
        self.init_note = hint("")
        form.addRow(self.init_note)
        self.steps = QSpinBox()
        self.steps.setRange(1, 100000)
        self.steps.setSingleStep(50)
        self.steps.setValue(300)
        self.steps.setToolTip("Optimizer steps of a run started here with 'Learn in the background' off (the "
                              "default is the recommended budget; the background loop always uses it, and a "
                              "third of it for a candidate warm-started from the active model)")
        form.addRow("Steps", self.steps)
        self.budget = QDoubleSpinBox()
        self.budget.setRange(0, 24 * 3600)
        self.budget.setDecimals(0)
        self.budget.setSuffix(" s")
        self.budget.setSpecialValueText("no limit")
        self.budget.setToolTip("Stop a run started here cleanly after this many seconds (0: no limit); the "
                               "background loop's runs use the recommended budget")
        form.addRow("Time budget", self.budget)
        self.image_size = QSpinBox()
        self.image_size.setRange(32, 1024)
        self.image_size.setSingleStep(32)
        self.image_size.setValue(128)
        self.image_size.setToolTip("Segmentation: the side of the training crops, taken at the image's native "
                                   "resolution (scaled down only above 256 px); predictions see the whole image. "
                                   "Classification: whole images are resized to it.")
        form.addRow("Image size", self.image_size)
        self.batch_size = QSpinBox()
        self.batch_size.setRange(1, 512)
        self.batch_size.setValue(8)
        form.addRow("Batch size", self.batch_size)

        buttons = QHBoxLayout()
        self.train_button = QPushButton("Retrain now")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self._cancelling = False  # Cancel pressed, the run not ended yet
        self._failure_shown = ""  # the loop's failed run last shown in the status
        self._request_shown = False  # the status says what a Retrain asked the loop for
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        layout.addWidget(self.progress)
        self.status = StatusLabel(lines=4)
        layout.addWidget(self.status)
        self.plot = LossPlot()

        versions_title = QLabel(f"Model versions ({ACTIVE_MARK} active; a version's tooltip names its method)")
        versions_title.setWordWrap(True)
        layout.addWidget(versions_title)
        self.models_table = QTableWidget(0, len(VERSION_COLUMNS))
        self.models_table.setHorizontalHeaderLabels(list(VERSION_COLUMNS))
        self.models_table.setWordWrap(True)
        self.models_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.models_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.models_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.models_table.horizontalHeader().setSectionResizeMode(COL_STATUS, QHeaderView.ResizeMode.Stretch)
        self.models_table.verticalHeader().setVisible(False)
        row_height = self.models_table.verticalHeader().defaultSectionSize()
        self.models_table.setMinimumHeight(row_height * (VERSION_ROWS + 1) + 6)
        layout.addWidget(self.models_table, 1)
        table_buttons = QHBoxLayout()
        self.activate_button = QPushButton("Activate selected")
        self.rollback_button = QPushButton("Roll back")
        self.rollback_button.setToolTip("Make the previously active model active again")
        table_buttons.addWidget(self.activate_button)
        table_buttons.addWidget(self.rollback_button)
        layout.addLayout(table_buttons)
        # the loop, its runs and the versions first (what a clinician watches; on a 1366x768 screen
        # the versions table was below the fold, under a form that only a run by hand uses)
        layout.addWidget(self.plot)
        layout.addWidget(hint("A run by hand (Retrain now with 'Learn in the background' off) uses:"))
        layout.addLayout(form)
        layout.addWidget(hint("Learning runs in the background: keep labeling. A new model becomes active only "
                              f"if its validation metric is at least the active one's, and the best one's on the same labels, "
                              f"minus {calls.promotion_tolerance():g} "
                              "(re-measured on the current validation labels); cancelled or failed runs "
                              "leave the active model."))

        self.train_button.clicked.connect(self.retrain)
        self.cancel_button.clicked.connect(self.cancel)
        self.activate_button.clicked.connect(self.activate_selected)
        self.rollback_button.clicked.connect(self.roll_back)
        self.loop_check.toggled.connect(self._loop_toggled)
        self.pause_button.toggled.connect(self.learning.set_paused)
        self.method_combo.currentIndexChanged.connect(lambda _: self._method_changed())
        connect(self, self.session.training_event, self._on_event)
        connect(self, self.session.training_started, self._started)
        connect(self, self.session.training_ended, self._ended)
        connect(self, self.session.models_changed, self.refresh_models)
        # the versions' figures "on the validation labels as they are now" follow the labels; not
        # for a hidden tab (one label query per validation label, at every save)
        connect(self, self.session.labels_changed, self._labels_changed, later=True)
        self._models_stale = False
        connect(self, self.session.project_changed, self._project_changed)
        connect(self, self.learning.status_changed, self._loop_status)
        connect(self, self.learning.run_started, self._run_started)
        self._project_changed()
        leave_keys_to_the_canvas(self)
        close_with_the_panel(self)

    @property
    def method(self) -> str | None:
        data = self.method_combo.currentData()
        return None if data == RECOMMENDED else data

    def _method_changed(self) -> None:
        self.init_combo.setEnabled(self.method not in calls.pretrain_methods())

    def _mark_experimental(self, task_kind: str) -> None:
        """Methods that lost to supervised on this task's benchmark say so, with the reason."""
        from medlabeler.engine.workflows.recommended import experimental

        for index in range(1, self.method_combo.count()):
            method = self.method_combo.itemData(index)
            why = experimental(task_kind, method)
            label = METHOD_LABELS.get(method, method)
            self.method_combo.setItemText(index, f"{label} (experimental)" if why else label)
            self.method_combo.setItemData(index, f"experimental: {why} (docs/benchmarks.md)" if why else None,
                                          Qt.ToolTipRole)

    def _project_changed(self) -> None:
        project = self.session.project
        if project is not None:
            rec = calls.recommendation(project)
            name = METHOD_LABELS.get(rec.method, rec.method)
            # the method first: a narrow dock cuts the end of the text
            self.method_combo.setItemText(0, f"{rec.pretrain.upper() + ' → ' if rec.pretrain else ''}{name} (recommended)")
            self.method_combo.setItemData(0, rec.text(), Qt.ToolTipRole)
            self._mark_experimental(project.task.kind)
            self.steps.setValue(int(rec.config.get("steps") or self.steps.value()))
            defaults = calls.run_defaults()
            self.image_size.setValue(int(rec.config.get("image_size", defaults["image_size"])))
            self.batch_size.setValue(int(rec.config.get("batch_size", defaults["batch_size"])))
        self._offer_inits()
        self._loop_status()
        self.refresh_models()

    def _offer_inits(self) -> None:
        """Offer only the starting points that exist in this project, and say why one is missing."""
        project = self.session.project
        current = self.init_combo.currentText()
        choices = ["from scratch"]
        if project is not None and project.active_model() is not None:
            choices.insert(0, "from active model")
        has_pretrained = calls.has_pretrained(project)
        if has_pretrained:
            choices.append("from pretrained encoder")
        self.init_combo.blockSignals(True)
        self.init_combo.clear()
        self.init_combo.addItems(choices)
        had_active = self._offered_active
        self._offered_active = "from active model" in choices
        if current in choices and not (self._offered_active and not had_active):
            self.init_combo.setCurrentText(current)  # else the first: warm start once a model exists
        self.init_combo.blockSignals(False)
        no_model = project is not None and project.active_model() is None  # (once one exists it starts there)
        self.init_note.setText("No pretrained encoder here yet: pretrain one to start from it."
                               if no_model and not has_pretrained else "")
        self.init_note.setVisible(bool(self.init_note.text()))

    def config(self) -> dict:
        return {"image_size": self.image_size.value(), "batch_size": self.batch_size.value(),
                "unlabeled_batch_size": self.batch_size.value(), **self.extra_config}

    # --- the loop -------------------------------------------------------------------------------
    def _loop_toggled(self, on: bool) -> None:
        if on and not self.learning.running:
            self.learning.config = dict(self.extra_config)
            if not self.learning.start():
                self.loop_check.blockSignals(True)
                self.loop_check.setChecked(False)
                self.loop_check.blockSignals(False)
        elif not on and self.learning.running:
            self.learning.stop()
        self._loop_status()

    def _loop_status(self) -> None:
        running = self.learning.running
        if self._cancelling and not running and not self.session.training_running:
            self._cancelling = False  # the loop's run ended: no training_ended says so
            self.status.setText(CANCELLED + LOOP_OFF)
        failure = self.learning.last_failure
        if failure and failure != self._failure_shown:  # the run's last step report would stay on
            self.status.setText(failure)
            self._reset_progress()
        self._failure_shown = failure
        self.loop_check.blockSignals(True)
        self.loop_check.setChecked(running)
        self.loop_check.blockSignals(False)
        self.pause_button.setEnabled(running)
        self.pause_button.blockSignals(True)
        self.pause_button.setChecked(running and self.learning.paused)
        self.pause_button.setText("Resume" if running and self.learning.paused else "Pause")
        self.pause_button.blockSignals(False)
        self.loop_status.set_parts([] if self.session.project is None else self.learning.status_parts())
        self._show_scoring()
        if self._request_shown and not self.learning.retrain_pending:
            self._request_shown = False
            if self.learning.phase == "idle":  # answered without a run ("Retrain: no candidate: ...")
                self.status.setText(self.learning.now)
        busy = self.session.training_running
        self.train_button.setEnabled(self.session.project is not None and (running or not busy))
        self.cancel_button.setEnabled(busy)

    def _show_scoring(self) -> None:
        """While the loop re-scores the pool, the bar counts the samples scored: a run's bar left
        at 0% beside "scoring 112/235" looked stuck."""
        scored = self.learning.scored if self.learning.phase == "scoring" else None
        if scored is None:
            return
        done, total = scored
        self.progress.setFormat(SCORING_FORMAT)
        if self.progress.maximum() != total:
            self.progress.setRange(0, max(1, total))
        self.progress.setValue(min(done, total))

    def _reset_progress(self) -> None:
        self.progress.setFormat(RUN_FORMAT)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)

    def _run_started(self, _phase: str) -> None:
        self.plot.reset(running=True)
        self._reset_progress()

    # --- manual runs ----------------------------------------------------------------------------
    def retrain(self) -> bool:
        """With the loop on: ask it for a candidate now. Off: run the form's method and budget."""
        if self.learning.running:
            self.learning.retrain()
            rec = calls.recommendation(self.session.project)
            self.status.setText(retrain_request_text(self.learning.now, self.learning.phase, rec.text(),
                                                     in_run=self.learning.run_under_way))
            self._request_shown = True
            return True
        init = INIT_CHOICES.get(self.init_combo.currentText())
        if init == "active":
            active = self.session.project.active_model() if self.session.project else None
            init = active.version if active is not None else None
        if init == "pretrained" and not calls.has_pretrained(self.session.project):
            init = None
        budget = self.budget.value() or None
        return self.session.start_training(self.method, init=init, steps=self.steps.value(), budget_s=budget,
                                           config=self.config())

    def cancel(self) -> None:
        """Stop the running job: a manual run, or the loop (switch it on again to continue)."""
        stops_loop = self.learning.running
        if stops_loop:
            self.learning.stop()
        else:
            self.session.cancel_training()
        # a step of a whole CT volume on a CPU takes tens of seconds: say that it was heard
        self.cancel_button.setEnabled(False)
        self._cancelling = True
        self.status.setText(CANCELLING + (LOOP_OFF if stops_loop else ""))

    def _started(self, method: str) -> None:
        self._cancelling = False
        self.plot.reset(running=True)
        self._reset_progress()
        self.train_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(f"{METHOD_LABELS.get(method, method)}: starting…")

    @main_thread_only
    def _on_event(self, event) -> None:
        self.plot.add_event(event)
        parts = []
        if getattr(event, "total_steps", 0):
            parts.append(f"step {event.step}/{event.total_steps}")
            self.progress.setFormat(RUN_FORMAT)
            if self.progress.maximum() != event.total_steps:
                self.progress.setRange(0, event.total_steps)
            self.progress.setValue(min(event.step, event.total_steps))
        if isinstance(getattr(event, "loss", None), float):
            parts.append(f"loss {event.loss:.4f}")
        speed = getattr(event, "images_per_second", None)
        if speed:
            parts.append(f"{speed:.0f} img/s")
        if getattr(event, "message", ""):
            parts.append(event.message)
        # "Cancelling…" stays until the run ends; "Retrain requested…" until the loop acts on it
        if not self._cancelling and not self.learning.retrain_pending:
            self.status.setText(", ".join(parts))

    def _ended(self, outcome: str) -> None:
        self._cancelling = False
        self.train_button.setEnabled(self.session.project is not None)
        self.cancel_button.setEnabled(False)
        job = self.session.last_training
        decision = getattr(getattr(job, "result", None), "decision", None) if job is not None else None
        words = {"done": decision.message if decision is not None else "Training finished.",
                 "cancelled": CANCELLED,
                 "failed": "Training stopped with an error; the previous model stays active."}
        self.status.setText(words.get(outcome, outcome))
        self.plot.ended(outcome)
        self.refresh_models()

    # --- versions -------------------------------------------------------------------------------
    def _labels_changed(self) -> None:
        if self.isVisible():
            self.refresh_models()
        else:
            self._models_stale = True

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        if self._models_stale:
            self.refresh_models()

    def refresh_models(self) -> None:
        self._models_stale = False
        project = self.session.project
        models = project.models() if project is not None else []
        active = project.active_model() if project is not None else None
        log = calls.promotion_decisions(project) if project is not None else []
        decisions = {decision.candidate: decision for decision in log}  # the newest decision of each version
        figures = calls.version_figures(project, models, log) if project is not None else {}
        chosen = self._selected_version()  # the row moves down when a version comes: the choice follows it
        self.models_table.setRowCount(len(models))
        for r, m in enumerate(sorted(models, key=lambda m: m.version, reverse=True)):
            decision = decisions.get(m.version)
            metric = figures.get(m.version)
            is_active = active is not None and m.version == active.version
            cells = [f"{ACTIVE_MARK} v{m.version}" if is_active else f"v{m.version}",
                     self._status_of(decision, m, is_active), str(m.n_labels or 0),
                     f"{metric.name} {metric.value:.3f}" if metric else "—"]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c == COL_VERSION:
                    item.setData(Qt.ItemDataRole.UserRole, m.version)
                    item.setToolTip(f"v{m.version}: {m.method}")
                if c == COL_STATUS and text != "active":
                    item.setToolTip(text)
                if c == COL_METRIC and metric:
                    item.setToolTip(self._metric_origin(metric, decision))
                self.models_table.setItem(r, c, item)
        self._select_version(chosen)
        for column in (COL_VERSION, COL_LABELS, COL_METRIC):  # (sized to contents as a mode, they widen the dock)
            self.models_table.resizeColumnToContents(column)
        self.models_table.resizeRowsToContents()
        self.rollback_button.setEnabled(self._previous_active() is not None)
        self._offer_inits()

    @classmethod
    def _status_of(cls, decision, m, is_active: bool) -> str:
        if m.removed is not None:  # what it was stays readable; the table shows why it cannot come back
            was = cls._status_of(decision, replace(m, removed=None), is_active)
            return f"weights removed ({was})" if was != "inactive" else "weights removed"
        if m.method.startswith("pretrain:"):
            return "pretrained encoder"
        if is_active:
            return "active"
        if decision is None:
            return "inactive"
        if decision.promoted:
            return "was active"
        if decision.waiting:
            return f"not promoted: no {calls.split_word(decision.split)} labels"
        if decision.candidate_value is not None and decision.active_value is not None:
            value, active_value = calls.figures_apart(decision.candidate_value, decision.active_value)
            return f"not promoted: {value} vs v{decision.active} {active_value}"
        return "not promoted"

    @staticmethod
    def _metric_origin(metric, decision) -> str:
        """Where a version's figure comes from (`promotion.version_figures`): promotion's measurement
        on the labels of now, which its decision compared, else its run's validation or promotion's
        measurement on the labels of then (0.790 here, 0.798 there when labels came in between)."""
        if metric.origin == calls.MEASURED_NOW:
            return (f"measured by promotion on the {calls.labels_text(metric.n_val, metric.split)} as they are now "
                    "(the figures its decisions compare)")
        if metric.origin == calls.MEASURED_AT_DECISION:
            return "measured when promotion decided, on the labels of then (its run had no validation labels)"
        text = "measured by its training run on the validation labels of then"
        measured = decision.measured() if decision is not None else None
        if measured is not None and f"{measured[1]:.3f}" != f"{metric.value:.3f}":
            text += (f"; promotion measured {measured[0]} {measured[1]:.3f} on the "
                     f"{calls.labels_text(decision.n_val, decision.split)} it compared on")
        return text

    def _previous_active(self) -> int | None:
        """The model that was active before the current one (from the decision log)."""
        project = self.session.project
        active = project.active_model() if project is not None else None
        if active is None:
            return None
        for decision in reversed(calls.promotion_decisions(project)):
            if decision.promoted and decision.candidate == active.version:
                previous = decision.active
                return previous if previous is not None and project.model(previous).removed is None else None
        return None

    def roll_back(self) -> None:
        version = self._previous_active()
        if version is not None:
            self.session.activate_model(version)

    def _selected_version(self) -> int | None:
        rows = self.models_table.selectionModel().selectedRows()
        item = self.models_table.item(rows[0].row(), COL_VERSION) if rows else None
        return int(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None

    def _select_version(self, version: int | None) -> None:
        table = self.models_table
        row = next((r for r in range(table.rowCount()) if version is not None
                    and table.item(r, COL_VERSION).data(Qt.ItemDataRole.UserRole) == version), None)
        if row is None:
            table.clearSelection()
        else:
            table.selectRow(row)

    def activate_selected(self) -> None:
        version = self._selected_version()
        if version is None:
            return
        model = self.session.project.model(version)
        if model.method.startswith("pretrain:") or model.removed is not None:
            from napari.utils.notifications import show_info

            if model.removed is not None:
                show_info(f"v{version}: {calls.weights_removed_text(model.removed)}")
            else:
                show_info(f"v{version} is a pretrained encoder, not a model that predicts: train from it "
                          "with Start 'from pretrained encoder'.")
            return
        before = self.session.project.active_model()
        decision = calls.model_decision(self.session.project, version)
        if not self.session.activate_model(version):
            return
        if before is not None and before.version != version:
            self.status.setText(self._activated_text(version, before.version, decision))

    def _activated_text(self, version: int, before: int, decision) -> str:
        """One click made another model active: what validation says of it against the one before,
        the way back, and that the loop goes on (a new user's v1, auc 0.000 against v2's 1.000, was
        activated without a word, then replaced by the loop's next candidate)."""
        if decision is not None and not decision.promoted and not decision.waiting:
            text = f"v{version} is active, as you chose, though promotion had kept it back ({decision.message})"
        else:
            project = self.session.project
            figures = calls.version_figures(project, [project.model(version), project.model(before)])
            mine, theirs = figures.get(version), figures.get(before)
            text = f"v{version} is active, as you chose"
            if mine and theirs and mine.origin == theirs.origin == calls.MEASURED_NOW and mine.name == theirs.name \
                    and mine.value != theirs.value:
                value, other = calls.figures_apart(mine.value, theirs.value)
                text += (f" ({mine.name} {value} against v{before}'s {other} on the "
                         f"{calls.labels_text(mine.n_val, mine.split)} of now)")
        text += f". Roll back makes v{before} active again."
        if self.learning.running and self.learning.paused:
            text += " Learning is paused: after Resume, a candidate that promotion accepts replaces it."
        elif self.learning.running:
            text += " Learning goes on: a candidate that promotion accepts replaces it (Pause keeps it)."
        return text
