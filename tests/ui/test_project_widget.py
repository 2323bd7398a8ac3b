"""The Project widget: create a project from a folder through the form, counts, recent projects."""

from __future__ import annotations

import os

import numpy as np
import pytest
from qtpy.QtCore import Qt

from medlabeler.ui.widgets import ProjectWidget
from tests.ui.projects import NAMES

pytestmark = pytest.mark.gui


def test_create_from_folder_then_reopen_from_recent(make_napari_viewer, qtbot, brain_files, tmp_path):
    images, _ = brain_files
    viewer = make_napari_viewer()
    widget = ProjectWidget(viewer)
    viewer.window.add_dock_widget(widget)
    session = widget.session
    session.warm_up_on_open = False
    widget.images_edit.setText(str(images))
    widget.root_edit.setText(str(tmp_path / "made-here"))
    widget.task_combo.setCurrentText("segmentation")
    widget.names_edit.setText(", ".join(NAMES))
    widget.colors_edit.setText("#ff0000, #00ff00")
    widget.unit_combo.setCurrentText("slice")
    qtbot.mouseClick(widget.create_button, Qt.MouseButton.LeftButton)

    project = session.project
    assert project is not None and project.task.names == tuple(NAMES)
    assert project.task.colors == ("#ff0000", "#00ff00") and project.task.unit == "slice"
    assert "0 of 24 samples labeled" in widget.counts_label.text()
    assert "train: 0/" in widget.counts_label.text()
    assert session.sample is not None and session.view.labels_layer is not None

    session.close_project()
    assert widget.path_label.text() == "No project open" and not list(viewer.layers)
    assert widget.recent.findText(str(tmp_path / "made-here")) == 0
    qtbot.mouseClick(widget.recent_button, Qt.MouseButton.LeftButton)
    assert session.project is not None and session.project.root == tmp_path / "made-here"


def test_a_new_project_offers_the_images_opened_in_napari(make_napari_viewer, brain_files):
    """A napari user opened a scan with File > Open, then had to type its path again into the
    Project panel's Images field."""
    images, _ = brain_files
    scans = sorted(images.glob("*.nii.gz"))
    viewer = make_napari_viewer()
    viewer.open(str(scans[0]), plugin="medlabeler")
    widget = ProjectWidget(viewer)
    assert widget.images_edit.text() == str(scans[0])
    viewer.open(str(scans[1]), plugin="medlabeler")  # a field filled stays as it is
    assert widget.images_edit.text() == str(scans[0])
    widget.images_edit.clear()
    viewer.add_image(np.zeros((4, 4)), name="made in the console")  # no file: nothing to offer
    viewer.open(str(scans[2]), plugin="medlabeler")
    assert widget.images_edit.text() == str(scans[2])


def test_a_bad_folder_is_reported_not_raised(make_napari_viewer, monkeypatch, tmp_path):
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    viewer = make_napari_viewer()
    widget = ProjectWidget(viewer)
    (tmp_path / "empty").mkdir()
    widget.images_edit.setText(str(tmp_path / "empty"))
    widget.root_edit.setText(str(tmp_path / "p"))
    widget.names_edit.setText("tumour")
    assert widget.create_from_form() is None
    # the folder's name and the problem first: a notification shows one line, and a long path had hidden them
    assert len(shown) == 1 and shown[0].startswith("Cannot create the project: empty: no readable images found")
    assert widget.report_label.text() == shown[0] and not widget.report_label.isHidden()
    assert widget.session.open_project(tmp_path / "nowhere") is False
    assert "nowhere: does not exist" in shown[-1]
    assert widget.session.open_project(tmp_path / "empty") is False
    assert "not a medlabeler project" in shown[-1]


def test_the_files_an_import_skipped_are_named_in_the_project_tab(make_napari_viewer, monkeypatch, brain_pngs,
                                                                   tmp_path):
    """A new user saw "3 files skipped" in the status line and the files' names in the terminal only."""
    import shutil

    monkeypatch.setattr("napari.utils.notifications.show_warning", lambda message: None)
    images, _ = brain_pngs
    shutil.copytree(images, tmp_path / "images")
    cut = sorted((tmp_path / "images").glob("*.png"))[0]
    cut.write_bytes(cut.read_bytes()[:200])
    viewer = make_napari_viewer()
    widget = ProjectWidget(viewer)
    widget.session.warm_up_on_open = False
    widget.images_edit.setText(str(tmp_path / "images"))
    widget.root_edit.setText(str(tmp_path / "p"))
    widget.task_combo.setCurrentText("classification")
    widget.names_edit.setText("a, b")
    assert widget.create_from_form()
    report = widget.report_label.text()
    assert "1 file skipped" in report.splitlines()[0], report
    assert f"skipped {cut.name}: image data is truncated or damaged (image file is truncated) (in {cut.parent})" in report
    assert not widget.report_label.isHidden()
    widget.session.close_project()  # the report is about the project it made: it goes with it
    assert widget.report_label.isHidden()


