"""`medlabeler export` while the app holds the project open, and `medlabeler remove-label`."""

import numpy as np

from medlabeler.cli import main
from medlabeler.engine.io import read_image
from medlabeler.engine.project.project_import import create_project
from medlabeler.engine.store import Project
from tests.engine.io_fixtures import write_nifti


def test_export_reads_a_project_another_app_holds_open(tmp_path, capsys):
    volume = np.arange(4 * 6 * 5, dtype=np.float32).reshape(4, 6, 5)
    source = write_nifti(tmp_path / "images" / "v.nii.gz", volume)
    project, _ = create_project(tmp_path / "proj", source, task="segmentation", names=["a"])
    mask = np.zeros((6, 5), np.uint8)
    mask[2:4, 1:3] = 1
    with project:
        sample = project.samples()[1]
        project.save_label(sample.id, mask, author="clinician")
        audits_before = len(project.audit_log())
        # the app keeps the project open for writing (this handle holds the lock) while a script exports
        assert main(["export", str(tmp_path / "proj"), "--format", "nifti", "--out", str(tmp_path / "out")]) == 0
        out = capsys.readouterr().out
        assert "open in another app" in out and "read-only" in out and "not recorded" in out
        assert len(project.audit_log()) == audits_before  # nothing was written behind the app's back
    exported = read_image(tmp_path / "out" / "volume_0001_labels.nii.gz").array
    assert np.array_equal(exported[sample.slice_index], mask)
    # with the app closed, the export is recorded as before
    assert main(["export", str(tmp_path / "proj"), "--format", "nifti", "--out", str(tmp_path / "out2")]) == 0
    with Project.open(tmp_path / "proj", readonly=True) as project:
        assert project.audit_log()[-1]["action"] == "export"


def test_export_says_what_it_replaced_and_what_else_lies_in_its_folder(tmp_path, capsys):
    """A re-export over an earlier one replaced its files without a word."""
    volume = np.arange(4 * 6 * 5, dtype=np.float32).reshape(4, 6, 5)
    source = write_nifti(tmp_path / "images" / "v.nii.gz", volume)
    project, _ = create_project(tmp_path / "proj", source, task="segmentation", names=["a"])
    with project:
        project.save_label(project.samples()[1].id, np.ones((6, 5), np.uint8), author="clinician")
    export = ["export", str(tmp_path / "proj"), "--format", "nifti", "--out", str(tmp_path / "out")]
    assert main(export) == 0
    first = capsys.readouterr().out
    assert "exported 2 files" in first and "replaced" not in first and "note:" not in first
    assert "file names are left out (they can name the patient)" in first  # a CSV without them puzzled a user
    assert main([*export, "--keep-names", "--format", "csv"]) == 0
    assert "left out" not in capsys.readouterr().out
    (tmp_path / "out" / "volume_0009_labels.nii.gz").write_bytes(b"an earlier export's")
    assert main(export) == 0
    again = capsys.readouterr().out
    assert "2 of them replaced files of the same name there" in again
    assert "holds 2 other files, not from this export" in again  # the earlier one's and the CSV


def test_remove_label_makes_samples_unlabeled_from_the_command_line(tmp_path, capsys):
    source = write_nifti(tmp_path / "images" / "v.nii.gz", np.ones((3, 6, 5), np.float32))
    project, _ = create_project(tmp_path / "proj", source, task="segmentation", names=["a"])
    with project:
        first, second = (s.id for s in project.samples()[:2])
        project.save_label(first, np.zeros((6, 5), np.uint8))
    assert main(["remove-label", str(tmp_path / "proj"), str(first), str(second)]) == 0
    out = capsys.readouterr().out
    assert f"sample {first}: label removed (version 1 stays in the history)" in out
    assert f"sample {second}: no label to remove" in out
    with Project.open(tmp_path / "proj", readonly=True) as project:
        assert project.labeled_ids() == frozenset() and len(project.label_history(first)) == 1
    assert main(["remove-label", str(tmp_path / "proj"), "999"]) != 0  # an unknown sample is an error
