"""`medlabeler init / import-labels / status / export` on real-format files."""

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from medlabeler.cli import main
from medlabeler.engine.io import read_image
from medlabeler.engine.project_import import create_project, import_labels
from medlabeler.engine.store import Project
from tests.engine.io_fixtures import make_isic_folder, mni_volume, write_dicom_series, write_nifti


@pytest.fixture(scope="module")
def brain():
    return mni_volume(step=6)  # a real MRI, (32, 39, 33)


def test_init_on_a_folder_of_dicom_series_gives_one_sample_per_slice(tmp_path, brain, capsys):
    images = tmp_path / "dicom"
    for patient in range(4):
        write_dicom_series(images / f"p{patient}", brain[:10] + patient, spacing=(3.0, 1.5, 1.5),
                           patient_id=f"PAT-{patient}", series_number=patient + 1, seed=patient)
    code = main(["init", str(tmp_path / "proj"), "--images", str(images), "--task", "segmentation",
                 "--labels", "grey,white"])
    assert code == 0
    assert "40 samples added" in capsys.readouterr().out
    with Project.open(tmp_path / "proj", readonly=True) as project:
        samples = project.samples()
        assert project.task.unit == "slice" and project.task.slabs == 0
        assert sorted({s.slice_index for s in samples}) == list(range(10))
        assert {s.shape for s in samples} == {(39, 33)}
        by_group = {}
        for s in samples:
            by_group.setdefault(s.group, set()).add(s.split)
        assert len(by_group) == 4 and all(len(splits) == 1 for splits in by_group.values())
        pixels = project.load_pixels(next(s for s in samples if s.slice_index == 4))
        assert pixels.shape == (39, 33)


def test_status_says_when_a_single_scan_is_split_by_slabs(tmp_path, brain, capsys):
    source = write_nifti(tmp_path / "brain.nii.gz", brain)
    create_project(tmp_path / "proj", source, task="segmentation", names=["tissue"])[0].close()
    assert main(["status", str(tmp_path / "proj")]) == 0
    assert "10 contiguous slabs of slices per scan" in capsys.readouterr().out


def test_single_scan_is_split_by_contiguous_slabs(tmp_path, brain):
    source = write_nifti(tmp_path / "brain.nii.gz", brain, spacing=(6.0, 6.0, 6.0))
    project, report = create_project(tmp_path / "proj", source, task="segmentation", names=["tissue"])
    with project:
        assert report.added == brain.shape[0] and project.task.slabs == 10
        splits = [s.split for s in sorted(project.samples(), key=lambda s: s.slice_index)]
        assert {"train", "val", "test"} <= set(splits) or len(set(splits)) >= 2
        changes = sum(a != b for a, b in zip(splits, splits[1:]))
        assert changes <= 9  # contiguous runs: at most one change per slab border


def test_isic_folder_makes_a_labeled_classification_project(tmp_path):
    made = make_isic_folder(tmp_path / "isic", {"melanoma": 5, "nevus": 7})
    project, report = create_project(tmp_path / "proj", tmp_path / "isic", task="classification")
    with project:
        assert project.task.names == ("melanoma", "nevus")
        assert report.added == 12 and report.labeled == 12
        status = project.status()
    assert status["per_class"] == {"melanoma": 5, "nevus": 7}
    assert len(made) == 12


def test_csv_import_keeps_good_rows_and_names_bad_ones(tmp_path):
    make_isic_folder(tmp_path / "isic", {"a": 3, "b": 3})
    files = sorted((tmp_path / "isic").rglob("*.*"))
    project, _ = create_project(tmp_path / "proj", tmp_path / "isic", task="classification", names=["x", "y"])
    table = tmp_path / "labels.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label"])
        writer.writerow([files[0].name, "x"])
        writer.writerow([files[1].name, "cancer"])
        writer.writerow(["nowhere.png", "y"])
    with project:
        report = import_labels(project, table)
        assert report.labeled == 1 and len(report.errors) == 2
        messages = [str(e) for e in report.errors]
        assert any("line 3" in m and "unknown class 'cancer'" in m for m in messages)
        assert any("line 4" in m and "nowhere.png" in m for m in messages)


def test_masks_import_and_nifti_export_round_trip(tmp_path, brain):
    source = write_nifti(tmp_path / "images" / "brain.nii.gz", brain, spacing=(6.0, 6.0, 6.0))
    truth = (brain > 80).astype(np.uint8) + (brain > 160).astype(np.uint8)
    write_nifti(tmp_path / "masks" / "brain.nii.gz", truth, spacing=(6.0, 6.0, 6.0), dtype=np.uint8)
    write_nifti(tmp_path / "masks" / "other.nii.gz", truth)
    project, _ = create_project(tmp_path / "proj", source, task="segmentation", names=["grey", "white"])
    with project:
        report = import_labels(project, tmp_path / "masks")
        assert report.labeled == brain.shape[0]
        assert len(report.errors) == 1 and "other.nii.gz" in str(report.errors[0])
    assert main(["export", str(tmp_path / "proj"), "--format", "nifti", "--out", str(tmp_path / "out")]) == 0
    exported = tmp_path / "out" / "volume_0001_labels.nii.gz"
    assert np.array_equal(read_image(exported).array, truth)
    original, written = nib.load(source), nib.load(exported)
    assert np.allclose(original.affine, written.affine)
    index = json.loads((tmp_path / "out" / "labels.json").read_text())
    assert index["labels"] == {"1": "grey", "2": "white"}


def test_mask_of_the_wrong_shape_is_reported_not_saved(tmp_path, brain):
    source = write_nifti(tmp_path / "images" / "brain.nii.gz", brain)
    write_nifti(tmp_path / "masks" / "brain.nii.gz", np.zeros((3, 4, 5), np.uint8))
    project, _ = create_project(tmp_path / "proj", source, task="segmentation", names=["tissue"])
    with project:
        report = import_labels(project, tmp_path / "masks")
        assert report.labeled == 0
        assert "does not match image shape" in str(report.errors[0])
        assert project.status()["labeled"] == 0


def test_status_json_has_the_documented_keys(tmp_path, capsys):
    make_isic_folder(tmp_path / "isic", {"a": 2, "b": 2})
    assert main(["init", str(tmp_path / "p"), "--images", str(tmp_path / "isic"), "--task", "classification"]) == 0
    capsys.readouterr()
    assert main(["status", str(tmp_path / "p"), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert {"samples", "labeled", "per_split", "per_class"} <= set(status)
    assert status["samples"] == 4 and status["labeled"] == 4