def test_a_project_that_cannot_be_made_or_opened_leaves_the_open_one_open(make_napari_viewer, monkeypatch,
                                                                           brain_project, class_project, brain_files,
                                                                           tmp_path):
    """A form left filled in from the last project, or a wrong folder, had closed the project
    open before failing: the clinician was left with none. The one open stays, painted strokes
    and all; a project opened in its place takes over (the status bar forgets the last one's words)."""
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    viewer = make_napari_viewer()
    widget = ProjectWidget(viewer)
    session = widget.session
    session.warm_up_on_open = False
    assert session.open_project(brain_project)
    opened, first = session.project, session.sample
    session.view.labels_layer.data[first.slice_index, 5:9, 5:9] = 1  # a stroke not saved yet
    widget.images_edit.setText(str(brain_files[0]))
    widget.root_edit.setText(str(class_project))  # already a project
    widget.names_edit.setText("tumour")
    assert widget.create_from_form() is None
    assert "already holds a medlabeler project" in shown[-1]
    widget.root_edit.setText(str(brain_project))  # the one open
    assert widget.create_from_form() is None
    assert shown[-1] == f"Cannot create the project: {brain_project} holds the project open now"
    monkeypatch.setenv("HOME", str(brain_project.parent))  # the same folder spelled with ~
    widget.root_edit.setText(f"~/{brain_project.name}")
    assert widget.create_from_form() is None and shown[-1].endswith("holds the project open now")
    assert session.open_project(tmp_path / "nowhere") is False and "does not exist" in shown[-1]
    assert session.project is opened and not opened.closed and session.sample is first
    assert widget.path_label.text() != "No project open"
    viewer.status = f"saved the label of sample {first.id}"
    assert session.open_project(brain_project)  # the same project again: opened anew, writable
    assert session.project is not opened and opened.closed and not session.project.readonly
    assert session.project.load_label(first.id)[5:9, 5:9].all()  # saved as it closed
    assert viewer.status != f"saved the label of sample {first.id}"


def test_closing_the_window_saves_labels_and_releases_the_project(make_napari_viewer, brain_project):
    import numpy as np

    from medlabeler.engine.store import Project
    from medlabeler.ui.app import build_app

    viewer = make_napari_viewer(show=True)
    session = build_app(viewer, brain_project).session
    session.warm_up_on_open = False
    sample = session.sample
    session.view.labels_layer.data[sample.slice_index, 10:20, 10:20] = 1
    viewer.close()
    assert session.project is None
    with Project.open(brain_project) as project:  # the writer lock was released
        mask = project.load_label(sample.id)
    assert isinstance(mask, np.ndarray) and mask[10:20, 10:20].all() and mask.sum() == 100


def test_a_project_another_app_writes_to_opens_read_only_and_cannot_be_painted(make_napari_viewer, monkeypatch,
                                                                               brain_project):
    """A project another app writes to: the app opens it read-only (as the lock error says), says why, and the
    labels layer pans instead of painting what could never be saved."""
    from medlabeler.engine.store.project import Project
    from medlabeler.ui.app import build_app

    warnings = []
    monkeypatch.setattr("napari.utils.notifications.show_warning", warnings.append)
    other_app = Project.open(brain_project)  # holds the writer lock, as another app would
    try:
        viewer = make_napari_viewer()
        widget = build_app(viewer)  # docked: napari closes its widgets with the viewer
        session = widget.session
        session.warm_up_on_open = False
        assert session.open_project(brain_project)
        assert session.project.readonly and session.writer is None
        assert len(warnings) == 1 and "read-only" in warnings[0] and f"pid {os.getpid()}" in warnings[0]
        assert "read-only" in widget.project.path_label.text()
        dock = widget.label
        assert "read-only" in dock.help.text() and not dock.save_button.isEnabled()
        assert not any(button.isEnabled() for button in dock.class_buttons)
        labels = session.view.labels_layer
        assert not labels.editable and labels.mode == "pan_zoom"
        assert session.paint_with(1) is False and labels.mode == "pan_zoom"
        assert "read-only" in viewer.status
        first = session.sample.id
        rows = [row.sample for row in session.queue_rows()]
        session.open_next()  # browsing still works: down the queue (no skip can be recorded)
        assert session.sample is not None and session.sample.id == rows[1] != first
        session.open_next()
        assert session.sample.id == rows[2] and not session.project.skipped_ids()
        assert not session.view.labels_layer.editable
        session.close_project()
    finally:
        other_app.close()
    assert Project.open(brain_project).close() is None  # the read-only app took no lock


