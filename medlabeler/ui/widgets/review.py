"""Review: the model's prediction of the open sample; accept it or correct it; overlay controls."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from medlabeler.ui.layers import GRADCAM, PREDICTION, UNCERTAINTY
from medlabeler.ui.session import held_out_refusal, label_shares_text
from medlabeler.ui.widgets._common import close_with_the_panel, connect, hint, leave_keys_to_the_canvas, session_for


class ReviewWidget(QWidget):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        layout = QVBoxLayout(self)
        self.summary = QLabel("No prediction yet.")
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        self.bars_holder = QWidget()
        self.bars_layout = QVBoxLayout(self.bars_holder)
        self.bars_layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.bars_holder)
        self.bars: list[QProgressBar] = []

        buttons = QHBoxLayout()
        self.accept_button = QPushButton("Accept prediction")
        self.accept_button.setToolTip("Save the prediction as this sample's label (the a key: accept and open "
                                      "the next)")
        self.edit_button = QPushButton("Correct it…")
        self.edit_button.setToolTip("Copy the prediction into the labels layer to paint corrections; save with 's'")
        buttons.addWidget(self.accept_button)
        buttons.addWidget(self.edit_button)
        layout.addLayout(buttons)

        self.show_overlay = QCheckBox("Show prediction overlay")
        self.show_overlay.setChecked(self.session.overlay_visible[PREDICTION])  # the choice so far
        layout.addWidget(self.show_overlay)
        self.opacity_row = QWidget()
        row = QHBoxLayout(self.opacity_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Opacity"))
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(45)
        row.addWidget(self.opacity, 1)
        layout.addWidget(self.opacity_row)
        self.show_uncertainty = QCheckBox("Show uncertainty map (u)")
        self.show_uncertainty.setChecked(self.session.overlay_visible[UNCERTAINTY])
        layout.addWidget(self.show_uncertainty)
        self.show_cam = QCheckBox("Show Grad-CAM, where the model looked (g)")
        self.show_cam.setChecked(self.session.overlay_visible[GRADCAM])
        layout.addWidget(self.show_cam)
        layout.addWidget(hint("Accepting saves a label marked 'accepted prediction'; a corrected one is "
                              "marked 'corrected prediction', so reviews can be told apart from manual labels."))
        layout.addStretch(1)

        self.accept_button.clicked.connect(self.session.accept_prediction)
        self.edit_button.clicked.connect(self.session.edit_prediction)
        self.show_overlay.toggled.connect(lambda v: self._set_visible(PREDICTION, v))
        self.show_uncertainty.toggled.connect(lambda v: self._set_visible(UNCERTAINTY, v))
        self.show_cam.toggled.connect(lambda v: self._set_visible(GRADCAM, v))
        self.opacity.valueChanged.connect(self._set_opacity)
        connect(self, self.session.prediction_changed, self.show_prediction)
        connect(self, self.session.overlay_toggled, self._overlay_toggled)
        connect(self, self.session.project_changed, self._project_changed)
        self.show_prediction(self.session.current_prediction)  # docked late: the one on screen
        leave_keys_to_the_canvas(self)
        close_with_the_panel(self)

    def _project_changed(self) -> None:
        self.show_prediction(None)

    def _set_visible(self, kind: str, visible: bool) -> None:
        self.session.set_overlay_visible(kind, visible)

    def _overlay_toggled(self, kind: str, visible: bool) -> None:
        """A key toggled an overlay: the box follows."""
        box = {PREDICTION: self.show_overlay, UNCERTAINTY: self.show_uncertainty, GRADCAM: self.show_cam}.get(kind)
        if box is not None and box.isChecked() != visible:
            box.setChecked(visible)

    def _set_opacity(self, value: int) -> None:
        if self.session.view is not None:
            self.session.view.set_overlay_opacity(PREDICTION, value / 100)

    def show_prediction(self, pred) -> None:
        task = self.session.task
        has = pred is not None and pred.label is not None
        refusal = held_out_refusal(self.session.sample) if has else ""
        self.accept_button.setEnabled(has and not refusal)
        # rich text: Qt wraps it (a plain tooltip was one line across the image)
        self.accept_button.setToolTip(f"<p>{refusal}</p>" if refusal else "Save the prediction as this sample's label")
        self.edit_button.setEnabled(has and task is not None and task.kind == "segmentation")
        self.edit_button.setVisible(task is None or task.kind == "segmentation")
        classification = task is not None and task.kind == "classification"
        self.show_cam.setVisible(classification)
        for w in (self.show_overlay, self.opacity_row, self.show_uncertainty):
            w.setVisible(not classification)
        for bar in self.bars:
            self.bars_layout.removeWidget(bar)
            bar.deleteLater()
        self.bars = []
        if not has:
            active = self.session.project.active_model() if self.session.project else None
            self.summary.setText("No model yet: one trains by itself once a training sample is labeled; the "
                                 "Train tab shows how far it is (or press Retrain now there)." if active is None
                                 else "Prediction is being computed…" if self.session.sample else "No sample open.")
            return
        if self.session.view is not None:
            self._set_opacity(self.opacity.value())
        names = list(task.names)
        if task.kind == "classification":
            probs = pred.probabilities
            self.summary.setText(f"Model v{pred.model_version} predicts <b>{names[int(pred.label)]}</b>")
            if probs is not None:
                for name, p in zip(names, np.asarray(probs).reshape(-1)):
                    self._add_bar(name, float(p))
        else:
            text = f"Model v{pred.model_version} prediction: " + label_shares_text(pred.label, names)
            if pred.probabilities is not None:
                confidence = float(np.asarray(pred.probabilities).max(axis=0).mean())
                text += f"; mean confidence {confidence:.2f}"
            self.summary.setText(text)

    def _add_bar(self, name: str, p: float) -> None:
        bar = QProgressBar()
        bar.setRange(0, 1000)
        bar.setValue(int(round(p * 1000)))
        bar.setFormat(f"{name}: {p:.1%}")
        self.bars_layout.addWidget(bar)
        self.bars.append(bar)
