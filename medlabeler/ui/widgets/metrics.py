"""Metrics: the active model's validation metric against the number of labels, decision by decision.

Each point is one promotion decision of the learning loop (or of a Retrain): the metric of the
model that was active after it, measured on the validation labels of that moment. Candidates that
were not promoted are drawn as hollow markers beside it. The line breaks where the validation labels
changed: the points on either side are measured on different labels. Before the first measured
model there is no plot at all (a caption says why), never empty axes.
"""

from __future__ import annotations

import math

from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from medlabeler.ui import engine_calls as calls
from medlabeler.ui.widgets._common import close_with_the_panel, connect, hint, leave_keys_to_the_canvas, session_for


def active_curve(project) -> tuple[str, list[tuple[int, float, int]], list[tuple[int, float, int]], list[str]]:
    """(metric name, active points, kept points, labels measured on): (labels, value, version) per
    decision made on the labels promotion compares on now (validation; training in a project with no
    validation samples), and for each active point the state of those labels it was measured on
    (`promotion.validation_state`; "" where an older decision did not record it)."""
    active_pts: list[tuple[int, float, int]] = []
    kept: list[tuple[int, float, int]] = []
    states: list[str] = []
    name = ""
    split = calls.comparison_split(project)
    models = {m.version: m for m in project.models()}
    for d in calls.promotion_decisions(project):
        model = models.get(d.candidate)
        if model is None or d.metric == "" or getattr(d, "candidate_value", None) is None or d.split != split:
            continue
        name = name or d.metric
        if d.metric != name:
            continue
        n = int(model.n_labels or 0)
        if d.promoted:
            active_pts.append((n, float(d.candidate_value), d.candidate))
            states.append(d.val_state)
        else:
            kept.append((n, float(d.candidate_value), d.candidate))
            if d.active_value is not None and math.isfinite(d.active_value):
                active_pts.append((n, float(d.active_value), d.active))
                states.append(d.val_state)
    return name, active_pts, kept, states


def runs_of_equal_state(states: list[str]) -> list[range]:
    """Index ranges of consecutive points measured on the same labels: the curve is drawn as one
    line per run, so that a jump where validation labels came or changed does not read as a model
    that improved (a new user saw v4 go from 0.905 to 0.953 with one validation label more).
    An unrecorded state ("") continues the run before it."""
    runs: list[range] = []
    start, current = 0, None
    for i, state in enumerate(states):
        if state and current and state != current:
            runs.append(range(start, i))
            start = i
        current = state or current
    if states:
        runs.append(range(start, len(states)))
    return runs


#: What the tab says in a project with no validation samples (one or two scans of whole volumes, or
#: a validation fraction of 0).
NO_VALIDATION_NOTE = ("This project has no validation samples: new models are compared on the training labels, "
                      "which catches a broken run but not overfitting.")
ADD_SCANS_NOTE = "Add scans to measure the models on held-out ones."


def metric_limits(values: list[float]) -> tuple[float, float]:
    """The y range of the metric plot: the values with room around them, above 0, and a little
    above 1 where a value is 1 (a model at AUC 1.000 sat on the frame's top edge, under no tick)."""
    low, high = min(values), max(values)
    pad = max(0.05, (high - low) * 0.15)
    top = min(1.0 + pad / 4, high + pad) if high <= 1.0 else high + pad
    return max(0.0, low - pad), top