def test_a_project_on_a_read_only_disk_opens_read_only_and_says_why(make_napari_viewer, monkeypatch, brain_project):
    """An archived project on a read-only share: "Cannot open the project" (its lock file could not
    be made), though the app looks at projects read-only."""
    from medlabeler.ui.app import build_app
    from tests.engine.test_project_disk_trouble import make_the_lock_file_unwritable

    warnings = []
    monkeypatch.setattr("napari.utils.notifications.show_warning", warnings.append)
    make_the_lock_file_unwritable(monkeypatch, brain_project)
    viewer = make_napari_viewer()
    session = build_app(viewer).session
    session.warm_up_on_open = False
    assert session.open_project(brain_project)
    assert session.project.readonly and session.writer is None and session.sample is not None
    assert len(warnings) == 1 and "cannot be written (Read-only file system)" in warnings[0]
    assert "opened read-only" in warnings[0]
    session.close_project()


def test_a_save_updates_the_counts_without_rebuilding_the_recent_list(make_napari_viewer, monkeypatch,
                                                                      brain_project):
    from medlabeler.ui import session as session_module
    from medlabeler.ui.app import build_app

    viewer = make_napari_viewer()
    widget = build_app(viewer, brain_project)
    session = widget.session
    reads = []
    real = session_module.recent_projects
    monkeypatch.setattr(session_module, "recent_projects", lambda: reads.append(1) or real())
    session.view.labels_layer.data[session.sample.slice_index, 10:20, 10:20] = 1
    session.save_current()
    assert session.flush_saves()
    assert "1 of 24 samples labeled" in widget.project.counts_label.text()
    assert reads == []  # the list of recent projects changes when a project opens, not on a save


def test_the_read_only_warning_comes_after_the_first_samples_own_notes(make_napari_viewer, monkeypatch, brain_project):
    """A second app on a finished project showed "every sample is labeled" on top of the warning
    that it had opened the project read-only (the warning reached only stderr)."""
    import numpy as np

    from medlabeler.engine.store.project import Project
    from medlabeler.ui.app import build_app

    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_warning", lambda m: shown.append(("warning", m)))
    monkeypatch.setattr("napari.utils.notifications.show_info", lambda m: shown.append(("info", m)))
    other_app = Project.open(brain_project)
    try:
        for sample in other_app.samples():
            other_app.save_label(sample.id, np.zeros(sample.shape, np.uint8))
        session = build_app(make_napari_viewer()).session
        session.warm_up_on_open = False
        assert session.open_project(brain_project)
        assert [kind for kind, _ in shown] == ["info", "warning"] and "read-only" in shown[-1][1]
        session.close_project()
    finally:
        other_app.close()


def test_the_project_tab_closes_the_project(make_napari_viewer, qtbot, brain_project):
    """A napari user found no way to close a project from the dock: the lock stayed held, the loop
    kept training and medlabeler's layers stayed until napari quit."""
    import numpy as np
    from qtpy.QtCore import Qt

    from medlabeler.engine.store import Project
    from medlabeler.ui.app import dock_widgets

    viewer = make_napari_viewer(show=True)
    widget = dock_widgets(viewer)  # as napari's Plugins menu docks it
    session, tab = widget.session, widget.project
    session.open_project(brain_project)
    qtbot.waitUntil(lambda: session.sample is not None, timeout=30_000)
    mine = viewer.add_image(np.zeros((8, 8)), name="my image")
    sample = session.sample
    session.view.labels_layer.data[sample.slice_index, 10:20, 10:20] = 1
    assert tab.close_button.isEnabled()
    qtbot.mouseClick(tab.close_button, Qt.MouseButton.LeftButton)
    assert session.project is None and list(viewer.layers) == [mine]
    assert tab.path_label.text() == "No project open" and not tab.close_button.isEnabled()
    with Project.open(brain_project) as project:  # released, and the strokes saved
        assert project.load_label(sample.id)[10:20, 10:20].all()


