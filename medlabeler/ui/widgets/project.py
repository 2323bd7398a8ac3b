"""Project: open or create a project, open the demo, counts per split and class, import and export the labels."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from medlabeler.ui.widgets._common import (
    CompactCombo, close_with_the_panel, connect, hint, leave_keys_to_the_canvas, session_for,
)


#: Lines of an import's report the Project tab shows (a DICOM tree can skip hundreds of files)
REPORT_LINES = 8
#: The export formats as the Project tab names them (`engine_calls.export_formats` per project)
FORMAT_NAMES = {"nifti": "NIfTI", "png": "PNG (2D)", "dicom-seg": "DICOM-SEG", "csv": "CSV"}


class ProjectWidget(QWidget):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        layout = QVBoxLayout(self)

        open_row = QHBoxLayout()
        self.open_button = QPushButton("Open project…")
        self.demo_button = QPushButton("Open demo")
        self.demo_button.setToolTip("A real brain MRI (MNI152 template) as a slice segmentation project")
        open_row.addWidget(self.open_button)
        open_row.addWidget(self.demo_button)
        layout.addLayout(open_row)

        recent_row = QHBoxLayout()
        self.recent = CompactCombo()
        self.recent_button = QPushButton("Open")
        self.recent_button.setToolTip("Open the recent project chosen beside it")
        self.recent_button.setMinimumWidth(self.recent_button.sizeHint().width())  # the combo gives way, not the word
        recent_row.addWidget(self.recent, 1)
        recent_row.addWidget(self.recent_button)
        layout.addLayout(recent_row)

        self.path_label = QLabel("No project open")
        self.path_label.setWordWrap(True)
        self.close_button = QPushButton("Close project")
        self.close_button.setToolTip("Save the labels, stop the background learning, remove medlabeler's layers "
                                     "and release the project for other apps")
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_label, 1)
        path_row.addWidget(self.close_button)
        layout.addLayout(path_row)
        self.counts_label = QLabel("")
        self.counts_label.setWordWrap(True)
        layout.addWidget(self.counts_label)
        self.relink_button = QPushButton("Find moved images…")
        self.relink_button.setToolTip("Images moved or renamed since they were added (a folder moved to another "
                                      "disk, the project opened on another computer): choose the folder they are "
                                      "in now. Each is taken only if it is the same image (size, DICOM series); "
                                      "sample ids, labels and models stay")
        layout.addWidget(self.relink_button)
        self.relink_report = _report_label()
        layout.addWidget(self.relink_report)

        self._exporting = False
        imports = QGroupBox("Import labels")
        import_form = QFormLayout(imports)
        import_form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.import_edit, self.browse_import = _path_row(import_form, "From", "")
        self.import_button = QPushButton("Import")
        self.import_button.setToolTip("Masks of label numbers (0 background) named after their images, DICOM-SEGs "
                                      "of the project's series, or a CSV of image,label rows (as `medlabeler "
                                      "import-labels`). An imported label is a new version: the one it replaces "
                                      "stays in the sample's history")
        import_form.addRow(self.import_button)
        self.import_report = _report_label()
        import_form.addRow(self.import_report)
        layout.addWidget(imports)

        export = QGroupBox("Export the labels")
        export_form = QFormLayout(export)
        export_form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.export_edit, browse_export = _path_row(export_form, "To folder", "a folder for the label files")
        self.format_combo = CompactCombo(tip="NIfTI: masks in each scan's geometry; PNG: a 2D image's mask as a "
                                             "picture of its label numbers; DICOM-SEG: for a DICOM viewer or PACS; "
                                             "CSV: one row per label")
        self.keep_names_box = QCheckBox("files named as the images")
        self.keep_names_box.setToolTip("Image file names can name the patient: the exported files are numbered "
                                       "(labels.json maps them to sample ids, and Import labels reads the folder "
                                       "back) unless this is ticked. A DICOM-SEG "
                                       "carries its series' patient and study whatever the name (below)")
        self.deidentify_box = QCheckBox("DICOM-SEG without patient identifiers")
        self.deidentify_box.setToolTip("DICOM requires a SEG to carry the patient and study of its series for it to "
                                       "attach to the study; ticked, they are left out (UIDs kept)")
        export_form.addRow("Format", self.format_combo)
        export_form.addRow(self.keep_names_box)  # a row of its own: beside the format it widened the dock
        export_form.addRow(self.deidentify_box)
        self.export_button = QPushButton("Export")
        export_form.addRow(self.export_button)
        self.export_report = _report_label()  # what was written, as the import says what came in (a trial)
        export_form.addRow(self.export_report)
        layout.addWidget(export)

        create = QGroupBox("New project from a folder")
        form = QFormLayout(create)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)  # a field too wide goes under its name
        self.images_edit, browse_images = _path_row(form, "Images", "DICOM / NIfTI / PNG folder or file")
        self.root_edit, browse_root = _path_row(form, "Project folder", "new, empty folder for the project")
        self.task_combo = CompactCombo()
        self.task_combo.addItems(["segmentation", "classification"])
        form.addRow("Task", self.task_combo)
        self.names_edit = QLineEdit()
        self.names_edit.setPlaceholderText("e.g. tumour, oedema (classification: empty = folder names)")
        form.addRow("Names", self.names_edit)
        self.colors_edit = QLineEdit()
        self.colors_edit.setPlaceholderText("optional, e.g. #e6194b, #3cb44b")
        form.addRow("Colours", self.colors_edit)
        self.unit_combo = CompactCombo(
            tip="slice: one sample per slice of each volume; image: one per file/series")
        self.unit_combo.addItems(["automatic", "slice", "image"])
        form.addRow("Samples", self.unit_combo)
        self.create_button = QPushButton("Create and open")
        form.addRow(self.create_button)
        # what the import found, whole: each skipped file by name (a notification shows one line)
        self.report_label = QLabel("")
        self.report_label.setWordWrap(True)
        self.report_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.report_label.setVisible(False)
        self._report_for = None  # the project the report is about (None: a failed import's)
        form.addRow(self.report_label)
        layout.addWidget(create)
        layout.addWidget(hint("Labels are saved in the project folder; source images stay where they are."))
        layout.addStretch(1)

        self.open_button.clicked.connect(self._choose_and_open)
        self.demo_button.clicked.connect(lambda: self.may_close_the_project("Opening the demo")
                                         and self.session.open_demo())
        self.close_button.clicked.connect(lambda: self.may_close_the_project("Closing the project")
                                          and self.session.close_project())
        self.recent_button.clicked.connect(self._open_recent)
        browse_images.clicked.connect(lambda: self._browse(self.images_edit))
        browse_root.clicked.connect(lambda: self._browse(self.root_edit))
        browse_export.clicked.connect(lambda: self._browse(self.export_edit))
        self.relink_button.clicked.connect(self._choose_and_relink)
        connect(self, self.session.images_relinked, self._relink_ended)
        self.browse_import.clicked.connect(self._browse_import)
        self.import_button.clicked.connect(self.import_labels)
        self.import_edit.textChanged.connect(self._enable_import)
        connect(self, self.session.labels_imported, self._import_ended)
        self.export_button.clicked.connect(self.export)
        self.export_edit.textChanged.connect(self._enable_export)
        self.format_combo.currentIndexChanged.connect(self._enable_export)
        connect(self, self.session.labels_exported, self._export_ended)
        self.create_button.clicked.connect(self.create_from_form)
        connect(self, self.session.project_changed, self.refresh)
        # after a save only the counts change: the recent projects' list (a file read and a stat per
        # project) is not rebuilt on the main thread after every save
        connect(self, self.session.labels_changed, self._show_counts)
        self.refresh()
        leave_keys_to_the_canvas(self)
        close_with_the_panel(self)
        napari_viewer.layers.events.inserted.connect(self._offer_opened_images)  # a method: held weakly
        for layer in reversed(list(napari_viewer.layers)):  # the newest first
            if self._offer(layer):
                break

    def _offer_opened_images(self, event) -> None:
        try:
            self._offer(event.value)
        except RuntimeError:  # the panel is gone
            pass

    def _offer(self, layer) -> bool:
        """An empty Images field takes the file or folder of an image the user opened in napari
        (File > Open): a trial typed again the path it had just opened. True if it did."""
        path = getattr(getattr(layer, "source", None), "path", None)
        if not path or layer.__class__.__name__ != "Image" or self.images_edit.text().strip():
            return False
        self.images_edit.setText(str(path))
        return True

    def _browse(self, edit: QLineEdit) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a folder", edit.text() or str(Path.home()))
        if folder:
            edit.setText(folder)

    def _choose_and_open(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a medlabeler project", str(Path.home()))
        if folder and self.may_close_the_project("Opening another project"):
            self.session.open_project(folder)

    def _open_recent(self) -> None:
        path = self.recent.currentText()
        if path and self.may_close_the_project("Opening another project"):
            self.session.open_project(path)

    def may_close_the_project(self, doing: str) -> bool:
        """Whether to go on with ``doing``, which closes the project: the clinician is asked while a
        training run is under way, as the run is lost (a trial's "Create and open" threw away a run 23%
        done, said in a notification gone in 4 s), and while labels a full disk keeps from being
        saved would be lost (`Session.may_close`)."""
        session = self.session
        if session.project is not None and not session.may_close():  # labels a full disk would lose
            return False
        if session.project is None or not (session.learning.run_under_way or session.training_running):
            return True
        what = session.learning.now if session.learning.run_under_way else "a training run"
        answer = QMessageBox.question(
            self, "Stop the training run?",
            f"{doing} stops the run under way ({what}); it is not kept, and the active model stays. Go on?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def create_from_form(self) -> str | None:
        if not self.may_close_the_project("Creating a project"):
            return None
        names = [n.strip() for n in self.names_edit.text().split(",") if n.strip()]
        colors = [c.strip() for c in self.colors_edit.text().split(",") if c.strip()]
        unit = self.unit_combo.currentText()
        summary = self.session.create_project(
            self.root_edit.text().strip(),
            self.images_edit.text().strip(),
            task=self.task_combo.currentText(),
            names=names,
            colors=colors or None,
            unit=None if unit == "automatic" else unit,
        )
        if summary:
            self.viewer.status = summary.splitlines()[0]  # warnings also went to a notification
        self._show_report(self.session.project.root if summary else None)
        return summary

    def _browse_import(self) -> None:
        """A folder of masks or DICOM-SEGs for segmentation, a CSV file for classes."""
        start = self.import_edit.text() or str(Path.home())
        project = self.session.project
        if project is not None and project.task.kind == "classification":
            path, _ = QFileDialog.getOpenFileName(self, "A CSV of image,label rows, or an export's labels.csv", start,
                                                  "CSV (*.csv);;All files (*)")
        else:
            path = QFileDialog.getExistingDirectory(self, "A folder of masks or DICOM-SEGs, or an export's folder", start)
        if path:
            self.import_edit.setText(path)

    def import_labels(self) -> bool:
        """Import the labels at the path in the form (on a thread); the report shows below."""
        path = self.import_edit.text().strip()
        if not path or not self.session.import_labels(path):
            return False
        self.import_report.setVisible(False)
        self._enable_import()
        return True

    def _choose_and_relink(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "The folder the images are in now", str(Path.home()))
        if folder:
            self.relink(folder)

    def relink(self, folder: str) -> bool:
        """Look for the images moved since the import under ``folder`` (on a thread)."""
        if not self.session.relink_images(folder):
            return False
        self.relink_report.setVisible(False)
        self._enable_import()
        return True

    def _relink_ended(self, words: str) -> None:
        _show_report_in(self.relink_report, words)
        self._enable_import()

    def _import_ended(self, words: str) -> None:
        _show_report_in(self.import_report, words)
        self._enable_import()

    def _enable_import(self) -> None:
        project = self.session.project
        ready = project is not None and not project.readonly and bool(self.import_edit.text().strip())
        self.import_button.setEnabled(ready and not self.session.working)  # one import or relink at a time
        self.relink_button.setEnabled(project is not None and not project.readonly and not self.session.working)

    def export(self) -> bool:
        """Export the labels to the folder in the form, in the format chosen (on a thread)."""
        folder = self.export_edit.text().strip()
        if not folder or self.session.project is None:
            return False
        self._exporting = self.session.export_labels(folder, fmt=self.format_combo.currentData(),
                                                     keep_names=self.keep_names_box.isChecked(),
                                                     deidentify=self.deidentify_box.isChecked())
        if self._exporting:
            self.export_report.setVisible(False)  # the last export's words, until this one's
        self._enable_export()
        return self._exporting

    def _export_ended(self, words: str) -> None:
        self._exporting = False
        _show_report_in(self.export_report, words)
        self._enable_export()

    def _enable_export(self) -> None:
        ready = self.session.project is not None and bool(self.export_edit.text().strip())
        self.export_button.setEnabled(ready and not self._exporting)  # one export at a time
        self.deidentify_box.setVisible(self.format_combo.currentData() == "dicom-seg")

    def _show_formats(self, project) -> None:
        from medlabeler.ui.engine_calls import export_formats

        wanted = export_formats(project)
        if tuple(self.format_combo.itemData(i) for i in range(self.format_combo.count())) != wanted:
            self.format_combo.clear()
            for fmt in wanted:
                self.format_combo.addItem(FORMAT_NAMES[fmt], fmt)

    def _show_report(self, root) -> None:
        """The import's report while the project it made is open (or its failure, until another
        opens): its first lines, the whole report in the tooltip."""
        self._report_for = root
        _show_report_in(self.report_label, self.session.import_report)

    def _show_counts(self) -> None:
        if self.session.project is not None:
            self.counts_label.setText(counts_text(self.session.counts(), self.session.project.task.kind))

    def refresh(self) -> None:
        from medlabeler.ui.session import recent_projects

        self.recent.clear()
        self.recent.addItems(recent_projects())
        project = self.session.project
        self.close_button.setEnabled(project is not None)
        if project is None or project.root != self._report_for:  # another project's report, or none
            self.report_label.setVisible(False)
        self._enable_export()
        self._enable_import()
        for report in (self.import_report, self.relink_report, self.export_report):
            report.setVisible(False)  # about the project before
        if project is None:
            self.path_label.setText("No project open")
            self.counts_label.setText("")
            return
        task = project.task
        self._show_formats(project)
        self.import_edit.setPlaceholderText("a CSV of image,label rows" if task.kind == "classification" else
                                            "a folder of masks named after the images, or DICOM-SEGs")
        self.path_label.setText(f"<b>{Path(project.root).name}</b>: {task.kind} of {', '.join(task.names)} "
                                f"(one sample per {task.unit})" + (" — read-only" if project.readonly else ""))
        self._show_counts()


def counts_text(status: dict, kind: str) -> str:
    from medlabeler.ui import engine_calls as calls

    if not status:
        return ""
    lines = [f"{status.get('labeled', 0)} of {status.get('samples', 0)} samples labeled"]
    for split, part in (status.get("per_split") or {}).items():
        lines.append(f"{split}: {part.get('labeled', 0)}/{part.get('samples', 0)}")
    per_class = status.get("per_class") or {}
    if per_class:
        lines.append("; ".join(calls.per_class_text(kind, per_class)))
    skipped = calls.skipped_text(status)
    notes = calls.label_split_notes(kind, status) + ([skipped] if skipped else [])
    lines += [note[0].upper() + note[1:] + "." for note in notes]
    return "\n".join(lines)


def _report_label() -> QLabel:
    """Where the tab says what an import or a relink did (hidden until there is something to say;
    selectable, so that a skipped file's path can be copied)."""
    label = hint("")
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setVisible(False)
    return label


def _show_report_in(label: QLabel, report: str) -> None:
    """An import's report: its first lines, the whole of it in the tooltip (a DICOM tree can skip
    hundreds of files)."""
    lines = report.splitlines()
    shown = lines[:REPORT_LINES] + ([f"… and {len(lines) - REPORT_LINES} more lines (the whole report in the "
                                     "tooltip)"] if len(lines) > REPORT_LINES else [])
    label.setText("\n".join(shown))
    label.setToolTip(report)
    label.setVisible(bool(lines))


def _path_row(form: QFormLayout, name: str, hint: str) -> tuple[QLineEdit, QPushButton]:
    """A path field with its browse button ("…") as one row of ``form``."""
    edit, browse = QLineEdit(), QPushButton("…")
    edit.setPlaceholderText(hint)
    row = QHBoxLayout()
    row.addWidget(edit, 1)
    row.addWidget(browse)
    form.addRow(name, row)
    return edit, browse
