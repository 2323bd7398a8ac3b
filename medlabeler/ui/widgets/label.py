"""Label: one button per class (keys 1-9) for classification; paint labels and save for segmentation."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from medlabeler.ui.keys import keys_help
from medlabeler.ui.layers import DEFAULT_BRUSH, brush_for
from medlabeler.ui.widgets._common import (
    close_with_the_panel, connect, hint, leave_keys_to_the_canvas, sample_text, session_for,
)


class LabelWidget(QWidget):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        layout = QVBoxLayout(self)
        self.sample_label = QLabel("no sample open")
        layout.addWidget(self.sample_label)
        self.current_label = QLabel("")
        layout.addWidget(self.current_label)
        self.grid_holder = QWidget()
        self.grid = QGridLayout(self.grid_holder)
        self.grid.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.grid_holder)
        self.class_buttons: list[QPushButton] = []

        brush_row = QHBoxLayout()
        self.brush_label = QLabel("Brush")
        self.brush = QSlider(Qt.Orientation.Horizontal)
        self.brush.setRange(1, 60)
        self.brush.setValue(DEFAULT_BRUSH)
        self._brush_start = DEFAULT_BRUSH  # the starting size of the images open lately (`brush_for`)
        brush_row.addWidget(self.brush_label)
        brush_row.addWidget(self.brush, 1)
        layout.addLayout(brush_row)

        buttons = QHBoxLayout()
        self.save_button = QPushButton("Save (s)")
        self.next_button = QPushButton("Next (n)")
        self.remove_button = QPushButton("Remove label")
        self.remove_button.setToolTip("Make the sample on screen unlabeled again (a label saved by mistake); "
                                      "its versions stay in the project's history")
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.next_button)
        buttons.addWidget(self.remove_button)
        layout.addLayout(buttons)
        self.save_warning = QLabel("")  # what the last save needs the clinician to know, until a later save
        self.save_warning.setWordWrap(True)
        self.save_warning.setStyleSheet("color: #f0a030;")
        self.save_warning.setVisible(False)
        layout.addWidget(self.save_warning)
        self.help = hint("")
        layout.addWidget(self.help)
        self.keys = QLabel("")  # the keys help: one scheme, from keys.py
        self.keys.setWordWrap(True)
        self.keys.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.keys)
        layout.addStretch(1)

        self.save_button.clicked.connect(self.save)
        self.next_button.clicked.connect(self.session.open_next)
        self.remove_button.clicked.connect(self.session.remove_label)
        self.brush.valueChanged.connect(self._brush_changed)
        connect(self, self.session.project_changed, self.rebuild)
        connect(self, self.session.sample_opened, self._sample_opened)
        connect(self, self.session.labels_changed, self._show_current)
        connect(self, self.session.saves_submitted, self._show_current)
        connect(self, self.session.save_warning_changed, self._show_save_warning)
        self.rebuild()
        if self.session.sample is not None:  # docked after a sample opened: no signal will say which
            self._sample_opened(self.session.sample)
        leave_keys_to_the_canvas(self)
        close_with_the_panel(self)

    def rebuild(self) -> None:
        for button in self.class_buttons:
            self.grid.removeWidget(button)
            button.deleteLater()
        self.class_buttons = []
        task = self.session.task
        if task is None:
            self.help.setText("Open a project to label.")
            self.keys.setText("")
            self._show_current()
            return
        segmentation = task.kind == "segmentation"
        for i, (name, color) in enumerate(zip(task.names, task.colors)):
            text = f"{i + 1}: {name}" if i < 9 else name
            button = QPushButton(text)
            button.setStyleSheet(f"border-left: 8px solid {color}; padding: 4px; text-align: left;")
            if segmentation:
                button.setToolTip(f"Paint {name} (label value {i + 1})" + (f" (key {i + 1})" if i < 9 else ""))
                button.clicked.connect(lambda _=False, v=i + 1: self.paint_with(v))
            else:
                button.setToolTip(f"Label this image as {name}" + (f" (key {i + 1})" if i < 9 else ""))
                button.clicked.connect(lambda _=False, v=i: self.session.label_class(v))
            self.grid.addWidget(button, i // 2, i % 2)
            self.class_buttons.append(button)
        leave_keys_to_the_canvas(self)
        for w in (self.brush, self.brush_label, self.save_button):
            w.setVisible(segmentation)
        readonly = self.session.project.readonly
        for w in (*self.class_buttons, self.brush, self.save_button, self.remove_button):
            w.setEnabled(not readonly)
        self.help.setText(
            "Open read-only (another app writes to this project): look at the images, labels and "
            "predictions here; 'n' opens the next sample." if readonly else
            "Paint on the labels layer: every pixel you leave unpainted counts as background. Labels "
            "save when you move to another sample, or with 's'."
            if segmentation else "Press a class button or its number key; 'n' opens the next sample."
        )
        self.keys.setText(keys_help(task.kind))
        self._show_current()

    def paint_with(self, value: int) -> None:
        self.session.paint_with(value, self.brush.value())

    def _brush_changed(self, size: int) -> None:
        layer = self.session.view.labels_layer if self.session.view else None
        if layer is not None:
            layer.brush_size = size

    def save(self) -> int:
        return self.session.save_current()

    def _sample_opened(self, sample) -> None:
        self.sample_label.setText(sample_text(sample, self.session.project))
        # the file's name only on hover (it may name the patient: never in the line itself), for
        # the clinician who needs to know which of their files this is (two trials asked)
        self.sample_label.setToolTip(f"image file: {Path(sample.path).name}" if sample is not None else "")
        self._follow_brush()
        self._fit_brush()
        self._show_current()

    def _fit_brush(self) -> None:
        """An image of another size starts the brush at a size of its own (`brush_for`); images of
        the same size keep the size the clinician chose."""
        layer = self.session.view.labels_layer if self.session.view else None
        if layer is None:
            return
        start, largest = brush_for(layer.data.shape)
        if self.brush.maximum() != largest:
            self.brush.setMaximum(largest)
        if start != self._brush_start:
            self._brush_start = start
            self.brush.setValue(start)

    def _follow_brush(self) -> None:
        """The slider follows napari's own brush size (its `[` `]` keys and slider): a label
        button would otherwise set the brush back to the slider's stale size."""
        layer = self.session.view.labels_layer if self.session.view else None
        if layer is None or layer is getattr(self, "_brush_layer", None):
            return
        self._brush_layer = layer
        layer.events.brush_size.connect(self._brush_size_changed)
        self._brush_size_changed()

    def _brush_size_changed(self, _event=None) -> None:
        layer = getattr(self, "_brush_layer", None)
        try:
            if layer is not None and self.brush.value() != int(round(layer.brush_size)):
                self.brush.blockSignals(True)  # napari has it already: no echo back
                self.brush.setValue(int(round(layer.brush_size)))
                self.brush.blockSignals(False)
        except RuntimeError:  # the widget is gone (the dock closed)
            pass

    def _show_save_warning(self, text: str) -> None:
        self.save_warning.setText(text)
        self.save_warning.setVisible(bool(text))
        self._show_current()

    def _show_current(self) -> None:
        session = self.session
        if session.project is None or session.sample is None:
            self.current_label.setText("")
            return
        if session.sample.id in session.not_saved_ids():
            self.current_label.setText("not saved (see below): kept, saved again with the next save")
            return
        if session.sample.id in session.pending_labels():
            self.current_label.setText("saving…")  # "saved" only once it is on disk
            return
        label = session.project.label(session.sample.id)
        if label is None:
            missing = session.project.is_missing_slice(session.sample.id)
            self.current_label.setText("missing from its series (shown blank): nothing to label" if missing
                                       else "not labeled yet")
            return
        origin = label.origin.replace("_", " ")
        if label.value is not None:
            name = session.task.names[label.value]
            self.current_label.setText(f"label: <b>{name}</b> (v{label.version}, {origin})")
        else:
            self.current_label.setText(f"mask saved (v{label.version}, {origin})")