def test_a_project_whose_predecessor_fails_to_close_is_not_left_locked(make_napari_viewer, monkeypatch, brain_project,
                                                                       class_project):
    """The next project is opened before the open one closes: if closing raises, the next one is
    closed too, or this app's own lock would make it read-only here from then on."""
    from medlabeler.engine.store import Project

    viewer = make_napari_viewer()
    session = ProjectWidget(viewer).session
    session.warm_up_on_open = False
    assert session.open_project(brain_project)

    def fails():
        raise OSError("the share went away")

    monkeypatch.setattr(session, "close_project", fails)
    with pytest.raises(OSError) as failed:  # (its traceback, as Qt's handler keeps it, holds the frame)
        session.open_project(class_project)
    with Project.open(class_project) as again:  # writable: no lock of ours left on it
        assert failed.traceback
        assert not again.readonly
    monkeypatch.undo()
    session.close_project()


def test_a_new_project_opens_with_the_queue_on_to_label(make_napari_viewer, qtbot, brain_project, brain_files, tmp_path):
    """The queue left on "labeled" in the last project showed a new, unlabeled one as "0 samples"
    (a new user's trial)."""
    from medlabeler.ui.app import build_app

    images, _ = brain_files
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, brain_project)
    queue, form = widget.queue, widget.project
    queue.view_combo.setCurrentText("labeled")
    assert queue.sample_ids() == []  # nothing labeled in the first project
    form.images_edit.setText(str(images))
    form.root_edit.setText(str(tmp_path / "second"))
    form.task_combo.setCurrentText("segmentation")
    form.names_edit.setText(", ".join(NAMES))
    qtbot.mouseClick(form.create_button, Qt.MouseButton.LeftButton)
    assert widget.session.project.root.name == "second"
    assert queue.view_combo.currentText() == "to label"
    qtbot.waitUntil(lambda: len(queue.sample_ids()) > 0, timeout=10_000)


def test_the_labels_are_exported_from_the_project_tab(make_napari_viewer, qtbot, brain_project, tmp_path):
    """Export was a command only: a clinician in the app had no way to hand the labels on. The
    strokes on screen are saved first; the export runs on a thread and says what it wrote."""
    import json

    from PIL import Image

    from medlabeler.ui.app import build_app

    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, brain_project)
    session, form = widget.session, widget.project
    said = []
    session.labels_exported.connect(said.append)
    assert [form.format_combo.itemText(i) for i in range(form.format_combo.count())] == [
        "NIfTI", "PNG (2D)", "CSV"]  # no DICOM-SEG: the images are NIfTI
    assert not form.export_button.isEnabled()  # no folder yet
    sample = session.sample
    data = np.asarray(session.view.labels_layer.data)
    data[sample.slice_index, 10:20, 10:30] = 2  # painted, not saved
    session.view.labels_layer.refresh()
    form.export_edit.setText(str(tmp_path / "out"))
    form.format_combo.setCurrentText("PNG (2D)")
    qtbot.mouseClick(form.export_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(said), timeout=30_000)
    assert said == [f"exported 1 mask file and labels.json to {tmp_path / 'out'}"]
    assert not form.export_report.isHidden() and form.export_report.text() == said[0]  # in the tab, as an import's
    assert form.export_button.isEnabled()
    assert session.project.audit_log()[-1]["action"] == "export"  # recorded by the app's own handle
    (entry,) = json.loads((tmp_path / "out" / "labels.json").read_text())["masks"]
    assert entry["sample"] == sample.id
    mask = np.asarray(Image.open(tmp_path / "out" / entry["file"]))
    assert mask[10:20, 10:30].tolist() == np.full((10, 20), 2).tolist() and mask.sum() == 2 * 200
    # a folder that cannot be made: said, and the app goes on
    (tmp_path / "a file").write_text("")
    form.export_edit.setText(str(tmp_path / "a file"))
    qtbot.mouseClick(form.export_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(said) == 2, timeout=30_000)
    assert said[1].startswith("Cannot export the labels: ") and session.project is not None
    # closing the project while it exports: the export has a handle of its own and ends whole (it
    # had crashed the app, the store's connection closed under its query)
    form.export_edit.setText(str(tmp_path / "out3"))
    qtbot.mouseClick(form.export_button, Qt.MouseButton.LeftButton)
    assert not form.export_button.isEnabled()  # one at a time
    session.close_project()
    qtbot.waitUntil(lambda: len(said) == 3, timeout=30_000)
    assert said[2] == f"exported 1 mask file and labels.json to {tmp_path / 'out3'}"