class MetricsWidget(QWidget):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        layout = QVBoxLayout(self)
        self.figure = Figure(figsize=(4, 3.4))
        self.figure.subplots_adjust(left=0.17, right=0.96, bottom=0.27, top=0.91)  # the legend below
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(200)
        self.ax = self.figure.add_subplot(111)
        layout.addWidget(self.canvas, 1)
        self.caption = QLabel("")
        self.caption.setWordWrap(True)
        layout.addWidget(self.caption)
        layout.addWidget(hint("The active model's metric on the validation labels (held out, never trained "
                              "on), against the number of training labels it learned from, after each "
                              "decision; hollow markers: candidates that were not promoted."))
        connect(self, self.session.models_changed, self.refresh)
        connect(self, self.session.project_changed, self.refresh)
        self.points: list[tuple[int, float, int]] | None = None  # None: never drawn
        self.runs: list[range] = []  # of points measured on the same labels (`runs_of_equal_state`)
        self.kept: list[tuple[int, float, int]] = []
        self._stale = True
        self._redraw()
        leave_keys_to_the_canvas(self)
        close_with_the_panel(self)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt name
        super().showEvent(event)
        if self._stale:
            self.refresh()

    def refresh(self) -> None:
        """Redraw now if the tab is shown, else when it is (a redraw costs tens of ms of the UI)."""
        self._stale = not self.isVisible()
        if self._stale and self.points is not None:
            return
        self._redraw()

    @staticmethod
    def _no_validation_note(project) -> str:
        """Why the figures are training ones; adding scans helps only where validation has a share."""
        if project.samples(split="val"):  # validation labels of one class only
            note = calls.comparison_note(project, "train").lstrip("; ")
            return note[0].upper() + note[1:] + "."
        wants_val = project.task.split_fractions[1] > 0
        return NO_VALIDATION_NOTE + (f" {ADD_SCANS_NOTE}" if wants_val else "")

    @staticmethod
    def _unmeasured_note(project) -> str:
        """The labels the validation figure leaves out, and those no model can learn (`label_split_notes`)."""
        notes = calls.label_split_notes(project.task.kind, project.status())
        return "".join(f". {text[0].upper()}{text[1:]}" for text in notes)

    def _redraw(self) -> None:
        from matplotlib.ticker import MaxNLocator

        project = self.session.project
        name, self.points, self.kept, states = active_curve(project) if project is not None else ("", [], [], [])
        self.runs = runs_of_equal_state(states)
        on = calls.split_word(calls.comparison_split(project) if project is not None else "val")
        self.canvas.setVisible(bool(self.points))
        self.ax.clear()
        if self.points:
            xs, ys = [p[0] for p in self.points], [p[1] for p in self.points]
            for k, run in enumerate(self.runs):
                self.ax.plot([xs[i] for i in run], [ys[i] for i in run], "o-", color="tab:blue", markersize=4,
                             label="active model" if k == 0 else None)
                if k:  # where the labels measured on changed: a break in the line, and a mark
                    self.ax.axvline(xs[run[0]], color="gray", linestyle=":", linewidth=1,
                                    label=f"{on} labels changed" if k == 1 else None)
            if self.kept:
                self.ax.plot([p[0] for p in self.kept], [p[1] for p in self.kept], "o", markerfacecolor="none",
                             color="tab:red", markersize=5, linestyle="none", label="not promoted")
            last = self.points[-1]
            bottom, top = metric_limits(ys + [p[1] for p in self.kept])
            self.ax.set_ylim(bottom, top)
            near_top = last[1] > top - (top - bottom) / 6  # above the point the version would run into the title
            self.ax.annotate(f"v{last[2]}", (last[0], last[1]), fontsize=7, xytext=(3, -9 if near_top else 3),
                             textcoords="offset points")
            span = max(xs + [p[0] for p in self.kept]) - min(xs + [p[0] for p in self.kept])
            lo_x = min(xs + [p[0] for p in self.kept])
            self.ax.set_xlim(lo_x - max(1, span * 0.05), lo_x + span + max(1, span * 0.05))
            self.ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
            self.ax.yaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 5, 10]))  # 0.96, 0.98, 1.00
            self.ax.set_xlabel("labeled training samples")
            # over the axes, not beside them: a rotated label is cut off in a narrow dock
            self.ax.set_title(f"{on} {name}", loc="left", fontsize=9, y=1.0, pad=3)
            self.ax.grid(alpha=0.3)
            # below the axes: inside them it hid the active model's point once it sat in its corner
            for old in self.figure.legends:
                old.remove()
            self.figure.legend(*self.ax.get_legend_handles_labels(), fontsize=7, loc="lower center", ncol=2,
                               frameon=False, handlelength=1.5, columnspacing=1.2, borderaxespad=0.2)
            self.canvas.draw_idle()
            self.caption.setText(f"active model v{last[2]}: {on} {name} {last[1]:.3f} when the project had "
                                 f"{last[0]} training label{'' if last[0] == 1 else 's'} "
                                 f"({len(self.points)} decision{'' if len(self.points) == 1 else 's'})"
                                 + (f"; the line breaks where the {on} labels changed (the figures on either "
                                    "side are measured on different labels)" if len(self.runs) > 1 else "")
                                 + (f". {self._no_validation_note(project)}" if on == "training" else "")
                                 + self._unmeasured_note(project))
        elif on == "training":
            self.caption.setText(self._no_validation_note(project))
        elif project is not None and not project.samples(split="val", labeled=True):
            self.caption.setText("No validation labels yet: the queue mixes in validation samples; label some "
                                 "to measure the models (until then the first model is promoted unmeasured, "
                                 "and later ones wait to be promoted).")
        else:
            self.caption.setText("No measured model yet: the curve starts with the first trained model.")