def test_an_export_from_the_app_with_a_damaged_mask_file_writes_the_others_and_warns(make_napari_viewer, qtbot,
                                                                                    brain_project, tmp_path,
                                                                                    monkeypatch):
    from medlabeler.ui.app import build_app

    warnings = []
    monkeypatch.setattr("napari.utils.notifications.show_warning", warnings.append)
    viewer = make_napari_viewer(show=True)
    session = build_app(viewer, brain_project).session
    project = session.project
    ids = [s.id for s in project.samples()[:2]]
    for sample_id in ids:
        project.save_label(sample_id, np.ones(project.load_pixels(project.sample(sample_id)).shape, np.uint8))
    (brain_project / project.label(ids[0]).mask_relpath).write_bytes(b"torn")
    said = []
    session.labels_exported.connect(said.append)
    session.export_labels(tmp_path / "out", fmt="png")
    qtbot.waitUntil(lambda: bool(said), timeout=30_000)
    assert said[0].startswith(f"exported 1 mask file and labels.json to {tmp_path / 'out'}; ")
    assert "1 label left out of the export" in said[0] and f"sample {ids[0]}" in said[0]
    assert warnings == said


def test_a_dicom_seg_export_from_the_app_says_it_carries_the_patient(tmp_path):
    """The command says so and has --deidentify; the app wrote the patient's name and ID without a
    word (a review). DICOM-SEG is offered only for DICOM images, PNG only where there are 2D ones."""
    import pydicom

    from medlabeler.engine.project.project_import import create_project
    from medlabeler.ui import engine_calls as calls
    from tests.engine.io_fixtures import mni_volume, write_dicom_series

    write_dicom_series(tmp_path / "dicom", mni_volume(step=6)[:4], patient_name="Doe^Jane")
    project, _ = create_project(tmp_path / "p", tmp_path / "dicom", task="segmentation", names=["brain"])
    with project:
        assert calls.export_formats(project) == ("nifti", "png", "dicom-seg", "csv")
        sample = project.samples()[1]
        project.save_label(sample.id, np.ones(sample.shape, np.uint8))
        said = calls.export_labels(project, tmp_path / "seg", fmt="dicom-seg", keep_names=False)
        assert said.startswith(f"exported 1 DICOM-SEG file to {tmp_path / 'seg'}; DICOM-SEG files carry the patient")
        assert "tick 'without patient identifiers'" in said
        said = calls.export_labels(project, tmp_path / "anon", fmt="dicom-seg", keep_names=False, deidentify=True)
        assert said.endswith("; without patient identifiers")
    (seg,) = (tmp_path / "anon").iterdir()
    assert "Doe" not in str(pydicom.dcmread(seg).get("PatientName", ""))
    whole, _ = create_project(tmp_path / "v", tmp_path / "dicom", task="segmentation", names=["brain"], unit="image")
    with whole:
        assert calls.export_formats(whole) == ("nifti", "dicom-seg", "csv")
    from PIL import Image

    (tmp_path / "tiles").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "tiles" / "t.png")
    tiles, _ = create_project(tmp_path / "t", tmp_path / "tiles", task="segmentation", names=["cell"])
    with tiles:  # 2D pictures: PNG masks first, as a pathologist expects
        assert calls.export_formats(tiles) == ("png", "nifti", "csv")


def test_labels_are_imported_from_the_project_tab(make_napari_viewer, qtbot, brain_project, brain_files, tmp_path,
                                                  monkeypatch):
    """Masks from another tool came in through the command line only. From the Project tab: the
    strokes on screen are saved first, the import runs on a thread, the open sample shows its
    imported mask, each file skipped is named, and the counts follow."""
    import shutil

    from medlabeler.ui.app import build_app
    from tests.ui.projects import truth_slice

    _, masks = brain_files
    folder = tmp_path / "from_another_tool"
    shutil.copytree(masks, folder)
    (folder / "brain9.nii.gz").write_bytes((folder / "brain0.nii.gz").read_bytes())  # no such image
    viewer = make_napari_viewer(show=True)
    widget = build_app(viewer, brain_project)
    session, form = widget.session, widget.project
    said = []
    session.labels_imported.connect(said.append)
    assert not form.import_button.isEnabled()  # no path yet
    sample = session.sample
    damaged = next(name for name in sorted(os.listdir(masks)) if not sample.path.endswith(name))
    (folder / damaged).write_bytes(b"not a NIfTI")
    data = np.asarray(session.view.labels_layer.data)
    data[sample.slice_index, 2:6, 2:6] = 1  # painted, not saved
    session.view.labels_layer.refresh()
    form.import_edit.setText(str(folder))
    qtbot.mouseClick(form.import_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(said), timeout=30_000)
    project = session.project
    imported = [s for s in project.samples() if not s.path.endswith(damaged)]
    lines = said[0].splitlines()
    assert lines[0] == f"imported {len(imported)} labels from {folder}, 2 problems"
    assert any("brain9.nii.gz" in line and "no image in the project has this name" in line for line in lines)
    assert any(damaged in line for line in lines[1:])
    assert not form.import_report.isHidden() and form.import_report.text().startswith(lines[0])
    assert project.labeled_ids() == {s.id for s in imported}
    assert f"{len(imported)} of {len(project.samples())} samples labeled" in form.counts_label.text()
    # the strokes were saved first, then the imported mask became the newer version, on screen
    assert [v.origin for v in project.label_history(sample.id)] == ["manual", "imported"]
    qtbot.waitUntil(lambda: session.sample is not None and session.reading is None, timeout=10_000)
    shown = np.asarray(session.view.labels_layer.data)
    for z, sample_id in session.view.shown.slices.items():  # every slice of the volume on screen
        assert np.array_equal(shown[z], truth_slice(masks, project.sample(sample_id))), z
    assert form.import_button.isEnabled()
    # the labeled view lists them, each with its scan (a trial reached only the first 50, by "slice 84")
    monkeypatch.setattr("medlabeler.ui.widgets.queue.LISTED_AT_MOST", 5)
    queue = widget.queue
    queue.view_combo.setCurrentText("labeled")
    qtbot.waitUntil(lambda: len(queue.rows) == 5, timeout=5000)
    n_labeled = len(project.labeled_ids())
    assert queue.status.text() == f"the first 5 of {n_labeled} samples (by sample id)"
    first = project.sample(queue.rows[0].sample)
    assert queue.table.item(0, 1).text() == f"scan {project.scan_numbers()[(first.path, None)]}, slice {first.slice_index}"
    assert widget.label.sample_label.text().startswith(f"sample {sample.id} (scan ")
    # a path that is not there: said, and the app goes on
    form.import_edit.setText(str(tmp_path / "nowhere"))
    qtbot.mouseClick(form.import_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(said) == 2, timeout=30_000)
    assert said[1].startswith("Cannot import the labels: ") and "nowhere" in said[1] and session.project is project


def test_classes_are_imported_from_a_csv_in_the_project_tab(make_napari_viewer, qtbot, class_project, brain_pngs,
                                                             tmp_path):
    from medlabeler.ui.app import build_app
    from tests.ui.projects import CLASSES

    _, classes = brain_pngs
    rows = sorted(classes.items())[:3]
    csv = tmp_path / "diagnoses.csv"
    csv.write_text("image,label\n" + "".join(f"{name},{CLASSES[c]}\n" for name, c in rows) + "ghost.png,x\n")
    viewer = make_napari_viewer()
    widget = build_app(viewer, class_project)
    session, form = widget.session, widget.project
    assert form.import_edit.placeholderText() == "a CSV of image,label rows"
    said = []
    session.labels_imported.connect(said.append)
    form.import_edit.setText(str(csv))
    qtbot.mouseClick(form.import_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(said), timeout=30_000)
    assert said[0].splitlines()[0] == f"imported 3 labels from {csv}, 1 problem"
    assert "line 5" in said[0] and "ghost.png" in said[0]
    by_name = {os.path.basename(s.path): s.id for s in session.project.samples()}
    assert {by_name[name]: c for name, c in rows} == session.project.labels()


def test_an_empty_queue_says_why(make_napari_viewer, brain_files, tmp_path):
    """With every image of a project missing the queue opened on an empty "to label" saying "the
    next 0 to label"."""
    import shutil

    from medlabeler.engine.project.project_import import create_project
    from medlabeler.ui.app import build_app
    from tests.ui.projects import COLORS

    images, _ = brain_files
    shutil.copytree(images, tmp_path / "images")
    create_project(tmp_path / "project", tmp_path / "images", task="segmentation", names=NAMES, colors=COLORS,
                   unit="slice")[0].close()
    shutil.move(tmp_path / "images", tmp_path / "elsewhere")
    widget = build_app(make_napari_viewer(), tmp_path / "project")
    widget.queue.refresh(wait=True)
    assert widget.queue.rows == [] and widget.queue.status.text().startswith("nothing to label now: the ")
    assert "Find moved images" in widget.queue.status.text()


def test_images_moved_since_the_import_are_found_from_the_project_tab(make_napari_viewer, qtbot, brain_files,
                                                                      tmp_path, monkeypatch):
    """The image folder moved (another disk, another computer): nothing opens until the Project
    tab's Find moved images points the project at the new place; then the first sample opens. The
    check of the labeled images begun at opening, ending after the relink, notes nothing."""
    import shutil
    import threading

    from medlabeler.engine.store import Project

    checked = threading.Event()
    real_check = Project.check_labeled_sources

    def slow_check(self):
        found = real_check(self)
        checked.wait(30)  # ends after the relink
        return found

    monkeypatch.setattr(Project, "check_labeled_sources", slow_check)

    from medlabeler.engine.project.project_import import create_project
    from medlabeler.ui.app import build_app
    from tests.ui.projects import COLORS

    images, _ = brain_files
    shutil.copytree(images, tmp_path / "old" / "images")
    project, _ = create_project(tmp_path / "project", tmp_path / "old" / "images", task="segmentation", names=NAMES,
                                colors=COLORS, unit="slice")
    with project:
        first = project.samples()[0]
        for sample in project.samples():  # every sample labeled: nothing is left to label after the relink
            project.save_label(sample.id, np.ones(sample.shape, np.uint8))
    new = tmp_path / "moved here"
    shutil.move(tmp_path / "old", new)
    errors = []
    monkeypatch.setattr("medlabeler.ui.session.show_error_message", errors.append)
    viewer = make_napari_viewer()
    widget = build_app(viewer, tmp_path / "project")
    session, form = widget.session, widget.project
    assert session.sample is None  # every image is missing
    assert errors and all("Find moved images" in error for error in errors)  # what to do about it
    said = []
    session.images_relinked.connect(said.append)
    assert form.relink_button.isEnabled() and form.relink(str(new))
    qtbot.waitUntil(lambda: bool(said), timeout=30_000)
    n = len(session.project.samples())
    assert said == [f"found 4 of 4 missing images under {new}: {n} samples read from there now"]
    assert not form.relink_report.isHidden() and form.relink_report.text() == said[0]
    assert session.project.missing_sources() == []
    qtbot.waitUntil(lambda: session.sample is not None, timeout=10_000)  # the first sample opens now
    assert session.sample.id == first.id
    session.open_next()  # `n` with nothing left to label says so (a trial: it did nothing, without a word)
    assert viewer.status.startswith("nothing left to label: every sample that can be opened is labeled")
    widget.queue.refresh(wait=True)  # and the queue, empty, says why
    assert widget.queue.status.text() == "nothing left to label: every sample is labeled (the labeled view lists them)"
    checked.set()
    for thread in threading.enumerate():
        if thread.name == "medlabeler-labeled-check":
            thread.join(30)
    qtbot.wait(100)  # its result arrives, found stale
    assert first.id not in session.project.unreadable_ids()
    assert form.relink(str(new))
    qtbot.waitUntil(lambda: len(said) == 2, timeout=30_000)
    assert said[1] == "no image of the project is missing"


def test_an_earlier_version_of_a_label_is_restored_from_the_queue(make_napari_viewer, qtbot, brain_project):
    """An import or a correction replaced a better label: the versions were kept, but only a
    Python call brought one back. A right-click on its row in the queue lists them."""
    from medlabeler.ui.app import build_app

    viewer = make_napari_viewer()
    widget = build_app(viewer, brain_project)
    session, queue = widget.session, widget.queue
    sample = session.sample
    layer = session.view.labels_layer
    first = np.zeros(sample.shape, np.uint8)
    first[5:15, 5:15] = 2
    for mask in (first, np.ones(sample.shape, np.uint8)):  # a careful label, then one that replaced it
        np.asarray(layer.data)[sample.slice_index] = mask
        layer.refresh()
        session.save_current()
        session.flush_saves()
    queue.view_combo.setCurrentText("labeled")
    qtbot.waitUntil(lambda: sample.id in queue.sample_ids(), timeout=5000)
    _, _, restore = queue.row_actions(queue.sample_ids().index(sample.id))
    now, earlier = restore.menu().actions()  # its label now is listed, marked, and not to be chosen
    assert now.text().startswith("v2 · by hand") and now.text().endswith("(its label now)") and not now.isEnabled()
    assert restore.isEnabled() and earlier.text().startswith("v1 · by hand") and earlier.text().endswith("white_matter")
    earlier.trigger()
    assert session.project.label(sample.id).version == 1
    assert np.array_equal(np.asarray(layer.data)[sample.slice_index], first)  # on screen at once
    assert viewer.status == f"sample {sample.id}: version 1 is its label again (version 2 stays in the history)"
    _, _, restore = queue.row_actions(queue.sample_ids().index(sample.id))
    assert [(a.text()[:2], a.isEnabled()) for a in restore.menu().actions()] == [("v2", True), ("v1", False)]


def test_strokes_painted_while_an_import_runs_stay_and_its_report_waits_for_its_project(
        make_napari_viewer, qtbot, brain_project, brain_files, monkeypatch, tmp_path):
    """(A review.) The import's end reloaded the samples it changed over the strokes painted since
    it started, which were lost; and the report of an import that ended after its project closed
    showed under the next one."""
    import threading

    from medlabeler.ui import engine_calls
    from medlabeler.ui.app import build_app
    from tests.ui.projects import truth_slice

    _, masks = brain_files
    go = threading.Event()
    real_import = engine_calls.import_labels

    def slow_import(project, path, before):  # a large import: the clinician goes on labeling
        go.wait(30)
        return real_import(project, path, before)

    monkeypatch.setattr(engine_calls, "import_labels", slow_import)
    viewer = make_napari_viewer()
    widget = build_app(viewer, brain_project)
    session, form = widget.session, widget.project
    said = []
    session.labels_imported.connect(said.append)
    sample, layer = session.sample, session.view.labels_layer
    z = sample.slice_index
    form.import_edit.setText(str(masks))
    assert form.import_labels()
    np.asarray(layer.data)[z, 10:20, 10:20] = 2  # painted while the import runs, not saved yet
    layer.refresh()
    go.set()
    qtbot.waitUntil(lambda: bool(said), timeout=30_000)
    shown = np.asarray(layer.data)
    assert (shown[z, 10:20, 10:20] == 2).all()  # the strokes stay (the next save makes them the newer version)
    other = next(i for i, sid in session.view.shown.slices.items() if i != z)  # the volume's other slices show the import
    assert np.array_equal(shown[other], truth_slice(masks, session.project.sample(session.view.shown.slices[other])))
    assert session.save_current() == 1
    session.flush_saves()
    assert session.project.label(sample.id).origin == "manual"
    # an import the project's close waits for: its report is not shown under "No project open"
    go.clear()
    assert form.import_labels()
    threading.Timer(0.3, go.set).start()
    session.close_project()
    qtbot.wait(100)
    assert form.path_label.text() == "No project open" and form.import_report.isHidden() and len(said) == 1


def test_creating_or_opening_a_project_while_a_run_trains_asks_first(make_napari_viewer, qtbot, brain_project,
                                                                     tmp_path, brain_files, monkeypatch):
    """A trial's "Create and open" closed the demo and threw away a training round 23% done; a
    notification said so, gone from the screen in 4 s."""
    from qtpy.QtWidgets import QMessageBox

    from medlabeler.ui.app import build_app
    from tests.ui.projects import TINY

    asked, answer = [], [QMessageBox.StandardButton.No]
    monkeypatch.setattr(QMessageBox, "question", lambda parent, title, text, *a: asked.append(text) or answer[0])
    viewer = make_napari_viewer()
    widget = build_app(viewer, brain_project)
    session, form = widget.session, widget.project
    project = session.project
    layer = session.view.labels_layer
    np.asarray(layer.data)[session.sample.slice_index, 10:30, 10:30] = 1
    session.save_current()
    session.flush_saves()
    assert session.start_training("supervised", steps=2000, config=TINY)
    images, _ = brain_files
    form.images_edit.setText(str(images))
    form.root_edit.setText(str(tmp_path / "second"))
    form.names_edit.setText("tumour")
    assert form.create_from_form() is None  # "No": nothing made, nothing stopped
    assert asked[0].startswith("Creating a project stops the run under way") and "active model stays" in asked[0]
    assert session.project is project and session.training_running and not (tmp_path / "second").exists()
    answer[0] = QMessageBox.StandardButton.Yes
    assert form.create_from_form()
    assert session.project.root == tmp_path / "second" and len(asked) == 2
    assert not session.training_running
    form.may_close_the_project("Closing the project")  # nothing runs now: nothing asked
    assert len(asked) == 2
